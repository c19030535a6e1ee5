//! Tool sources: tools that live elsewhere (an MCP server) and are only
//! known once asked for. A [`ToolSource`] lists its tools and runs calls.
//!
//! The list can change between turns (a server is upgraded, restarts, dies),
//! so a turn never asks a source directly: its `tools` step lists every
//! source once and records the answer as a [`ToolListing`]. The turn's
//! registry is built from that record ([`ToolRegistry::for_turn`]), so a
//! replayed turn offers the model the same tools, under the same names, and
//! a call dispatches the same way, whatever the source says today.
//!
//! A source's tools are offered as `{source}__{tool}`, with characters the
//! model APIs refuse in a function name (anything but ASCII letters, digits,
//! `_` and `-`) turned into `_`. A name over 64 characters, or one that
//! collides with another tool, is not offered; the listing says so.

use super::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};
use crate::engine::RetryPolicy;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// The longest function name the model APIs accept.
pub const MAX_TOOL_NAME: usize = 64;

/// One tool as its source describes it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SourceTool {
    /// Its name at the source.
    pub name: String,
    /// What it does, for the model.
    #[serde(default)]
    pub description: String,
    /// JSON Schema of its arguments.
    pub parameters: Value,
}

/// Tools that live elsewhere: listed per turn, called by their source's name.
#[async_trait]
pub trait ToolSource: Send + Sync {
    /// The source's name: the prefix of its tools' names (`[A-Za-z0-9_-]`,
    /// at most 24 characters).
    fn name(&self) -> &str;
    /// The tools it offers now. `ToolError::Retryable` when it cannot be
    /// reached (the listing retries under [`ToolSource::retry_policy`]).
    async fn list(&self) -> Result<Vec<SourceTool>, ToolError>;
    /// Runs `tool` (its name at the source). The same error contract as
    /// [`Tool::call`].
    async fn call(
        &self,
        ctx: &ToolContext,
        tool: &str,
        args: Value,
    ) -> Result<ToolOutput, ToolError>;
    /// How safe a call of `tool` is to re-run.
    fn idempotency(&self, tool: &str) -> IdempotencyClass;
    /// The longest one call (or the listing) may take; `None` for the
    /// engine's default.
    fn timeout(&self) -> Option<Duration> {
        None
    }
    /// How retryable errors are retried; `None` for the engine's default.
    fn retry_policy(&self) -> Option<RetryPolicy> {
        None
    }
    /// Whether a turn may not run without it: when it cannot be listed the
    /// turn stops `ToolFailure` instead of running without its tools.
    fn required(&self) -> bool {
        false
    }
}

/// What a turn's `tools` step records: each source's tools, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ToolListing {
    /// One entry per source, in the registry's order.
    pub sources: Vec<ListedSource>,
}

/// One source's part of a listing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedSource {
    /// The source.
    pub source: String,
    /// Its tools, each under the name the model sees.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<ListedTool>,
    /// Why it could not be listed (its tools are not offered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
    /// Tools not offered, and why (a name too long, a collision).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<String>,
}

/// A listed tool and the name it is offered under.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListedTool {
    /// `{source}__{tool}`, made safe for the model APIs.
    pub offered: String,
    /// The tool as its source described it.
    #[serde(flatten)]
    pub tool: SourceTool,
}

/// The name a source's tool is offered under, if it fits.
pub fn offered_name(source: &str, tool: &str) -> Option<String> {
    let safe: String = tool
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let name = format!("{source}__{safe}");
    (!tool.is_empty() && name.len() <= MAX_TOOL_NAME).then_some(name)
}

/// Checks a source name: the prefix of every tool name it offers.
pub fn check_source_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 24
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !name.contains("__");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "tool source name '{name}' must be 1 to 24 ASCII letters, digits, '_' or '-' (no '__')"
        ))
    }
}

impl ListedSource {
    /// The listing of a source that answered: names made safe, those that
    /// do not fit or collide skipped. `taken` holds the names already used.
    pub fn answered(
        source: &str,
        tools: Vec<SourceTool>,
        taken: &mut std::collections::BTreeSet<String>,
    ) -> Self {
        let mut listed = Vec::new();
        let mut skipped = Vec::new();
        for tool in tools {
            match offered_name(source, &tool.name) {
                Some(offered) if taken.insert(offered.clone()) => {
                    listed.push(ListedTool { offered, tool })
                }
                Some(offered) => skipped.push(format!("{}: '{offered}' is taken", tool.name)),
                None => skipped.push(format!(
                    "{}: the name is empty or over {MAX_TOOL_NAME} characters with its prefix",
                    tool.name
                )),
            }
        }
        ListedSource {
            source: source.to_string(),
            tools: listed,
            unavailable: None,
            skipped,
        }
    }

    /// The listing of a source that could not be listed.
    pub fn unavailable(source: &str, why: String) -> Self {
        ListedSource {
            source: source.to_string(),
            tools: Vec::new(),
            unavailable: Some(why),
            skipped: Vec::new(),
        }
    }
}

/// A source's tool as a [`Tool`] of a turn's registry.
struct SourcedTool {
    source: Arc<dyn ToolSource>,
    listed: ListedTool,
}

#[async_trait]
impl Tool for SourcedTool {
    fn name(&self) -> &str {
        &self.listed.offered
    }
    fn description(&self) -> &str {
        &self.listed.tool.description
    }
    fn parameters(&self) -> Value {
        self.listed.tool.parameters.clone()
    }
    fn idempotency(&self) -> IdempotencyClass {
        self.source.idempotency(&self.listed.tool.name)
    }
    fn timeout(&self) -> Option<Duration> {
        self.source.timeout()
    }
    fn retry_policy(&self) -> Option<RetryPolicy> {
        self.source.retry_policy()
    }
    async fn call(&self, ctx: &ToolContext, args: Value) -> Result<ToolOutput, ToolError> {
        self.source.call(ctx, &self.listed.tool.name, args).await
    }
}

impl ToolRegistry {
    /// The registry one turn runs with: these tools, plus each source's
    /// tools as its `tools` step recorded them. A listed source this
    /// registry no longer has offers nothing.
    pub fn for_turn(&self, listing: &ToolListing) -> ToolRegistry {
        let mut turn = self.clone();
        for listed in &listing.sources {
            let Some(source) = self.sources().iter().find(|s| s.name() == listed.source) else {
                continue;
            };
            for tool in &listed.tools {
                if turn.get(&tool.offered).is_none() {
                    turn.register(Arc::new(SourcedTool {
                        source: source.clone(),
                        listed: tool.clone(),
                    }));
                }
            }
        }
        turn
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tool(name: &str) -> SourceTool {
        SourceTool {
            name: name.into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
        }
    }

    #[test]
    fn offered_names_are_prefixed_made_safe_and_bounded() {
        assert_eq!(
            offered_name("fs", "read_file").as_deref(),
            Some("fs__read_file")
        );
        assert_eq!(
            offered_name("ev", "get.sum/v2").as_deref(),
            Some("ev__get_sum_v2")
        );
        assert_eq!(offered_name("ev", ""), None);
        assert_eq!(offered_name("ev", &"x".repeat(61)), None);
        assert!(offered_name("ev", &"x".repeat(60)).is_some());
    }

    #[test]
    fn a_colliding_or_overlong_tool_is_skipped_and_said_so() {
        let mut taken = std::collections::BTreeSet::from(["ev__calc".to_string()]);
        let listed = ListedSource::answered(
            "ev",
            vec![
                tool("a.b"),
                tool("a_b"),
                tool("calc"),
                tool(&"y".repeat(70)),
            ],
            &mut taken,
        );
        let offered: Vec<&str> = listed.tools.iter().map(|t| t.offered.as_str()).collect();
        assert_eq!(offered, vec!["ev__a_b"]);
        assert_eq!(listed.skipped.len(), 3, "{:?}", listed.skipped);
        assert!(listed.skipped[0].starts_with("a_b:"));
    }

    #[test]
    fn source_names_are_checked() {
        for good in ["fs", "every-thing", "a_1"] {
            assert!(check_source_name(good).is_ok(), "{good}");
        }
        for bad in ["", "a b", "a__b", "x.y", &"z".repeat(25)] {
            assert!(check_source_name(bad).is_err(), "{bad}");
        }
    }
}
