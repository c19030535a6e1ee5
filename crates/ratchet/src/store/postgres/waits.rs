//! The PostgreSQL store's durable waits: one row per wait, its whole record
//! in `body`, its state beside it; decisions and settlements lock the rows
//! they read, so two decisions racing for one call settle it once.

use super::PostgresStore;
use super::ops;
use super::schema::map_err;
use crate::model::wait::{decide, settle, wait_for_call};
use crate::model::{Decided, SessionId, Wait, WaitKind};
use crate::store::{StoreError, StoreResult, WaitStore, rules};
use async_trait::async_trait;
use deadpool_postgres::GenericClient;

fn decode(rows: &[tokio_postgres::Row]) -> StoreResult<Vec<Wait>> {
    rows.iter()
        .map(|r| rules::decode("wait", &r.get::<_, String>(0)))
        .collect()
}

async fn update<C: GenericClient>(
    c: &C,
    session: &SessionId,
    wait: &Wait,
    max: usize,
) -> StoreResult<()> {
    let body = rules::check_wait(wait, max)?;
    c.execute(
        "UPDATE waits SET state = $3, body = $4 WHERE session_id = $1 AND wait_id = $2",
        &[
            &session.as_str(),
            &wait.wait_id,
            &wait.state.as_str(),
            &body,
        ],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl WaitStore for PostgresStore {
    async fn open_wait(&self, session: &SessionId, wait: &Wait) -> StoreResult<Wait> {
        let body = rules::check_wait(wait, self.options.max_payload_bytes)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        ops::ensure_session(&tx, session).await?;
        ops::lock_session(&tx, session).await?;
        tx.execute(
            "INSERT INTO waits (session_id, seq, wait_id, call_id, state, body)
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM waits WHERE session_id = $1
             ON CONFLICT DO NOTHING",
            &[
                &session.as_str(),
                &wait.wait_id,
                &wait.call_id,
                &wait.state.as_str(),
                &body,
            ],
        )
        .await
        .map_err(map_err)?;
        let rows = tx
            .query(
                "SELECT body FROM waits WHERE session_id = $1 AND wait_id = $2",
                &[&session.as_str(), &wait.wait_id],
            )
            .await
            .map_err(map_err)?;
        let found = decode(&rows)?.into_iter().next();
        tx.commit().await.map_err(map_err)?;
        found.ok_or_else(|| StoreError::Internal("wait row vanished".into()))
    }

    async fn decide_wait(
        &self,
        session: &SessionId,
        kind: WaitKind,
        call_id: &str,
        value: &serde_json::Value,
    ) -> StoreResult<Decided> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let rows = tx
            .query(
                "SELECT body FROM waits WHERE session_id = $1 AND call_id = $2
                 ORDER BY seq FOR UPDATE",
                &[&session.as_str(), &call_id],
            )
            .await
            .map_err(map_err)?;
        let waits = decode(&rows)?;
        let decided = match wait_for_call(&waits, kind, call_id) {
            None => Decided::Unknown,
            Some(wait) => decide(wait, value),
        };
        if let Decided::Recorded(row) = &decided {
            update(&tx, session, row, self.options.max_payload_bytes).await?;
        }
        tx.commit().await.map_err(map_err)?;
        Ok(decided)
    }

    async fn settle_wait(
        &self,
        session: &SessionId,
        wait_id: &str,
        woke_with: Option<&serde_json::Value>,
    ) -> StoreResult<Option<Wait>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let rows = tx
            .query(
                "SELECT body FROM waits WHERE session_id = $1 AND wait_id = $2 FOR UPDATE",
                &[&session.as_str(), &wait_id],
            )
            .await
            .map_err(map_err)?;
        let Some(wait) = decode(&rows)?.into_iter().next() else {
            return Ok(None);
        };
        let after = match settle(&wait, woke_with) {
            Some(row) => {
                update(&tx, session, &row, self.options.max_payload_bytes).await?;
                row
            }
            None => wait,
        };
        tx.commit().await.map_err(map_err)?;
        Ok(Some(after))
    }

    async fn waits(&self, session: &SessionId, pending_only: bool) -> StoreResult<Vec<Wait>> {
        let c = self.client().await?;
        let rows = c
            .query(
                "SELECT body FROM waits WHERE session_id = $1 AND (NOT $2 OR state = 'pending')
                 ORDER BY seq",
                &[&session.as_str(), &pending_only],
            )
            .await
            .map_err(map_err)?;
        decode(&rows)
    }
}
