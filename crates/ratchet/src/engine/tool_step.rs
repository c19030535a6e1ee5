//! One tool call, step `tool:{i}:{call_id}`: inside the step body it
//! renews the lease, reads the cancel signal and runs the tool under its
//! timeout and retry policy, always with the same idempotency key.
//!
//! What a re-run of the body does depends on the tool's idempotency class.
//! A body runs again when the process running it stopped before the step
//! was recorded (killed, aborted by Restate's timers): `Pure`, `Idempotent`
//! and `Keyed` tools simply run again, with the same key. An `Unsafe` tool's
//! body first counts its start in the store (the effect ledger, key
//! `started:{turn}:{call}`); finding an earlier start, it does not call the
//! tool: the call is recorded as `Unknown` and the model is told.

use super::claim::ClaimRecord;
use super::{TurnCx, input_hash, step_err};
use crate::journal::{JournalError, StepName};
use crate::model::EventKind;
use crate::tools::{IdempotencyClass, StoreNotes, ToolContext, ToolError, ToolOutput};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// What a `tool:{i}:{call_id}` step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ToolRecord {
    /// The tool answered (possibly with an error result).
    Output(ToolOutput),
    /// The call was in flight when the process running it stopped, and its
    /// tool is `Unsafe`: it is not run again, and the model is told its
    /// outcome is unknown. Also a call whose answer was lost mid-call
    /// (`ToolError::OutcomeUnknown`), with why.
    Unknown {
        /// Why the outcome is unknown, when it is not the process stopping.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        lost: Option<String>,
    },
    /// The tool failed fatally.
    Fatal {
        /// Why.
        message: String,
    },
    /// The turn was cancelled before the call.
    Cancelled,
}

/// What the model reads for an `Unknown` call whose answer was lost.
pub fn outcome_lost(why: &str) -> String {
    format!(
        "outcome unknown: {why}; the tool is unsafe to repeat, so it was not run again; it may \
         or may not have taken effect"
    )
}

/// What the model reads for an `Unknown` call.
pub const OUTCOME_UNKNOWN: &str = "outcome unknown: this call was in flight when the process \
     running it stopped, and the tool is unsafe to repeat, so it was not run again; it may or \
     may not have taken effect";

/// What one tool call starts from.
pub struct ToolCall<'c> {
    /// The turn's claim.
    pub claim: &'c ClaimRecord,
    /// The model call that asked for the tool.
    pub iteration: u32,
    /// The call's id.
    pub call_id: &'c str,
    /// The tool.
    pub name: &'c str,
    /// Its arguments.
    pub args: &'c serde_json::Value,
    /// The turn's tools.
    pub tools: &'c crate::tools::ToolRegistry,
}

/// Runs step `tool:{i}:{call_id}`.
pub async fn run(cx: &TurnCx<'_>, call: ToolCall<'_>) -> Result<ToolRecord, JournalError> {
    let rt = cx.rt;
    let ToolCall {
        claim,
        iteration,
        call_id,
        name,
        args,
        tools,
    } = call;
    let hash = input_hash(&("tool", name, args))?;
    let step = StepName::Tool {
        iteration,
        call: call_id.to_string(),
    };
    let live_id = cx.step_name(step.clone()).to_string();
    cx.step(step, &hash, async move {
        let record = body(cx, claim, tools, call_id, name, args).await?;
        if rt.config.live_events {
            let kind = match &record {
                ToolRecord::Output(out) if out.pending.is_none() => Some(EventKind::ToolExecuted {
                    tool_call_id: call_id.to_string(),
                    name: name.to_string(),
                    is_error: out.is_error,
                }),
                ToolRecord::Unknown { .. } => Some(EventKind::ToolOutcomeUnknown {
                    tool_call_id: call_id.to_string(),
                    name: name.to_string(),
                }),
                _ => None,
            };
            if let Some(kind) = kind {
                super::append_live(cx, &live_id, kind).await?;
            }
        }
        Ok(record)
    })
    .await
}

/// The step's body: the call under its class, timeout and retry policy.
async fn body(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    tools: &crate::tools::ToolRegistry,
    call_id: &str,
    name: &str,
    args: &serde_json::Value,
) -> Result<ToolRecord, crate::journal::StepError> {
    let rt = cx.rt;
    cx.keep_lease(&claim.lease).await?;
    if cx.cancel.is_cancelled() {
        return Ok(ToolRecord::Cancelled);
    }
    let class = tools.class(name);
    if class == Some(IdempotencyClass::Unsafe) {
        let key = format!("started:{}:{call_id}", cx.turn);
        let starts = rt
            .store
            .count_effect(cx.session, &key)
            .await
            .map_err(step_err)?;
        if starts > 1 {
            tracing::warn!(
                tool = name,
                call_id,
                "unsafe call was in flight; not run again"
            );
            return Ok(ToolRecord::Unknown { lost: None });
        }
    }
    let ctx = ToolContext {
        session_id: cx.session.clone(),
        turn_id: cx.turn.to_string(),
        tool_call_id: call_id.to_string(),
        idempotency_key: format!("{}:{}:{call_id}", cx.session, cx.turn),
        notes: Arc::new(StoreNotes::new(rt.store.clone(), cx.session.clone())),
        clock: rt.clock.clone(),
    };
    let timeout_ms = tools.timeout_ms(name, rt.config.tool_timeout_ms);
    let policy = tools.retry_policy(name, &rt.config.tool_retry);
    let attempts = policy.attempts.max(1);
    // A timed-out call may have taken effect: retried only when the
    // class allows. A retryable error is the tool's word that it did not.
    let retry_timeouts = tools.retry_safe(name);
    let mut backoff = policy.initial_backoff_ms;
    let mut attempt = 0;
    loop {
        attempt += 1;
        if rt.config.effect_ledger {
            rt.store
                .count_effect(cx.session, &format!("tool:{}:{call_id}", cx.turn))
                .await
                .map_err(step_err)?;
        }
        let call = tools.invoke(&ctx, name, args.clone());
        let span = tracing::debug_span!("tool_call", tool = name, call_id, attempt);
        let limit = Duration::from_millis(timeout_ms);
        let why = match tokio::time::timeout(limit, call).instrument(span).await {
            Ok(Ok(out)) => return Ok(ToolRecord::Output(out)),
            Ok(Err(ToolError::Retryable(m))) if attempt < attempts => m,
            Ok(Err(ToolError::Retryable(m))) => {
                return Ok(ToolRecord::Output(ToolOutput::error(format!(
                    "failed after {attempt} attempt(s): {m}"
                ))));
            }
            Ok(Err(ToolError::OutcomeUnknown(m))) => {
                tracing::warn!(tool = name, call_id, error = %m, "call's answer lost; not repeated");
                return Ok(ToolRecord::Unknown { lost: Some(m) });
            }
            Ok(Err(e)) => {
                return Ok(ToolRecord::Fatal {
                    message: e.to_string(),
                });
            }
            Err(_) if attempt < attempts && retry_timeouts => {
                format!("timed out after {timeout_ms} ms")
            }
            Err(_) => {
                return Ok(ToolRecord::Fatal {
                    message: format!("timed out after {attempt} attempt(s) of {timeout_ms} ms"),
                });
            }
        };
        tracing::warn!(attempt, tool = name, error = %why, "tool call failed; retrying");
        super::note_retry("tool");
        tokio::time::sleep(Duration::from_millis(backoff)).await;
        backoff = (backoff * 2).min(policy.max_backoff_ms);
        if cx.cancel.is_cancelled() {
            return Ok(ToolRecord::Cancelled);
        }
    }
}
