//! Phase 5, commit: the store's single-transaction final commit — messages,
//! head bump, usage, claim completions, events, lease release (or keep, for
//! an agent frame), receipt. A lost lease abandons the turn's claims so the
//! new owner can run them, and fails the turn with
//! `session_execution_lease_lost`.

use super::TurnCx;
use super::claim::ClaimRecord;
use super::effect_loop::Effects;
use super::finalize::FinalizeRecord;
use super::finalize::stopped_events;
use crate::journal::{JournalError, StepError, StepName};
use crate::model::{StopReason, TurnId, TurnOutcome, Usage};
use crate::store::{CommitReceipt, CommitRequest, StoreError, rules};

/// Runs the commit step.
pub async fn run(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    fin: &FinalizeRecord,
    effects: &Effects,
) -> Result<CommitReceipt, JournalError> {
    // The steers the turn took complete with its input: their messages are
    // among the turn's.
    let completed_entries = claim
        .claimed_ids
        .iter()
        .chain(&effects.steered)
        .cloned()
        .collect();
    let request = CommitRequest {
        session_id: cx.session.clone(),
        turn_id: cx.turn.to_string(),
        lease: claim.lease.clone(),
        base_version: claim.base_version,
        messages: effects.messages.clone(),
        outcome: fin.outcome.clone(),
        usage: effects.usage,
        completed_entries,
        events: fin.events.clone(),
        settings: claim.settings_changed.then(|| claim.settings.clone()),
        keep_lease: fin.keep_lease,
        started_at_ms: claim.started_at_ms,
        finished_at_ms: fin.finished_at_ms,
    };
    commit_step(cx, StepName::Commit, claim, request).await
}

/// Settles a turn whose own finalize or commit failed for good: commits
/// `Stopped(RuntimeError)` with no messages, only its events, so the input
/// completes in its FIFO place and the next one runs. Step `settle`.
pub async fn settle(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    message: String,
) -> Result<(CommitReceipt, TurnOutcome), JournalError> {
    let outcome = TurnOutcome::stopped(StopReason::RuntimeError, message);
    let request = CommitRequest {
        session_id: cx.session.clone(),
        turn_id: cx.turn.to_string(),
        lease: claim.lease.clone(),
        base_version: claim.base_version,
        messages: Vec::new(),
        outcome: outcome.clone(),
        usage: Usage::default(),
        completed_entries: claim.claimed_ids.clone(),
        events: stopped_events(cx.turn.as_str(), claim.base_version, &outcome),
        settings: claim.settings_changed.then(|| claim.settings.clone()),
        keep_lease: false,
        started_at_ms: claim.started_at_ms,
        finished_at_ms: claim.started_at_ms,
    };
    let receipt = commit_step(cx, StepName::Settle, claim, request).await?;
    Ok((receipt, outcome))
}

/// The stop message of an agent frame whose invocation ended before it
/// committed.
pub const FRAME_CUT: &str = "the invocation running this agent frame ended before it committed \
     (killed, or out of retries); the chain stops here and is not run again";

/// Before a Restate invocation takes over a session from an ended one:
/// if the session's last turn switched to an agent frame that never
/// committed (the chain was cut by the end of its invocation), commits that
/// frame as `Stopped(Incomplete)`, keeping the lease for the turn about to
/// start. Runs inside the claim step, so it is journaled with it; the commit
/// is idempotent by turn id.
pub(crate) async fn settle_cut_frame(cx: &TurnCx<'_>, owner: &str) -> Result<(), StepError> {
    let rt = cx.rt;
    let store = &rt.store;
    let holder = match store.current_lease(cx.session).await {
        Ok(Some(holder)) => holder,
        Ok(None) | Err(StoreError::UnknownSession(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !rules::supersedes(owner, &holder.owner) {
        return Ok(());
    }
    let head = store.head(cx.session).await?;
    let Some(last) = store
        .recent_messages(cx.session, head.version, 1)
        .await?
        .pop()
        .filter(|m| m.version == head.version)
    else {
        return Ok(());
    };
    let Some(turn) = store.committed_turn(cx.session, &last.turn_id).await? else {
        return Ok(());
    };
    let Ok(last_id) = TurnId::new(&last.turn_id) else {
        return Ok(());
    };
    let next = last_id.frame_index() + 1;
    if !matches!(turn.record.outcome, TurnOutcome::AgentFrameSwitch { .. })
        || next > rt.config.max_frames
    {
        return Ok(());
    }
    let frame = last_id.agent_frame(next);
    let lease = store
        .acquire_lease(cx.session, owner, rt.config.lease_ttl_ms)
        .await?;
    let outcome = TurnOutcome::stopped(StopReason::Incomplete, FRAME_CUT);
    tracing::warn!(frame = %frame, "settling an agent frame cut by the end of its invocation");
    let request = CommitRequest {
        session_id: cx.session.clone(),
        turn_id: frame.to_string(),
        lease,
        base_version: head.version,
        messages: Vec::new(),
        events: stopped_events(frame.as_str(), head.version, &outcome),
        outcome,
        usage: Usage::default(),
        completed_entries: Vec::new(),
        settings: None,
        keep_lease: true,
        started_at_ms: 0,
        finished_at_ms: 0,
    };
    store.commit(&request).await?;
    Ok(())
}

async fn commit_step(
    cx: &TurnCx<'_>,
    name: StepName,
    claim: &ClaimRecord,
    request: CommitRequest,
) -> Result<CommitReceipt, JournalError> {
    let rt = cx.rt;
    let hash = rules::commit_hash(&request)?;
    cx.step(name, &hash, async move {
        match rt.store.commit(&request).await {
            Ok(receipt) => Ok(receipt),
            Err(e @ (StoreError::LeaseLost { .. } | StoreError::VersionConflict { .. })) => {
                // Another owner runs the session now: hand our claims back.
                if let Err(abandon) = rt.store.abandon_claims(cx.session, claim.lease.fence).await {
                    tracing::warn!(error = %abandon, "could not abandon claims after losing the lease");
                }
                Err(StepError::Terminal {
                    code: crate::ErrorCode::SessionExecutionLeaseLost,
                    message: e.to_string(),
                })
            }
            Err(e) => Err(e.into()),
        }
    })
    .await
}
