//! The inline tier: turns run in this process, their steps checkpointed in
//! the store, so a turn whose process died can be resumed and any turn can
//! be exported as a recording and replayed offline.

use super::{
    CancelToken, EngineError, RunMode, Runtime, Sessions, StoreReads, TurnRequest, TurnResult,
    run_turn,
};
use crate::journal::{
    CheckpointJournal, Divergence, JournalError, RECORDING_FORMAT, Recording, ReplayJournal,
    StepName, StepRecord,
};
use crate::model::{SessionId, TurnId, TurnInput};
use crate::store::{Enqueued, StoreError};
use std::sync::Arc;

/// Runs turns in-process as one lease owner.
pub struct InlineRunner {
    rt: Runtime,
    owner: String,
}

/// The result of replaying a recording.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum ReplayReport {
    /// Every step matched and every recorded step was used.
    Ok {
        /// Steps replayed.
        steps: usize,
    },
    /// The first step that differs.
    Diverged {
        /// The step.
        step: String,
        /// What the recording holds.
        expected: String,
        /// What this build did.
        actual: String,
        /// Both steps' identities and the fields that differ.
        divergence: Box<Divergence>,
    },
}

impl InlineRunner {
    /// A runner; `owner` names this process in leases.
    pub fn new(rt: Runtime, owner: impl Into<String>) -> Self {
        InlineRunner {
            rt,
            owner: owner.into(),
        }
    }

    /// A lease owner name for this process: `inline:{host}:{pid}:{nonce}`,
    /// so `resume` can tell whether the owner of a dead turn is still alive.
    pub fn process_owner() -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        format!(
            "inline:{}:{}:{}",
            hostname(),
            std::process::id(),
            &nonce[..8]
        )
    }

    /// The runtime.
    pub fn runtime(&self) -> &Runtime {
        &self.rt
    }

    /// Adds an input to the session's inbox (idempotent by input id; a
    /// fresh id is made when the input has none). Refuses, with nothing
    /// stored, an input that could never run (see [`super::admit`]), one
    /// whose id names other content, and a turn id already taken.
    pub async fn submit(
        &self,
        session: &SessionId,
        input: TurnInput,
    ) -> Result<Enqueued, EngineError> {
        let entry = self.admit(input)?.into_entry();
        Ok(self.rt.store.enqueue(session, entry).await?)
    }

    /// Adds a user message to the session's running turn, in this process
    /// or another on the same store: its next model call takes it. With no
    /// turn running (or none that calls the model again) it stays queued
    /// and runs as an ordinary input, in its FIFO place. The same checks as
    /// [`Self::submit`].
    pub async fn steer(
        &self,
        session: &SessionId,
        input: TurnInput,
    ) -> Result<Enqueued, EngineError> {
        let entry = self.admit(input)?.into_steer_entry();
        Ok(self.rt.store.enqueue(session, entry).await?)
    }

    /// Queues a session command; it applies when the next input is
    /// claimed. Idempotent by `command_id` (a fresh id when absent).
    pub async fn configure(
        &self,
        session: &SessionId,
        command: crate::model::SessionCommand,
        command_id: Option<String>,
    ) -> Result<Enqueued, EngineError> {
        let max = self.rt.config.max_input_bytes;
        let entry = super::admit_command(command, command_id, max, || {
            format!("cmd-{}", uuid::Uuid::new_v4())
        })?;
        Ok(self.rt.store.enqueue(session, entry).await?)
    }

    fn admit(&self, input: TurnInput) -> Result<super::Admitted, EngineError> {
        super::admit(input, self.rt.config.max_input_bytes, || {
            format!("in-{}", uuid::Uuid::new_v4())
        })
    }

    fn sessions<'a>(
        &'a self,
        journal: &'a CheckpointJournal,
        reads: &'a StoreReads<'a>,
        cancel: &'a CancelToken,
    ) -> Sessions<'a> {
        Sessions {
            rt: &self.rt,
            journal,
            reads,
            owner: &self.owner,
            cancel,
        }
    }

    /// Enqueues `input` and runs it as a turn now, after any earlier
    /// inputs of the session. An input id that already committed answers
    /// with the committed result; nothing runs again.
    pub async fn turn(
        &self,
        session: &SessionId,
        input: TurnInput,
        cancel: &CancelToken,
    ) -> Result<TurnResult, EngineError> {
        let enqueued = self.submit(session, input).await?;
        let turn_id = TurnId::new(
            enqueued
                .entry
                .turn_id
                .clone()
                .unwrap_or_else(|| format!("turn-{}", enqueued.entry.id)),
        )
        .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
        let journal = CheckpointJournal::new(self.rt.store.clone(), session.clone());
        let reads = StoreReads(&self.rt);
        self.sessions(&journal, &reads, cancel)
            .run_input(session, &enqueued.entry.id, &turn_id, None)
            .await
    }

    /// Runs pending inputs, oldest first, until none is left or `cancel`
    /// fires: the turn running then commits `Stopped(Cancelled)` and the
    /// rest stay pending.
    pub async fn drain(
        &self,
        session: &SessionId,
        cancel: &CancelToken,
    ) -> Result<Vec<TurnResult>, EngineError> {
        let journal = CheckpointJournal::new(self.rt.store.clone(), session.clone());
        let reads = StoreReads(&self.rt);
        let sessions = self.sessions(&journal, &reads, cancel);
        let mut done = Vec::new();
        while !cancel.is_cancelled() {
            match sessions.run_next(session).await? {
                Some(result) => done.push(result),
                None => break,
            }
        }
        Ok(done)
    }

    /// Finishes turns whose process died, from their checkpoints: completed
    /// steps are not run again. Refuses while the dead turn's lease is live
    /// (its process may still be running) unless `force`.
    pub async fn resume(
        &self,
        session: &SessionId,
        force: bool,
    ) -> Result<Vec<TurnResult>, EngineError> {
        let mut resumed = Vec::new();
        for turn in self.rt.store.unfinished_turns(session).await? {
            let root = TurnId::new(
                TurnId::new(&turn)
                    .map_err(|e| EngineError::InvalidRequest(e.to_string()))?
                    .root(),
            )
            .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
            let recording = self.recording(session, &root).await?;
            let claim = recording
                .steps
                .first()
                .filter(|s| s.step.parse() == Ok(StepName::Claim))
                .ok_or_else(|| {
                    EngineError::InvalidRequest(format!("turn '{root}' has no claim record"))
                })?;
            let owner = claim.output["lease"]["owner"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let fence = claim.output["lease"]["fence"].as_u64().unwrap_or_default();
            if let Some(lease) = self.rt.store.current_lease(session).await?
                && lease.fence == fence
                && lease.expires_at_ms > self.rt.clock.now_ms()
                && !force
                && !owner_is_dead(&owner)
            {
                return Err(EngineError::Store(StoreError::SessionBusy {
                    session: session.to_string(),
                    expires_in_ms: lease.expires_at_ms - self.rt.clock.now_ms(),
                }));
            }
            // The resumed turn acts as its original owner: the replayed claim
            // step hands back that lease, still current unless taken over.
            let request = TurnRequest {
                session_id: session.clone(),
                input_id: recording.input_id.clone(),
                turn_id: root.clone(),
                owner,
                enqueue: None,
            };
            let journal = CheckpointJournal::new(self.rt.store.clone(), session.clone());
            resumed.push(
                run_turn(
                    &self.rt,
                    &journal,
                    &request,
                    &CancelToken::new(),
                    RunMode::Live,
                )
                .await?,
            );
        }
        Ok(resumed)
    }

    /// A turn (with its agent frames) as a recording, from its checkpoints.
    pub async fn recording(
        &self,
        session: &SessionId,
        root: &TurnId,
    ) -> Result<Recording, EngineError> {
        let mut steps: Vec<StepRecord> = Vec::new();
        for n in 0..=self.rt.config.max_frames {
            let turn = super::driver::frame_turn_id(root, n);
            let rows = self.rt.store.checkpoints(session, turn.as_str()).await?;
            if rows.is_empty() {
                break;
            }
            for row in rows {
                steps.push(serde_json::from_value(row.record).map_err(|e| {
                    EngineError::Journal(JournalError::Decode {
                        step: row.step.clone(),
                        message: e.to_string(),
                    })
                })?);
            }
        }
        let input_id = steps
            .first()
            .and_then(|s| s.output["claimed_ids"].as_array())
            .and_then(|ids| ids.last())
            .and_then(|v| v.as_str())
            .ok_or_else(|| {
                EngineError::InvalidRequest(format!("no recorded claim for turn '{root}'"))
            })?
            .to_string();
        Ok(Recording {
            format: RECORDING_FORMAT,
            session_id: session.to_string(),
            turn_id: root.to_string(),
            input_id,
            steps,
            cancelled_at: None,
            tier: crate::journal::JournalTier::Inline,
        })
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Whether an inline owner names a process on this host that has exited.
fn owner_is_dead(owner: &str) -> bool {
    let mut parts = owner.split(':');
    let (Some("inline"), Some(host), Some(pid)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let Ok(pid) = pid.parse::<i32>() else {
        return false;
    };
    if host != hostname() || pid <= 0 {
        return false;
    }
    // SAFETY: kill with signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0
        || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM);
    !alive
}

/// Replays a recording against this build with every step served from it.
/// `rt` supplies configuration and tools; no effect runs and nothing is
/// written.
pub async fn replay(rt: &Runtime, recording: &Recording) -> Result<ReplayReport, EngineError> {
    if recording.format != RECORDING_FORMAT {
        return Err(EngineError::InvalidRequest(format!(
            "recording format {} is not supported (this build reads {RECORDING_FORMAT})",
            recording.format
        )));
    }
    let session = SessionId::new(&recording.session_id)
        .map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
    let turn_id =
        TurnId::new(&recording.turn_id).map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
    if recording.steps.is_empty() {
        return Err(EngineError::InvalidRequest(
            "the recording has no steps: there is nothing to replay".into(),
        ));
    }
    let own = |t: &str| {
        t == recording.turn_id
            || t.strip_prefix(recording.turn_id.as_str())
                .is_some_and(|rest| rest.starts_with(':'))
    };
    if let Some(stray) = recording.steps.iter().find(|s| !own(&s.turn_id)) {
        return Err(EngineError::InvalidRequest(format!(
            "the recording's step '{}' belongs to turn '{}', not to the recorded turn '{}'",
            stray.step, stray.turn_id, recording.turn_id
        )));
    }
    let journal = ReplayJournal::new(recording);
    let mut offline = rt.clone();
    offline.store = Arc::new(crate::store::MemoryStore::new());
    let request = TurnRequest {
        session_id: session,
        input_id: recording.input_id.clone(),
        turn_id,
        owner: "replay".into(),
        enqueue: None,
    };
    match run_turn(
        &offline,
        &journal,
        &request,
        &CancelToken::new(),
        RunMode::Replay,
    )
    .await
    {
        Ok(_) => match journal.ended_early() {
            Some(divergence) => {
                let left = journal.unconsumed();
                Ok(ReplayReport::Diverged {
                    step: left[0].clone(),
                    expected: format!("step '{}' (and {} more) to run", left[0], left.len() - 1),
                    actual: "the turn ended before it".into(),
                    divergence: Box::new(divergence),
                })
            }
            None => Ok(ReplayReport::Ok {
                steps: recording.steps.len(),
            }),
        },
        Err(EngineError::Journal(JournalError::Mismatch {
            step,
            expected,
            actual,
        })) => Ok(ReplayReport::Diverged {
            step,
            expected,
            actual,
            divergence: Box::new(
                journal
                    .divergence()
                    .unwrap_or_else(|| Divergence::at(0, None, None)),
            ),
        }),
        Err(e) => Err(e),
    }
}
