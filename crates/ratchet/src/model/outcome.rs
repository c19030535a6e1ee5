//! How a turn ends.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The result of a turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum TurnOutcome {
    /// The turn produced an answer.
    Finished(TurnFinish),
    /// The turn hands over to an agent frame, run next under the same lease.
    AgentFrameSwitch {
        /// The frame to switch to.
        frame_id: String,
        /// The task the frame runs as its turn input.
        task: String,
    },
    /// The turn stopped without an answer.
    Stopped(TurnStop),
}

/// What a finished turn produced.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TurnFinish {
    /// A plain assistant message.
    AssistantMessage {
        /// Its text.
        text: String,
    },
    /// A structured final value.
    FinalValue {
        /// The value.
        value: serde_json::Value,
    },
    /// A tool's output taken as the turn's answer.
    ToolValue {
        /// The call whose result is the answer.
        tool_call_id: String,
        /// The value.
        value: serde_json::Value,
    },
}

/// Why a turn stopped.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnStop {
    /// The reason.
    pub reason: StopReason,
    /// A readable explanation.
    pub message: String,
}

/// The reasons a turn stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// Cancelled by the caller.
    Cancelled,
    /// The model ended without an answer.
    Incomplete,
    /// The input was rejected.
    InvalidInput,
    /// The effect loop hit its iteration bound.
    MaxTurns,
    /// A tool failed in a way the turn cannot continue from.
    ToolFailure,
    /// The model provider kept failing.
    ProviderError,
    /// A plugin aborted the turn.
    PluginAbort,
    /// An internal error.
    RuntimeError,
    /// The model submitted an error as its answer.
    SubmittedError,
    /// A tool reported an error as the turn's answer.
    ToolError,
}

impl TurnOutcome {
    /// A stopped outcome.
    pub fn stopped(reason: StopReason, message: impl Into<String>) -> Self {
        TurnOutcome::Stopped(TurnStop {
            reason,
            message: crate::secrets::redact_string(message.into()),
        })
    }

    /// The answer text, when the turn finished with an assistant message.
    pub fn answer_text(&self) -> Option<&str> {
        match self {
            TurnOutcome::Finished(TurnFinish::AssistantMessage { text }) => Some(text),
            _ => None,
        }
    }

    /// The stop reason, when the turn stopped.
    pub fn stop_reason(&self) -> Option<StopReason> {
        match self {
            TurnOutcome::Stopped(s) => Some(s.reason),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn round_trip(o: TurnOutcome, expected: serde_json::Value) {
        let v = serde_json::to_value(&o).unwrap();
        assert_eq!(v, expected);
        assert_eq!(serde_json::from_value::<TurnOutcome>(v).unwrap(), o);
    }

    #[test]
    fn every_outcome_has_a_stable_json_form() {
        round_trip(
            TurnOutcome::Finished(TurnFinish::AssistantMessage { text: "395".into() }),
            json!({"status":"finished","kind":"assistant_message","text":"395"}),
        );
        round_trip(
            TurnOutcome::Finished(TurnFinish::FinalValue {
                value: json!({"a": 1}),
            }),
            json!({"status":"finished","kind":"final_value","value":{"a":1}}),
        );
        round_trip(
            TurnOutcome::Finished(TurnFinish::ToolValue {
                tool_call_id: "c".into(),
                value: json!(2),
            }),
            json!({"status":"finished","kind":"tool_value","tool_call_id":"c","value":2}),
        );
        round_trip(
            TurnOutcome::AgentFrameSwitch {
                frame_id: "f".into(),
                task: "do".into(),
            },
            json!({"status":"agent_frame_switch","frame_id":"f","task":"do"}),
        );
        let reasons = [
            (StopReason::Cancelled, "cancelled"),
            (StopReason::Incomplete, "incomplete"),
            (StopReason::InvalidInput, "invalid_input"),
            (StopReason::MaxTurns, "max_turns"),
            (StopReason::ToolFailure, "tool_failure"),
            (StopReason::ProviderError, "provider_error"),
            (StopReason::PluginAbort, "plugin_abort"),
            (StopReason::RuntimeError, "runtime_error"),
            (StopReason::SubmittedError, "submitted_error"),
            (StopReason::ToolError, "tool_error"),
        ];
        for (reason, tag) in reasons {
            round_trip(
                TurnOutcome::stopped(reason, "m"),
                json!({"status":"stopped","reason":tag,"message":"m"}),
            );
        }
    }
}
