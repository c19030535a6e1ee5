//! Phase 3, the effect loop: call the model; run the tools it asks for, one
//! journal step each; call the model again with their results; until it
//! answers, the iteration bound is hit (`MaxTurns`), the provider keeps
//! failing (`ProviderError`), a tool fails fatally (`ToolFailure`) or ends
//! the turn (`ToolValue` / `ToolError`), or the turn is cancelled.
//!
//! Every effect is a step: `model:{i}` (`model_step.rs`) records the assistant message, usage
//! and finish reason; `tool:{i}:{call_id}` records the tool's result. The
//! lease is renewed and the cancel signal read inside each step, so both
//! answers are part of the record, and so are the steering messages a model
//! step takes (`steer.rs`).

use super::answer::{answer, ends_turn};
use super::approval;
use super::claim::ClaimRecord;
use super::model_step::{self, ModelRecord};
use super::pending;
use super::prepare::PrepareRecord;
use super::steer::Steered;
use super::tool_step::{self, ToolRecord};
use super::{TurnCx, runtime_failure};
use crate::journal::JournalError;
use crate::model::{EventKind, Message, Part, Role, StopReason, TurnOutcome, Usage};
use crate::tools::ToolRegistry;

/// What the effect loop hands to finalize.
#[derive(Clone, Debug, PartialEq)]
pub struct Effects {
    /// This turn's messages: the user message, then assistant and tool ones.
    pub messages: Vec<Message>,
    /// Tokens used.
    pub usage: Usage,
    /// How the turn ends.
    pub outcome: TurnOutcome,
    /// Tool and steering events, in order.
    pub events: Vec<EventKind>,
    /// Inbox ids of the steers the turn took; its commit completes them.
    pub steered: Vec<String>,
}

/// What approval leaves of a tool call.
enum Gate {
    /// Run the tool.
    Run,
    /// Not run (rejected or expired); the model was told.
    Refused,
    /// The turn ends.
    Stop(TurnOutcome),
}

struct Loop<'c, 'a> {
    cx: &'c TurnCx<'a>,
    claim: &'c ClaimRecord,
    prep: &'c PrepareRecord,
    /// The turn's tools: the runtime's, plus what its `tools` step listed.
    tools: &'c ToolRegistry,
    messages: Vec<Message>,
    usage: Usage,
    events: Vec<EventKind>,
    steered: Vec<String>,
    /// FIFO position of the last steer taken.
    steer_seq: u64,
    /// The JSON of `messages`, for the model calls' input hashes.
    json: model_step::MessagesJson,
    /// The model context, kept between calls.
    context: super::context::KeptContext,
}

/// Runs the effect loop with the turn's tools; `events` are those the turn
/// recorded before it (its tool listing's).
pub async fn run(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    prep: &PrepareRecord,
    tools: &ToolRegistry,
    events: Vec<EventKind>,
) -> Result<Effects, JournalError> {
    let mut lp = Loop {
        cx,
        claim,
        prep,
        tools,
        messages: prep
            .user_message_for(cx.turn, &claim.input)
            .into_iter()
            .collect(),
        usage: Usage::default(),
        events,
        steered: Vec::new(),
        steer_seq: 0,
        json: model_step::MessagesJson::default(),
        context: Default::default(),
    };
    let outcome = lp.drive().await?;
    Ok(Effects {
        messages: lp.messages,
        usage: lp.usage,
        outcome,
        events: lp.events,
        steered: lp.steered,
    })
}

fn runtime_error(e: &JournalError) -> TurnOutcome {
    TurnOutcome::stopped(
        StopReason::RuntimeError,
        runtime_failure(e).unwrap_or_else(|| e.to_string()),
    )
}

fn cancelled() -> TurnOutcome {
    TurnOutcome::stopped(StopReason::Cancelled, "the turn was cancelled")
}

impl Loop<'_, '_> {
    fn next_message_id(&self) -> String {
        self.cx.turn.derive("msg", self.messages.len())
    }

    async fn drive(&mut self) -> Result<TurnOutcome, JournalError> {
        let max = self.cx.rt.config.max_iterations;
        for i in 0..max {
            let record = match self.model_step(i).await {
                Err(JournalError::Cancelled) => return Ok(cancelled()),
                Err(e) if runtime_failure(&e).is_some() => return Ok(runtime_error(&e)),
                other => other?,
            };
            let (message, directive, finish_reason) = match record {
                ModelRecord::Cancelled => return Ok(cancelled()),
                ModelRecord::Failed { message, attempts } => {
                    return Ok(TurnOutcome::stopped(
                        StopReason::ProviderError,
                        format!("model failed after {attempts} attempt(s): {message}"),
                    ));
                }
                ModelRecord::Response {
                    message,
                    usage,
                    directive,
                    finish_reason,
                    steered,
                    ..
                } => {
                    self.usage.add(&usage);
                    self.took(i, steered);
                    (message, directive, finish_reason)
                }
            };
            #[allow(unused_mut)]
            let mut calls: Vec<(String, String, serde_json::Value)> = message
                .tool_calls()
                .map(|(id, name, args)| (id.to_string(), name.to_string(), args.clone()))
                .collect();
            #[cfg(feature = "reorder-steps")]
            calls.reverse();
            let text = message.text_content();
            if !message.parts.is_empty() {
                self.messages.push(message);
            }
            if calls.is_empty() {
                return Ok(answer(text, directive, finish_reason));
            }
            for (n, (id, name, args)) in calls.iter().enumerate() {
                match self.gate(i, id, name, args).await? {
                    Gate::Run => {}
                    Gate::Refused => continue,
                    Gate::Stop(outcome) => return Ok(self.skip_rest(&calls[n + 1..], outcome)),
                }
                let record = match self.tool_step(i, id, name, args).await {
                    Err(JournalError::Cancelled) => ToolRecord::Cancelled,
                    Err(e) if runtime_failure(&e).is_some() => {
                        self.push_result(id, "not run: runtime error", true);
                        return Ok(self.skip_rest(&calls[n + 1..], runtime_error(&e)));
                    }
                    other => other?,
                };
                let stop = match record {
                    ToolRecord::Cancelled => {
                        self.push_result(id, "not run: the turn was cancelled", true);
                        Some(cancelled())
                    }
                    ToolRecord::Unknown { lost } => {
                        if !self.cx.rt.config.live_events {
                            self.events.push(EventKind::ToolOutcomeUnknown {
                                tool_call_id: id.clone(),
                                name: name.clone(),
                            });
                        }
                        let text = match &lost {
                            None => tool_step::OUTCOME_UNKNOWN.to_string(),
                            Some(why) => tool_step::outcome_lost(why),
                        };
                        self.push_result(id, &text, true);
                        None
                    }
                    ToolRecord::Fatal { message } => {
                        self.push_result(id, &format!("tool failed: {message}"), true);
                        Some(TurnOutcome::stopped(
                            StopReason::ToolFailure,
                            format!("tool '{name}' failed: {message}"),
                        ))
                    }
                    ToolRecord::Output(started) => {
                        // The tool step appended its event already, unless
                        // the result came later.
                        let live = self.cx.rt.config.live_events && started.pending.is_none();
                        let out = match &started.pending {
                            None => started,
                            Some(p) => {
                                let waited = pending::run(
                                    self.cx,
                                    self.claim,
                                    i,
                                    id,
                                    name,
                                    &started,
                                    p.timeout_ms,
                                );
                                match waited.await {
                                    Ok(out) => out,
                                    Err(JournalError::Cancelled) => {
                                        self.push_result(
                                            id,
                                            "no result: the turn was cancelled",
                                            true,
                                        );
                                        return Ok(self.skip_rest(&calls[n + 1..], cancelled()));
                                    }
                                    Err(e) if runtime_failure(&e).is_some() => {
                                        self.push_result(id, "no result: runtime error", true);
                                        return Ok(
                                            self.skip_rest(&calls[n + 1..], runtime_error(&e))
                                        );
                                    }
                                    Err(e) => return Err(e),
                                }
                            }
                        };
                        if !live {
                            self.events.push(EventKind::ToolExecuted {
                                tool_call_id: id.clone(),
                                name: name.clone(),
                                is_error: out.is_error,
                            });
                        }
                        self.push_result(id, &out.content, out.is_error);
                        out.ends_turn.then(|| ends_turn(id, &out))
                    }
                };
                if let Some(outcome) = stop {
                    return Ok(self.skip_rest(&calls[n + 1..], outcome));
                }
            }
        }
        Ok(TurnOutcome::stopped(
            StopReason::MaxTurns,
            format!("no answer after {max} model calls"),
        ))
    }

    /// Waits for approval of a call that needs it: the tool runs only once
    /// approved; a rejected or expired call gets a result saying so.
    async fn gate(
        &mut self,
        i: u32,
        id: &str,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<Gate, JournalError> {
        if !approval::required(self.cx, self.claim, self.tools, name, args) {
            return Ok(Gate::Run);
        }
        let (stop, why) = match approval::run(self.cx, self.claim, i, id, name, args).await {
            Ok(decision) => match decision.refusal(self.cx.rt.config.approval.timeout_ms) {
                None => return Ok(Gate::Run),
                Some(refusal) => {
                    self.push_result(id, &refusal, true);
                    return Ok(Gate::Refused);
                }
            },
            Err(JournalError::Cancelled) => (cancelled(), "not run: the turn was cancelled"),
            Err(e) if runtime_failure(&e).is_some() => {
                (runtime_error(&e), "not run: runtime error")
            }
            Err(e) => return Err(e),
        };
        self.push_result(id, why, true);
        Ok(Gate::Stop(stop))
    }

    /// Calls the turn will not run still get a result, so history never
    /// holds a call without its answer.
    fn skip_rest(
        &mut self,
        rest: &[(String, String, serde_json::Value)],
        outcome: TurnOutcome,
    ) -> TurnOutcome {
        for (skipped, _, _) in rest {
            self.push_result(skipped, "not run: the turn ended first", true);
        }
        outcome
    }

    /// Adds the steers a model call took, before its answer.
    fn took(&mut self, iteration: u32, steered: Vec<Steered>) {
        for s in steered {
            self.steer_seq = self.steer_seq.max(s.seq);
            if !self.cx.rt.config.live_events {
                self.events.push(EventKind::Steered {
                    input_id: s.input_id.clone(),
                    iteration,
                });
            }
            self.steered.push(s.input_id);
            self.messages.push(s.message);
        }
    }

    fn push_result(&mut self, call_id: &str, content: &str, is_error: bool) {
        let id = self.next_message_id();
        self.messages.push(Message {
            id,
            role: Role::Tool,
            parts: vec![Part::ToolResult {
                tool_call_id: call_id.to_string(),
                content: content.to_string(),
                is_error,
            }],
        });
    }

    async fn model_step(&mut self, i: u32) -> Result<ModelRecord, JournalError> {
        let call = model_step::ModelCall {
            claim: self.claim,
            prep: self.prep,
            iteration: i,
            messages: &self.messages,
            steer_seq: self.steer_seq,
            tools: self.tools,
            json: &mut self.json,
            context: &mut self.context,
        };
        model_step::run(self.cx, call).await
    }

    async fn tool_step(
        &self,
        i: u32,
        call_id: &str,
        name: &str,
        args: &serde_json::Value,
    ) -> Result<ToolRecord, JournalError> {
        let call = tool_step::ToolCall {
            claim: self.claim,
            iteration: i,
            call_id,
            name,
            args,
            tools: self.tools,
        };
        tool_step::run(self.cx, call).await
    }
}
