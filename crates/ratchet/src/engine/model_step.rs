//! One model call, step `model:{i}`: inside the step body it renews the
//! lease, reads the cancel signal, takes the steering messages pending for
//! the session (`steer.rs`), assembles the context (history kept by
//! prepare's plan, then the turn's messages) and calls the provider, with
//! retries and a timeout. Everything it read is in its record.

use super::answer::unique_call_ids;
use super::claim::ClaimRecord;
use super::context::assemble;
use super::prepare::PrepareRecord;
use super::steer::{self, Steered};
use super::{TurnCx, input_hash, step_err};
use crate::journal::{JournalError, StepName};
use crate::llm::{FinishReason, ModelDirective, ModelRequest};
use crate::model::{Message, Role, Usage};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tracing::Instrument;

/// What a `model:{i}` step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ModelRecord {
    /// The model answered.
    Response {
        /// The assistant message (deterministic id).
        message: Message,
        /// Tokens used.
        usage: Usage,
        /// Why it stopped.
        finish_reason: FinishReason,
        /// An instruction to the runtime.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        directive: Option<ModelDirective>,
        /// Calls made, retries included.
        attempts: u32,
        /// Steering messages this call took, in order before the answer.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steered: Vec<Steered>,
    },
    /// The provider kept failing.
    Failed {
        /// The last error.
        message: String,
        /// Calls made.
        attempts: u32,
    },
    /// The turn was cancelled before the call.
    Cancelled,
}

/// What one model call starts from.
pub struct ModelCall<'c> {
    /// The turn's claim.
    pub claim: &'c ClaimRecord,
    /// The turn's prepare record.
    pub prep: &'c PrepareRecord,
    /// The call's position in the turn, from 0.
    pub iteration: u32,
    /// The turn's messages so far.
    pub messages: &'c [Message],
    /// FIFO position of the last steer the turn took (0: none).
    pub steer_seq: u64,
    /// The turn's tools.
    pub tools: &'c crate::tools::ToolRegistry,
}

/// Runs step `model:{i}`: takes pending steers, assembles the context from
/// history and the turn's messages, and calls the model under the retry
/// policy and timeout.
pub async fn run(cx: &TurnCx<'_>, call: ModelCall<'_>) -> Result<ModelRecord, JournalError> {
    let rt = cx.rt;
    let ModelCall {
        claim,
        prep,
        iteration: i,
        messages,
        steer_seq,
        tools,
    } = call;
    let tool_names = tools.names();
    let hash = input_hash(&("model", claim.base_version, i, messages, &tool_names))?;
    let mut turn_messages = messages.to_vec();
    cx.step(StepName::Model(i), &hash, async move {
        cx.keep_lease(&claim.lease).await?;
        if cx.cancel.is_cancelled() {
            return Ok(ModelRecord::Cancelled);
        }
        let steered = steer::take(cx, steer_seq, turn_messages.len()).await?;
        if rt.config.live_events {
            let step = cx.step_name(StepName::Model(i));
            for (k, s) in steered.iter().enumerate() {
                let kind = crate::model::EventKind::Steered {
                    input_id: s.input_id.clone(),
                    iteration: i,
                };
                super::append_live(cx, &format!("{step}:steer:{k}"), kind).await?;
            }
        }
        turn_messages.extend(steered.iter().map(|s| s.message.clone()));
        let message_id = cx.turn.derive("msg", turn_messages.len());
        let limit = claim
            .settings
            .context_limit
            .unwrap_or(rt.config.max_context_messages) as usize;
        let history = rt
            .store
            .recent_messages(cx.session, claim.base_version, limit)
            .await
            .map_err(step_err)?;
        let kept: Vec<Message> = history
            .into_iter()
            .skip(prep.context_start)
            .map(|m| m.message)
            .collect();
        let mut messages = assemble(&prep.system_prompt, &kept, &turn_messages);
        for p in rt.plugins.iter() {
            p.transform_context(&cx.turn_info(&claim.settings), &mut messages);
        }
        let request = ModelRequest {
            messages,
            tools: tools.specs(),
            iteration: i,
        };
        let policy = &rt.config.provider_retry;
        let mut backoff = policy.initial_backoff_ms;
        let mut attempts = 0;
        let effect_key = format!("model:{}:{i}", cx.turn);
        loop {
            attempts += 1;
            if rt.config.effect_ledger {
                rt.store
                    .count_effect(cx.session, &effect_key)
                    .await
                    .map_err(step_err)?;
            }
            let timeout = Duration::from_millis(rt.config.model_timeout_ms);
            let call = crate::live::LiveCall {
                session_id: cx.session.to_string(),
                turn_id: cx.turn.to_string(),
                step: cx.step_name(StepName::Model(i)).to_string(),
                attempt: attempts,
            };
            let live = crate::live::in_call(call, rt.model.complete(&request));
            let span = tracing::debug_span!("model_call", attempt = attempts);
            let called = match tokio::time::timeout(timeout, live).instrument(span).await {
                Ok(result) => result,
                Err(_) => Err(crate::llm::ProviderError {
                    message: format!(
                        "model call timed out after {} ms",
                        rt.config.model_timeout_ms
                    ),
                    retryable: true,
                }),
            };
            match called {
                Ok(resp) => {
                    let mut usage = resp.usage;
                    usage.model_calls = 1;
                    return Ok(ModelRecord::Response {
                        message: Message {
                            id: message_id,
                            role: Role::Assistant,
                            parts: unique_call_ids(resp.parts, i),
                        },
                        usage,
                        finish_reason: resp.finish_reason,
                        directive: resp.directive,
                        attempts,
                        steered,
                    });
                }
                Err(e) if e.retryable && attempts < policy.attempts.max(1) => {
                    tracing::warn!(attempts, error = %e, "model call failed; retrying");
                    super::note_retry("model");
                    tokio::time::sleep(Duration::from_millis(backoff)).await;
                    backoff = (backoff * 2).min(policy.max_backoff_ms);
                    if cx.cancel.is_cancelled() {
                        return Ok(ModelRecord::Cancelled);
                    }
                }
                Err(e) => {
                    return Ok(ModelRecord::Failed {
                        message: e.message,
                        attempts,
                    });
                }
            }
        }
    })
    .await
}
