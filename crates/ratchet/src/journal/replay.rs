//! Replays a [`Recording`]: every step is served from it, no body runs, and
//! the first step whose turn, name, order or input hash differs fails with
//! `journal_mismatch` naming it.

use super::divergence::{Divergence, StepAt};
use super::*;
use std::sync::Mutex;

/// Serves recorded steps in order.
pub struct ReplayJournal {
    steps: Vec<StepRecord>,
    cursor: Mutex<usize>,
    cancelled_at: Option<String>,
    tier: JournalTier,
    divergence: Mutex<Option<Divergence>>,
}

impl ReplayJournal {
    /// A journal over a recording.
    pub fn new(recording: &Recording) -> Self {
        ReplayJournal {
            steps: recording.steps.clone(),
            cursor: Mutex::new(0),
            cancelled_at: recording.cancelled_at.clone(),
            tier: recording.tier,
            divergence: Mutex::new(None),
        }
    }

    /// Where the run left the recording, once a step has not matched.
    pub fn divergence(&self) -> Option<Divergence> {
        self.divergence
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The divergence of a run that ended with steps of the recording left.
    pub fn ended_early(&self) -> Option<Divergence> {
        let at = *self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let left = self.steps.get(at)?;
        Some(Divergence::at(at, Some(StepAt::of(left)), None))
    }

    /// Steps of the recording not yet served.
    pub fn unconsumed(&self) -> Vec<String> {
        let at = *self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        self.steps[at.min(self.steps.len())..]
            .iter()
            .map(|s| s.step.clone())
            .collect()
    }
}

#[async_trait]
impl Journal for ReplayJournal {
    fn tier(&self) -> JournalTier {
        self.tier
    }

    async fn step(
        &self,
        turn: &TurnId,
        name: &str,
        input_hash: &str,
        _body: StepBody<'_>,
    ) -> Result<StepOutput, JournalError> {
        let mut cursor = self.cursor.lock().unwrap_or_else(|e| e.into_inner());
        let ran = StepAt {
            turn_id: turn.to_string(),
            step: name.to_string(),
            input_hash: input_hash.to_string(),
        };
        let record = self.steps.get(*cursor);
        let diverged = |recorded: Option<StepAt>| {
            *self.divergence.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(Divergence::at(*cursor, recorded, Some(ran.clone())));
        };
        let Some(record) = record else {
            diverged(None);
            return Err(JournalError::Mismatch {
                step: name.to_string(),
                expected: format!("end of recording after {} steps", self.steps.len()),
                actual: format!("step '{name}'"),
            });
        };
        if let Err(e) = check_record(record, turn, name, input_hash) {
            diverged(Some(StepAt::of(record)));
            return Err(e);
        }
        *cursor += 1;
        // The step the cancel signal overtook: recorded, but the turn got
        // `cancelled` from it, as it does here.
        if self.cancelled_at.as_deref() == Some(name) {
            return Err(JournalError::Cancelled);
        }
        raw_output(name, &record.output)
    }
}
