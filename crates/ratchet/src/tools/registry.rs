//! The tool registry: looks tools up by name, checks arguments against their
//! schemas, and turns every failure the model can recover from into an
//! error result the model sees.

use super::{Tool, ToolContext, ToolError, ToolOutput, ToolSource, schema};
use crate::llm::ToolSpec;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The tools a turn may call, by name.
#[derive(Clone, Default)]
pub struct ToolRegistry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
    /// Sources whose tools each turn lists (`source.rs`).
    sources: Vec<Arc<dyn ToolSource>>,
}

impl ToolRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds (or replaces) a tool.
    pub fn register(&mut self, tool: Arc<dyn Tool>) -> &mut Self {
        self.tools.insert(tool.name().to_string(), tool);
        self
    }

    /// The same registry with one more tool.
    pub fn with(mut self, tool: Arc<dyn Tool>) -> Self {
        self.register(tool);
        self
    }

    /// Attaches a tool source (an MCP server): each turn lists its tools in
    /// a step of its own. A source of the same name is replaced.
    pub fn add_source(&mut self, source: Arc<dyn ToolSource>) -> &mut Self {
        self.sources.retain(|s| s.name() != source.name());
        self.sources.push(source);
        self
    }

    /// The attached sources, in the order attached.
    pub fn sources(&self) -> &[Arc<dyn ToolSource>] {
        &self.sources
    }

    /// Whether a turn may offer a tool of this name: a registered tool, or
    /// one with an attached source's prefix (`{source}__`), which only its
    /// listing can confirm.
    pub fn may_offer(&self, name: &str) -> bool {
        self.tools.contains_key(name)
            || self.sources.iter().any(|s| {
                name.strip_prefix(s.name())
                    .is_some_and(|rest| rest.len() > 2 && rest.starts_with("__"))
            })
    }

    /// Looks a tool up.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    /// The timeout of a call to `name`: the tool's own, else `default_ms`.
    pub fn timeout_ms(&self, name: &str, default_ms: u64) -> u64 {
        self.tools
            .get(name)
            .and_then(|t| t.timeout())
            .map_or(default_ms, |d| d.as_millis() as u64)
    }

    /// Whether a call to `name` may be retried after a timeout: not for
    /// tools of class `Unsafe` (nor unknown ones).
    pub fn retry_safe(&self, name: &str) -> bool {
        self.tools
            .get(name)
            .is_some_and(|t| t.idempotency() != super::IdempotencyClass::Unsafe)
    }

    /// The idempotency class of `name` (`None` for an unknown tool).
    pub fn class(&self, name: &str) -> Option<super::IdempotencyClass> {
        self.tools.get(name).map(|t| t.idempotency())
    }

    /// The retry policy of a call to `name`: the tool's own, else `default`.
    pub fn retry_policy(
        &self,
        name: &str,
        default: &crate::engine::RetryPolicy,
    ) -> crate::engine::RetryPolicy {
        self.tools
            .get(name)
            .and_then(|t| t.retry_policy())
            .unwrap_or_else(|| default.clone())
    }

    /// Tool names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.tools.keys().cloned().collect()
    }

    /// Specs for the model, sorted by name.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools
            .values()
            .map(|t| ToolSpec {
                name: t.name().to_string(),
                description: t.description().to_string(),
                parameters: t.parameters(),
            })
            .collect()
    }

    /// Runs a call. Unknown tools, bad arguments and ordinary tool failures
    /// come back as error results; only `ToolError::Fatal`,
    /// `ToolError::Retryable` (for the step to retry) and
    /// `ToolError::OutcomeUnknown` are an `Err`.
    pub async fn invoke(
        &self,
        ctx: &ToolContext,
        name: &str,
        args: serde_json::Value,
    ) -> Result<ToolOutput, ToolError> {
        let Some(tool) = self.tools.get(name) else {
            return Ok(ToolOutput::error(format!(
                "unknown tool '{name}'; available: {}",
                self.names().join(", ")
            )));
        };
        if let Err(e) = schema::validate(&tool.parameters(), &args) {
            return Ok(ToolOutput::error(format!(
                "invalid arguments for {name}: {e}"
            )));
        }
        match tool.call(ctx, args).await {
            Ok(out) => Ok(out),
            Err(
                e @ (ToolError::Fatal(_) | ToolError::Retryable(_) | ToolError::OutcomeUnknown(_)),
            ) => Err(e),
            Err(e) => Ok(ToolOutput::error(e.to_string())),
        }
    }
}
