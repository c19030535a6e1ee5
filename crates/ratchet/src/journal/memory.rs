//! A journal that records steps in memory: for tests, and for capturing a
//! turn as a [`Recording`].

use super::*;
use std::sync::Mutex;

/// Records every step it runs; never replays.
#[derive(Default)]
pub struct MemoryJournal {
    records: Mutex<Vec<StepRecord>>,
}

impl MemoryJournal {
    /// An empty journal.
    pub fn new() -> Self {
        Self::default()
    }

    /// The steps recorded so far.
    pub fn records(&self) -> Vec<StepRecord> {
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

#[async_trait]
impl Journal for MemoryJournal {
    fn tier(&self) -> JournalTier {
        JournalTier::Inline
    }

    async fn step(
        &self,
        turn: &TurnId,
        name: &str,
        input_hash: &str,
        body: StepBody<'_>,
    ) -> Result<StepOutput, JournalError> {
        let output = body.await?;
        let record = StepRecord {
            turn_id: turn.to_string(),
            step: name.to_string(),
            input_hash: input_hash.to_string(),
            output: output_value(name, &output)?,
        };
        self.records
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(record);
        Ok(output)
    }
}
