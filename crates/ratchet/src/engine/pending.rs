//! Tools that finish later: a tool that answers [`ToolOutput::pending`] has
//! started work an outside system finishes. Its tool step records that
//! answer (the tool ran once); the turn then waits durably (see
//! [`super::wait`]): `pending:{i}:{call}` announces it (`tool_pending`),
//! and `completed:{i}:{call}` settles it with the result a `complete_tool`
//! call (or Restate's awakeable API) delivered (`tool_completed`). The
//! model sees that result as the call's; with none before the deadline, an
//! error result saying the outcome is unknown.

use super::TurnCx;
use super::claim::ClaimRecord;
use super::wait::{WaitPlan, wait};
use crate::journal::JournalError;
use crate::model::{EventKind, ToolCompletion, WaitKind};
use crate::tools::ToolOutput;
use serde_json::{Value, json};

/// A resolved promise's value as a completion; one that does not read is
/// an error result saying so.
fn read_completion(value: Value) -> Value {
    let completion =
        serde_json::from_value::<ToolCompletion>(value).unwrap_or_else(|e| ToolCompletion {
            content: format!("the tool's result could not be read: {e}"),
            is_error: true,
            value: None,
        });
    serde_json::to_value(completion).unwrap_or(Value::Null)
}

fn completion(value: Option<&Value>) -> Option<ToolCompletion> {
    serde_json::from_value(value?.clone()).ok()
}

/// Waits for a pending tool's result; returns the output the model sees.
pub async fn run(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    iteration: u32,
    call_id: &str,
    tool: &str,
    started: &ToolOutput,
    timeout_ms: u64,
) -> Result<ToolOutput, JournalError> {
    let plan = WaitPlan {
        kind: WaitKind::ToolResult,
        iteration,
        call_id,
        tool,
        arguments: json!({"receipt": started.content}),
        timeout_ms,
        requested: Box::new(move |wait_id, deadline_ms| EventKind::ToolPending {
            tool_call_id: call_id.to_string(),
            name: tool.to_string(),
            deadline_ms,
            wait_id: wait_id.to_string(),
        }),
        settled: Box::new(move |value| {
            let done = completion(value);
            EventKind::ToolCompleted {
                tool_call_id: call_id.to_string(),
                is_error: done.as_ref().is_none_or(|c| c.is_error),
                expired: value.is_none(),
            }
        }),
        read: read_completion,
    };
    let value = wait(cx, claim, plan).await?;
    Ok(match completion(value.as_ref()) {
        Some(done) => ToolOutput {
            content: done.content,
            is_error: done.is_error,
            value: done.value,
            ends_turn: started.ends_turn,
            pending: None,
        },
        None => ToolOutput::error(format!(
            "no result arrived within {timeout_ms} ms; the tool's outcome is unknown (it started: {})",
            started.content
        )),
    })
}
