//! Session events: the append-only log a session keeps of what happened.

use super::{StopReason, TurnOutcome, Usage};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One event. Its id is `{turn_id}:{seq}` (an event a step appends while
/// the turn runs: `{turn_id}:{step}`), so a replayed turn never adds it
/// twice.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionEvent {
    /// `{turn_id}:{seq}`.
    pub id: String,
    /// The turn that emitted it.
    pub turn_id: String,
    /// What happened.
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What an event says.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// A turn claimed its input and started.
    TurnStarted {
        /// The turn's index in the session.
        turn_index: u64,
    },
    /// A tool ran.
    ToolExecuted {
        /// The call.
        tool_call_id: String,
        /// The tool.
        name: String,
        /// Whether it failed.
        is_error: bool,
    },
    /// A tool call waits for approval (appended as soon as the wait is
    /// announced, before the turn commits).
    ApprovalRequested {
        /// The call.
        tool_call_id: String,
        /// The tool.
        name: String,
        /// The call's arguments.
        arguments: serde_json::Value,
        /// When the approval expires (ms since the epoch).
        deadline_ms: u64,
        /// The wait's id: on the durable tier, the Restate awakeable id
        /// Restate's own awakeable API resolves.
        wait_id: String,
    },
    /// A tool call's approval was decided, or expired (appended as soon as
    /// the turn settles it).
    ApprovalDecided {
        /// The call.
        tool_call_id: String,
        /// `approve`, `reject` or `expired`.
        decision: String,
        /// The approver's note.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// A tool answered "pending": the turn waits for its result (appended
    /// as soon as the wait is announced).
    ToolPending {
        /// The call.
        tool_call_id: String,
        /// The tool.
        name: String,
        /// When the wait expires (ms since the epoch).
        deadline_ms: u64,
        /// The wait's id: on the durable tier, the Restate awakeable id.
        wait_id: String,
    },
    /// A call of an `Unsafe` tool was in flight when the process running it
    /// stopped; it was not run again, and the model was told its outcome is
    /// unknown.
    ToolOutcomeUnknown {
        /// The call.
        tool_call_id: String,
        /// The tool.
        name: String,
    },
    /// A tool source (an MCP server) could not be listed at the start of
    /// the turn: its tools were not offered.
    ToolSourceUnavailable {
        /// The source.
        source: String,
        /// Why.
        message: String,
    },
    /// A pending tool's result arrived, or its wait expired.
    ToolCompleted {
        /// The call.
        tool_call_id: String,
        /// Whether the result is an error (always, when expired).
        is_error: bool,
        /// Whether no result arrived in time.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        expired: bool,
    },
    /// A steering message joined the running turn: the model saw it at
    /// this model call, after the tool results before it.
    Steered {
        /// The steer's input id.
        input_id: String,
        /// The model call (from 0) whose input it became part of.
        iteration: u32,
    },
    /// A session command was applied.
    CommandApplied {
        /// The command, as JSON.
        command: serde_json::Value,
    },
    /// Something went wrong; the turn records it.
    Error {
        /// A stable machine code.
        code: String,
        /// A readable explanation.
        message: String,
    },
    /// A step ran (with live events on): appended inside the step, under
    /// its id, so a step run again after a crash appends nothing twice. A
    /// step answered from the journal appends none.
    StepRan {
        /// The step's name (`claim`, `model:0`, `tool:0:call_1`, ...).
        step: String,
        /// When its body started (ms since the epoch, the runtime's clock).
        started_at_ms: u64,
        /// When it finished.
        finished_at_ms: u64,
        /// Model or tool calls tried again inside it.
        #[serde(default, skip_serializing_if = "is_zero")]
        retries: u32,
        /// Steps this run of the turn answered from the journal before it:
        /// more than zero when a retried (after a crash) or resumed
        /// invocation replayed them.
        #[serde(default, skip_serializing_if = "is_zero")]
        replayed_before: u32,
    },
    /// The turn committed.
    TurnCommitted {
        /// The session version it produced.
        version: u64,
        /// Its outcome.
        outcome: TurnOutcome,
        /// Its token usage.
        usage: Usage,
    },
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl SessionEvent {
    /// An event with its id derived from the turn id and a sequence number.
    pub fn new(turn_id: &str, seq: usize, kind: EventKind) -> Self {
        SessionEvent {
            id: format!("{turn_id}:{seq}"),
            turn_id: turn_id.to_string(),
            kind,
        }
    }

    /// An error event for a stopped turn.
    pub fn error(turn_id: &str, seq: usize, reason: StopReason, message: &str) -> Self {
        let code = serde_json::to_value(reason)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "runtime_error".into());
        Self::new(
            turn_id,
            seq,
            EventKind::Error {
                code,
                message: crate::secrets::redact(message).into_owned(),
            },
        )
    }
}

/// An event as stored, with its position in the session's log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StoredEvent {
    /// Position in the session's log, from 1; read "after" a cursor.
    pub cursor: u64,
    /// The event.
    #[serde(flatten)]
    pub event: SessionEvent,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_json_round_trips_with_derived_id() {
        let e = SessionEvent::error("t1", 2, StopReason::InvalidInput, "empty input");
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(
            v,
            json!({"id":"t1:2","turn_id":"t1","type":"error","code":"invalid_input","message":"empty input"})
        );
        assert_eq!(serde_json::from_value::<SessionEvent>(v).unwrap(), e);
        let s = StoredEvent {
            cursor: 7,
            event: SessionEvent::new("t1", 0, EventKind::TurnStarted { turn_index: 3 }),
        };
        let v = serde_json::to_value(&s).unwrap();
        assert_eq!(v["cursor"], 7);
        assert_eq!(v["type"], "turn_started");
        assert_eq!(serde_json::from_value::<StoredEvent>(v).unwrap(), s);
    }
}
