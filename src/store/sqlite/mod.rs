//! The SQLite store: `Durable`, one file in WAL mode, the embedded default.
//!
//! One connection behind a mutex serves this process; other processes on the
//! same file are serialized by SQLite's own locking (`BEGIN IMMEDIATE` for
//! every write, a busy timeout for waits).

mod commit;
mod rows;
mod schema;

use super::rules::{self, StoreOptions};
use super::*;
use crate::model::{Message, SessionEvent, SessionId, StoredEvent, TurnOutcome};
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use schema::map_err;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

pub use schema::{APPLICATION_ID, SCHEMA_VERSION};

/// A store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    options: StoreOptions,
    conn: Mutex<Connection>,
}

/// SQLite integers are signed: clamp a u64 bound into range.
fn clamp(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

fn parse_state(s: &str) -> StoreResult<InboxState> {
    match s {
        "pending" => Ok(InboxState::Pending),
        "claimed" => Ok(InboxState::Claimed),
        "completed" => Ok(InboxState::Completed),
        other => Err(StoreError::Corrupt(format!("inbox state '{other}'"))),
    }
}

impl SqliteStore {
    /// Opens (creating and migrating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>) -> StoreResult<Self> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens the database at `path` with options.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> StoreResult<Self> {
        let path = path.as_ref().to_path_buf();
        let conn = schema::open(&path)?;
        Ok(SqliteStore {
            path,
            options,
            conn: Mutex::new(conn),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        f(&conn)
    }

    /// Runs `f` in an immediate (write-locked) transaction, committed only
    /// if `f` succeeds.
    fn write<T>(&self, f: impl FnOnce(&Transaction<'_>) -> StoreResult<T>) -> StoreResult<T> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let out = f(&tx)?;
        tx.commit().map_err(map_err)?;
        Ok(out)
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    fn durability_tier(&self) -> DurabilityTier {
        DurabilityTier::Durable
    }

    fn backend_name(&self) -> &'static str {
        "sqlite"
    }

    async fn head(&self, session: &SessionId) -> StoreResult<SessionHead> {
        self.read(|c| {
            let (version, settings, usage): (i64, String, String) = c
                .query_row(
                    "SELECT version, settings, usage FROM sessions WHERE id = ?1",
                    params![session.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()
                .map_err(map_err)?
                .ok_or_else(|| StoreError::UnknownSession(session.to_string()))?;
            Ok(SessionHead {
                session_id: session.clone(),
                version: version as u64,
                settings: rules::decode("session settings", &settings)?,
                usage: rules::decode("session usage", &usage)?,
            })
        })
    }

    async fn messages(
        &self,
        session: &SessionId,
        at_version: u64,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT version, turn_id, body FROM messages
                     WHERE session_id = ?1 AND version <= ?2 ORDER BY version, ord",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![session.as_str(), clamp(at_version)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(map_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (version, turn_id, body) = row.map_err(map_err)?;
                out.push(StoredMessage {
                    version: version as u64,
                    turn_id,
                    message: rules::decode::<Message>("message", &body)?,
                });
            }
            Ok(out)
        })
    }

    async fn turns(&self, session: &SessionId) -> StoreResult<Vec<TurnRecord>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT turn_id, version, outcome, usage, commit_hash FROM turns
                     WHERE session_id = ?1 ORDER BY version",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![session.as_str()], |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, String>(4)?,
                    ))
                })
                .map_err(map_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (turn_id, version, outcome, usage, commit_hash) = row.map_err(map_err)?;
                out.push(TurnRecord {
                    turn_id,
                    version: version as u64,
                    outcome: rules::decode::<TurnOutcome>("turn outcome", &outcome)?,
                    usage: rules::decode("turn usage", &usage)?,
                    commit_hash,
                });
            }
            Ok(out)
        })
    }

    async fn acquire_lease(
        &self,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
    ) -> StoreResult<Lease> {
        let now = self.options.clock.now_ms();
        self.write(|tx| {
            Self::ensure_session(tx, session)?;
            let current = Self::lease_row(tx, session)?;
            let acquired = rules::decide_acquire(session, current.as_ref(), owner, ttl_ms, now)?;
            if acquired.new_fence {
                tx.execute(
                    "UPDATE inbox SET state = 'pending', claim_fence = NULL
                     WHERE session_id = ?1 AND state = 'claimed'",
                    params![session.as_str()],
                )
                .map_err(map_err)?;
            }
            tx.execute(
                "INSERT INTO leases (session_id, owner, fence, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (session_id) DO UPDATE SET owner = ?2, fence = ?3, expires_at_ms = ?4",
                params![
                    session.as_str(),
                    owner,
                    acquired.lease.fence as i64,
                    acquired.lease.expires_at_ms as i64
                ],
            )
            .map_err(map_err)?;
            Ok(acquired.lease)
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64) -> StoreResult<Lease> {
        let expires_at_ms = self.options.clock.now_ms().saturating_add(ttl_ms);
        self.write(|tx| {
            let n = tx
                .execute(
                    "UPDATE leases SET expires_at_ms = ?4
                     WHERE session_id = ?1 AND owner = ?2 AND fence = ?3",
                    params![
                        lease.session_id.as_str(),
                        lease.owner,
                        lease.fence as i64,
                        expires_at_ms as i64
                    ],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(rules::lease_lost(lease));
            }
            Ok(Lease {
                expires_at_ms,
                ..lease.clone()
            })
        })
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        self.write(|tx| {
            tx.execute(
                "UPDATE leases SET owner = NULL WHERE session_id = ?1 AND owner = ?2 AND fence = ?3",
                params![lease.session_id.as_str(), lease.owner, lease.fence as i64],
            )
            .map_err(map_err)?;
            Ok(())
        })
    }

    async fn current_lease(&self, session: &SessionId) -> StoreResult<Option<Lease>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            Ok(Self::lease_row(c, session)?.and_then(|row| {
                row.owner.map(|owner| Lease {
                    session_id: session.clone(),
                    owner,
                    fence: row.fence,
                    expires_at_ms: row.expires_at_ms,
                })
            }))
        })
    }

    async fn enqueue(&self, session: &SessionId, entry: NewInboxEntry) -> StoreResult<Enqueued> {
        rules::check_id("inbox entry id", &entry.id)?;
        let payload = rules::encode_limited(
            "inbox entry",
            &entry.payload,
            self.options.max_payload_bytes,
        )?;
        self.write(|tx| {
            Self::ensure_session(tx, session)?;
            let existing: Option<(i64, String, String, Option<i64>)> = tx
                .query_row(
                    "SELECT seq, payload, state, claim_fence FROM inbox WHERE session_id = ?1 AND id = ?2",
                    params![session.as_str(), entry.id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
                )
                .optional()
                .map_err(map_err)?;
            if let Some((seq, payload, state, fence)) = existing {
                return Ok(Enqueued {
                    entry: InboxEntry {
                        id: entry.id.clone(),
                        seq: seq as u64,
                        payload: rules::decode("inbox payload", &payload)?,
                        state: parse_state(&state)?,
                        claim_fence: fence.map(|f| f as u64),
                    },
                    duplicate: true,
                });
            }
            let seq: i64 = tx
                .query_row(
                    "SELECT COALESCE(MAX(seq), 0) + 1 FROM inbox WHERE session_id = ?1",
                    params![session.as_str()],
                    |r| r.get(0),
                )
                .map_err(map_err)?;
            tx.execute(
                "INSERT INTO inbox (session_id, seq, id, payload, state) VALUES (?1, ?2, ?3, ?4, 'pending')",
                params![session.as_str(), seq, entry.id, payload],
            )
            .map_err(map_err)?;
            Ok(Enqueued {
                entry: InboxEntry {
                    id: entry.id.clone(),
                    seq: seq as u64,
                    payload: entry.payload.clone(),
                    state: InboxState::Pending,
                    claim_fence: None,
                },
                duplicate: false,
            })
        })
    }

    async fn claim(&self, lease: &Lease, target: ClaimTarget) -> StoreResult<Option<Claim>> {
        self.write(|tx| {
            Self::require_session(tx, &lease.session_id)?;
            if !rules::lease_is_current(Self::lease_row(tx, &lease.session_id)?.as_ref(), lease) {
                return Err(rules::lease_lost(lease));
            }
            let live = Self::live_entries(tx, &lease.session_id)?;
            let mut taken = rules::select_claim(&live, lease.fence, &target);
            for e in taken.iter_mut() {
                tx.execute(
                    "UPDATE inbox SET state = 'claimed', claim_fence = ?3 WHERE session_id = ?1 AND id = ?2",
                    params![lease.session_id.as_str(), e.id, lease.fence as i64],
                )
                .map_err(map_err)?;
                e.state = InboxState::Claimed;
                e.claim_fence = Some(lease.fence);
            }
            Ok(rules::into_claim(taken))
        })
    }

    async fn abandon_claims(&self, session: &SessionId, fence: u64) -> StoreResult<u64> {
        self.write(|tx| {
            Self::require_session(tx, session)?;
            let n = tx
                .execute(
                    "UPDATE inbox SET state = 'pending', claim_fence = NULL
                     WHERE session_id = ?1 AND state = 'claimed' AND claim_fence = ?2",
                    params![session.as_str(), fence as i64],
                )
                .map_err(map_err)?;
            Ok(n as u64)
        })
    }

    async fn inbox(&self, session: &SessionId) -> StoreResult<Vec<InboxEntry>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            Self::live_entries(c, session)
        })
    }

    async fn commit(&self, req: &CommitRequest) -> StoreResult<CommitReceipt> {
        rules::validate_commit(req, self.options.max_payload_bytes)?;
        let hash = rules::commit_hash(req);
        self.write(|tx| self.commit_in(tx, req, &hash))
    }

    async fn append_events(&self, session: &SessionId, events: &[SessionEvent]) -> StoreResult<()> {
        for e in events {
            rules::check_id("event id", &e.id)?;
            rules::encode_limited("event", e, self.options.max_payload_bytes)?;
        }
        self.write(|tx| {
            Self::require_session(tx, session)?;
            Self::insert_events(tx, session, events)
        })
    }

    async fn events_after(
        &self,
        session: &SessionId,
        cursor: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT cursor, body FROM events WHERE session_id = ?1 AND cursor > ?2
                     ORDER BY cursor LIMIT ?3",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(
                    params![session.as_str(), clamp(cursor), clamp(limit as u64)],
                    |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
                )
                .map_err(map_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (cursor, body) = row.map_err(map_err)?;
                out.push(StoredEvent {
                    cursor: cursor as u64,
                    event: rules::decode("event", &body)?,
                });
            }
            Ok(out)
        })
    }

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
            tx.execute(
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
            let mut stmt = c
                .prepare_cached(
                    "SELECT seq, step, record FROM checkpoints
                     WHERE session_id = ?1 AND turn_id = ?2 ORDER BY seq",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![session.as_str(), turn_id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                    ))
                })
                .map_err(map_err)?;
            let mut out = Vec::new();
            for row in rows {
                let (seq, step, record) = row.map_err(map_err)?;
                out.push(Checkpoint {
                    session_id: session.clone(),
                    turn_id: turn_id.to_string(),
                    seq: seq as u64,
                    step,
                    record: rules::decode("checkpoint", &record)?,
                });
            }
            Ok(out)
        })
    }

    async fn unfinished_turns(&self, session: &SessionId) -> StoreResult<Vec<String>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            let mut stmt = c
                .prepare_cached(
                    "SELECT turn_id FROM checkpoints c WHERE session_id = ?1
                     AND NOT EXISTS (SELECT 1 FROM turns t WHERE t.session_id = c.session_id AND t.turn_id = c.turn_id)
                     GROUP BY turn_id ORDER BY MIN(rowid)",
                )
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![session.as_str()], |r| r.get::<_, String>(0))
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        })
    }

    async fn checkpoint_count(&self) -> StoreResult<u64> {
        self.read(|c| {
            c.query_row("SELECT count(*) FROM checkpoints", [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n as u64)
            .map_err(map_err)
        })
    }

    async fn put_note(&self, session: &SessionId, key: &str, text: &str) -> StoreResult<bool> {
        rules::check_id("note key", key)?;
        rules::encode_limited("note", &text, self.options.max_payload_bytes)?;
        self.write(|tx| {
            Self::ensure_session(tx, session)?;
            let n = tx
                .execute(
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
            let mut stmt = c
                .prepare_cached("SELECT key, text FROM notes WHERE session_id = ?1 ORDER BY seq")
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![session.as_str()], |r| {
                    Ok(Note {
                        key: r.get(0)?,
                        text: r.get(1)?,
                    })
                })
                .map_err(map_err)?;
            rows.collect::<Result<Vec<_>, _>>().map_err(map_err)
        })
    }

    async fn count_effect(&self, session: &SessionId, key: &str) -> StoreResult<u64> {
        rules::check_id("effect key", key)?;
        self.write(|tx| {
            Self::ensure_session(tx, session)?;
            tx.query_row(
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
            let mut stmt = c
                .prepare_cached("SELECT key, count FROM effects WHERE session_id = ?1")
                .map_err(map_err)?;
            let rows = stmt
                .query_map(params![session.as_str()], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
                })
                .map_err(map_err)?;
            rows.collect::<Result<_, _>>().map_err(map_err)
        })
    }
}
