//! The SQLite store's side records: inline checkpoints, tool notes and the
//! effect ledger.

use super::rows::{col, collect, exec, row};
use super::schema::map_err;
use super::{SqliteStore, rules};
use crate::model::SessionId;
use crate::store::{Checkpoint, CheckpointStore, EffectLedger, Note, NoteStore, StoreResult};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl CheckpointStore for SqliteStore {
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        rules::check_id("turn id", &checkpoint.turn_id)?;
        rules::check_id("step name", &checkpoint.step)?;
        let record = rules::encode_limited(
            "checkpoint",
            &checkpoint.record,
            self.options.max_payload_bytes,
        )?;
        self.write(|tx| {
            Self::require_session(tx, &checkpoint.session_id)?;
            exec(
                tx,
                "INSERT OR IGNORE INTO checkpoints (session_id, turn_id, seq, step, record)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    checkpoint.session_id.as_str(),
                    checkpoint.turn_id,
                    checkpoint.seq as i64,
                    checkpoint.step,
                    record
                ],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    async fn checkpoints(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Vec<Checkpoint>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            collect(
                c,
                "SELECT seq, step, record FROM checkpoints
                 WHERE session_id = ?1 AND turn_id = ?2 ORDER BY seq",
                params![session.as_str(), turn_id],
                |r| {
                    Ok(Checkpoint {
                        session_id: session.clone(),
                        turn_id: turn_id.to_string(),
                        seq: col::<i64>(r, 0)? as u64,
                        step: col(r, 1)?,
                        record: rules::decode("checkpoint", &col::<String>(r, 2)?)?,
                    })
                },
            )
        })
    }

    async fn unfinished_turns(&self, session: &SessionId) -> StoreResult<Vec<String>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            collect(
                c,
                "SELECT turn_id FROM checkpoints c WHERE session_id = ?1
                 AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id = c.session_id AND t.turn_id = c.turn_id)
                 GROUP BY turn_id ORDER BY MIN(rowid)",
                params![session.as_str()],
                |r| col(r, 0),
            )
        })
    }

    async fn checkpoint_count(&self) -> StoreResult<u64> {
        self.read(|c| {
            row(c, "SELECT count(*) FROM checkpoints", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(map_err)
        })
    }
}

#[async_trait]
impl NoteStore for SqliteStore {
    async fn put_note(&self, session: &SessionId, key: &str, text: &str) -> StoreResult<bool> {
        rules::check_id("note key", key)?;
        rules::encode_limited("note", &text, self.options.max_payload_bytes)?;
        self.write(|tx| {
            Self::ensure_session(tx, session)?;
            let n = exec(
                tx,
                "INSERT OR IGNORE INTO notes (session_id, key, seq, text)
                     SELECT ?1, ?2, COALESCE(MAX(seq), 0) + 1, ?3 FROM notes WHERE session_id = ?1",
                params![session.as_str(), key, text],
            )
            .map_err(map_err)?;
            Ok(n == 1)
        })
    }

    async fn notes(&self, session: &SessionId) -> StoreResult<Vec<Note>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            collect(
                c,
                "SELECT key, text FROM notes WHERE session_id = ?1 ORDER BY seq",
                params![session.as_str()],
                |r| {
                    Ok(Note {
                        key: col(r, 0)?,
                        text: col(r, 1)?,
                    })
                },
            )
        })
    }
}

#[async_trait]
impl EffectLedger for SqliteStore {
    async fn count_effect(&self, session: &SessionId, key: &str) -> StoreResult<u64> {
        rules::check_id("effect key", key)?;
        self.write(|tx| {
            Self::ensure_session(tx, session)?;
            row(
                tx,
                "INSERT INTO effects (session_id, key, count) VALUES (?1, ?2, 1)
                 ON CONFLICT (session_id, key) DO UPDATE SET count = count + 1
                 RETURNING count",
                params![session.as_str(), key],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n as u64)
            .map_err(map_err)
        })
    }

    async fn effect_counts(
        &self,
        session: &SessionId,
    ) -> StoreResult<std::collections::BTreeMap<String, u64>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            let pairs = collect(
                c,
                "SELECT key, count FROM effects WHERE session_id = ?1",
                params![session.as_str()],
                |r| Ok((col::<String>(r, 0)?, col::<i64>(r, 1)? as u64)),
            )?;
            Ok(pairs.into_iter().collect())
        })
    }
}
