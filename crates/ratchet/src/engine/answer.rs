//! How a model answer or a tool output ends a turn, and the tool call ids
//! that name journal steps.

use crate::llm::{FinishReason, ModelDirective};
use crate::model::{Part, StopReason, TurnFinish, TurnOutcome};
use crate::tools::ToolOutput;
use std::collections::HashSet;

/// Makes tool call ids unique and non-empty: they name journal steps.
pub(super) fn unique_call_ids(parts: Vec<Part>, iteration: u32) -> Vec<Part> {
    let mut seen = HashSet::new();
    parts
        .into_iter()
        .enumerate()
        .map(|(k, p)| match p {
            Part::ToolCall {
                id,
                name,
                arguments,
            } => {
                let id = if id.trim().is_empty() || !seen.insert(id.clone()) {
                    format!("call_{iteration}_{k}")
                } else {
                    id
                };
                Part::ToolCall {
                    id,
                    name,
                    arguments,
                }
            }
            other => other,
        })
        .collect()
}

pub(super) fn answer(
    text: String,
    directive: Option<ModelDirective>,
    finish: FinishReason,
) -> TurnOutcome {
    match directive {
        Some(ModelDirective::FinalValue { value }) => {
            TurnOutcome::Finished(TurnFinish::FinalValue { value })
        }
        Some(ModelDirective::SwitchFrame { frame_id, task }) => {
            TurnOutcome::AgentFrameSwitch { frame_id, task }
        }
        Some(ModelDirective::SubmitError { message }) => {
            TurnOutcome::stopped(StopReason::SubmittedError, message)
        }
        None if finish == FinishReason::Stop && !text.trim().is_empty() => {
            TurnOutcome::Finished(TurnFinish::AssistantMessage { text })
        }
        None => TurnOutcome::stopped(
            StopReason::Incomplete,
            format!("the model stopped ({finish:?}) without an answer"),
        ),
    }
}

pub(super) fn ends_turn(call_id: &str, out: &ToolOutput) -> TurnOutcome {
    if out.is_error {
        TurnOutcome::stopped(StopReason::ToolError, out.content.clone())
    } else {
        TurnOutcome::Finished(TurnFinish::ToolValue {
            tool_call_id: call_id.to_string(),
            value: out
                .value
                .clone()
                .unwrap_or_else(|| serde_json::Value::String(out.content.clone())),
        })
    }
}
