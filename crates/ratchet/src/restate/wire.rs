//! The `Session` object's request and reply types, besides `TurnResult` and
//! `SessionView`: what `proto/` publishes as JSON Schemas.

use crate::model::{SessionCommand, TurnInput};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Request of `turn` and `submit`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TurnBody {
    /// The input.
    pub input: TurnInput,
}

/// Reply of `submit`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct SubmitReply {
    /// The input id (given, or derived from the invocation).
    pub input_id: String,
    /// Whether the id was already known (with the same content).
    pub duplicate: bool,
    /// FIFO position in the session's inbox.
    pub position: u64,
}

/// Request of `configure`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigureBody {
    /// The session command (system prompt, context limit).
    pub command: SessionCommand,
    /// Idempotency id of the command (derived from the invocation if absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
}

/// Reply of `configure`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct ConfigureReply {
    /// The command's id.
    pub command_id: String,
    /// Whether the id was already known (with the same command).
    pub duplicate: bool,
    /// FIFO position in the session's inbox: the command applies when the
    /// next input after it is claimed.
    pub position: u64,
}

/// Reply of `cancel`.
#[derive(Clone, Debug, Serialize, Deserialize, JsonSchema)]
pub struct CancelReply {
    /// Whether a running turn was asked to stop.
    pub cancelled: bool,
    /// The invocation running the turn, when there is one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation_id: Option<String>,
    /// What happened.
    pub message: String,
}
