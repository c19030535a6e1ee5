//! One model call, step `model:{i}`: inside the step body it renews the
//! lease, reads the cancel signal, takes the steering messages pending for
//! the session (`steer.rs`), assembles the context (history kept by
//! prepare's plan, then the turn's messages) and calls the provider, with
//! retries and a timeout. Everything it read is in its record.

use super::answer::unique_call_ids;
use super::claim::ClaimRecord;
use super::context::KeptContext;
use super::prepare::PrepareRecord;
use super::steer::{self, Steered};
use super::{TurnCx, step_err};
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
    /// The JSON of `messages`, kept across calls.
    pub json: &'c mut MessagesJson,
    /// The context, kept across calls.
    pub context: &'c mut KeptContext,
}

/// The JSON of a turn's messages as serde_json writes them inside an
/// array, kept as the turn grows. A model call's input hash covers every
/// message so far; serializing them all again at each call made that hash
/// the largest item in a long turn's profile. The bytes hashed are exactly
/// those of `input_hash(&("model", base_version, i, messages, tool_names))`,
/// so records written either way replay.
#[derive(Default)]
pub struct MessagesJson {
    bytes: Vec<u8>,
    count: usize,
}

impl MessagesJson {
    /// The model call's input hash.
    pub fn input_hash(
        &mut self,
        base_version: u64,
        i: u32,
        messages: &[Message],
        tool_names: &[String],
    ) -> Result<String, JournalError> {
        let encode = |e: serde_json::Error| {
            JournalError::Step(crate::journal::StepError::Terminal {
                code: crate::ErrorCode::JournalEncode,
                message: e.to_string(),
            })
        };
        // The turn's messages only grow; anything else starts over.
        if messages.len() < self.count {
            *self = MessagesJson::default();
        }
        for m in &messages[self.count..] {
            if self.count > 0 {
                self.bytes.push(b',');
            }
            serde_json::to_writer(&mut self.bytes, m).map_err(encode)?;
            self.count += 1;
        }
        let names = serde_json::to_vec(tool_names).map_err(encode)?;
        let head = format!("[\"model\",{base_version},{i},[");
        Ok(crate::hash::digest_chunks(&[
            head.as_bytes(),
            &self.bytes,
            b"],",
            &names,
            b"]",
        ]))
    }
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
        json,
        context,
    } = call;
    let hash = json.input_hash(claim.base_version, i, messages, &tools.names())?;
    cx.step(StepName::Model(i), &hash, async move {
        cx.keep_lease(&claim.lease).await?;
        if cx.cancel.is_cancelled() {
            return Ok(ModelRecord::Cancelled);
        }
        let steered = steer::take(cx, steer_seq, messages.len()).await?;
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
        let message_id = cx.turn.derive("msg", messages.len() + steered.len());
        let limit = claim
            .settings
            .context_limit
            .unwrap_or(rt.config.max_context_messages) as usize;
        let history = cx
            .history
            .at(rt.store.as_ref(), cx.session, claim.base_version, limit)
            .await
            .map_err(step_err)?;
        let kept = history.get(prep.context_start..).unwrap_or_default();
        // The context: history kept and the turn so far (copying only what
        // the last call did not send), then the steers this call took.
        let turn_count = messages.len();
        let mut messages = context.take(&prep.system_prompt, kept, messages);
        let context_len = messages.len();
        messages.extend(steered.iter().map(|s| s.message.clone()));
        // A plugin may rewrite the context: then the next call builds its own.
        let reuse = rt.plugins.is_empty();
        for p in rt.plugins.iter() {
            p.transform_context(&cx.turn_info(&claim.settings), &mut messages);
        }
        let request = ModelRequest {
            messages,
            tools: tools.specs(),
            iteration: i,
        };
        let record = call_model(cx, i, &request, message_id, steered).await;
        if reuse {
            context.put_back(request.messages, context_len, kept.len(), turn_count);
        }
        record
    })
    .await
}

/// Calls the model under the retry policy and timeout: the record of step
/// `model:{i}`.
async fn call_model(
    cx: &TurnCx<'_>,
    i: u32,
    request: &ModelRequest,
    message_id: String,
    steered: Vec<Steered>,
) -> Result<ModelRecord, crate::journal::StepError> {
    let rt = cx.rt;
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
        let live = crate::live::in_call(call, rt.model.complete(request));
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Part;

    /// The kept JSON hashes exactly as the whole tuple does, call after
    /// call, as the turn's messages grow, and after they are replaced.
    #[test]
    fn kept_message_json_hashes_as_the_whole_input_does() {
        let mut messages = vec![Message::text(
            "m0",
            Role::User,
            "Tab\there, \"quoted\", é ✓",
        )];
        let names = vec!["calculator".to_string(), "notes".to_string()];
        let mut json = MessagesJson::default();
        for i in 0..4u32 {
            let whole = super::super::input_hash(&("model", 7u64, i, &messages, &names)).unwrap();
            assert_eq!(json.input_hash(7, i, &messages, &names).unwrap(), whole);
            messages.push(Message {
                id: format!("m{}", i + 1),
                role: Role::Tool,
                parts: vec![Part::ToolResult {
                    tool_call_id: format!("c{i}"),
                    content: format!("line\n{i}"),
                    is_error: i % 2 == 0,
                }],
            });
        }
        let other = vec![Message::text("x", Role::User, "another turn")];
        let whole = super::super::input_hash(&("model", 1u64, 0u32, &other, &names)).unwrap();
        assert_eq!(json.input_hash(1, 0, &other, &names).unwrap(), whole);
        assert_ne!(json.input_hash(1, 1, &other, &names).unwrap(), whole);
    }
}
