//! The turn engine: five phases, each a journal step, wired in order by the
//! [`driver`]. One file per phase, each reading top to bottom:
//! [`claim`] → [`prepare`] → [`effect_loop`] (model ⇄ tools) → [`finalize`]
//! → [`commit`]. The engine never imports the Restate adapter: it sees only
//! the [`Journal`] trait.
//!
//! Rules that make replay safe: no clock, random source or changing store
//! read between steps (all IO happens inside step bodies); ids derive from
//! the turn id and ordinals; each step's input hash covers what the turn
//! decided, not history bytes, so journals stay small and replay offline.

pub mod admission;
mod answer;
pub mod approval;
pub mod claim;
pub mod commit;
mod config;
mod context;
pub mod driver;
pub mod effect_loop;
pub mod finalize;
pub mod inline;
mod listing;
mod model_step;
pub mod pending;
pub mod prepare;
pub mod service;
pub mod steer;
mod tool_step;
pub mod view;
mod wait;

pub use admission::{Admitted, admit, admit_command};
pub use config::{ApprovalPolicy, EngineConfig, RetryPolicy};
pub use driver::{RunMode, run_turn};
pub use service::{NextInput, SessionReads, Sessions, StoreReads};
pub use view::{SessionView, view_of};

use crate::ErrorCode;
use crate::clock::SharedClock;
use crate::fault;
use crate::journal::{Journal, JournalError, StepError, StepName, run_step};
use crate::llm::ModelProvider;
use crate::model::{Message, SessionId, TurnId, TurnOutcome, Usage};
use crate::plugins::{PluginSet, TurnInfo};
use crate::store::{CommitReceipt, SessionStore, StoreError};
use crate::tools::ToolRegistry;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Everything a turn runs with, built once and shared.
#[derive(Clone)]
pub struct Runtime {
    /// The session store.
    pub store: Arc<dyn SessionStore>,
    /// The model.
    pub model: Arc<dyn ModelProvider>,
    /// The tools.
    pub tools: ToolRegistry,
    /// The plugins.
    pub plugins: PluginSet,
    /// The clock (read only inside steps).
    pub clock: SharedClock,
    /// Engine knobs.
    pub config: EngineConfig,
}

/// Asks a running turn to stop; it commits `Stopped(Cancelled)`.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A token not cancelled.
    pub fn new() -> Self {
        Self::default()
    }
    /// Cancels.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    /// Whether cancelled. Read only inside steps, so the answer is recorded.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Which input a turn runs, and as whom.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnRequest {
    /// The session.
    pub session_id: SessionId,
    /// The inbox entry to claim.
    pub input_id: String,
    /// The input to enqueue first (idempotently) inside the claim step, so a
    /// direct turn costs no separate enqueue step; `None` when it is queued.
    pub enqueue: Option<crate::model::TurnInput>,
    /// The turn id; agent frames derive theirs from it.
    pub turn_id: TurnId,
    /// The lease owner (an inline process id, or the Restate invocation id).
    pub owner: String,
}

impl TurnRequest {
    /// The turn id for an input: its trace turn id, else derived from the
    /// input id, so a retried request maps to the same turn.
    pub fn turn_id_for(input_id: &str, trace_turn_id: Option<&str>) -> Result<TurnId, EngineError> {
        let raw = match trace_turn_id {
            Some(t) => t.to_string(),
            None => format!("turn-{input_id}"),
        };
        TurnId::new(raw).map_err(|e| EngineError::InvalidRequest(e.to_string()))
    }
}

/// A turn as assembled after its commit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnResult {
    /// The session.
    pub session_id: String,
    /// The turn.
    pub turn_id: String,
    /// Its index in the session (the version it read history at).
    pub turn_index: u64,
    /// How it ended.
    pub outcome: TurnOutcome,
    /// The messages it appended.
    pub messages: Vec<Message>,
    /// Tokens it used.
    pub usage: Usage,
    /// Its commit receipt.
    pub receipt: CommitReceipt,
    /// When it claimed its input (from the injected clock).
    pub started_at_ms: u64,
    /// Claim to finalize, in milliseconds (from the injected clock).
    pub duration_ms: u64,
    /// Agent-frame turns followed from this one, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub frames: Vec<TurnResult>,
}

impl TurnResult {
    /// The outcome of the last turn in the chain.
    pub fn final_outcome(&self) -> &TurnOutcome {
        self.frames.last().map_or(&self.outcome, |f| &f.outcome)
    }
}

/// Why a turn could not run to its commit.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A journal step failed (including `journal_mismatch` and a lost lease).
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The durable tier reached a store facet that does not survive crashes.
    #[error(
        "durable_store_required: the {facet} store is '{backend}', which is ephemeral; the durable tier needs a durable store (SQLite or Postgres)"
    )]
    DurableStoreRequired {
        /// Which facet.
        facet: String,
        /// Its backend.
        backend: String,
    },
    /// The request itself is malformed.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// An input refused at the door: nothing was stored.
    #[error("{code}: {message}")]
    InvalidInput {
        /// `invalid_input` or `payload_too_large`.
        code: ErrorCode,
        /// What is wrong with it.
        message: String,
    },
    /// A store call outside any step failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl EngineError {
    /// The stable machine code.
    pub fn code(&self) -> ErrorCode {
        match self {
            EngineError::Journal(e) => e.code(),
            EngineError::DurableStoreRequired { .. } => ErrorCode::DurableStoreRequired,
            EngineError::InvalidRequest(_) => ErrorCode::InvalidRequest,
            EngineError::InvalidInput { code, .. } => *code,
            EngineError::Store(e) => e.code(),
        }
    }

    /// Whether running the turn again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            EngineError::Journal(e) => e.is_retryable(),
            EngineError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }

    /// Whether the turn parked on a wait (inline tier): its steps are kept
    /// and `resume` continues it once the wait is decided.
    pub fn is_parked(&self) -> bool {
        self.code() == ErrorCode::TurnParked
    }
}

/// What every phase of one turn shares.
pub struct TurnCx<'a> {
    /// The runtime.
    pub rt: &'a Runtime,
    /// The journal.
    pub journal: &'a dyn Journal,
    /// The session.
    pub session: &'a SessionId,
    /// This turn (a frame's own id for an agent frame).
    pub turn: &'a TurnId,
    /// 0 for the root turn, n for the nth agent frame.
    pub frame: u32,
    /// The cancel signal.
    pub cancel: &'a CancelToken,
    /// When this process last saw the lease good until (ms; 0 = unknown).
    pub lease_until: &'a AtomicU64,
    /// How many steps this run of the turn has answered from the journal
    /// so far (a retried or resumed invocation replays its recorded steps).
    pub replayed: &'a std::sync::atomic::AtomicU32,
    /// The frame's history tail, read once.
    pub history: &'a context::HistoryTail,
}

tokio::task_local! {
    /// Calls tried again inside the step being run.
    static STEP_RETRIES: std::cell::Cell<u32>;
}

/// Notes, inside a step, that a model or tool call is tried again.
pub(crate) fn note_retry(kind: &str) {
    let _ = STEP_RETRIES.try_with(|c| c.set(c.get() + 1));
    crate::metrics::retried(kind);
}

impl TurnCx<'_> {
    /// Keeps the turn's lease alive before an effect: renews it unless this
    /// process renewed it recently (more than half the TTL is left), so a
    /// turn does not pay a store write per effect. Expiry is what lets
    /// another owner in, and the commit's fence check still catches one.
    /// Called only inside step bodies: the clock read is part of the step.
    pub async fn keep_lease(&self, lease: &crate::store::Lease) -> Result<(), StepError> {
        let ttl = self.rt.config.lease_ttl_ms;
        let now = self.rt.clock.now_ms();
        let until = self.lease_until.load(Ordering::SeqCst);
        if until > now.saturating_add(ttl / 2) {
            return Ok(());
        }
        let renewed = self
            .rt
            .store
            .renew_lease(lease, ttl)
            .await
            .map_err(step_err)?;
        self.lease_until
            .store(renewed.expires_at_ms, Ordering::SeqCst);
        Ok(())
    }

    /// What plugins see of this turn.
    pub fn turn_info<'s>(&'s self, settings: &'s crate::store::SessionSettings) -> TurnInfo<'s> {
        TurnInfo {
            session_id: self.session.as_str(),
            turn_id: self.turn.as_str(),
            settings,
        }
    }

    /// The journal name of a step: frames prefix theirs so that one
    /// invocation's journal never holds two steps of the same name.
    pub fn step_name(&self, base: StepName) -> StepName {
        base.in_frame(self.frame)
    }

    /// Runs a step, passing the fault points before and after it. A record
    /// over `max_step_record_bytes` fails the step terminally, before the
    /// journal ever sees it (`run_step` measures the record it wrote).
    pub async fn step<T, F>(
        &self,
        base: StepName,
        input_hash: &str,
        body: F,
    ) -> Result<T, JournalError>
    where
        T: Serialize + DeserializeOwned + Send,
        F: Future<Output = Result<T, StepError>> + Send,
    {
        let name = self.step_name(base).to_string();
        let max = self.rt.config.max_step_record_bytes;
        let ran = std::sync::atomic::AtomicBool::new(false);
        let (ran_ref, name_ref) = (&ran, name.as_str());
        let capped = async move {
            ran_ref.store(true, Ordering::Relaxed);
            let started_at_ms = self.rt.clock.now_ms();
            let counted = async { (body.await, STEP_RETRIES.with(|c| c.get())) };
            let (out, retries) = STEP_RETRIES.scope(std::cell::Cell::new(0), counted).await;
            let out = out?;
            if self.rt.config.live_events {
                // The timeline's bar: when the step ran here, its retries,
                // and how many steps this run replayed before it.
                let kind = crate::model::EventKind::StepRan {
                    step: name_ref.to_string(),
                    started_at_ms,
                    finished_at_ms: self.rt.clock.now_ms(),
                    retries,
                    replayed_before: self.replayed.load(Ordering::Relaxed),
                };
                append_live(self, &format!("{name_ref}:ran"), kind).await?;
            }
            Ok(out)
        };
        fault::point("before", &name);
        let out = run_step(self.journal, self.turn, &name, input_hash, max, capped).await;
        if !ran.load(Ordering::Relaxed) {
            self.replayed.fetch_add(1, Ordering::Relaxed);
        }
        let out = out?;
        fault::point("after", &name);
        fault::pause("after", &name).await;
        Ok(out)
    }
}

/// A terminal step failure that the turn can record as `RuntimeError` and
/// still commit: anything but a lost lease (another owner runs the session)
/// or a journal mismatch (this build cannot replay the turn).
pub(crate) fn runtime_failure(e: &JournalError) -> Option<String> {
    match e {
        JournalError::Step(StepError::Terminal { code, message })
            if *code != ErrorCode::SessionExecutionLeaseLost && *code != ErrorCode::TurnParked =>
        {
            Some(format!("{code}: {message}"))
        }
        JournalError::Decode { step, message } => Some(format!("step '{step}': {message}")),
        JournalError::Store(e)
            if !e.is_retryable() && !matches!(e, StoreError::LeaseLost { .. }) =>
        {
            Some(format!("{}: {e}", e.code()))
        }
        _ => None,
    }
}

/// What a turn that did not run tells the session service: its input has
/// already committed (as the turn named), or an earlier input must run first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Deferred {
    /// The input committed before; the message is its turn id.
    AlreadyCommitted(String),
    /// An earlier input of the session is still live.
    NotNext,
}

impl EngineError {
    /// The deferral this error signals, if it is one.
    pub fn deferred(&self) -> Option<Deferred> {
        match self {
            EngineError::Journal(JournalError::Step(StepError::Terminal { code, message })) => {
                match code {
                    ErrorCode::InputAlreadyCommitted => {
                        Some(Deferred::AlreadyCommitted(message.clone()))
                    }
                    ErrorCode::InputNotNext => Some(Deferred::NotNext),
                    _ => None,
                }
            }
            _ => None,
        }
    }
}

/// The hash of a step's input; a value that does not serialize fails the
/// step terminally (`journal_encode`).
pub(crate) fn input_hash<T: Serialize + ?Sized>(value: &T) -> Result<String, JournalError> {
    crate::hash::digest(value).map_err(|e| {
        JournalError::Step(StepError::Terminal {
            code: ErrorCode::JournalEncode,
            message: e.to_string(),
        })
    })
}

/// Appends an event a step makes while the turn runs: its id is
/// `{turn}:{step}`, so a re-run step adds it once.
pub(crate) async fn append_live(
    cx: &TurnCx<'_>,
    step: &str,
    kind: crate::model::EventKind,
) -> Result<(), StepError> {
    let event = crate::model::SessionEvent {
        id: format!("{}:{step}", cx.turn),
        turn_id: cx.turn.to_string(),
        kind,
    };
    cx.rt
        .store
        .append_events(cx.session, &[event])
        .await
        .map_err(step_err)
}

/// Maps a store error inside a step to a step error.
pub(crate) fn step_err(e: StoreError) -> StepError {
    StepError::from(e)
}
