//! The driver: runs the five phases of a turn in order, follows agent
//! frames under the same lease, tells plugins once the commit has landed,
//! and assembles the [`TurnResult`].

use super::claim::{self, ClaimRecord, ClaimSource};
use super::effect_loop::{self, Effects};
use super::finalize::{self, FinalizeInput};
use super::prepare::{self, PrepareRecord, Verdict};
use super::{
    CancelToken, EngineError, Runtime, TurnCx, TurnRequest, TurnResult, commit, listing,
    runtime_failure,
};
use crate::journal::{Journal, JournalError, JournalTier};
use crate::model::StopReason;
use crate::model::{TurnId, TurnOutcome, Usage};
use crate::plugins::TurnPersisted;
use crate::store::{Lease, SessionSettings};
use tracing::Instrument;

/// Whether effects outside the journal (post-persist hooks, claim clean-up)
/// run: not when replaying a recording.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// A real run.
    Live,
    /// Offline replay from a recording.
    Replay,
}

/// Where the next agent frame starts.
struct FrameStart {
    lease: Lease,
    task: String,
    base_version: u64,
    settings: SessionSettings,
}

/// Runs a turn (and the agent frames it switches to) to its commit.
pub async fn run_turn(
    rt: &Runtime,
    journal: &dyn Journal,
    req: &TurnRequest,
    cancel: &CancelToken,
    mode: RunMode,
) -> Result<TurnResult, EngineError> {
    let span = tracing::info_span!(
        "turn",
        session_id = %req.session_id,
        turn_id = %req.turn_id,
        owner = %req.owner,
        tier = ?journal.tier(),
    );
    async {
        let mut results: Vec<TurnResult> = Vec::new();
        let mut next: Option<FrameStart> = None;
        let lease_until = std::sync::atomic::AtomicU64::new(0);
        let replayed = std::sync::atomic::AtomicU32::new(0);
        for frame in 0..=rt.config.max_frames {
            let turn = if frame == 0 {
                req.turn_id.clone()
            } else {
                req.turn_id.agent_frame(frame)
            };
            let history = super::context::HistoryTail::default();
            let cx = TurnCx {
                history: &history,
                rt,
                journal,
                session: &req.session_id,
                turn: &turn,
                frame,
                cancel,
                lease_until: &lease_until,
                replayed: &replayed,
            };
            let source = match &next {
                None => ClaimSource::Inbox {
                    owner: &req.owner,
                    input_id: &req.input_id,
                    enqueue: req.enqueue.as_ref(),
                },
                Some(f) => ClaimSource::Frame {
                    lease: &f.lease,
                    task: &f.task,
                    base_version: f.base_version,
                    settings: &f.settings,
                },
            };
            let claim = claim::run(&cx, source)
                .instrument(tracing::debug_span!("claim", frame))
                .await?;
            let result = match run_phases(&cx, &claim, mode).await {
                Ok(r) => r,
                Err(e) => {
                    if mode == RunMode::Live {
                        give_back(rt, &claim, &e).await;
                    }
                    return Err(e);
                }
            };
            next = match &result.outcome {
                TurnOutcome::AgentFrameSwitch { task, .. } => Some(FrameStart {
                    lease: claim.lease.clone(),
                    task: task.clone(),
                    base_version: result.receipt.version,
                    settings: claim.settings.clone(),
                }),
                _ => None,
            };
            results.push(result);
            if next.is_none() {
                break;
            }
        }
        let mut root = results.remove(0);
        root.frames = results;
        Ok(root)
    }
    .instrument(span)
    .await
}

/// An accepted input: list the tool sources (when there are any), then the
/// effect loop with the turn's tools.
async fn accepted(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    prep: &PrepareRecord,
) -> Result<Effects, JournalError> {
    let rt = cx.rt;
    if rt.tools.sources().is_empty() {
        return effect_loop::run(cx, claim, prep, &rt.tools, Vec::new())
            .instrument(tracing::debug_span!("effect_loop"))
            .await;
    }
    let stopped = |outcome, events| Effects {
        messages: prep
            .user_message_for(cx.turn, &claim.input)
            .into_iter()
            .collect(),
        usage: Usage::default(),
        outcome,
        events,
        steered: Vec::new(),
    };
    let listing = match listing::run(cx, claim)
        .instrument(tracing::debug_span!("tools"))
        .await
    {
        Ok(listing) => listing,
        Err(JournalError::Cancelled) => {
            let why = "the turn was cancelled";
            return Ok(stopped(
                TurnOutcome::stopped(StopReason::Cancelled, why),
                Vec::new(),
            ));
        }
        Err(e) => match runtime_failure(&e) {
            Some(why) => {
                let outcome = TurnOutcome::stopped(StopReason::RuntimeError, why);
                return Ok(stopped(outcome, Vec::new()));
            }
            None => return Err(e),
        },
    };
    let (events, stop) = listing::consequences(cx, &listing);
    if let Some(outcome) = stop {
        return Ok(stopped(outcome, events));
    }
    let tools = rt.tools.for_turn(&listing);
    effect_loop::run(cx, claim, prep, &tools, events)
        .instrument(tracing::debug_span!("effect_loop"))
        .await
}

/// Prepare, effect loop, finalize, commit, post-persist hooks.
async fn run_phases(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    mode: RunMode,
) -> Result<TurnResult, EngineError> {
    let rt = cx.rt;
    let settle_orphan = claim.orphaned && cx.journal.tier() == JournalTier::Durable;
    let prep = if settle_orphan {
        orphan_prepare()
    } else {
        match prepare::run(cx, claim)
            .instrument(tracing::debug_span!("prepare"))
            .await
        {
            Ok(p) => p,
            Err(e) => rejected_prepare(e)?,
        }
    };
    let effects = match &prep.verdict {
        Verdict::Accepted => accepted(cx, claim, &prep).await?,
        Verdict::Rejected { reason, message } => Effects {
            messages: Vec::new(),
            usage: Usage::default(),
            outcome: TurnOutcome::stopped(*reason, message.clone()),
            events: Vec::new(),
            steered: Vec::new(),
        },
    };
    let may_switch = cx.frame < rt.config.max_frames;
    // A cancellation surfaces once, at the next step; the turn still
    // finalizes and commits, so each of those is tried again after it.
    let mut fin = None;
    for _ in 0..2 {
        match finalize::run(cx, FinalizeInput::from_effects(claim, &effects, may_switch))
            .instrument(tracing::debug_span!("finalize"))
            .await
        {
            Err(JournalError::Cancelled) => continue,
            Err(e) if runtime_failure(&e).is_some() => {
                return settle(cx, claim, &e).await;
            }
            other => fin = Some(other?),
        }
        break;
    }
    let fin = fin.ok_or(JournalError::Cancelled)?;
    let mut receipt = None;
    for _ in 0..2 {
        match commit::run(cx, claim, &fin, &effects)
            .instrument(tracing::debug_span!("commit"))
            .await
        {
            Err(JournalError::Cancelled) => continue,
            Err(e) if runtime_failure(&e).is_some() => {
                return settle(cx, claim, &e).await;
            }
            other => receipt = Some(other?),
        }
        break;
    }
    let receipt = receipt.ok_or(JournalError::Cancelled)?;
    tracing::info!(
        version = receipt.version,
        replayed = receipt.replayed,
        "turn committed"
    );
    if !receipt.replayed {
        crate::metrics::turn_committed(&fin.outcome);
    }
    if mode == RunMode::Live {
        let event = TurnPersisted {
            session_id: cx.session.to_string(),
            turn_id: cx.turn.to_string(),
            version: receipt.version,
            outcome: fin.outcome.clone(),
            usage: effects.usage,
        };
        for p in rt.plugins.iter() {
            p.persisted(&event).await;
        }
    }
    Ok(TurnResult {
        session_id: cx.session.to_string(),
        turn_id: cx.turn.to_string(),
        turn_index: claim.base_version,
        outcome: fin.outcome,
        messages: effects.messages,
        usage: effects.usage,
        receipt,
        started_at_ms: claim.started_at_ms,
        duration_ms: fin.finished_at_ms.saturating_sub(claim.started_at_ms),
        frames: Vec::new(),
    })
}

/// What the turn of an orphaned input records instead of preparing: the
/// invocation that claimed it ended without committing, and its effects may
/// have run, so it is settled as stopped and not run again (DESIGN.md,
/// "Every end of an invocation is settled").
fn orphan_prepare() -> PrepareRecord {
    PrepareRecord {
        user_message: None,
        verdict: Verdict::Rejected {
            reason: StopReason::Incomplete,
            message: ORPHANED.into(),
        },
        system_prompt: String::new(),
        context_start: 0,
    }
}

/// The stop message of a settled orphan.
pub const ORPHANED: &str = "the invocation running this turn ended without committing it \
     (killed, or out of retries); it is settled, not run again, because its effects may \
     already have happened";

/// Commits a turn whose finalize or commit failed for good as
/// `Stopped(RuntimeError)`, so its input leaves the inbox in its place.
async fn settle(
    cx: &TurnCx<'_>,
    claim: &ClaimRecord,
    failure: &JournalError,
) -> Result<TurnResult, EngineError> {
    let message = runtime_failure(failure).unwrap_or_else(|| failure.to_string());
    tracing::warn!(error = %message, "turn failed for good; settling it as stopped");
    let (receipt, outcome) = commit::settle(cx, claim, message).await?;
    Ok(TurnResult {
        session_id: cx.session.to_string(),
        turn_id: cx.turn.to_string(),
        turn_index: claim.base_version,
        outcome,
        messages: Vec::new(),
        usage: Usage::default(),
        receipt,
        started_at_ms: claim.started_at_ms,
        duration_ms: 0,
        frames: Vec::new(),
    })
}

/// A prepare step that failed: cancelled, or a runtime failure the turn
/// records and commits; anything else fails the turn.
fn rejected_prepare(e: JournalError) -> Result<PrepareRecord, EngineError> {
    let (reason, message) = match &e {
        JournalError::Cancelled => (StopReason::Cancelled, "the turn was cancelled".to_string()),
        _ => match runtime_failure(&e) {
            Some(m) => (StopReason::RuntimeError, m),
            None => return Err(e.into()),
        },
    };
    Ok(PrepareRecord {
        user_message: None,
        verdict: Verdict::Rejected { reason, message },
        system_prompt: String::new(),
        context_start: 0,
    })
}

/// After a turn fails for good, hands its claims back and frees the lease,
/// so the session stays usable. A retryable failure keeps both: the same
/// turn is expected to run again and replay its steps.
async fn give_back(rt: &Runtime, claim: &ClaimRecord, error: &EngineError) {
    // A parked turn keeps its claim: `resume` continues it.
    if error.is_retryable() || error.is_parked() {
        return;
    }
    let session = &claim.lease.session_id;
    if let Err(e) = rt.store.abandon_claims(session, claim.lease.fence).await {
        tracing::warn!(error = %e, "could not abandon claims of a failed turn");
    }
    if let Err(e) = rt.store.release_lease(&claim.lease).await {
        tracing::warn!(error = %e, "could not release the lease of a failed turn");
    }
}

/// The turn id for frame `n` of `root` (0 is the root itself).
pub fn frame_turn_id(root: &TurnId, n: u32) -> TurnId {
    if n == 0 {
        root.clone()
    } else {
        root.agent_frame(n)
    }
}
