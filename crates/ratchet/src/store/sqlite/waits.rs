//! The SQLite store's durable waits: one row per wait, its whole record in
//! `body`, its state beside it for the pending filter.

use super::rows::{col, collect, exec};
use super::schema::map_err;
use super::{SqliteStore, rules};
use crate::model::wait::{decide, settle, wait_for_call};
use crate::model::{Decided, SessionId, Wait, WaitKind};
use crate::store::{StoreResult, WaitStore};
use async_trait::async_trait;
use rusqlite::{Connection, params};

fn rows_where(c: &Connection, sql: &str, args: &[&dyn rusqlite::ToSql]) -> StoreResult<Vec<Wait>> {
    collect(c, sql, args, |r| {
        rules::decode("wait", &col::<String>(r, 0)?)
    })
}

fn update(c: &Connection, session: &SessionId, wait: &Wait, max: usize) -> StoreResult<()> {
    let body = rules::check_wait(wait, max)?;
    exec(
        c,
        "UPDATE waits SET state = ?3, body = ?4 WHERE session_id = ?1 AND wait_id = ?2",
        params![session.as_str(), wait.wait_id, wait.state.as_str(), body],
    )
    .map_err(map_err)?;
    Ok(())
}

#[async_trait]
impl WaitStore for SqliteStore {
    async fn open_wait(&self, session: &SessionId, wait: &Wait) -> StoreResult<Wait> {
        let body = rules::check_wait(wait, self.options.max_payload_bytes)?;
        self.write(|tx| {
            Self::ensure_session(tx, session)?;
            exec(
                tx,
                "INSERT OR IGNORE INTO waits (session_id, seq, wait_id, call_id, state, body)
                 SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM waits WHERE session_id = ?1",
                params![
                    session.as_str(),
                    wait.wait_id,
                    wait.call_id,
                    wait.state.as_str(),
                    body
                ],
            )
            .map_err(map_err)?;
            let found = rows_where(
                tx,
                "SELECT body FROM waits WHERE session_id = ?1 AND wait_id = ?2",
                &[&session.as_str(), &wait.wait_id],
            )?;
            found
                .into_iter()
                .next()
                .ok_or_else(|| crate::store::StoreError::Internal("wait row vanished".into()))
        })
    }

    async fn decide_wait(
        &self,
        session: &SessionId,
        kind: WaitKind,
        call_id: &str,
        value: &serde_json::Value,
    ) -> StoreResult<Decided> {
        let max = self.options.max_payload_bytes;
        self.write(|tx| {
            let waits = rows_where(
                tx,
                "SELECT body FROM waits WHERE session_id = ?1 AND call_id = ?2 ORDER BY seq",
                &[&session.as_str(), &call_id],
            )?;
            let Some(wait) = wait_for_call(&waits, kind, call_id) else {
                return Ok(Decided::Unknown);
            };
            let decided = decide(wait, value);
            if let Decided::Recorded(row) = &decided {
                update(tx, session, row, max)?;
            }
            Ok(decided)
        })
    }

    async fn settle_wait(
        &self,
        session: &SessionId,
        wait_id: &str,
        woke_with: Option<&serde_json::Value>,
    ) -> StoreResult<Option<Wait>> {
        let max = self.options.max_payload_bytes;
        self.write(|tx| {
            let found = rows_where(
                tx,
                "SELECT body FROM waits WHERE session_id = ?1 AND wait_id = ?2",
                &[&session.as_str(), &wait_id],
            )?;
            let Some(wait) = found.into_iter().next() else {
                return Ok(None);
            };
            match settle(&wait, woke_with) {
                Some(row) => {
                    update(tx, session, &row, max)?;
                    Ok(Some(row))
                }
                None => Ok(Some(wait)),
            }
        })
    }

    async fn waits(&self, session: &SessionId, pending_only: bool) -> StoreResult<Vec<Wait>> {
        self.read(|c| {
            rows_where(
                c,
                "SELECT body FROM waits WHERE session_id = ?1 AND (?2 = 0 OR state = 'pending')
                 ORDER BY seq",
                &[&session.as_str(), &(pending_only as i64)],
            )
        })
    }
}
