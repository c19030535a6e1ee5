//! Phase 1, claim: take the session's execution lease, then the input from
//! the inbox with the session commands enqueued before it, and fix the base
//! version history is read at. An agent frame instead continues under the
//! lease its root turn kept, with the frame's task as its input.

use super::{TurnCx, input_hash, step_err};
use crate::ErrorCode;
use crate::journal::{JournalError, StepError, StepName};
use crate::model::{SessionCommand, TurnInput};
use crate::store::{
    ClaimTarget, Enqueued, InboxEntry, InboxPayload, InboxState, Lease, NewInboxEntry,
    SessionSettings,
};
use serde::{Deserialize, Serialize};
use std::sync::atomic::Ordering;

/// What the claim step records.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The turn.
    pub turn_id: String,
    /// The head version history is read at; also the turn's index.
    pub base_version: u64,
    /// The lease held for the turn.
    pub lease: Lease,
    /// Inbox entries claimed (commands, then the input).
    pub claimed_ids: Vec<String>,
    /// The input.
    pub input: TurnInput,
    /// Commands applied before the input.
    pub commands: Vec<SessionCommand>,
    /// Session settings after the commands.
    pub settings: SessionSettings,
    /// Whether the commands changed the settings.
    pub settings_changed: bool,
    /// When the turn started (the injected clock, read inside the step).
    pub started_at_ms: u64,
    /// The input was claimed before by an invocation that ended without
    /// committing it (see `rules::select_claim`); on the durable tier the
    /// turn is settled as stopped instead of run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub orphaned: bool,
}

/// Where a turn's input comes from.
pub enum ClaimSource<'a> {
    /// A root turn: an inbox entry, claimed as `owner`.
    Inbox {
        /// Lease owner.
        owner: &'a str,
        /// The input's inbox id.
        input_id: &'a str,
        /// The input, to enqueue (idempotently) before claiming it.
        enqueue: Option<&'a TurnInput>,
    },
    /// An agent frame: the previous turn's lease, version and settings.
    Frame {
        /// The lease kept by the previous commit.
        lease: &'a Lease,
        /// The frame's task.
        task: &'a str,
        /// The version the previous commit produced.
        base_version: u64,
        /// Settings in force.
        settings: &'a SessionSettings,
    },
}

/// Runs the claim step.
pub async fn run(cx: &TurnCx<'_>, source: ClaimSource<'_>) -> Result<ClaimRecord, JournalError> {
    let rt = cx.rt;
    match source {
        ClaimSource::Inbox {
            owner,
            input_id,
            enqueue,
        } => {
            let hash = input_hash(&("claim", cx.session, input_id))?;
            cx.step(StepName::Claim, &hash, async move {
                super::commit::settle_cut_frame(cx, owner).await?;
                let entry = enqueue.map(|input| {
                    let mut input = input.clone();
                    input.input_id = Some(input_id.to_string());
                    NewInboxEntry {
                        id: input_id.to_string(),
                        turn_id: Some(cx.turn.to_string()),
                        payload: InboxPayload::Input(input),
                    }
                });
                let target = ClaimTarget::Input(input_id.to_string());
                let start = rt
                    .store
                    .start_turn(cx.session, owner, rt.config.lease_ttl_ms, entry, target)
                    .await
                    .map_err(step_err)?;
                let (lease, head) = (start.lease, start.head);
                cx.lease_until.store(lease.expires_at_ms, Ordering::SeqCst);
                let Some(claim) = start.claim else {
                    // Keep the lease while an earlier input is live: it may be
                    // an ended invocation's orphan, and a released lease would
                    // send it back to pending, to run again in full.
                    if start.next_live.is_none() {
                        rt.store.release_lease(&lease).await.map_err(step_err)?;
                    }
                    return Err(not_claimed(cx, input_id, start.enqueued, start.next_live));
                };
                if claim.orphaned_from.is_some() {
                    crate::metrics::lease_taken_over();
                }
                let Some(input) = claim.input.payload.input().cloned() else {
                    return Err(StepError::Terminal {
                        code: ErrorCode::InputNotPending,
                        message: format!("inbox entry '{input_id}' is a command, not an input"),
                    });
                };
                let mut settings = head.settings.clone();
                let mut commands = Vec::new();
                for entry in &claim.commands {
                    if let InboxPayload::Command(c) = &entry.payload {
                        settings.apply(c);
                        commands.push(c.clone());
                    }
                }
                if rt.config.live_events {
                    // The commit's own first event, by its id ({turn}:0),
                    // so the commit's append of it adds nothing.
                    let kind = crate::model::EventKind::TurnStarted {
                        turn_index: head.version,
                    };
                    super::append_live(cx, "0", kind).await?;
                }
                Ok(ClaimRecord {
                    turn_id: cx.turn.to_string(),
                    base_version: head.version,
                    settings_changed: settings != head.settings,
                    claimed_ids: claim.entry_ids(),
                    lease,
                    input,
                    commands,
                    settings,
                    started_at_ms: rt.clock.now_ms(),
                    orphaned: claim.orphaned_from.is_some(),
                })
            })
            .await
        }
        ClaimSource::Frame {
            lease,
            task,
            base_version,
            settings,
        } => {
            let hash = input_hash(&("claim", cx.session, task, base_version))?;
            cx.step(StepName::Claim, &hash, async move {
                let lease = rt
                    .store
                    .renew_lease(lease, rt.config.lease_ttl_ms)
                    .await
                    .map_err(step_err)?;
                cx.lease_until.store(lease.expires_at_ms, Ordering::SeqCst);
                Ok(ClaimRecord {
                    turn_id: cx.turn.to_string(),
                    base_version,
                    lease,
                    claimed_ids: Vec::new(),
                    input: TurnInput::text(task),
                    commands: Vec::new(),
                    settings: settings.clone(),
                    settings_changed: false,
                    started_at_ms: rt.clock.now_ms(),
                    orphaned: false,
                })
            })
            .await
        }
    }
}

/// Why the target input was not claimed, as a terminal step error: it
/// committed already (the session service answers with that result), an
/// earlier input must run first (FIFO), or it is not in the inbox at all.
fn not_claimed(
    cx: &TurnCx<'_>,
    input_id: &str,
    enqueued: Option<Enqueued>,
    next_live: Option<InboxEntry>,
) -> StepError {
    if let Some(e) = enqueued.filter(|e| e.entry.state == InboxState::Completed) {
        return StepError::Terminal {
            code: ErrorCode::InputAlreadyCommitted,
            message: e.entry.turn_id.unwrap_or_else(|| cx.turn.to_string()),
        };
    }
    if let Some(next) = next_live.filter(|n| n.id != input_id) {
        return StepError::Terminal {
            code: ErrorCode::InputNotNext,
            message: format!("input '{}' must run before '{input_id}'", next.id),
        };
    }
    StepError::Terminal {
        code: ErrorCode::InputNotPending,
        message: format!(
            "input '{input_id}' is not pending in session '{}'",
            cx.session
        ),
    }
}
