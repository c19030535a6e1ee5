//! The SQLite store: `Durable`, one file in WAL mode, the embedded default.
//!
//! One connection behind a mutex serves this process; other processes on the
//! same file are serialized by SQLite's own locking (`BEGIN IMMEDIATE` for
//! every write, a busy timeout for waits).

mod commit;
mod inbox;
mod records;
mod rows;

use rows::{col, collect, exec, row};
mod schema;
mod waits;

use super::rules::{self, StoreOptions};
use super::*;
use crate::model::{Message, SessionEvent, SessionId, StoredEvent};
use rusqlite::{Connection, Transaction, params};
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

pub(super) fn parse_state(s: &str) -> StoreResult<InboxState> {
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
        let conn = schema::open(&path, options.sqlite_sync)?;
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
impl HistoryStore for SqliteStore {
    async fn head(&self, session: &SessionId) -> StoreResult<SessionHead> {
        self.read(|c| Self::head_in(c, session))
    }

    async fn messages(
        &self,
        session: &SessionId,
        at_version: u64,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            collect(
                c,
                "SELECT version, turn_id, body FROM messages
                 WHERE session_id = ?1 AND version <= ?2 ORDER BY version, ord",
                params![session.as_str(), clamp(at_version)],
                |r| {
                    Ok(StoredMessage {
                        version: col::<i64>(r, 0)? as u64,
                        turn_id: col(r, 1)?,
                        message: rules::decode::<Message>("message", &col::<String>(r, 2)?)?,
                    })
                },
            )
        })
    }

    async fn recent_messages(
        &self,
        session: &SessionId,
        at_version: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            let mut newest_first = collect(
                c,
                "SELECT version, turn_id, body FROM messages
                 WHERE session_id = ?1 AND version <= ?2 ORDER BY version DESC, ord DESC LIMIT +?3",
                params![session.as_str(), clamp(at_version), clamp(limit as u64)],
                |r| {
                    Ok(StoredMessage {
                        version: col::<i64>(r, 0)? as u64,
                        turn_id: col(r, 1)?,
                        message: rules::decode::<Message>("message", &col::<String>(r, 2)?)?,
                    })
                },
            )?;
            newest_first.reverse();
            Ok(newest_first)
        })
    }

    async fn turns(&self, session: &SessionId) -> StoreResult<Vec<TurnRecord>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            Self::turn_rows(c, session, None)
        })
    }

    async fn committed_turn(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Option<CommittedTurn>> {
        self.read(|c| Self::committed_turn_in(c, session, turn_id))
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn acquire_lease(
        &self,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
    ) -> StoreResult<Lease> {
        let now = self.options.clock.now_ms();
        self.write(|tx| Self::acquire_in(tx, session, owner, ttl_ms, now))
    }

    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64) -> StoreResult<Lease> {
        let expires_at_ms = self.options.clock.now_ms().saturating_add(ttl_ms);
        self.write(|tx| {
            let n = exec(
                tx,
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
            exec(tx,
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
}

#[async_trait]
impl InboxStore for SqliteStore {
    async fn inbox_page(&self, session: &SessionId, limit: usize) -> StoreResult<InboxPage> {
        self.read(|c| Self::inbox_page_in(c, session, limit))
    }

    async fn live_inputs_total(&self) -> StoreResult<u64> {
        self.read(|c| {
            let sql = "SELECT COALESCE(SUM(n), 0) FROM inbox_live_count";
            row(c, sql, [], |r| r.get::<_, i64>(0))
                .map(|n| n as u64)
                .map_err(map_err)
        })
    }

    async fn live_head(&self, session: &SessionId, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        self.read(|c| {
            Self::require_session(c, session)?;
            Self::live_page(c, session, limit as u64)
        })
    }

    async fn pending_steers(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        self.read(|c| Self::pending_steers_in(c, session, after_seq, limit))
    }

    async fn enqueue(&self, session: &SessionId, entry: NewInboxEntry) -> StoreResult<Enqueued> {
        rules::check_id("inbox entry id", &entry.id)?;
        let payload = rules::encode_limited(
            "inbox entry",
            &entry.payload,
            self.options.max_payload_bytes,
        )?;
        self.write(|tx| Self::enqueue_in(tx, session, &entry, &payload))
    }

    async fn claim(&self, lease: &Lease, target: ClaimTarget) -> StoreResult<Option<Claim>> {
        self.write(|tx| Self::claim_in(tx, lease, &target))
    }

    async fn abandon_claims(&self, session: &SessionId, fence: u64) -> StoreResult<u64> {
        self.write(|tx| {
            Self::require_session(tx, session)?;
            let n = exec(
                tx,
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
}

#[async_trait]
impl CommitStore for SqliteStore {
    async fn commit(&self, req: &CommitRequest) -> StoreResult<CommitReceipt> {
        rules::validate_commit(req, self.options.max_payload_bytes)?;
        let hash = rules::commit_hash(req)?;
        self.write(|tx| self.commit_in(tx, req, &hash))
    }
}

#[async_trait]
impl EventStore for SqliteStore {
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
            collect(
                c,
                "SELECT cursor, body FROM events WHERE session_id = ?1 AND cursor > ?2
                 ORDER BY cursor LIMIT +?3",
                params![session.as_str(), clamp(cursor), clamp(limit as u64)],
                |r| {
                    Ok(StoredEvent {
                        cursor: col::<i64>(r, 0)? as u64,
                        event: rules::decode("event", &col::<String>(r, 1)?)?,
                    })
                },
            )
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

    async fn start_turn(
        &self,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
        enqueue: Option<NewInboxEntry>,
        target: ClaimTarget,
    ) -> StoreResult<TurnStart> {
        let payload = match &enqueue {
            Some(entry) => {
                rules::check_id("inbox entry id", &entry.id)?;
                Some(rules::encode_limited(
                    "inbox entry",
                    &entry.payload,
                    self.options.max_payload_bytes,
                )?)
            }
            None => None,
        };
        let now = self.options.clock.now_ms();
        // One write transaction instead of four: the first step of every
        // turn pays for one commit.
        self.write(|tx| {
            let enqueued = match (&enqueue, &payload) {
                (Some(entry), Some(payload)) => {
                    Some(Self::enqueue_in(tx, session, entry, payload)?)
                }
                _ => None,
            };
            let lease = Self::acquire_in(tx, session, owner, ttl_ms, now)?;
            let claim = Self::claim_in(tx, &lease, &target)?;
            let head = Self::head_in(tx, session)?;
            let next_live = match claim {
                Some(_) => None,
                None => rules::next_live_input(&Self::claimable(tx, session)?),
            };
            Ok(TurnStart {
                lease,
                claim,
                head,
                enqueued,
                next_live,
            })
        })
    }
}
