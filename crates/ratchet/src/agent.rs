//! [`Agent`]: the one front door for a platform team. An agent is a name
//! (which becomes its Restate virtual object's name), a model, tools,
//! plugins, a store and the engine settings. [`Agent::bind`] adds it to the
//! team's own Restate endpoint, beside other agents and services;
//! [`crate::restate::serve`] serves that endpoint.
//!
//! ```no_run
//! use ratchet::{Agent, llm::DemoModel, store::SqliteStore, tools::Calculator};
//! use restate_sdk::endpoint::Endpoint;
//! use std::sync::Arc;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(SqliteStore::open("agents.db")?);
//! let endpoint = Agent::new("support")
//!     .store(store)
//!     .model(Arc::new(DemoModel::new()))
//!     .tool(Arc::new(Calculator))
//!     .bind(Endpoint::builder())?
//!     .build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:9080").await?;
//! ratchet::restate::serve(
//!     endpoint,
//!     listener,
//!     ratchet::restate::termination(),
//!     std::time::Duration::from_secs(30),
//! )
//! .await;
//! # Ok(())
//! # }
//! ```

use crate::clock::{self, SharedClock};
use crate::engine::{EngineConfig, Runtime};
use crate::llm::ModelProvider;
use crate::plugins::{Plugin, PluginSet};
use crate::restate::admin::{AdminClient, AdminConfig};
use crate::restate::{DurableOptions, Session, check_object_name};
use crate::store::{DurabilityTier, SessionStore};
use crate::tools::{Tool, ToolRegistry, ToolSource};
use restate_sdk::endpoint::Builder;
use std::sync::Arc;
use std::time::Duration;

/// Why an agent cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    /// The name is not a valid Restate object name.
    #[error("invalid_agent_name: {0}")]
    InvalidName(String),
    /// No store was given.
    #[error("agent_incomplete: agent '{0}' has no store")]
    MissingStore(String),
    /// No model was given.
    #[error("agent_incomplete: agent '{0}' has no model")]
    MissingModel(String),
    /// The durable tier was asked to run on a store that does not survive
    /// crashes.
    #[error(
        "durable_store_required: agent '{agent}' has the {backend} store, which is ephemeral; bind it with a durable store (SQLite or PostgreSQL)"
    )]
    DurableStoreRequired {
        /// The agent.
        agent: String,
        /// The store's backend.
        backend: String,
    },
    /// The approval policy names a tool the agent does not have.
    #[error("invalid_approval_policy: agent '{agent}': {message}")]
    InvalidApproval {
        /// The agent.
        agent: String,
        /// What is wrong.
        message: String,
    },
    /// A tool source (an MCP server) is misconfigured.
    #[error("invalid_tool_source: agent '{agent}': {message}")]
    InvalidToolSource {
        /// The agent.
        agent: String,
        /// What is wrong.
        message: String,
    },
    /// The admin API settings cannot make a client.
    #[error("invalid_admin_config: agent '{agent}': {message}")]
    InvalidAdmin {
        /// The agent.
        agent: String,
        /// What is wrong.
        message: String,
    },
}

/// An agent, built step by step: name it, give it a store and a model,
/// then [`Agent::bind`] it into an endpoint.
#[derive(Clone)]
pub struct Agent {
    name: String,
    store: Option<Arc<dyn SessionStore>>,
    model: Option<Arc<dyn ModelProvider>>,
    tools: ToolRegistry,
    plugins: PluginSet,
    clock: SharedClock,
    config: EngineConfig,
    durable: DurableOptions,
    admin: AdminConfig,
    /// A tool source that could not be made (reported when it is built).
    bad_source: Option<AgentError>,
}

impl Agent {
    /// An agent named `name`: the name of its Restate virtual object, and
    /// the namespace of its sessions in the store.
    pub fn new(name: impl Into<String>) -> Self {
        Agent {
            name: name.into(),
            store: None,
            model: None,
            tools: ToolRegistry::new(),
            plugins: PluginSet::new(),
            clock: clock::system(),
            config: EngineConfig::default(),
            durable: DurableOptions::default(),
            bad_source: None,
            admin: AdminConfig {
                timeout: Duration::from_secs(5),
                ..AdminConfig::new("http://127.0.0.1:9070")
            },
        }
    }

    /// The store its sessions live in (durable to be bound to Restate).
    pub fn store(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The model.
    pub fn model(mut self, model: Arc<dyn ModelProvider>) -> Self {
        self.model = Some(model);
        self
    }

    /// Adds a tool.
    pub fn tool(mut self, tool: Arc<dyn Tool>) -> Self {
        self.tools.register(tool);
        self
    }

    /// Attaches a tool source: each turn lists its tools in a step of its
    /// own and offers them as `{source}__{tool}`.
    pub fn tool_source(mut self, source: Arc<dyn ToolSource>) -> Self {
        if let Err(message) = crate::tools::source::check_source_name(source.name()) {
            self.bad_source
                .get_or_insert(AgentError::InvalidToolSource {
                    agent: self.name.clone(),
                    message,
                });
        }
        self.tools.add_source(source);
        self
    }

    /// Attaches an MCP server (stdio or streamable HTTP). Its tools are
    /// offered as `{server}__{tool}`, of class `Unsafe` unless configured;
    /// a bad configuration fails the build with `invalid_tool_source`.
    #[cfg(feature = "mcp")]
    pub fn mcp(self, server: crate::tools::mcp::McpServer) -> Self {
        match crate::tools::mcp::McpSource::new(server) {
            Ok(source) => self.tool_source(Arc::new(source)),
            Err(e) => {
                let mut agent = self;
                agent
                    .bad_source
                    .get_or_insert(AgentError::InvalidToolSource {
                        agent: agent.name.clone(),
                        message: e.to_string(),
                    });
                agent
            }
        }
    }

    /// Replaces the tool set.
    pub fn tools(mut self, tools: ToolRegistry) -> Self {
        self.tools = tools;
        self
    }

    /// Adds a plugin.
    pub fn plugin(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.plugins = self.plugins.with(plugin);
        self
    }

    /// Replaces every engine setting at once.
    pub fn config(mut self, config: EngineConfig) -> Self {
        self.config = config;
        self
    }

    /// Appends each effect's event as its step runs, not at the commit
    /// (`EngineConfig::live_events`): for an event stream's followers.
    pub fn live_events(mut self, on: bool) -> Self {
        self.config.live_events = on;
        self
    }

    /// Model calls per turn before it stops `MaxTurns`.
    pub fn max_iterations(mut self, n: u32) -> Self {
        self.config.max_iterations = n;
        self
    }

    /// History messages kept in the model's context.
    pub fn context_window(mut self, messages: u32) -> Self {
        self.config.max_context_messages = messages;
        self
    }

    /// The system prompt of sessions that set none.
    pub fn system_prompt(mut self, prompt: impl Into<String>) -> Self {
        self.config.default_system_prompt = prompt.into();
        self
    }

    /// Longest one model call may take (see [`EngineConfig::model_timeout_ms`]).
    pub fn model_timeout(mut self, timeout: Duration) -> Self {
        self.config.model_timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// Longest one tool call may take unless the tool declares its own.
    pub fn tool_timeout(mut self, timeout: Duration) -> Self {
        self.config.tool_timeout_ms = timeout.as_millis() as u64;
        self
    }

    /// Counts every model and tool attempt in the store's effect ledger, so
    /// a failure test can check that no effect ran twice (off by default:
    /// one more write per effect).
    pub fn effect_ledger(mut self, on: bool) -> Self {
        self.config.effect_ledger = on;
        self
    }

    /// How Restate retries the agent's invocations and times its handlers.
    pub fn durable_options(mut self, options: DurableOptions) -> Self {
        self.durable = options;
        self
    }

    /// How soon a turn that waits (for an approval, a pending tool) is
    /// asked to suspend (default 10 s; see [`DurableOptions::timer_margin`]).
    pub fn inactivity_timeout(mut self, timeout: Duration) -> Self {
        self.durable.timer_margin = timeout;
        self
    }

    /// The Restate admin API its `cancel` handler uses.
    pub fn admin_url(mut self, url: impl Into<String>) -> Self {
        self.admin.url = url.into();
        self
    }

    /// How its `cancel` handler reaches the Restate admin API: URL (http
    /// or https), bearer token, timeout, extra CA file.
    pub fn admin(mut self, admin: AdminConfig) -> Self {
        self.admin = admin;
        self
    }

    /// The clock steps read time from (the system clock by default).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Every call of `tool` waits for a person's approval before it runs
    /// (see [`crate::engine::approval`]); repeat for more tools.
    pub fn require_approval(mut self, tool: impl Into<String>) -> Self {
        self.config.approval.tools.insert(tool.into());
        self
    }

    /// How long a call waits for approval before it expires (default 24 h).
    pub fn approval_timeout(mut self, timeout: Duration) -> Self {
        self.config.approval.timeout_ms = timeout.as_millis() as u64;
        self
    }

    fn check_approval(&self) -> Result<(), AgentError> {
        let bad = |message: String| AgentError::InvalidApproval {
            agent: self.name.clone(),
            message,
        };
        if self.config.approval.timeout_ms == 0 {
            return Err(bad("the approval timeout must be positive".into()));
        }
        let known = self.tools.names();
        // A source's tools are known only once listed: a name with a
        // source's prefix is taken on trust.
        match self
            .config
            .approval
            .tools
            .iter()
            .find(|t| !self.tools.may_offer(t))
        {
            Some(t) => Err(bad(format!(
                "'{t}' needs approval but is not one of its tools ({})",
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }

    /// The agent's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The runtime the agent's turns run with, for the inline tier
    /// ([`crate::engine::inline::InlineRunner`]) or a test.
    pub fn runtime(&self) -> Result<Runtime, AgentError> {
        check_object_name(&self.name).map_err(AgentError::InvalidName)?;
        if let Some(e) = &self.bad_source {
            return Err(e.clone());
        }
        self.check_approval()?;
        Ok(Runtime {
            store: self
                .store
                .clone()
                .ok_or_else(|| AgentError::MissingStore(self.name.clone()))?,
            model: self
                .model
                .clone()
                .ok_or_else(|| AgentError::MissingModel(self.name.clone()))?,
            tools: self.tools.clone(),
            plugins: self.plugins.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
        })
    }

    /// The agent's Restate virtual object. Refuses an ephemeral store: the
    /// durable tier keeps no progress records of its own.
    pub fn session(&self) -> Result<Session, AgentError> {
        let rt = self.runtime()?;
        if rt.store.durability_tier() != DurabilityTier::Durable {
            return Err(AgentError::DurableStoreRequired {
                agent: self.name.clone(),
                backend: rt.store.backend_name().to_string(),
            });
        }
        let admin = AdminClient::new(self.admin.clone()).map_err(|e| AgentError::InvalidAdmin {
            agent: self.name.clone(),
            message: e.0,
        })?;
        Ok(Session::new(rt)
            .with_name(self.name.clone())
            .with_admin(admin)
            .with_options(self.durable.clone()))
    }

    /// Adds the agent's virtual object to `endpoint`.
    pub fn bind(self, endpoint: Builder) -> Result<Builder, AgentError> {
        Ok(endpoint.bind(self.session()?.definition()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::DemoModel;
    use crate::store::MemoryStore;

    #[test]
    fn an_agent_needs_a_valid_name_a_store_a_model_and_a_durable_store_to_bind() {
        let model: Arc<dyn ModelProvider> = Arc::new(DemoModel::new());
        let memory: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
        for bad in ["", "9lives", "has space", "a-b", &"x".repeat(65)] {
            let err = Agent::new(bad).runtime().err().expect("refused");
            assert!(matches!(err, AgentError::InvalidName(_)), "{bad}: {err}");
        }
        let no_store = Agent::new("billing").model(model.clone()).runtime();
        assert!(matches!(no_store, Err(AgentError::MissingStore(_))));
        let no_model = Agent::new("billing").store(memory.clone()).runtime();
        assert!(matches!(no_model, Err(AgentError::MissingModel(_))));
        let ephemeral = Agent::new("billing").store(memory).model(model).session();
        let err = ephemeral.err().expect("refused");
        assert!(
            err.to_string().starts_with("durable_store_required"),
            "{err}"
        );
    }
}
