//! The agents `ratchet serve` binds: from a TOML file (`--agents FILE`), or
//! one agent named `Session` from the flags. Each becomes its own virtual
//! object through the library's `Agent` builder.
//!
//! ```toml
//! [[agent]]
//! name = "support"                 # the object name; sessions are support/<key>
//! model = "demo"                   # demo | scripted:FILE | openai:MODEL | anthropic:MODEL
//! system_prompt = "You help with arithmetic."
//! tools = ["calculator", "notes"]  # built-in tools; all of them when absent
//! max_iterations = 8
//! context_window = 200
//! [agent.model_options]            # openai: and anthropic: models (see models.rs)
//! temperature = 0.2
//! max_tokens = 1024
//! [[agent.mcp]]                    # an MCP server over stdio; tools offered as files__<tool>
//! name = "files"
//! command = "npx"
//! args = ["@modelcontextprotocol/server-filesystem", "/srv/data"]
//! tool_idempotency = { read_file = "pure" }   # every other tool: idempotency = "unsafe"
//! [[agent.mcp]]                    # one over streamable HTTP
//! name = "search"
//! url = "https://mcp.example.com/mcp"
//! bearer_token_env = "SEARCH_MCP_TOKEN"
//! ```

use crate::StoreArgs;
use anyhow::{Context, Result, bail};
use ratchet::Agent;
use ratchet::engine::Runtime;
use ratchet::restate::{DEFAULT_OBJECT_NAME, check_object_name};
use ratchet::store::prelude::*;
use ratchet::tools::mcp::McpSource;
use ratchet::tools::{ToolRegistry, builtin_registry};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// The file: a list of `[[agent]]` tables.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentsFile {
    #[serde(rename = "agent", default)]
    agents: Vec<AgentSpec>,
}

/// One agent of the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AgentSpec {
    name: String,
    model: Option<String>,
    system_prompt: Option<String>,
    tools: Option<Vec<String>>,
    max_iterations: Option<u32>,
    context_window: Option<u32>,
    /// Tools whose calls wait for approval (replaces `--approve-tools`).
    approve_tools: Option<Vec<String>>,
    /// Options of an `openai:` or `anthropic:` model.
    model_options: Option<crate::models::ModelOptions>,
    /// MCP servers whose tools the agent offers.
    #[serde(default)]
    mcp: Vec<ratchet::tools::mcp::McpServer>,
}

/// The agents to serve on `store`: the file's, or the flags' one.
pub fn load(
    file: Option<&Path>,
    store: Arc<dyn SessionStore>,
    args: &StoreArgs,
) -> Result<Vec<Agent>> {
    let base = crate::setup::runtime(store, args)?;
    let Some(path) = file else {
        return Ok(vec![agent_from(DEFAULT_OBJECT_NAME, &base)]);
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the agents file {}", path.display()))?;
    let parsed: AgentsFile = toml::from_str(&text)
        .with_context(|| format!("the agents file {} is not valid", path.display()))?;
    if parsed.agents.is_empty() {
        bail!("the agents file {} names no [[agent]]", path.display());
    }
    let mut names = HashSet::new();
    let mut agents = Vec::new();
    for spec in parsed.agents {
        check_object_name(&spec.name).map_err(anyhow::Error::msg)?;
        if !names.insert(spec.name.clone()) {
            bail!("agent '{}' is named twice in {}", spec.name, path.display());
        }
        agents.push(agent_of(spec, &base)?);
    }
    Ok(agents)
}

fn agent_from(name: &str, rt: &Runtime) -> Agent {
    Agent::new(name)
        .store(rt.store.clone())
        .model(rt.model.clone())
        .tools(rt.tools.clone())
        .config(rt.config.clone())
}

fn agent_of(spec: AgentSpec, base: &Runtime) -> Result<Agent> {
    let mut tools = match &spec.tools {
        None => builtin_registry(),
        Some(names) => pick_tools(&spec.name, names)?,
    };
    for server in &spec.mcp {
        let source =
            McpSource::new(server.clone()).with_context(|| format!("agent '{}'", spec.name))?;
        tools.add_source(Arc::new(source));
    }
    let model = match &spec.model {
        None => base.model.clone(),
        Some(m) => crate::models::model_from_spec(m, &tools, spec.model_options.as_ref())
            .with_context(|| format!("agent '{}'", spec.name))?,
    };
    if spec.model.is_none() && spec.model_options.is_some() {
        bail!("agent '{}': model_options needs a model", spec.name);
    }
    let mut config = base.config.clone();
    if let Some(prompt) = spec.system_prompt {
        config.default_system_prompt = prompt;
    }
    if let Some(n) = spec.max_iterations {
        if n == 0 {
            bail!("agent '{}': max_iterations must be at least 1", spec.name);
        }
        config.max_iterations = n;
    }
    if let Some(n) = spec.context_window {
        config.max_context_messages = n;
    }
    if let Some(names) = spec.approve_tools {
        config.approval.tools = names.into_iter().collect();
    }
    let agent = Agent::new(&spec.name)
        .store(base.store.clone())
        .model(model)
        .tools(tools)
        .config(config);
    // Built once here so a bad agent fails at start-up, with its name.
    agent.runtime()?;
    Ok(agent)
}

fn pick_tools(agent: &str, names: &[String]) -> Result<ToolRegistry> {
    let all = builtin_registry();
    let mut picked = ToolRegistry::new();
    for name in names {
        let Some(tool) = all.get(name) else {
            bail!(
                "agent '{agent}': unknown tool '{name}' (built-in tools: {})",
                all.names().join(", ")
            );
        };
        picked.register(tool.clone());
    }
    Ok(picked)
}
