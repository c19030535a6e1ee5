//! The statements the PostgreSQL store runs, shared by its operations:
//! session and lease row locks, the head, event appends, committed turns
//! and the final commit (the inbox's are in `inbox.rs`).

use super::int;
use super::schema::map_err;
use crate::fault::FaultSwitch;
use crate::model::{Message, SessionEvent, SessionId, Usage};
use crate::store::commit_plan::{self, CommitReads, Decision, Stage};
use crate::store::rules::{self, LeaseRow};
use crate::store::{
    CommitReceipt, CommitRequest, CommittedTurn, SessionHead, StoreError, StoreResult,
    StoredMessage, TurnRecord,
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
