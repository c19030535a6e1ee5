//! The PostgreSQL store's inbox statements: entries read back, the
//! claimable prefix, the live head and page, pending steers, and enqueue.

use super::ops::{ensure_session, lock_session};
use super::schema::map_err;
use super::{int, parse_state, state_str};
use crate::model::SessionId;
use crate::store::rules;
use crate::store::{Enqueued, InboxEntry, InboxPage, InboxState, NewInboxEntry, StoreResult};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;

fn inbox_entry(r: &Row) -> StoreResult<InboxEntry> {
    Ok(InboxEntry {
        id: r.get(0),
        seq: r.get::<_, i64>(1) as u64,
        payload: rules::decode("inbox payload", r.get(2))?,
        state: parse_state(r.get(3))?,
        claim_fence: r.get::<_, Option<i64>>(4).map(|f| f as u64),
        turn_id: r.get(5),
    })
}

/// The inbox columns [`inbox_entry`] reads, in order.
pub const INBOX_COLUMNS: &str = "id, seq, payload, state, claim_fence, turn_id";

/// Entries matching `filter` (a `WHERE` clause, with its order and limit).
async fn select<C: GenericClient>(
    c: &C,
    filter: &str,
    params: &[&(dyn ToSql + Sync)],
) -> StoreResult<Vec<InboxEntry>> {
    let sql = format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE {filter}");
    let rows = c.query(&sql, params).await.map_err(map_err)?;
    rows.iter().map(inbox_entry).collect()
}

/// Pending and claimed entries, FIFO.
pub async fn live_entries<C: GenericClient>(
    c: &C,
    session: &SessionId,
) -> StoreResult<Vec<InboxEntry>> {
    live_head(c, session, usize::MAX).await
}

/// What a claim can take: the live entries up to and including the first
/// live input, a page at a time through index `inbox_live_fifo` (see
/// `rules::claimable_prefix`).
pub async fn claimable<C: GenericClient>(
    c: &C,
    session: &SessionId,
) -> StoreResult<Vec<InboxEntry>> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &InboxEntry| e.seq);
        let page = select(
            c,
            "session_id = $1 AND state <> 'completed' AND seq > $2 ORDER BY seq LIMIT $3",
            &[
                &session.as_str(),
                &int(after),
                &int(rules::CLAIM_PAGE as u64),
            ],
        )
        .await?;
        if rules::claimable_prefix(&mut out, page) {
            return Ok(out);
        }
    }
}

/// Enqueues unless the id is known (the payload is already encoded).
pub async fn enqueue<C: GenericClient>(
    c: &C,
    session: &SessionId,
    entry: &NewInboxEntry,
    payload: &str,
) -> StoreResult<Enqueued> {
    ensure_session(c, session).await?;
    lock_session(c, session).await?;
    let existing = c
        .query_opt(
            &format!("SELECT {INBOX_COLUMNS} FROM inbox WHERE session_id = $1 AND id = $2"),
            &[&session.as_str(), &entry.id],
        )
        .await
        .map_err(map_err)?
        .map(|row| inbox_entry(&row))
        .transpose()?;
    let turn_taken = match (&existing, &entry.turn_id) {
        (None, Some(turn_id)) => c
            .query_opt(
                "SELECT 1 FROM inbox WHERE session_id = $1 AND turn_id = $2
                 UNION ALL SELECT 1 FROM turns WHERE session_id = $1 AND turn_id = $2",
                &[&session.as_str(), turn_id],
            )
            .await
            .map_err(map_err)?
            .is_some(),
        _ => false,
    };
    if let Some(found) = rules::decide_enqueue(entry, existing, turn_taken)? {
        return Ok(found);
    }
    let row = c
        .query_one(
            "INSERT INTO inbox (session_id, seq, id, payload, state, turn_id, steer)
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5, $6 FROM inbox
             WHERE session_id = $1
             RETURNING seq",
            &[
                &session.as_str(),
                &entry.id,
                &payload,
                &state_str(InboxState::Pending),
                &entry.turn_id,
                &entry.payload.is_steer(),
            ],
        )
        .await
        .map_err(map_err)?;
    Ok(Enqueued {
        entry: InboxEntry {
            id: entry.id.clone(),
            seq: row.get::<_, i64>(0) as u64,
            payload: entry.payload.clone(),
            state: InboxState::Pending,
            claim_fence: None,
            turn_id: entry.turn_id.clone(),
        },
        duplicate: false,
    })
}

/// Pending steers after `after_seq`, FIFO (index `inbox_steer`).
pub async fn pending_steers<C: GenericClient>(
    c: &C,
    session: &SessionId,
    after_seq: u64,
    limit: usize,
) -> StoreResult<Vec<InboxEntry>> {
    select(
        c,
        "session_id = $1 AND steer AND state = 'pending' AND seq > $2 ORDER BY seq LIMIT $3",
        &[&session.as_str(), &int(after_seq), &int(limit as u64)],
    )
    .await
}

/// The first `limit` live entries, FIFO.
pub async fn live_head<C: GenericClient>(
    c: &C,
    session: &SessionId,
    limit: usize,
) -> StoreResult<Vec<InboxEntry>> {
    select(
        c,
        "session_id = $1 AND state <> 'completed' ORDER BY seq LIMIT $2",
        &[&session.as_str(), &int(limit as u64)],
    )
    .await
}

/// The first `limit` live entries and how many there are.
pub async fn inbox_page<C: GenericClient>(
    c: &C,
    session: &SessionId,
    limit: usize,
) -> StoreResult<InboxPage> {
    let entries = live_head(c, session, limit).await?;
    let total: i64 = c
        .query_one(
            "SELECT count(*) FROM inbox WHERE session_id = $1 AND state <> 'completed'",
            &[&session.as_str()],
        )
        .await
        .map_err(map_err)?
        .get(0);
    Ok(InboxPage {
        entries,
        total: total as u64,
    })
}
