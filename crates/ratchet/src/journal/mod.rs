//! The journal: named steps that run once and are recorded, so that a turn
//! re-run after a crash gets every completed step's result back instead of
//! running it again.
//!
//! Backends: [`MemoryJournal`] (records in memory), [`CheckpointJournal`]
//! (the inline tier: records in the store's checkpoints), [`ReplayJournal`]
//! (serves a [`Recording`], failing at the first divergent step). The Restate
//! backend lives in `crate::restate`.

mod checkpoint;
pub mod divergence;
mod memory;
mod replay;
mod step_name;

pub use checkpoint::CheckpointJournal;
pub use divergence::Divergence;
pub use memory::MemoryJournal;
pub use replay::ReplayJournal;
pub use step_name::{StepName, StepNameError};

use crate::ErrorCode;
use crate::model::TurnId;
use crate::store::StoreError;
use async_trait::async_trait;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tracing::Instrument;

/// Where a journal keeps its records.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JournalTier {
    /// In-process: the runtime keeps its own progress records.
    #[default]
    Inline,
    /// The orchestrator's journal is the only record.
    Durable,
}

/// One recorded step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StepRecord {
    /// The turn the step belongs to.
    pub turn_id: String,
    /// The step name (`claim`, `model:0`, `tool:0:call_1`, ...).
    pub step: String,
    /// Hash of the step's input.
    pub input_hash: String,
    /// The step's output.
    pub output: serde_json::Value,
}

/// A recorded turn (or chain of agent-frame turns), replayable offline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Recording {
    /// Format version.
    pub format: u32,
    /// The session.
    pub session_id: String,
    /// The root turn.
    pub turn_id: String,
    /// The input id the turn claimed.
    pub input_id: String,
    /// Steps in the order they ran.
    pub steps: Vec<StepRecord>,
    /// When the invocation was cancelled: the step whose journal entry came
    /// first after the cancel signal. Its body ran and is recorded, but the
    /// turn saw it as cancelled, and settled so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<String>,
    /// The tier the turn ran on: a durable turn replays as the orchestrator
    /// ran it (a killed invocation's orphan is settled, not run again).
    /// Absent: inline.
    #[serde(default, skip_serializing_if = "JournalTier::is_inline")]
    pub tier: JournalTier,
}

impl JournalTier {
    /// Whether this is the inline tier.
    pub fn is_inline(&self) -> bool {
        *self == JournalTier::Inline
    }
}

/// The recording format this build writes and reads.
pub const RECORDING_FORMAT: u32 = 1;

/// Why a step body failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StepError {
    /// Worth running again (store unavailable, lease busy).
    #[error("{0}")]
    Retryable(String),
    /// Final.
    #[error("{code}: {message}")]
    Terminal {
        /// Stable machine code.
        code: ErrorCode,
        /// Explanation.
        message: String,
    },
}

impl StepError {
    /// The same error with its message passed through the redaction layer.
    pub fn redacted(self) -> Self {
        use crate::secrets::redact_string;
        match self {
            StepError::Retryable(m) => StepError::Retryable(redact_string(m)),
            StepError::Terminal { code, message } => StepError::Terminal {
                code,
                message: redact_string(message),
            },
        }
    }
}

impl From<StoreError> for StepError {
    fn from(e: StoreError) -> Self {
        if e.is_retryable() {
            StepError::Retryable(format!("{}: {e}", e.code()))
        } else {
            StepError::Terminal {
                code: e.code(),
                message: e.to_string(),
            }
        }
    }
}

/// Why a journal step did not produce a result.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JournalError {
    /// The recorded step differs from the one being run.
    #[error("journal_mismatch at step '{step}': expected {expected}, found {actual}")]
    Mismatch {
        /// The step being run.
        step: String,
        /// What the record says.
        expected: String,
        /// What this run did.
        actual: String,
    },
    /// The turn's invocation was cancelled by the orchestrator.
    #[error("cancelled")]
    Cancelled,
    /// The step body failed.
    #[error(transparent)]
    Step(#[from] StepError),
    /// Recording a step failed.
    #[error("journal store: {0}")]
    Store(#[from] StoreError),
    /// A recorded output does not decode as the step's type.
    #[error("step '{step}' record does not decode: {message}")]
    Decode {
        /// The step.
        step: String,
        /// The decode error.
        message: String,
    },
}

impl JournalError {
    /// The stable machine code.
    pub fn code(&self) -> ErrorCode {
        match self {
            JournalError::Mismatch { .. } => ErrorCode::JournalMismatch,
            JournalError::Cancelled => ErrorCode::Cancelled,
            JournalError::Step(StepError::Retryable(_)) => ErrorCode::StepRetryable,
            JournalError::Step(StepError::Terminal { code, .. }) => *code,
            JournalError::Store(e) => e.code(),
            JournalError::Decode { .. } => ErrorCode::JournalDecode,
        }
    }

    /// Whether running the turn again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            JournalError::Step(StepError::Retryable(_)) => true,
            JournalError::Store(e) => e.is_retryable(),
            _ => false,
        }
    }
}

/// A step's output as its record holds it: JSON text, already redacted,
/// written straight from the step's typed result (no `Value` tree).
pub type StepOutput = Box<serde_json::value::RawValue>;

/// A step body: runs at most once per recorded step.
pub type StepBody<'a> = Pin<Box<dyn Future<Output = Result<StepOutput, StepError>> + Send + 'a>>;

/// A recorded output as a JSON value (for [`StepRecord`]s and recordings).
pub fn output_value(
    name: &str,
    output: &serde_json::value::RawValue,
) -> Result<serde_json::Value, JournalError> {
    serde_json::from_str(output.get()).map_err(|e| JournalError::Decode {
        step: name.to_string(),
        message: e.to_string(),
    })
}

/// A JSON value as a recorded output.
pub fn raw_output(name: &str, value: &serde_json::Value) -> Result<StepOutput, JournalError> {
    serde_json::value::to_raw_value(value).map_err(|e| JournalError::Decode {
        step: name.to_string(),
        message: e.to_string(),
    })
}

/// How a durable wait ended, as the journal saw it.
#[derive(Clone, Debug, PartialEq)]
pub enum WaitOutcome {
    /// The wait's promise was resolved with this value.
    Resolved(serde_json::Value),
    /// Its timeout passed first.
    Expired,
    /// This journal does not wait: the store holds the decision, and the
    /// turn reads it (and the clock) inside its next step.
    Check,
}

/// A durable wait's completion.
pub type WaitFuture<'a> =
    Pin<Box<dyn Future<Output = Result<WaitOutcome, JournalError>> + Send + 'a>>;

/// Runs named steps once and records them.
#[async_trait]
pub trait Journal: Send + Sync {
    /// Whether the runtime keeps its own records under this journal.
    fn tier(&self) -> JournalTier;

    /// Runs `body` as step `name` of `turn` unless it is recorded, in which
    /// case the recorded output is returned (after checking `input_hash`).
    async fn step(
        &self,
        turn: &TurnId,
        name: &str,
        input_hash: &str,
        body: StepBody<'_>,
    ) -> Result<StepOutput, JournalError>;

    /// A durable promise for the wait named `name` (its place in the turn,
    /// like a step's name): the id a decision names it by, and a future
    /// that ends with the value it is resolved with, or `Expired` once
    /// `timeout` has passed. Create it before the step that announces the
    /// id, await it after. On the orchestrator the invocation suspends
    /// meanwhile, holding no compute. The default, for journals that keep
    /// the turn in this process, names the wait `{turn}:{name}` and answers
    /// `Check` at once: the turn then reads the decision from the store,
    /// and parks while there is none.
    fn promise(&self, turn: &TurnId, name: &str, timeout: Duration) -> (String, WaitFuture<'_>) {
        let _ = timeout;
        (
            format!("{turn}:{name}"),
            Box::pin(async { Ok(WaitOutcome::Check) }),
        )
    }
}

/// Runs a typed step through a journal. An output whose record would be
/// over `max_bytes` fails the step terminally (`step_record_too_large`)
/// instead of reaching the journal.
pub async fn run_step<T, F>(
    journal: &dyn Journal,
    turn: &TurnId,
    name: &str,
    input_hash: &str,
    max_bytes: usize,
    body: F,
) -> Result<T, JournalError>
where
    T: Serialize + DeserializeOwned,
    F: Future<Output = Result<T, StepError>> + Send,
{
    // The redaction layer sits here, between every effect and its record:
    // what the step returns, and why it failed, are scrubbed of secrets
    // before the journal (and so the store, events and replies) sees them.
    let span = tracing::debug_span!(
        "step",
        otel.name = %format!("step {name}"),
        step = %name,
        turn_id = %turn,
        replayed = tracing::field::Empty,
    );
    let ran = std::sync::atomic::AtomicBool::new(false);
    let ran_ref = &ran;
    let body: StepBody<'_> = Box::pin(async move {
        ran_ref.store(true, std::sync::atomic::Ordering::Relaxed);
        // Inside the step: observability only, never recorded.
        let started = std::time::Instant::now();
        let out = body.await;
        crate::metrics::step_ran(name, started.elapsed().as_secs_f64());
        let out = out.map_err(StepError::redacted)?;
        // Written once, redacted string by string as it is written.
        let output =
            serde_json::value::to_raw_value(&crate::secrets::Redacted(&out)).map_err(|e| {
                StepError::Terminal {
                    code: ErrorCode::JournalEncode,
                    message: e.to_string(),
                }
            })?;
        let size = output.get().len();
        if size > max_bytes {
            return Err(StepError::Terminal {
                code: ErrorCode::StepRecordTooLarge,
                message: format!(
                    "the step's record is {size} bytes, over the limit of {max_bytes}"
                ),
            });
        }
        Ok(output)
    });
    let value = journal
        .step(turn, name, input_hash, body)
        .instrument(span.clone())
        .await;
    // Recorded before: the body never ran here.
    let replayed = !ran.load(std::sync::atomic::Ordering::Relaxed);
    span.record("replayed", replayed);
    if replayed && value.is_ok() {
        crate::metrics::step_replayed(name);
    }
    let output = value?;
    serde_json::from_str(output.get()).map_err(|e| JournalError::Decode {
        step: name.to_string(),
        message: e.to_string(),
    })
}

/// Checks a recorded step against the one being run.
pub fn check_record(
    record: &StepRecord,
    turn: &TurnId,
    name: &str,
    input_hash: &str,
) -> Result<(), JournalError> {
    let recorded = (
        record.turn_id.as_str(),
        record.step.as_str(),
        record.input_hash.as_str(),
    );
    check_identity(recorded, turn, name, input_hash)
}

/// Checks a recorded step's `(turn id, step, input hash)` against the one
/// being run.
pub fn check_identity(
    (turn_id, step, hash): (&str, &str, &str),
    turn: &TurnId,
    name: &str,
    input_hash: &str,
) -> Result<(), JournalError> {
    if turn_id != turn.as_str() || step != name {
        return Err(JournalError::Mismatch {
            step: name.to_string(),
            expected: format!("step '{step}' of turn '{turn_id}'"),
            actual: format!("step '{name}' of turn '{turn}'"),
        });
    }
    if hash != input_hash {
        return Err(JournalError::Mismatch {
            step: name.to_string(),
            expected: format!("input hash {hash}"),
            actual: format!("input hash {input_hash}"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Out {
        text: String,
        tags: BTreeMap<String, u32>,
    }

    fn run<'a>(
        journal: &'a dyn Journal,
        turn: &'a TurnId,
        out: Out,
        max: usize,
    ) -> impl Future<Output = Result<Out, JournalError>> + 'a {
        run_step(journal, turn, "model:0", "h0", max, async move { Ok(out) })
    }

    /// What a step returns is redacted in its record and in what the turn
    /// gets back, and a recording of it replays to the same value.
    #[tokio::test]
    async fn a_step_record_is_written_redacted_and_replays_as_written() {
        crate::secrets::register("TEST_JOURNAL_KEY", "sk-journal-77aa88bb").unwrap();
        let turn = TurnId::new("t-journal").unwrap();
        let journal = MemoryJournal::new();
        let out = Out {
            text: "key sk-journal-77aa88bb".into(),
            tags: BTreeMap::from([("b".into(), 2), ("a".into(), 1)]),
        };
        let got = run(&journal, &turn, out, usize::MAX).await.unwrap();
        assert_eq!(got.text, format!("key {}", crate::secrets::MASK));
        let records = journal.records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].output["text"], got.text.as_str());
        assert_eq!(
            records[0].output["tags"],
            serde_json::json!({"a": 1, "b": 2})
        );

        let recording = Recording {
            format: RECORDING_FORMAT,
            session_id: "s".into(),
            turn_id: turn.to_string(),
            input_id: "i".into(),
            steps: records,
            cancelled_at: None,
            tier: JournalTier::Inline,
        };
        let replay = ReplayJournal::new(&recording);
        let unused = Out {
            text: "never recorded".into(),
            tags: BTreeMap::new(),
        };
        let replayed = run(&replay, &turn, unused, usize::MAX).await.unwrap();
        assert_eq!(replayed, got);
    }

    /// The cap measures the record as written: one byte over fails the
    /// step terminally and the journal records nothing.
    #[tokio::test]
    async fn a_record_over_the_cap_fails_before_the_journal_sees_it() {
        let turn = TurnId::new("t-cap").unwrap();
        let out = || Out {
            text: "x".repeat(100),
            tags: BTreeMap::new(),
        };
        let size = serde_json::to_string(&out()).unwrap().len();
        let journal = MemoryJournal::new();
        assert!(run(&journal, &turn, out(), size).await.is_ok());
        let over = MemoryJournal::new();
        let err = run(&over, &turn, out(), size - 1).await.unwrap_err();
        assert_eq!(err.code(), ErrorCode::StepRecordTooLarge);
        assert!(err.to_string().contains(&format!("{size} bytes")), "{err}");
        assert!(over.records().is_empty());
    }
}
