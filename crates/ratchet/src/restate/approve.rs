//! The `approve` and `complete_tool` handlers' work: resolving a wait of a
//! tool call. The store settles the wait first (idempotent: the same value
//! again answers as before), then the value goes to the wait's awakeable,
//! which resumes the suspended turn on whichever instance Restate picks.
//! Unknown call: 404 `unknown_wait`. Settled otherwise (another value, or
//! expired): 409 `wait_settled`.

use super::session::{Session, store_err};
use super::wire::{ApproveBody, ApproveReply, CompleteToolBody, CompleteToolReply};
use crate::ErrorCode;
use crate::model::{Decided, Decision, Verdict, Wait, WaitKind};
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The resolve step's record: what the store did.
#[derive(Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
enum ResolveRecord {
    Recorded { wait: Wait },
    Duplicate { wait: Wait },
    Conflict { wait: Wait },
    Unknown,
}

fn refuse(code: ErrorCode, message: String) -> HandlerError {
    TerminalError::new_with_code(code.http_status(), format!("{code}: {message}")).into()
}

fn verdict(d: &Decision) -> &'static str {
    match d.decision {
        Verdict::Approve => "approve",
        Verdict::Reject => "reject",
    }
}

/// What a settled wait was settled with, for a 409.
fn settled_as(wait: &Wait) -> String {
    match (wait.kind, wait.decision(), wait.state) {
        (WaitKind::Approval, Some(d), _) => format!("decided '{}'", verdict(&d)),
        (WaitKind::ToolResult, _, crate::model::WaitState::Resolved) => "completed".into(),
        (_, _, state) => state.as_str().to_string(),
    }
}

impl Session {
    /// Resolves the wait of `kind` that `call_id` names with `value`;
    /// returns it and whether this was a repeat.
    async fn resolve_wait(
        &self,
        ctx: &SharedObjectContext<'_>,
        kind: WaitKind,
        call_id: &str,
        value: Value,
    ) -> Result<(Wait, bool), HandlerError> {
        let sid = self.session_of(ctx.key())?;
        if call_id.trim().is_empty() {
            return Err(refuse(
                ErrorCode::InvalidRequest,
                "call_id must not be empty".into(),
            ));
        }
        let store = self.runtime().store.clone();
        let (call, v) = (call_id.to_string(), value.clone());
        let record = ctx
            .run(|| async move {
                let decided = store
                    .decide_wait(&sid, kind, &call, &v)
                    .await
                    .map_err(store_err)?;
                Ok(Json(match decided {
                    Decided::Recorded(wait) => ResolveRecord::Recorded { wait },
                    Decided::Duplicate(wait) => ResolveRecord::Duplicate { wait },
                    Decided::Conflict(wait) => ResolveRecord::Conflict { wait },
                    Decided::Unknown => ResolveRecord::Unknown,
                }))
            })
            .name("resolve")
            .await?
            .into_inner();
        let what = match kind {
            WaitKind::Approval => "waits for approval",
            WaitKind::ToolResult => "waits for its result",
        };
        let (wait, duplicate) = match record {
            ResolveRecord::Recorded { wait } => (wait, false),
            ResolveRecord::Duplicate { wait } => (wait, true),
            ResolveRecord::Conflict { wait } => {
                return Err(refuse(
                    ErrorCode::WaitSettled,
                    format!("tool call '{call_id}' is already {}", settled_as(&wait)),
                ));
            }
            ResolveRecord::Unknown => {
                return Err(refuse(
                    ErrorCode::UnknownWait,
                    format!("no tool call '{call_id}' {what} in this session"),
                ));
            }
        };
        // Delivered on a repeat too: the first request may have ended
        // between the store and the awakeable.
        if wait.awakeable {
            ctx.resolve_awakeable(&wait.wait_id, Json(value));
        }
        Ok((wait, duplicate))
    }

    pub(super) async fn decide(
        &self,
        ctx: &SharedObjectContext<'_>,
        body: ApproveBody,
    ) -> Result<ApproveReply, HandlerError> {
        let ApproveBody {
            call_id,
            decision,
            note,
        } = body;
        let decision = Decision { decision, note };
        if let Err(e) = decision.check() {
            return Err(refuse(ErrorCode::InvalidRequest, e));
        }
        let value = serde_json::to_value(&decision)?;
        let (wait, duplicate) = self
            .resolve_wait(ctx, WaitKind::Approval, &call_id, value)
            .await?;
        Ok(ApproveReply {
            call_id,
            wait_id: wait.wait_id,
            decision: decision.decision,
            duplicate,
        })
    }

    pub(super) async fn complete(
        &self,
        ctx: &SharedObjectContext<'_>,
        body: CompleteToolBody,
    ) -> Result<CompleteToolReply, HandlerError> {
        let max = self.runtime().config.max_input_bytes;
        let value = serde_json::to_value(&body.result)?;
        let size = value.to_string().len();
        if size > max {
            return Err(refuse(
                ErrorCode::PayloadTooLarge,
                format!("the result is {size} bytes, over the limit of {max}"),
            ));
        }
        let (wait, duplicate) = self
            .resolve_wait(ctx, WaitKind::ToolResult, &body.call_id, value)
            .await?;
        Ok(CompleteToolReply {
            call_id: body.call_id,
            wait_id: wait.wait_id,
            duplicate,
        })
    }
}
