//! The statements the PostgreSQL store runs, shared by its operations:
//! session and lease row locks, inbox reads and enqueue, event appends, and
//! the final commit.

use super::schema::map_err;
use super::{int, parse_state, state_str};
use crate::fault::FaultSwitch;
use crate::model::{Message, SessionEvent, SessionId, Usage};
use crate::store::commit_plan::{self, CommitReads, Decision, Stage};
use crate::store::rules::{self, LeaseRow};
use crate::store::{
    CommitReceipt, CommitRequest, CommittedTurn, Enqueued, InboxEntry, InboxPage, InboxState,
    NewInboxEntry, SessionHead, StoreError, StoreResult, StoredMessage, TurnRecord,
};
use deadpool_postgres::GenericClient;
use tokio_postgres::Row;

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Internal(e.to_string()))
}

/// `UnknownSession` unless the session exists.
pub async fn require_session<C: GenericClient>(c: &C, session: &SessionId) -> StoreResult<()> {
    let row = c
        .query_opt("SELECT 1 FROM sessions WHERE id = $1", &[&session.as_str()])
        .await
        .map_err(map_err)?;
    row.map(|_| ())
        .ok_or_else(|| StoreError::UnknownSession(session.to_string()))
}

/// Creates the session if new.
pub async fn ensure_session<C: GenericClient>(c: &C, session: &SessionId) -> StoreResult<()> {
    c.execute(
        "INSERT INTO sessions (id) VALUES ($1) ON CONFLICT DO NOTHING",
        &[&session.as_str()],
    )
    .await
    .map_err(map_err)?;
    Ok(())
}

/// Locks the session row: per-session sequence numbers are taken under it.
pub async fn lock_session<C: GenericClient>(c: &C, session: &SessionId) -> StoreResult<()> {
    let row = c
        .query_opt(
            "SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE",
            &[&session.as_str()],
        )
        .await
        .map_err(map_err)?;
    row.map(|_| ())
        .ok_or_else(|| StoreError::UnknownSession(session.to_string()))
}

/// Locks (creating if needed) the session's lease row and reads it.
pub async fn lock_lease<C: GenericClient>(
    c: &C,
    session: &SessionId,
) -> StoreResult<Option<LeaseRow>> {
    c.execute(
        "INSERT INTO leases (session_id, owner, fence, expires_at_ms) VALUES ($1, NULL, 0, 0)
         ON CONFLICT DO NOTHING",
        &[&session.as_str()],
    )
    .await
    .map_err(map_err)?;
    let row = c
        .query_one(
            "SELECT owner, fence, expires_at_ms FROM leases WHERE session_id = $1 FOR UPDATE",
            &[&session.as_str()],
        )
        .await
        .map_err(map_err)?;
    let fence = row.get::<_, i64>(1) as u64;
    Ok((fence > 0).then(|| LeaseRow {
        owner: row.get(0),
        fence,
        expires_at_ms: row.get::<_, i64>(2) as u64,
    }))
}

/// The session head.
pub async fn head<C: GenericClient>(c: &C, session: &SessionId) -> StoreResult<SessionHead> {
    let row = c
        .query_opt(
            "SELECT version, settings, usage FROM sessions WHERE id = $1",
            &[&session.as_str()],
        )
        .await
        .map_err(map_err)?
        .ok_or_else(|| StoreError::UnknownSession(session.to_string()))?;
    Ok(SessionHead {
        session_id: session.clone(),
        version: row.get::<_, i64>(0) as u64,
        settings: rules::decode("session settings", row.get(1))?,
        usage: rules::decode("session usage", row.get(2))?,
    })
}

/// A `messages` row.
pub fn stored_message(r: &Row) -> StoreResult<StoredMessage> {
    Ok(StoredMessage {
        version: r.get::<_, i64>(0) as u64,
        turn_id: r.get(1),
        message: rules::decode::<Message>("message", r.get(2))?,
    })
}

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

/// Pending and claimed entries, FIFO.
pub async fn live_entries<C: GenericClient>(
    c: &C,
    session: &SessionId,
) -> StoreResult<Vec<InboxEntry>> {
    let rows = c
        .query(
            &format!(
                "SELECT {INBOX_COLUMNS} FROM inbox
                 WHERE session_id = $1 AND state <> 'completed' ORDER BY seq"
            ),
            &[&session.as_str()],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(inbox_entry).collect()
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
        let rows = c
            .query(
                &format!(
                    "SELECT {INBOX_COLUMNS} FROM inbox
                     WHERE session_id = $1 AND state <> 'completed' AND seq > $2
                     ORDER BY seq LIMIT $3"
                ),
                &[
                    &session.as_str(),
                    &int(after),
                    &int(rules::CLAIM_PAGE as u64),
                ],
            )
            .await
            .map_err(map_err)?;
        let page = rows
            .iter()
            .map(inbox_entry)
            .collect::<StoreResult<Vec<_>>>()?;
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

/// Appends events (the session row must be locked); known ids are skipped.
pub async fn insert_events<C: GenericClient>(
    c: &C,
    session: &SessionId,
    events: &[SessionEvent],
) -> StoreResult<()> {
    for e in events {
        c.execute(
            "INSERT INTO events (session_id, cursor, id, body)
             SELECT $1, COALESCE(MAX(cursor), 0) + 1, $2, $3 FROM events WHERE session_id = $1
             ON CONFLICT DO NOTHING",
            &[&session.as_str(), &e.id, &json(e)?],
        )
        .await
        .map_err(map_err)?;
    }
    Ok(())
}

fn fault(faults: &FaultSwitch, stage: &str) -> StoreResult<()> {
    faults.check(stage).map_err(StoreError::Injected)
}

/// The final commit, inside the caller's transaction: the reads
/// [`commit_plan::decide`] needs (the lease row locked first, so a retried
/// commit of the same turn sees the first one's receipt instead of its
/// released lease), then the plan's stages, each passing its fault point.
pub async fn commit<C: GenericClient>(
    c: &C,
    req: &CommitRequest,
    hash: &str,
    faults: &FaultSwitch,
) -> StoreResult<CommitReceipt> {
    let session = req.session_id.as_str();
    require_session(c, &req.session_id).await?;
    let lease = lock_lease(c, &req.session_id).await?;
    let receipt = c
        .query_opt(
            "SELECT version, commit_hash FROM turns WHERE session_id = $1 AND turn_id = $2",
            &[&session, &req.turn_id],
        )
        .await
        .map_err(map_err)?
        .map(|r| (r.get::<_, i64>(0) as u64, r.get::<_, String>(1)));
    let head = c
        .query_opt(
            "SELECT version, usage FROM sessions WHERE id = $1 FOR UPDATE",
            &[&session],
        )
        .await
        .map_err(map_err)?
        .map(|r| {
            let usage: Usage = rules::decode("session usage", r.get(1))?;
            Ok::<_, StoreError>((r.get::<_, i64>(0) as u64, usage))
        })
        .transpose()?;
    let reads = CommitReads {
        receipt,
        lease,
        head,
    };
    let plan = match commit_plan::decide(req, hash.to_string(), reads)? {
        Decision::Replayed(receipt) => return Ok(receipt),
        Decision::Apply(plan) => plan,
    };
    for stage in plan.stages() {
        apply(c, &req.session_id, &stage).await?;
        fault(faults, stage.fault_point())?;
    }
    Ok(plan.receipt())
}

/// Writes one stage of a commit plan.
async fn apply<C: GenericClient>(c: &C, sid: &SessionId, stage: &Stage<'_>) -> StoreResult<()> {
    let session = sid.as_str();
    match stage {
        Stage::Messages {
            version,
            turn_id,
            messages,
        } => {
            for (ord, m) in messages.iter().enumerate() {
                c.execute(
                    "INSERT INTO messages (session_id, version, ord, turn_id, body) VALUES ($1, $2, $3, $4, $5)",
                    &[&session, &int(*version), &(ord as i64), turn_id, &json(m)?],
                )
                .await
                .map_err(map_err)?;
            }
        }
        Stage::Inbox { completed } => {
            for id in completed.iter() {
                let n = c
                    .execute(
                        "UPDATE inbox SET state = 'completed' WHERE session_id = $1 AND id = $2",
                        &[&session, id],
                    )
                    .await
                    .map_err(map_err)?;
                if n == 0 {
                    return Err(StoreError::InvalidArgument(format!(
                        "unknown inbox entry '{id}'"
                    )));
                }
            }
        }
        Stage::Events { events } => insert_events(c, sid, events).await?,
        Stage::Head {
            version,
            usage,
            settings,
        } => {
            c.execute(
                "UPDATE sessions SET version = $2, usage = $3 WHERE id = $1",
                &[&session, &int(*version), &json(usage)?],
            )
            .await
            .map_err(map_err)?;
            if let Some(settings) = settings {
                c.execute(
                    "UPDATE sessions SET settings = $2 WHERE id = $1",
                    &[&session, &json(settings)?],
                )
                .await
                .map_err(map_err)?;
            }
        }
        Stage::ReleaseLease { fence } => {
            c.execute(
                "UPDATE leases SET owner = NULL WHERE session_id = $1 AND fence = $2",
                &[&session, &int(*fence)],
            )
            .await
            .map_err(map_err)?;
        }
        Stage::Receipt { req, version, hash } => {
            c.execute(
                "INSERT INTO turns (session_id, turn_id, version, outcome, usage, commit_hash,
                                    started_at_ms, finished_at_ms)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                &[
                    &session,
                    &req.turn_id,
                    &int(*version),
                    &json(&req.outcome)?,
                    &json(&req.usage)?,
                    hash,
                    &int(req.started_at_ms),
                    &int(req.finished_at_ms),
                ],
            )
            .await
            .map_err(map_err)?;
        }
    }
    Ok(())
}

/// Committed turns in order: all of them, or the one named.
pub async fn turns<C: GenericClient>(
    c: &C,
    session: &SessionId,
    only: Option<&str>,
) -> StoreResult<Vec<TurnRecord>> {
    let rows = c
        .query(
            "SELECT turn_id, version, outcome, usage, commit_hash, started_at_ms, finished_at_ms
             FROM turns WHERE session_id = $1 AND ($2::TEXT IS NULL OR turn_id = $2)
             ORDER BY version",
            &[&session.as_str(), &only],
        )
        .await
        .map_err(map_err)?;
    rows.iter()
        .map(|r| {
            Ok(TurnRecord {
                turn_id: r.get(0),
                version: r.get::<_, i64>(1) as u64,
                outcome: rules::decode("turn outcome", r.get(2))?,
                usage: rules::decode("turn usage", r.get(3))?,
                commit_hash: r.get(4),
                started_at_ms: r.get::<_, i64>(5) as u64,
                finished_at_ms: r.get::<_, i64>(6) as u64,
            })
        })
        .collect()
}

/// A committed turn and the messages it appended.
pub async fn committed_turn<C: GenericClient>(
    c: &C,
    session: &SessionId,
    turn_id: &str,
) -> StoreResult<Option<CommittedTurn>> {
    let Some(record) = turns(c, session, Some(turn_id)).await?.pop() else {
        return Ok(None);
    };
    let rows = c
        .query(
            "SELECT version, turn_id, body FROM messages
             WHERE session_id = $1 AND version = $2 ORDER BY ord",
            &[&session.as_str(), &int(record.version)],
        )
        .await
        .map_err(map_err)?;
    let messages = rows
        .iter()
        .map(|r| stored_message(r).map(|m| m.message))
        .collect::<StoreResult<Vec<_>>>()?;
    Ok(Some(CommittedTurn { record, messages }))
}

/// Pending steers after `after_seq`, FIFO (index `inbox_steer`).
pub async fn pending_steers<C: GenericClient>(
    c: &C,
    session: &SessionId,
    after_seq: u64,
    limit: usize,
) -> StoreResult<Vec<InboxEntry>> {
    let rows = c
        .query(
            &format!(
                "SELECT {INBOX_COLUMNS} FROM inbox
                 WHERE session_id = $1 AND steer AND state = 'pending' AND seq > $2
                 ORDER BY seq LIMIT $3"
            ),
            &[&session.as_str(), &int(after_seq), &int(limit as u64)],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(inbox_entry).collect()
}

/// The first `limit` live entries, FIFO.
pub async fn live_head<C: GenericClient>(
    c: &C,
    session: &SessionId,
    limit: usize,
) -> StoreResult<Vec<InboxEntry>> {
    let rows = c
        .query(
            &format!(
                "SELECT {INBOX_COLUMNS} FROM inbox
                 WHERE session_id = $1 AND state <> 'completed' ORDER BY seq LIMIT $2"
            ),
            &[&session.as_str(), &int(limit as u64)],
        )
        .await
        .map_err(map_err)?;
    rows.iter().map(inbox_entry).collect()
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
