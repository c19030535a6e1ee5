//! The durable tier's journal: every step is a named `ctx.run`, so the
//! Restate orchestrator records its result and, when it re-invokes the
//! handler after a crash, returns that record instead of running the step.
//! Each record carries the step's input hash; a replay whose hash differs
//! fails terminally with `journal_mismatch` naming the step.

use crate::ErrorCode;
use crate::journal::{
    Journal, JournalError, JournalTier, StepBody, StepError, StepOutput, WaitFuture, WaitOutcome,
    check_identity,
};
use crate::model::TurnId;
use async_trait::async_trait;
use restate_sdk::prelude::*;
use serde::{Deserialize, Serialize};

/// A step's entry in Restate's journal: the step's identity, checked on
/// replay, and its output as the step wrote it (copied, never re-parsed
/// into a tree). The same JSON as a [`crate::journal::StepRecord`].
#[derive(Serialize, Deserialize)]
struct DurableStep {
    turn_id: String,
    step: String,
    input_hash: String,
    output: StepOutput,
}

/// Status code Restate uses for a cancelled invocation.
const CANCELLED: u16 = 409;

/// A journal whose steps are `ctx.run` calls of one Restate invocation.
pub struct RestateJournal<'a> {
    ctx: &'a ObjectContext<'a>,
}

impl<'a> RestateJournal<'a> {
    /// A journal over an exclusive handler's context.
    pub fn new(ctx: &'a ObjectContext<'a>) -> Self {
        RestateJournal { ctx }
    }
}

/// Encodes a terminal step error so its code survives the journal.
fn to_terminal(code: ErrorCode, message: &str) -> TerminalError {
    TerminalError::new_with_code(500, format!("{code}: {message}"))
}

/// Decodes a terminal error recorded by [`to_terminal`].
fn from_terminal(e: &TerminalError) -> JournalError {
    if e.code() == CANCELLED {
        return JournalError::Cancelled;
    }
    let coded = e
        .message()
        .split_once(": ")
        .and_then(|(code, message)| Some((code.parse::<ErrorCode>().ok()?, message)));
    let (code, message) = coded.unwrap_or((ErrorCode::RuntimeError, e.message()));
    JournalError::Step(StepError::Terminal {
        code,
        message: message.to_string(),
    })
}

#[async_trait]
impl Journal for RestateJournal<'_> {
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
        let (turn_id, step, hash) = (turn.to_string(), name.to_string(), input_hash.to_string());
        // The context is covariant in its lifetime: a shorter borrow lets
        // the run closure capture the body, which lives only for this call.
        let ctx: &ObjectContext<'_> = self.ctx;
        let result = ctx
            .run(move || async move {
                match body.await {
                    Ok(output) => Ok(Json(DurableStep {
                        turn_id,
                        step,
                        input_hash: hash,
                        output,
                    })),
                    Err(StepError::Retryable(m)) => Err(HandlerError::from(m)),
                    Err(StepError::Terminal { code, message }) => {
                        Err(to_terminal(code, &message).into())
                    }
                }
            })
            .name(name)
            .await;
        match result {
            Ok(Json(recorded)) => {
                let identity = (
                    recorded.turn_id.as_str(),
                    recorded.step.as_str(),
                    recorded.input_hash.as_str(),
                );
                check_identity(identity, turn, name, input_hash)?;
                Ok(recorded.output)
            }
            Err(e) => Err(from_terminal(&e)),
        }
    }

    /// An awakeable (its id is the one Restate's awakeable API takes)
    /// raced against a durable timer; the invocation suspends on both.
    fn promise(
        &self,
        _turn: &TurnId,
        _name: &str,
        timeout: std::time::Duration,
    ) -> (String, WaitFuture<'_>) {
        let ctx: &ObjectContext<'_> = self.ctx;
        let (id, awakeable) = ctx.awakeable::<Json<serde_json::Value>>();
        let waited = async move {
            restate_sdk::select! {
                value = awakeable => match value {
                    Ok(Json(v)) => Ok(WaitOutcome::Resolved(v)),
                    Err(e) => Err(from_terminal(&e)),
                },
                _ = ctx.sleep(timeout) => Ok(WaitOutcome::Expired),
                on_cancel => Err(JournalError::Cancelled)
            }
        };
        (id, Box::pin(waited))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::StepRecord;
    use serde_json::json;

    /// A durable step's record is the JSON of a `StepRecord`, both ways:
    /// records journaled by builds that wrote `StepRecord` (keys sorted,
    /// through a `Value`) replay here, and the admin API's recordings read
    /// this build's records as `StepRecord`s.
    #[test]
    fn a_durable_record_is_a_step_record_both_ways() {
        let output =
            json!({"result": "response", "message": {"id": "t:msg:1", "parts": []}, "attempts": 1});
        let old = StepRecord {
            turn_id: "t".into(),
            step: "model:0".into(),
            input_hash: "abc".into(),
            output: output.clone(),
        };
        let read: DurableStep = serde_json::from_slice(&serde_json::to_vec(&old).unwrap()).unwrap();
        assert_eq!(
            (
                read.turn_id.as_str(),
                read.step.as_str(),
                read.input_hash.as_str()
            ),
            ("t", "model:0", "abc")
        );
        assert_eq!(
            serde_json::from_str::<serde_json::Value>(read.output.get()).unwrap(),
            output
        );

        let written = serde_json::to_vec(&read).unwrap();
        assert_eq!(serde_json::from_slice::<StepRecord>(&written).unwrap(), old);
        // Not valid JSON as an output: the record does not decode.
        let bad = br#"{"turn_id":"t","step":"s","input_hash":"h","output":{"#;
        assert!(serde_json::from_slice::<DurableStep>(bad).is_err());
    }
}
