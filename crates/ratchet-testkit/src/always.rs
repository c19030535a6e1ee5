//! `always_replay`: runs a turn the way Restate's always-replay test mode
//! runs a handler. After every step the turn is suspended — its future
//! dropped, as a dead process leaves it — and executed again from the top,
//! on an agent built afresh, with every step so far served from the
//! journal. Each re-execution must ask for the same steps with the same
//! inputs; the first that does not names the step where the code between
//! steps is nondeterministic (a clock read, a random id, a `HashMap`'s
//! iteration order, a tool set that depends on the process).
//!
//! The journal is the durable tier's: the runtime keeps no records of its
//! own, and the store (in memory) is the only other state that survives a
//! re-execution. A step that fails terminally is journaled as failed and
//! served so again, as Restate does; one that fails retryably is not
//! recorded, and the next execution runs it again (at most
//! five times in a row).
//!
//! ```no_run
//! # use std::sync::Arc;
//! # fn my_agent(store: Arc<dyn ratchet::store::SessionStore>) -> ratchet::Agent {
//! #     ratchet::Agent::new("billing").store(store)
//! # }
//! #[tokio::test]
//! async fn turns_are_deterministic_between_steps() {
//!     let input = ratchet::model::TurnInput::text("charge my card");
//!     let report = ratchet_testkit::always::always_replay(my_agent, "alice", &[input])
//!         .await
//!         .unwrap();
//!     assert!(report.re_executions > 5);
//! }
//! ```

use async_trait::async_trait;
use ratchet::Agent;
use ratchet::engine::{CancelToken, EngineError, RunMode, TurnRequest, TurnResult, run_turn};
use ratchet::journal::divergence::StepAt;
use ratchet::journal::{
    Divergence, Journal, JournalError, JournalTier, StepBody, StepError, StepOutput, StepRecord,
    check_record, output_value,
};
use ratchet::model::{SessionId, TurnId, TurnInput};
use ratchet::store::{MemoryStore, SessionStore};
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Re-executions, over all turns, before the runner gives up.
const MAX_RE_EXECUTIONS: usize = 10_000;

/// Times in a row one step may fail retryably before the run fails (Restate
/// would go on retrying the invocation).
const MAX_RETRIES: usize = 5;

/// A clean always-replay run.
#[derive(Clone, Debug)]
pub struct AlwaysReplayReport {
    /// Each turn's result, in input order.
    pub turns: Vec<TurnResult>,
    /// Each turn's steps, in order.
    pub steps: Vec<Vec<String>>,
    /// Executions from the top, over all turns.
    pub re_executions: usize,
}

/// Why an always-replay run failed.
#[derive(Debug, thiserror::Error)]
pub enum AlwaysReplayError {
    /// A re-execution asked for another step, or the same step with another
    /// input, than the journal holds.
    #[error(
        "nondeterminism at step '{step}' of turn {turn} (re-execution {re_execution}, after {after} recorded steps): {}",
        divergence.describe()
    )]
    Nondeterministic {
        /// The step where it shows.
        step: String,
        /// Which input's turn (0-based).
        turn: usize,
        /// Which execution from the top found it (1: the first replay).
        re_execution: usize,
        /// Steps the journal held then.
        after: usize,
        /// Both steps and the fields that differ.
        divergence: Divergence,
    },
    /// The agent is incomplete.
    #[error("{0}")]
    Agent(#[from] ratchet::AgentError),
    /// The turn failed for another reason.
    #[error("{0}")]
    Engine(#[from] EngineError),
    /// The turns kept asking for new steps.
    #[error("the turns were still running after {MAX_RE_EXECUTIONS} re-executions")]
    Endless,
    /// A step kept failing with a retryable error.
    #[error("step '{step}' failed retryably {MAX_RETRIES} times in a row: {message}")]
    KeptFailing {
        /// The step.
        step: String,
        /// Its last error.
        message: String,
    },
}

/// A step as the journal holds it: its identity and how it ended (a
/// terminal failure is journaled and served again, as Restate does).
#[derive(Clone)]
struct Recorded {
    at: StepRecord,
    outcome: Result<StepOutput, StepError>,
}

/// What the live step of one execution left.
enum Fresh {
    /// Recorded: the next execution serves it.
    Recorded(Recorded),
    /// Failed retryably: not recorded; the next execution runs it again.
    Retry { step: String, message: String },
}

/// Serves the journal so far, runs the next step live, records it and
/// suspends: the step's future never completes, and the runner drops it.
struct Stepwise {
    records: Vec<Recorded>,
    cursor: Mutex<usize>,
    fresh: Mutex<Option<Fresh>>,
    divergence: Mutex<Option<Divergence>>,
    recorded: Notify,
}

#[async_trait]
impl Journal for Stepwise {
    fn tier(&self) -> JournalTier {
        JournalTier::Durable
    }

    async fn step(
        &self,
        turn: &TurnId,
        name: &str,
        input_hash: &str,
        body: StepBody<'_>,
    ) -> Result<StepOutput, JournalError> {
        let at = {
            let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
            let at = *cursor;
            *cursor += 1;
            at
        };
        let at_step = StepRecord {
            turn_id: turn.to_string(),
            step: name.to_string(),
            input_hash: input_hash.to_string(),
            output: serde_json::Value::Null,
        };
        if let Some(record) = self.records.get(at) {
            if let Err(e) = check_record(&record.at, turn, name, input_hash) {
                let ran = StepAt::of(&at_step);
                *self.divergence.lock().unwrap_or_else(|e| e.into_inner()) =
                    Some(Divergence::at(at, Some(StepAt::of(&record.at)), Some(ran)));
                return Err(e);
            }
            return record.outcome.clone().map_err(JournalError::Step);
        }
        let fresh = match body.await {
            Err(StepError::Retryable(message)) => Fresh::Retry {
                step: name.to_string(),
                message,
            },
            outcome => {
                let output = match &outcome {
                    Ok(raw) => output_value(name, raw)?,
                    Err(_) => serde_json::Value::Null,
                };
                Fresh::Recorded(Recorded {
                    at: StepRecord { output, ..at_step },
                    outcome,
                })
            }
        };
        *self.fresh.lock().unwrap_or_else(|e| e.into_inner()) = Some(fresh);
        self.recorded.notify_one();
        std::future::pending().await
    }
}

/// Runs `inputs` as consecutive turns of session `session`, each in
/// always-replay mode, on an agent `make` builds from the store it is
/// given — afresh for every execution, as a restarted process would.
pub async fn always_replay<F>(
    make: F,
    session: &str,
    inputs: &[TurnInput],
) -> Result<AlwaysReplayReport, AlwaysReplayError>
where
    F: Fn(Arc<dyn SessionStore>) -> Agent,
{
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let session_id =
        SessionId::new(session).map_err(|e| EngineError::InvalidRequest(e.to_string()))?;
    let mut report = AlwaysReplayReport {
        turns: Vec::new(),
        steps: Vec::new(),
        re_executions: 0,
    };
    for (k, input) in inputs.iter().enumerate() {
        let rt = make(store.clone()).runtime()?;
        let admitted = ratchet::engine::admit(input.clone(), rt.config.max_input_bytes, || {
            format!("in-{}", k + 1)
        })?;
        let request = TurnRequest {
            session_id: session_id.clone(),
            input_id: admitted.input_id.clone(),
            enqueue: Some(admitted.input.clone()),
            turn_id: admitted.turn_id.clone(),
            owner: format!("always-replay-{k}"),
        };
        let mut records: Vec<Recorded> = Vec::new();
        let mut retries = 0;
        let result = loop {
            if report.re_executions >= MAX_RE_EXECUTIONS {
                return Err(AlwaysReplayError::Endless);
            }
            let execution = records.len();
            report.re_executions += 1;
            let rt = make(store.clone()).runtime()?;
            let journal = Stepwise {
                records: records.clone(),
                cursor: Mutex::new(0),
                fresh: Mutex::new(None),
                divergence: Mutex::new(None),
                recorded: Notify::new(),
            };
            let cancel = CancelToken::new();
            let run = run_turn(&rt, &journal, &request, &cancel, RunMode::Live);
            let nondeterministic = |d: Divergence| AlwaysReplayError::Nondeterministic {
                step: d
                    .ran
                    .as_ref()
                    .or(d.recorded.as_ref())
                    .map(|s| s.step.clone())
                    .unwrap_or_default(),
                turn: k,
                re_execution: execution,
                after: records.len(),
                divergence: d,
            };
            tokio::select! {
                done = run => match done {
                    Ok(result) => {
                        let served = *journal.cursor.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(left) = records.get(served) {
                            let d = Divergence::at(served, Some(StepAt::of(&left.at)), None);
                            return Err(nondeterministic(d));
                        }
                        break result;
                    }
                    Err(EngineError::Journal(JournalError::Mismatch { .. })) => {
                        let d = journal
                            .divergence
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .take()
                            .unwrap_or_else(|| Divergence::at(0, None, None));
                        return Err(nondeterministic(d));
                    }
                    Err(e) => return Err(e.into()),
                },
                _ = journal.recorded.notified() => {
                    match journal.fresh.lock().unwrap_or_else(|e| e.into_inner()).take() {
                        Some(Fresh::Recorded(r)) => {
                            records.push(r);
                            retries = 0;
                        }
                        Some(Fresh::Retry { step, message }) => {
                            retries += 1;
                            if retries >= MAX_RETRIES {
                                return Err(AlwaysReplayError::KeptFailing { step, message });
                            }
                        }
                        None => {}
                    }
                }
            }
        };
        report
            .steps
            .push(records.iter().map(|r| r.at.step.clone()).collect());
        report.turns.push(result);
    }
    Ok(report)
}
