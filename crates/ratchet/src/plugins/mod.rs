//! Plugins: hooks around a turn. A plugin can add to the system prompt,
//! veto a turn's input in prepare (`PluginAbort`), rewrite the model context
//! before each model call, annotate the outcome in finalize, and hear about
//! the commit once it has landed (`TurnPersisted`).
//!
//! Every hook that runs inside a turn sees the turn: its session, its id and
//! the session's settings ([`TurnInfo`]). Hooks that run inside a journal
//! step (prepare, context, finalize) are recorded with it; `persisted` runs
//! after the commit, at least once.

use crate::model::{InputItem, Message, TurnInput, TurnOutcome, Usage};
use crate::store::SessionSettings;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// What plugins hear after a commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TurnPersisted {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// The version it produced.
    pub version: u64,
    /// Its outcome.
    pub outcome: TurnOutcome,
    /// Its usage.
    pub usage: Usage,
}

/// The turn a hook runs in.
#[derive(Clone, Copy, Debug)]
pub struct TurnInfo<'a> {
    /// The session (as the store names it).
    pub session_id: &'a str,
    /// The turn (an agent frame's own id inside a frame).
    pub turn_id: &'a str,
    /// The session's settings in force for this turn (after the session
    /// commands claimed with its input).
    pub settings: &'a SessionSettings,
}

/// A hook set around a turn. Every hook has a do-nothing default.
#[async_trait]
pub trait Plugin: Send + Sync {
    /// Its name, for records and logs.
    fn name(&self) -> &str;

    /// Text added to the system prompt.
    fn system_prompt(&self, _turn: &TurnInfo<'_>) -> Option<String> {
        None
    }

    /// Checks a turn's input; `Err(reason)` aborts the turn (`PluginAbort`).
    async fn prepare(&self, _turn: &TurnInfo<'_>, _input: &TurnInput) -> Result<(), String> {
        Ok(())
    }

    /// Rewrites the model context before a model call.
    fn transform_context(&self, _turn: &TurnInfo<'_>, _messages: &mut Vec<Message>) {}

    /// A policy: whether a tool call must wait for a person's approval,
    /// decided from the tool's name and arguments alone (no IO, no clock:
    /// it runs between journal steps, and replay asks it again).
    fn requires_approval(
        &self,
        _turn: &TurnInfo<'_>,
        _tool: &str,
        _args: &serde_json::Value,
    ) -> bool {
        false
    }

    /// Sees the outcome before commit; a value returned is recorded.
    async fn finalize(
        &self,
        _turn: &TurnInfo<'_>,
        _outcome: &TurnOutcome,
    ) -> Option<serde_json::Value> {
        None
    }

    /// Told once the turn's commit has landed.
    async fn persisted(&self, _event: &TurnPersisted) {}
}

/// The plugins a runtime runs, in order.
#[derive(Clone, Default)]
pub struct PluginSet(Vec<Arc<dyn Plugin>>);

impl PluginSet {
    /// No plugins.
    pub fn new() -> Self {
        Self::default()
    }

    /// The same set with one more plugin.
    pub fn with(mut self, plugin: Arc<dyn Plugin>) -> Self {
        self.0.push(plugin);
        self
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The plugins, in order.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<dyn Plugin>> {
        self.0.iter()
    }

    /// Plugin names, in order.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().map(|p| p.name().to_string()).collect()
    }
}

/// Adds fixed text to the system prompt.
pub struct SystemPrompt(pub String);

#[async_trait]
impl Plugin for SystemPrompt {
    fn name(&self) -> &str {
        "system_prompt"
    }
    fn system_prompt(&self, _turn: &TurnInfo<'_>) -> Option<String> {
        Some(self.0.clone())
    }
}

/// Aborts turns whose text mentions a blocked phrase (case-insensitive).
pub struct BlockList(pub Vec<String>);

#[async_trait]
impl Plugin for BlockList {
    fn name(&self) -> &str {
        "block_list"
    }
    async fn prepare(&self, _turn: &TurnInfo<'_>, input: &TurnInput) -> Result<(), String> {
        for item in &input.items {
            if let InputItem::Text { text } = item {
                let lower = text.to_lowercase();
                if let Some(b) = self.0.iter().find(|b| lower.contains(&b.to_lowercase())) {
                    return Err(format!("input mentions blocked phrase '{b}'"));
                }
            }
        }
        Ok(())
    }
}
