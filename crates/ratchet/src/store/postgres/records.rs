//! The PostgreSQL store's side records: inline checkpoints, tool notes and
//! the effect ledger.

use super::schema::map_err;
use super::{PostgresStore, int, ops, rules};
use crate::model::SessionId;
use crate::store::{Checkpoint, CheckpointStore, EffectLedger, Note, NoteStore, StoreResult};
use async_trait::async_trait;
use std::collections::BTreeMap;

#[async_trait]
impl CheckpointStore for PostgresStore {
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        rules::check_id("turn id", &checkpoint.turn_id)?;
        rules::check_id("step name", &checkpoint.step)?;
        let record = rules::encode_limited(
            "checkpoint",
            &checkpoint.record,
            self.options.max_payload_bytes,
        )?;
        let c = self.client().await?;
        ops::require_session(&c, &checkpoint.session_id).await?;
        c.execute(
            "INSERT INTO checkpoints (session_id, turn_id, seq, step, record) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[
                &checkpoint.session_id.as_str(),
                &checkpoint.turn_id,
                &int(checkpoint.seq),
                &checkpoint.step,
                &record,
            ],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn checkpoints(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Vec<Checkpoint>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let rows = c
            .query(
                "SELECT seq, step, record FROM checkpoints WHERE session_id = $1 AND turn_id = $2 ORDER BY seq",
                &[&session.as_str(), &turn_id],
            )
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(Checkpoint {
                    session_id: session.clone(),
                    turn_id: turn_id.to_string(),
                    seq: r.get::<_, i64>(0) as u64,
                    step: r.get(1),
                    record: rules::decode("checkpoint", r.get(2))?,
                })
            })
            .collect()
    }

    async fn unfinished_turns(&self, session: &SessionId) -> StoreResult<Vec<String>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let rows = c
            .query(
                "SELECT c.turn_id FROM checkpoints c WHERE c.session_id = $1
                 AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id = c.session_id AND t.turn_id = c.turn_id)
                 GROUP BY c.turn_id ORDER BY min(c.ctid::text)",
                &[&session.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    async fn checkpoint_count(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let row = c
            .query_one("SELECT count(*) FROM checkpoints", &[])
            .await
            .map_err(map_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }
}

#[async_trait]
impl NoteStore for PostgresStore {
    async fn put_note(&self, session: &SessionId, key: &str, text: &str) -> StoreResult<bool> {
        rules::check_id("note key", key)?;
        rules::encode_limited("note", &text, self.options.max_payload_bytes)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        ops::ensure_session(&tx, session).await?;
        ops::lock_session(&tx, session).await?;
        let n = tx
            .execute(
                "INSERT INTO notes (session_id, key, seq, text)
                 SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3 FROM notes WHERE session_id = $1
                 ON CONFLICT DO NOTHING",
                &[&session.as_str(), &key, &text],
            )
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(n == 1)
    }

    async fn notes(&self, session: &SessionId) -> StoreResult<Vec<Note>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let rows = c
            .query(
                "SELECT key, text FROM notes WHERE session_id = $1 ORDER BY seq",
                &[&session.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| Note {
                key: r.get(0),
                text: r.get(1),
            })
            .collect())
    }
}

#[async_trait]
impl EffectLedger for PostgresStore {
    async fn count_effect(&self, session: &SessionId, key: &str) -> StoreResult<u64> {
        rules::check_id("effect key", key)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        ops::ensure_session(&tx, session).await?;
        let row = tx
            .query_one(
                "INSERT INTO effects (session_id, key, count) VALUES ($1, $2, 1)
                 ON CONFLICT (session_id, key) DO UPDATE SET count = effects.count + 1 RETURNING count",
                &[&session.as_str(), &key],
            )
            .await
            .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn effect_counts(&self, session: &SessionId) -> StoreResult<BTreeMap<String, u64>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let rows = c
            .query(
                "SELECT key, count FROM effects WHERE session_id = $1",
                &[&session.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(rows
            .iter()
            .map(|r| (r.get(0), r.get::<_, i64>(1) as u64))
            .collect())
    }
}
