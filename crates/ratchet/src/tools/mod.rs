//! Tools: the [`Tool`] trait, the [`ToolRegistry`] the effect loop calls
//! through, argument checking against each tool's JSON Schema, and the
//! built-ins `calculator`, `clock` and `notes`.

mod builtin;
#[cfg(feature = "mcp")]
pub mod mcp;
mod registry;
pub mod schema;
pub mod source;

pub use builtin::{Calculator, ClockTool, Notes, builtin_registry};
pub use registry::ToolRegistry;
pub use source::{ListedSource, SourceTool, ToolListing, ToolSource};

use crate::clock::SharedClock;
use crate::model::SessionId;
use crate::store::{Note, SessionStore, StoreError};
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// How safe a tool is to run again after a crash.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdempotencyClass {
    /// No side effects; same arguments, same answer.
    Pure,
    /// Side effects that repeat harmlessly.
    Idempotent,
    /// Side effects deduplicated by the idempotency key it is given.
    Keyed,
    /// Side effects that may repeat if the process dies mid-call.
    Unsafe,
}

/// What a tool call can see.
#[derive(Clone)]
pub struct ToolContext {
    /// The session.
    pub session_id: SessionId,
    /// The turn.
    pub turn_id: String,
    /// The call.
    pub tool_call_id: String,
    /// `{session}:{turn}:{tool_call_id}`: stable across re-runs of the call.
    pub idempotency_key: String,
    /// What the tool may keep durably: its session's keyed notes. Tools
    /// never see the session store itself (history, leases, the inbox).
    pub notes: Arc<dyn SessionNotes>,
    /// The clock.
    pub clock: SharedClock,
}

/// A session's keyed notes: the one piece of durable state a tool gets.
#[async_trait]
pub trait SessionNotes: Send + Sync {
    /// Stores a note once per key (an idempotency key, so a re-run call
    /// writes nothing twice); returns whether it was new.
    async fn put(&self, key: &str, text: &str) -> Result<bool, StoreError>;
    /// The session's notes, in the order written.
    async fn list(&self) -> Result<Vec<Note>, StoreError>;
}

/// [`SessionNotes`] of one session in a store.
pub struct StoreNotes {
    store: Arc<dyn SessionStore>,
    session: SessionId,
}

impl StoreNotes {
    /// The notes of `session` in `store`.
    pub fn new(store: Arc<dyn SessionStore>, session: SessionId) -> Self {
        StoreNotes { store, session }
    }
}

#[async_trait]
impl SessionNotes for StoreNotes {
    async fn put(&self, key: &str, text: &str) -> Result<bool, StoreError> {
        self.store.put_note(&self.session, key, text).await
    }

    async fn list(&self) -> Result<Vec<Note>, StoreError> {
        match self.store.notes(&self.session).await {
            Err(StoreError::UnknownSession(_)) => Ok(Vec::new()),
            other => other,
        }
    }
}

/// A tool's answer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ToolOutput {
    /// The text the model sees.
    pub content: String,
    /// Whether it is an error result.
    #[serde(default)]
    pub is_error: bool,
    /// A structured value, when the tool has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// The tool's result ends the turn (as its value, or as its error).
    #[serde(default)]
    pub ends_turn: bool,
    /// The tool started work that finishes later: `content` is its receipt,
    /// and the turn waits durably for the result (see
    /// [`ToolOutput::pending`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending: Option<PendingResult>,
}

/// How long a pending tool's result may take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingResult {
    /// After this the model is told the outcome is unknown.
    pub timeout_ms: u64,
}

impl ToolOutput {
    /// A successful text result.
    pub fn text(content: impl Into<String>) -> Self {
        ToolOutput {
            content: content.into(),
            is_error: false,
            value: None,
            ends_turn: false,
            pending: None,
        }
    }

    /// The tool started work that an outside system finishes: the turn
    /// waits (suspended on the durable tier, parked inline) until the result
    /// arrives through `complete_tool` (or Restate's awakeable API, with the
    /// id the `tool_pending` event publishes), for at most `timeout`. The
    /// model sees that result as the call's. `receipt` is what the tool
    /// started (a job id), kept in the record.
    pub fn pending(receipt: impl Into<String>, timeout: std::time::Duration) -> Self {
        ToolOutput {
            pending: Some(PendingResult {
                timeout_ms: timeout.as_millis() as u64,
            }),
            ..Self::text(receipt)
        }
    }

    /// An error result the model sees.
    pub fn error(content: impl Into<String>) -> Self {
        ToolOutput {
            is_error: true,
            ..Self::text(content)
        }
    }
}

/// Why a tool call failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ToolError {
    /// The arguments are wrong; the model is told and may try again.
    #[error("invalid arguments: {0}")]
    InvalidArguments(String),
    /// The tool failed; the model is told.
    #[error("{0}")]
    Failed(String),
    /// The tool cannot continue and neither can the turn (`ToolFailure`).
    #[error("{0}")]
    Fatal(String),
    /// A transient failure that took no effect (a 503, a dropped
    /// connection before the request was sent): the call is retried inside
    /// the same step, with the same idempotency key, under the tool's retry
    /// policy, whatever its class; out of attempts, the model is told.
    #[error("{0}")]
    Retryable(String),
    /// The request went out but its answer was lost (the connection to a
    /// remote tool closed mid-call), and the tool is not safe to repeat:
    /// the call is not retried, the model is told its outcome is unknown,
    /// and a `tool_outcome_unknown` event records it.
    #[error("{0}")]
    OutcomeUnknown(String),
}

/// A tool the model can call.
#[async_trait]
pub trait Tool: Send + Sync {
    /// Its name, unique in a registry.
    fn name(&self) -> &str;
    /// What it does, for the model.
    fn description(&self) -> &str;
    /// JSON Schema of its arguments.
    fn parameters(&self) -> serde_json::Value;
    /// How safe it is to re-run. A call that times out is retried (with
    /// the same idempotency key) unless the class is `Unsafe`.
    fn idempotency(&self) -> IdempotencyClass;
    /// The longest one call may take; `None` for the engine's default
    /// (`EngineConfig::tool_timeout_ms`). The Restate handler timers are
    /// derived from the longest, so declare what the tool really needs.
    fn timeout(&self) -> Option<std::time::Duration> {
        None
    }
    /// How its retryable errors (and, unless `Unsafe`, its timeouts) are
    /// retried inside the call's step; `None` for the engine's default
    /// (`EngineConfig::tool_retry`). The handler timers cover it.
    fn retry_policy(&self) -> Option<crate::engine::RetryPolicy> {
        None
    }
    /// Whether this call must wait for a person's approval before it runs
    /// (decided from the arguments alone: no IO, no clock).
    fn requires_approval(&self, _args: &serde_json::Value) -> bool {
        false
    }
    /// Runs the tool.
    async fn call(
        &self,
        ctx: &ToolContext,
        args: serde_json::Value,
    ) -> Result<ToolOutput, ToolError>;
}
