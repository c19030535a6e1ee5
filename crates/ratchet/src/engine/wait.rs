//! A durable wait inside a turn, for approval of a tool call or for the
//! result of a tool that finishes later. Three journal operations, each
//! named by its place in the turn:
//!
//! 1. the wait's promise (`Journal::promise`): on Restate an awakeable raced
//!    against a durable timer, on the inline tier an id derived from the
//!    turn and the step;
//! 2. the announce step (`approval:{i}:{call}`, `pending:{i}:{call}`): the
//!    store's wait row and the request event, appended at once with the
//!    wait id, so an outside system can resolve it;
//! 3. once the promise ends, the settle step (`decision:…`, `completed:…`)
//!    settles the row (the first settlement wins: a resolution that reached
//!    the store before the timer fired still counts) and appends the
//!    settled event.
//!
//! On the inline tier the settle step reads the store; with nothing there
//! yet and the deadline ahead, the turn parks (`turn_parked`): its lease is
//! let go, its steps stay checkpointed, and `resume` continues it.

use super::claim::ClaimRecord;
use super::{TurnCx, input_hash, step_err};
use crate::ErrorCode;
use crate::journal::{JournalError, JournalTier, StepError, StepName, WaitOutcome};
use crate::model::{EventKind, Wait, WaitKind, WaitState};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// Makes the request event, given the wait id and the deadline.
pub(super) type RequestedEvent<'a> = Box<dyn Fn(&str, u64) -> EventKind + Send + Sync + 'a>;
/// Makes the settled event, given the value (`None`: expired).
pub(super) type SettledEvent<'a> = Box<dyn Fn(Option<&Value>) -> EventKind + Send + Sync + 'a>;

/// What a wait is for, and the events it appends.
pub(super) struct WaitPlan<'a> {
    /// Approval, or a pending tool's result.
    pub kind: WaitKind,
    /// The model call that asked for the tool.
    pub iteration: u32,
    /// The tool call.
    pub call_id: &'a str,
    /// The tool.
    pub tool: &'a str,
    /// What the wait row shows of the call (scrubbed of secrets here).
    pub arguments: Value,
    /// How long it waits.
    pub timeout_ms: u64,
    /// The request event, given the wait id and the deadline.
    pub requested: RequestedEvent<'a>,
    /// The settled event, given the value (`None`: expired).
    pub settled: SettledEvent<'a>,
    /// Makes a resolved promise's value one the turn can use (a value that
    /// does not read becomes a safe one).
    pub read: fn(Value) -> Value,
}

/// What the announce step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AnnounceRecord {
    /// The id a resolution names the wait by.
    pub wait_id: String,
    /// When the wait expires (ms since the epoch).
    pub deadline_ms: u64,
}

/// What the settle step records: the value, or `None` when it expired.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SettleRecord {
    /// What resolved the wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Value>,
}

fn names(kind: WaitKind, iteration: u32, call: &str) -> (StepName, StepName) {
    let call = call.to_string();
    match kind {
        WaitKind::Approval => (
            StepName::Approval {
                iteration,
                call: call.clone(),
            },
            StepName::Decision { iteration, call },
        ),
        WaitKind::ToolResult => (
            StepName::Pending {
                iteration,
                call: call.clone(),
            },
            StepName::Completed { iteration, call },
        ),
    }
}

/// Announces the wait, waits, and settles it; returns what resolved it,
/// or `None` when it expired.
pub(super) async fn wait(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    plan: WaitPlan<'_>,
) -> Result<Option<Value>, JournalError> {
    let rt = cx.rt;
    let (announce, settle) = names(plan.kind, plan.iteration, plan.call_id);
    let announce_name = cx.step_name(announce.clone()).to_string();
    let settle_name = cx.step_name(settle.clone()).to_string();
    let (wait_id, waited) = cx.journal.promise(
        cx.turn,
        &announce_name,
        Duration::from_millis(plan.timeout_ms),
    );
    let durable = cx.journal.tier() == JournalTier::Durable;
    let plan = &plan;
    let hash = input_hash(&(plan.kind, plan.tool, &plan.arguments, plan.timeout_ms))?;
    let announced: AnnounceRecord = cx
        .step(announce, &hash, async move {
            cx.keep_lease(&claim.lease).await?;
            let mut arguments = plan.arguments.clone();
            crate::secrets::redact_value(&mut arguments);
            let wait = Wait {
                wait_id,
                call_id: plan.call_id.to_string(),
                turn_id: cx.turn.to_string(),
                kind: plan.kind,
                tool: plan.tool.to_string(),
                arguments,
                deadline_ms: rt.clock.now_ms().saturating_add(plan.timeout_ms),
                state: WaitState::Pending,
                value: None,
                awakeable: durable,
            };
            let stored = rt
                .store
                .open_wait(cx.session, &wait)
                .await
                .map_err(step_err)?;
            let event = (plan.requested)(&stored.wait_id, stored.deadline_ms);
            super::append_live(cx, &announce_name, event).await?;
            Ok(AnnounceRecord {
                wait_id: stored.wait_id,
                deadline_ms: stored.deadline_ms,
            })
        })
        .await?;
    let woke = waited.await?;
    let hash = input_hash(&(plan.kind, plan.call_id, &announced.wait_id))?;
    let wait_id = announced.wait_id.clone();
    let record: SettleRecord = cx
        .step(settle, &hash, async move {
            let store = &rt.store;
            let settled = match woke {
                WaitOutcome::Resolved(value) => {
                    let value = (plan.read)(value);
                    store.settle_wait(cx.session, &wait_id, Some(&value)).await
                }
                WaitOutcome::Expired => store.settle_wait(cx.session, &wait_id, None).await,
                WaitOutcome::Check => {
                    let row = store
                        .waits(cx.session, false)
                        .await
                        .map_err(step_err)?
                        .into_iter()
                        .find(|w| w.wait_id == wait_id);
                    match row {
                        Some(w) if w.state == WaitState::Pending => {
                            if rt.clock.now_ms() < w.deadline_ms {
                                return Err(park(cx, claim, &w).await);
                            }
                            store.settle_wait(cx.session, &wait_id, None).await
                        }
                        other => Ok(other),
                    }
                }
            };
            let row = settled
                .map_err(step_err)?
                .ok_or_else(|| StepError::Terminal {
                    code: ErrorCode::RuntimeError,
                    message: format!("the wait '{wait_id}' is not in the store"),
                })?;
            cx.keep_lease(&claim.lease).await?;
            let value = match row.state {
                WaitState::Resolved => row.value,
                _ => None,
            };
            super::append_live(cx, &settle_name, (plan.settled)(value.as_ref())).await?;
            Ok(SettleRecord { value })
        })
        .await?;
    Ok(record.value)
}

/// Parks the turn: its lease is let go (expired, not released, so the
/// resumed turn renews it as the same owner) and the step fails with
/// `turn_parked`, recording nothing.
async fn park(cx: &TurnCx<'_>, claim: &ClaimRecord, wait: &Wait) -> StepError {
    if let Err(e) = cx.rt.store.renew_lease(&claim.lease, 0).await {
        return step_err(e);
    }
    let what = match wait.kind {
        WaitKind::Approval => "approval",
        WaitKind::ToolResult => "its result",
    };
    StepError::Terminal {
        code: ErrorCode::TurnParked,
        message: format!(
            "tool call '{}' ({}) waits for {what} (wait id '{}') until {} ms; resolve it, then resume the session",
            wait.call_id, wait.tool, wait.wait_id, wait.deadline_ms
        ),
    }
}

/// Expires the waits a stopped turn leaves pending: the invocation that
/// waited was killed (the turn is settled as an orphan), or the turn was
/// cancelled or failed while waiting. A decision sent later is then 409
/// `wait_settled`, not recorded for a turn that will never read it. Runs
/// inside the finalize step; a Finished turn settled each of its waits.
pub(super) async fn expire_left(cx: &TurnCx<'_>) -> Result<(), StepError> {
    let store = &cx.rt.store;
    let pending = store.waits(cx.session, true).await.map_err(step_err)?;
    for w in pending.iter().filter(|w| w.turn_id == cx.turn.as_str()) {
        store
            .settle_wait(cx.session, &w.wait_id, None)
            .await
            .map_err(step_err)?;
    }
    Ok(())
}
