//! The SQLite store: `Durable`, one file in WAL mode, the embedded default.
//!
//! One connection behind a mutex serves this process; other processes on the
//! same file are serialized by SQLite's own locking (`BEGIN IMMEDIATE` for
//! every write, a busy timeout for waits).

mod schema;

use super::rules::{self, LeaseRow, StoreOptions};
use super::*;
use crate::model::{Message, SessionEvent, SessionId, StoredEvent, TurnOutcome, Usage};
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

    fn lease_row(conn: &Connection, session: &SessionId) -> StoreResult<Option<LeaseRow>> {
        conn.query_row(
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

    fn session_exists(conn: &Connection, session: &SessionId) -> StoreResult<bool> {
        conn.query_row(
            "SELECT 1 FROM sessions WHERE id = ?1",
            params![session.as_str()],
            |_| Ok(()),
        )
        .optional()
        .map(|o| o.is_some())
        .map_err(map_err)
    }

    fn require_session(conn: &Connection, session: &SessionId) -> StoreResult<()> {
        if Self::session_exists(conn, session)? {
            Ok(())
        } else {
            Err(StoreError::UnknownSession(session.to_string()))
        }
    }

    fn ensure_session(conn: &Connection, session: &SessionId) -> StoreResult<()> {
        conn.execute(
            "INSERT OR IGNORE INTO sessions (id) VALUES (?1)",
            params![session.as_str()],
        )
        .map_err(map_err)?;
        Ok(())
    }

    fn live_entries(conn: &Connection, session: &SessionId) -> StoreResult<Vec<InboxEntry>> {
        let mut stmt = conn
            .prepare_cached(
                "SELECT id, seq, payload, state, claim_fence FROM inbox
                 WHERE session_id = ?1 AND state != 'completed' ORDER BY seq",
            )
            .map_err(map_err)?;
        let rows = stmt
            .query_map(params![session.as_str()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(map_err)?;
        let mut out = Vec::new();
        for row in rows {
            let (id, seq, payload, state, fence) = row.map_err(map_err)?;
            out.push(InboxEntry {
                id,
                seq: seq as u64,
                payload: rules::decode("inbox payload", &payload)?,
                state: parse_state(&state)?,
                claim_fence: fence.map(|f| f as u64),
            });
        }
        Ok(out)
    }

    fn insert_events(
        conn: &Connection,
        session: &SessionId,
        events: &[SessionEvent],
    ) -> StoreResult<()> {
        for e in events {
            let body = serde_json::to_string(e).map_err(|e| StoreError::Internal(e.to_string()))?;
            conn.execute(
                "INSERT OR IGNORE INTO events (session_id, cursor, id, body)
                 SELECT ?1, COALESCE(MAX(cursor), 0) + 1, ?2, ?3 FROM events WHERE session_id = ?1",
                params![session.as_str(), e.id, body],
            )
            .map_err(map_err)?;
        }
        Ok(())
    }

    fn fault(&self, stage: &str) -> StoreResult<()> {
        self.options
            .faults
            .check(stage)
            .map_err(StoreError::Injected)
    }

    fn existing_receipt(
        conn: &Connection,
        req: &CommitRequest,
        hash: &str,
    ) -> StoreResult<Option<CommitReceipt>> {
        let found: Option<(i64, String)> = conn
            .query_row(
                "SELECT version, commit_hash FROM turns WHERE session_id = ?1 AND turn_id = ?2",
                params![req.session_id.as_str(), req.turn_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(map_err)?;
        match found {
            None => Ok(None),
            Some((_, stored)) if stored != hash => Err(StoreError::CommitConflict {
                turn_id: req.turn_id.clone(),
            }),
            Some((version, _)) => Ok(Some(CommitReceipt {
                turn_id: req.turn_id.clone(),
                version: version as u64,
                commit_hash: hash.to_string(),
                replayed: true,
            })),
        }
    }

    fn commit_in(
        &self,
        tx: &Transaction<'_>,
        req: &CommitRequest,
        hash: &str,
    ) -> StoreResult<CommitReceipt> {
        let session = req.session_id.as_str();
        if let Some(receipt) = Self::existing_receipt(tx, req, hash)? {
            return Ok(receipt);
        }
        if !rules::lease_is_current(Self::lease_row(tx, &req.session_id)?.as_ref(), &req.lease) {
            return Err(rules::lease_lost(&req.lease));
        }
        let (head, usage_json): (i64, String) = tx
            .query_row(
                "SELECT version, usage FROM sessions WHERE id = ?1",
                params![session],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(map_err)?
            .ok_or_else(|| StoreError::UnknownSession(session.to_string()))?;
        if head as u64 != req.base_version {
            return Err(StoreError::VersionConflict {
                expected: req.base_version,
                actual: head as u64,
            });
        }
        let version = head as u64 + 1;
        for (ord, m) in req.messages.iter().enumerate() {
            let body = serde_json::to_string(m).map_err(|e| StoreError::Internal(e.to_string()))?;
            tx.execute(
                "INSERT INTO messages (session_id, version, ord, turn_id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![session, version as i64, ord as i64, req.turn_id, body],
            )
            .map_err(map_err)?;
        }
        self.fault(rules::COMMIT_STAGES[0])?;
        for id in &req.completed_entries {
            let n = tx
                .execute(
                    "UPDATE inbox SET state = 'completed' WHERE session_id = ?1 AND id = ?2",
                    params![session, id],
                )
                .map_err(map_err)?;
            if n == 0 {
                return Err(StoreError::InvalidArgument(format!(
                    "unknown inbox entry '{id}'"
                )));
            }
        }
        self.fault(rules::COMMIT_STAGES[1])?;
        Self::insert_events(tx, &req.session_id, &req.events)?;
        self.fault(rules::COMMIT_STAGES[2])?;
        let mut usage: Usage = rules::decode("session usage", &usage_json)?;
        usage.add(&req.usage);
        let usage_json =
            serde_json::to_string(&usage).map_err(|e| StoreError::Internal(e.to_string()))?;
        tx.execute(
            "UPDATE sessions SET version = ?2, usage = ?3 WHERE id = ?1",
            params![session, version as i64, usage_json],
        )
        .map_err(map_err)?;
        if let Some(settings) = &req.settings {
            let json =
                serde_json::to_string(settings).map_err(|e| StoreError::Internal(e.to_string()))?;
            tx.execute(
                "UPDATE sessions SET settings = ?2 WHERE id = ?1",
                params![session, json],
            )
            .map_err(map_err)?;
        }
        self.fault(rules::COMMIT_STAGES[3])?;
        if !req.keep_lease {
            tx.execute(
                "UPDATE leases SET owner = NULL WHERE session_id = ?1 AND fence = ?2",
                params![session, req.lease.fence as i64],
            )
            .map_err(map_err)?;
        }
        self.fault(rules::COMMIT_STAGES[4])?;
        let outcome =
            serde_json::to_string(&req.outcome).map_err(|e| StoreError::Internal(e.to_string()))?;
        let turn_usage =
            serde_json::to_string(&req.usage).map_err(|e| StoreError::Internal(e.to_string()))?;
        tx.execute(
            "INSERT INTO turns (session_id, turn_id, version, outcome, usage, commit_hash)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                session,
                req.turn_id,
                version as i64,
                outcome,
                turn_usage,
                hash
            ],
        )
        .map_err(map_err)?;
        self.fault(rules::COMMIT_STAGES[5])?;
        Ok(CommitReceipt {
            turn_id: req.turn_id.clone(),
            version,
            commit_hash: hash.to_string(),
            replayed: false,
        })
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
