//! Row helpers shared by the SQLite store's operations: session existence,
//! the lease row, live inbox entries, event appends.

use super::schema::map_err;
use super::{SqliteStore, parse_state};
use crate::model::Message;
use crate::model::{SessionEvent, SessionId};
use crate::store::rules::{self, LeaseRow};
use crate::store::{CommittedTurn, InboxEntry, InboxPage, StoreError, StoreResult, TurnRecord};
use rusqlite::{Connection, OptionalExtension, Row, params};

impl SqliteStore {
    pub(super) fn lease_row(
        conn: &Connection,
        session: &SessionId,
    ) -> StoreResult<Option<LeaseRow>> {
        row(
            conn,
            "SELECT owner, fence, expires_at_ms FROM leases WHERE session_id = ?1",
            params![session.as_str()],
            |r| {
                Ok(LeaseRow {
                    owner: r.get(0)?,
                    fence: r.get::<_, i64>(1)? as u64,
                    expires_at_ms: r.get::<_, i64>(2)? as u64,
                })
            },
        )
        .optional()
        .map_err(map_err)
    }

    pub(super) fn session_exists(conn: &Connection, session: &SessionId) -> StoreResult<bool> {
        row(
            conn,
            "SELECT 1 FROM sessions WHERE id = ?1",
            params![session.as_str()],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(map_err)
    }

    pub(super) fn require_session(conn: &Connection, session: &SessionId) -> StoreResult<()> {
        if Self::session_exists(conn, session)? {
            Ok(())
        } else {
            Err(StoreError::UnknownSession(session.to_string()))
        }
    }

    pub(super) fn ensure_session(conn: &Connection, session: &SessionId) -> StoreResult<()> {
        exec(
            conn,
            "INSERT OR IGNORE INTO sessions (id) VALUES (?1)",
            params![session.as_str()],
        )
        .map_err(map_err)?;
        Ok(())
    }

    pub(super) fn live_entries(
        conn: &Connection,
        session: &SessionId,
    ) -> StoreResult<Vec<InboxEntry>> {
        Self::live_page(conn, session, u64::MAX)
    }

    /// The first `limit` live entries, FIFO.
    pub(super) fn live_page(
        conn: &Connection,
        session: &SessionId,
        limit: u64,
    ) -> StoreResult<Vec<InboxEntry>> {
        collect(
            conn,
            "SELECT id, seq, payload, state, claim_fence, turn_id FROM inbox
             WHERE session_id = ?1 AND state != 'completed' ORDER BY seq LIMIT +?2",
            params![session.as_str(), super::clamp(limit)],
            inbox_entry,
        )
    }

    /// What a claim can take: the live entries up to and including the
    /// first live input (all of them when there is none), FIFO, read a page
    /// at a time through index `inbox_live_fifo`: a few rows whatever the
    /// backlog behind (`rules::claimable_prefix` says why it is enough).
    pub(super) fn claimable(
        conn: &Connection,
        session: &SessionId,
    ) -> StoreResult<Vec<InboxEntry>> {
        let mut out = Vec::new();
        loop {
            let after = out.last().map_or(0, |e: &InboxEntry| e.seq);
            let page = collect(
                conn,
                "SELECT id, seq, payload, state, claim_fence, turn_id FROM inbox
                 WHERE session_id = ?1 AND state != 'completed' AND seq > ?2
                 ORDER BY seq LIMIT +?3",
                params![
                    session.as_str(),
                    super::clamp(after),
                    rules::CLAIM_PAGE as i64
                ],
                inbox_entry,
            )?;
            if rules::claimable_prefix(&mut out, page) {
                return Ok(out);
            }
        }
    }

    /// Pending steers after `after_seq`, FIFO (index `inbox_steer`).
    pub(super) fn pending_steers_in(
        conn: &Connection,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        collect(
            conn,
            // The partial index holds only pending steers; the planner would
            // otherwise walk every pending input through `inbox_live`.
            "SELECT id, seq, payload, state, claim_fence, turn_id FROM inbox INDEXED BY inbox_steer
             WHERE session_id = ?1 AND steer = 1 AND state = 'pending' AND seq > ?2
             ORDER BY seq LIMIT +?3",
            params![
                session.as_str(),
                super::clamp(after_seq),
                super::clamp(limit as u64)
            ],
            inbox_entry,
        )
    }

    /// The entry stored under `id`, in any state.
    pub(super) fn entry_by_id(
        conn: &Connection,
        session: &SessionId,
        id: &str,
    ) -> StoreResult<Option<InboxEntry>> {
        let mut found = collect(
            conn,
            "SELECT id, seq, payload, state, claim_fence, turn_id FROM inbox
             WHERE session_id = ?1 AND id = ?2",
            params![session.as_str(), id],
            inbox_entry,
        )?;
        Ok(found.pop())
    }

    /// A committed turn and the messages it appended.
    pub(super) fn committed_turn_in(
        c: &Connection,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Option<CommittedTurn>> {
        Self::require_session(c, session)?;
        let Some(record) = Self::turn_rows(c, session, Some(turn_id))?.pop() else {
            return Ok(None);
        };
        let messages = collect(
            c,
            "SELECT body FROM messages WHERE session_id = ?1 AND version = ?2 ORDER BY ord",
            params![session.as_str(), super::clamp(record.version)],
            |r| rules::decode::<Message>("message", &col::<String>(r, 0)?),
        )?;
        Ok(Some(CommittedTurn { record, messages }))
    }

    /// The first `limit` live entries and how many there are.
    pub(super) fn inbox_page_in(
        c: &Connection,
        session: &SessionId,
        limit: usize,
    ) -> StoreResult<InboxPage> {
        Self::require_session(c, session)?;
        let entries = Self::live_page(c, session, limit as u64)?;
        let total: i64 = row(
            c,
            "SELECT COALESCE((SELECT n FROM inbox_live_count WHERE session_id = ?1), 0)",
            params![session.as_str()],
            |r| r.get(0),
        )
        .map_err(map_err)?;
        Ok(InboxPage {
            entries,
            total: total as u64,
        })
    }

    /// Committed turns in order: all of them, or the one named.
    pub(super) fn turn_rows(
        conn: &Connection,
        session: &SessionId,
        only: Option<&str>,
    ) -> StoreResult<Vec<TurnRecord>> {
        collect(
            conn,
            "SELECT turn_id, version, outcome, usage, commit_hash, started_at_ms, finished_at_ms
             FROM turns WHERE session_id = ?1 AND (?2 IS NULL OR turn_id = ?2) ORDER BY version",
            params![session.as_str(), only],
            |r| {
                Ok(TurnRecord {
                    turn_id: col(r, 0)?,
                    version: col::<i64>(r, 1)? as u64,
                    outcome: rules::decode("turn outcome", &col::<String>(r, 2)?)?,
                    usage: rules::decode("turn usage", &col::<String>(r, 3)?)?,
                    commit_hash: col(r, 4)?,
                    started_at_ms: col::<i64>(r, 5)? as u64,
                    finished_at_ms: col::<i64>(r, 6)? as u64,
                })
            },
        )
    }

    pub(super) fn insert_events(
        conn: &Connection,
        session: &SessionId,
        events: &[SessionEvent],
    ) -> StoreResult<()> {
        for e in events {
            let body = serde_json::to_string(e).map_err(|e| StoreError::Internal(e.to_string()))?;
            exec(
                conn,
                "INSERT OR IGNORE INTO events (session_id, cursor, id, body)
                 SELECT ?1, COALESCE(MAX(cursor), 0) + 1, ?2, ?3 FROM events WHERE session_id = ?1",
                params![session.as_str(), e.id, body],
            )
            .map_err(map_err)?;
        }
        Ok(())
    }
}

/// Reads one column, reporting a type mismatch as a store error.
pub(super) fn col<T: rusqlite::types::FromSql>(row: &Row<'_>, i: usize) -> StoreResult<T> {
    row.get(i).map_err(map_err)
}

/// Runs a query and maps every row.
///
/// A bound `LIMIT` is written `LIMIT +?N`: SQLite plans a bare `LIMIT ?N`
/// with the value bound, so every new binding expires the cached
/// statement and its next step parses and plans it again (that re-prepare
/// topped the service's profile of a long turn, which reads the same few
/// statements once per model call). The unary plus keeps the plan
/// independent of the value.
pub(super) fn collect<T>(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
    mut map: impl FnMut(&Row<'_>) -> StoreResult<T>,
) -> StoreResult<Vec<T>> {
    let mut stmt = conn.prepare_cached(sql).map_err(map_err)?;
    let mut rows = stmt.query(params).map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        out.push(map(row)?);
    }
    drop(rows);
    #[cfg(test)]
    tests::note_run(sql, &stmt);
    Ok(out)
}

/// Executes a statement through the connection's statement cache: the hot
/// paths run the same few statements on every turn, and parsing them each
/// time showed up first in the service's profile.
pub(super) fn exec<P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
) -> rusqlite::Result<usize> {
    let mut stmt = c.prepare_cached(sql)?;
    let out = stmt.execute(params);
    #[cfg(test)]
    tests::note_run(sql, &stmt);
    out
}

/// Reads one row through the statement cache.
pub(super) fn row<T, P: rusqlite::Params>(
    c: &Connection,
    sql: &str,
    params: P,
    f: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    let mut stmt = c.prepare_cached(sql)?;
    let out = stmt.query_row(params, f);
    #[cfg(test)]
    tests::note_run(sql, &stmt);
    out
}

fn inbox_entry(r: &rusqlite::Row<'_>) -> StoreResult<InboxEntry> {
    Ok(InboxEntry {
        id: col(r, 0)?,
        seq: col::<i64>(r, 1)? as u64,
        payload: rules::decode("inbox payload", &col::<String>(r, 2)?)?,
        state: parse_state(&col::<String>(r, 3)?)?,
        claim_fence: col::<Option<i64>>(r, 4)?.map(|f| f as u64),
        turn_id: col(r, 5)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::model::{SessionId, TurnInput};
    use crate::store::prelude::*;
    use crate::store::{InboxPayload, NewInboxEntry, SqliteStore};

    thread_local! {
        /// Re-preparations SQLite made of the statements this thread ran
        /// (`SQLITE_STMTSTATUS_REPREPARE`).
        static REPREPARED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
        /// Each statement this thread ran, with how often its prepared
        /// statement has run (SQLite's `SQLITE_STMTSTATUS_RUN`: 1 means it
        /// was prepared afresh for this run).
        static RUNS: std::cell::RefCell<Vec<(String, i32)>> = const {
            std::cell::RefCell::new(Vec::new())
        };
    }

    /// Notes one run of a cached statement.
    pub(super) fn note_run(sql: &str, stmt: &rusqlite::CachedStatement<'_>) {
        let n = stmt.get_status(rusqlite::StatementStatus::RePrepare);
        REPREPARED.with(|c| c.set(c.get() + n as u64));
        let runs = stmt.get_status(rusqlite::StatementStatus::Run);
        RUNS.with(|r| r.borrow_mut().push((sql.to_string(), runs)));
    }

    /// From its third turn on, an inline turn on SQLite (which runs more
    /// statements than a durable one: it also checkpoints every step)
    /// prepares none of its statements again: the cache holds them all,
    /// more than rusqlite's default capacity of 16.
    #[tokio::test]
    async fn a_turns_statements_stay_prepared_from_turn_to_turn() {
        use crate::engine::CancelToken;
        use crate::engine::inline::InlineRunner;
        use std::collections::HashSet;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("s.db")).unwrap());
        let rt = crate::Agent::new("cache")
            .store(store)
            .model(Arc::new(crate::llm::DemoModel::new()))
            .tool(Arc::new(crate::tools::Calculator))
            .runtime()
            .unwrap();
        let runner = InlineRunner::new(rt, "test-owner");
        let sid = SessionId::new("s").unwrap();
        let mut seen: HashSet<String> = HashSet::new();
        for (i, question) in ["what is 2+3?", "what is 4*5?", "what is 7-1?"]
            .into_iter()
            .enumerate()
        {
            RUNS.with(|r| r.borrow_mut().clear());
            let turn = runner
                .turn(&sid, TurnInput::text(question), &CancelToken::new())
                .await
                .unwrap();
            assert!(
                matches!(turn.outcome, crate::model::TurnOutcome::Finished(_)),
                "turn {i}: {:?}",
                turn.outcome
            );
            let runs = RUNS.with(|r| r.take());
            if i == 2 {
                let distinct: HashSet<&str> = runs.iter().map(|(s, _)| s.as_str()).collect();
                assert!(distinct.len() > 16, "only {} statements", distinct.len());
                let fresh: Vec<&str> = runs
                    .iter()
                    .filter(|(sql, n)| *n == 1 && seen.contains(sql))
                    .map(|(sql, _)| sql.as_str())
                    .collect();
                assert!(fresh.is_empty(), "prepared again: {fresh:#?}");
            }
            seen.extend(runs.into_iter().map(|(sql, _)| sql));
        }
    }

    /// The hot reads run from the statement cache with new bound values
    /// each time, and SQLite never has to re-prepare them.
    #[tokio::test]
    async fn cached_reads_are_never_re_prepared_for_new_bindings() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path().join("s.db")).unwrap();
        let sid = SessionId::new("s").unwrap();
        for i in 0..3 {
            let entry = NewInboxEntry {
                id: format!("in-{i}"),
                turn_id: Some(format!("t-{i}")),
                payload: InboxPayload::Input(
                    TurnInput::text("hi").with_input_id(format!("in-{i}")),
                ),
            };
            store.enqueue(&sid, entry).await.unwrap();
        }
        for n in 1..6 {
            store.recent_messages(&sid, n, n as usize).await.unwrap();
            store.pending_steers(&sid, n, n as usize).await.unwrap();
            store.events_after(&sid, n, n as usize).await.unwrap();
            store.inbox_page(&sid, n as usize).await.unwrap();
            store.live_head(&sid, n as usize).await.unwrap();
        }
        assert_eq!(REPREPARED.with(|c| c.get()), 0);
    }

    /// Every statement of the backend fits the connection's statement
    /// cache, so a hot statement is never evicted by the others and parsed
    /// again. Counts the SQL string literals of the backend's sources.
    #[test]
    fn every_statement_fits_the_statement_cache() {
        let sources = [
            include_str!("commit.rs"),
            include_str!("inbox.rs"),
            include_str!("mod.rs"),
            include_str!("records.rs"),
            include_str!("rows.rs"),
            include_str!("schema.rs"),
            include_str!("waits.rs"),
        ];
        let openings = [
            "\"SELECT ",
            "\"INSERT ",
            "\"UPDATE ",
            "\"DELETE ",
            "\"WITH ",
        ];
        let statements: usize = sources
            .iter()
            .map(|src| {
                openings
                    .iter()
                    .map(|o| src.matches(o).count())
                    .sum::<usize>()
            })
            .sum();
        // The openings above appear once more, in this test's own list.
        let statements = statements - openings.len();
        assert!(statements >= 40, "counted only {statements} statements");
        assert!(
            statements <= super::super::schema::STATEMENT_CACHE_CAPACITY,
            "{statements} statements outgrow the statement cache"
        );
    }
}
