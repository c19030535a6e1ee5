//! The inline tier's journal: each step's record is a checkpoint row in the
//! session store, so `ratchet resume` can finish a turn whose process died
//! without running its completed steps again.

use super::*;
use crate::model::SessionId;
use crate::store::{Checkpoint, SessionStore};
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::Mutex;

/// Per turn: the records found at start, and how many were served.
#[derive(Default)]
struct TurnCursor {
    recorded: Vec<StepRecord>,
    next: usize,
}

/// Records steps as store checkpoints and replays the ones found there.
pub struct CheckpointJournal {
    store: Arc<dyn SessionStore>,
    session: SessionId,
    turns: Mutex<HashMap<String, TurnCursor>>,
}

impl CheckpointJournal {
    /// A journal for `session` over `store`.
    pub fn new(store: Arc<dyn SessionStore>, session: SessionId) -> Self {
        CheckpointJournal {
            store,
            session,
            turns: Mutex::new(HashMap::new()),
        }
    }

    async fn load(&self, turn: &TurnId) -> Result<TurnCursor, JournalError> {
        let rows = match self.store.checkpoints(&self.session, turn.as_str()).await {
            Ok(rows) => rows,
            Err(StoreError::UnknownSession(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        };
        let recorded = rows
            .into_iter()
            .map(|c| {
                serde_json::from_value::<StepRecord>(c.record).map_err(|e| JournalError::Decode {
                    step: c.step,
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TurnCursor { recorded, next: 0 })
    }
}

#[async_trait]
impl Journal for CheckpointJournal {
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
        // Steps of one journal run one at a time, so holding the lock across
        // the body serializes nothing that was concurrent.
        let mut turns = self.turns.lock().await;
        if !turns.contains_key(turn.as_str()) {
            let cursor = self.load(turn).await?;
            turns.insert(turn.to_string(), cursor);
        }
        let cursor = turns.get_mut(turn.as_str()).expect("inserted above");
        let seq = cursor.next;
        if let Some(record) = cursor.recorded.get(seq) {
            check_record(record, turn, name, input_hash)?;
            cursor.next += 1;
            return raw_output(name, &record.output);
        }
        let output = body.await?;
        let record = StepRecord {
            turn_id: turn.to_string(),
            step: name.to_string(),
            input_hash: input_hash.to_string(),
            output: output_value(name, &output)?,
        };
        let checkpoint = Checkpoint {
            session_id: self.session.clone(),
            turn_id: turn.to_string(),
            seq: seq as u64,
            step: name.to_string(),
            record: serde_json::to_value(&record).map_err(|e| JournalError::Decode {
                step: name.to_string(),
                message: e.to_string(),
            })?,
        };
        self.store.put_checkpoint(&checkpoint).await?;
        cursor.recorded.push(record);
        cursor.next += 1;
        Ok(output)
    }
}
