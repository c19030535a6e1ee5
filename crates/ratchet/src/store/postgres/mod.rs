//! The PostgreSQL store: `Durable`, shared by several ratchet instances.
//! Same semantics as SQLite, made safe under concurrency by row locks: the
//! session row serializes per-session sequence numbers (inbox, events,
//! notes, versions), the lease row serializes lease changes with claims and
//! commits. A server outage surfaces as a retryable `store_unavailable`,
//! never a partial commit: every write is one transaction.

mod inbox;
mod ops;
mod records;
mod schema;
mod tls;
mod waits;

pub use schema::redact;
pub use tls::{PgTls, SslMode};

use super::rules::{self, StoreOptions};
use super::*;
use crate::model::{SessionEvent, SessionId, StoredEvent};
use deadpool_postgres::{Object, Pool};
use schema::{map_err, pool_err};

use std::str::FromStr;

/// Default connection pool size.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// A store in a PostgreSQL database (or one schema of it).
pub struct PostgresStore {
    pool: Pool,
    options: StoreOptions,
}

impl PostgresStore {
    /// Connects with a `postgres://` URL (or key=value string) and migrates.
    /// TLS follows the string's `sslmode` and `sslrootcert` (see [`PgTls`]).
    /// Errors never repeat the URL, which may hold a password.
    pub async fn connect(url: &str, options: StoreOptions, pool_size: usize) -> StoreResult<Self> {
        Self::connect_with_tls(url, None, None, options, pool_size).await
    }

    /// [`connect`](Self::connect), with a TLS mode and root CA file that
    /// override the string's own when set. A password in the string, or in
    /// `PGPASSWORD` when the string has none, is registered with
    /// [`crate::secrets`].
    pub async fn connect_with_tls(
        url: &str,
        mode: Option<SslMode>,
        root_cert: Option<std::path::PathBuf>,
        options: StoreOptions,
        pool_size: usize,
    ) -> StoreResult<Self> {
        for pw in crate::secrets::embedded_passwords(url) {
            let _ = crate::secrets::register("the database URL", &pw);
        }
        let (rest, from_url) = tls::split_tls(url)?;
        let tls = from_url.overridden_by(mode, root_cert);
        let mut config = tokio_postgres::Config::from_str(&rest).map_err(|_| {
            StoreError::InvalidArgument(format!(
                "not a PostgreSQL connection string: {}",
                redact(url)
            ))
        })?;
        if config.get_password().is_none()
            && let Ok(pw) = std::env::var("PGPASSWORD")
        {
            config.password(pw);
        }
        Self::connect_config_tls(config, &tls, options, pool_size).await
    }

    /// Connects with a parsed config and migrates, TLS as the config's
    /// `ssl_mode` says (unverified).
    pub async fn connect_config(
        config: tokio_postgres::Config,
        options: StoreOptions,
        pool_size: usize,
    ) -> StoreResult<Self> {
        use tokio_postgres::config::SslMode as Driver;
        let mode = match config.get_ssl_mode() {
            Driver::Disable => SslMode::Disable,
            Driver::Require => SslMode::Require,
            _ => SslMode::Prefer,
        };
        let tls = PgTls {
            mode,
            root_cert: None,
        };
        Self::connect_config_tls(config, &tls, options, pool_size).await
    }

    /// Connects with a parsed config and TLS settings, and migrates.
    pub async fn connect_config_tls(
        config: tokio_postgres::Config,
        tls: &PgTls,
        options: StoreOptions,
        pool_size: usize,
    ) -> StoreResult<Self> {
        if let Some(pw) = config.get_password() {
            let _ = crate::secrets::register("the database password", &String::from_utf8_lossy(pw));
        }
        let pool = schema::pool(config, tls, pool_size)?;
        schema::migrate(&pool).await?;
        Ok(PostgresStore { pool, options })
    }

    async fn client(&self) -> StoreResult<Object> {
        self.pool.get().await.map_err(pool_err)
    }
}

fn state_str(s: InboxState) -> &'static str {
    match s {
        InboxState::Pending => "pending",
        InboxState::Claimed => "claimed",
        InboxState::Completed => "completed",
    }
}

fn parse_state(s: &str) -> StoreResult<InboxState> {
    match s {
        "pending" => Ok(InboxState::Pending),
        "claimed" => Ok(InboxState::Claimed),
        "completed" => Ok(InboxState::Completed),
        other => Err(StoreError::Corrupt(format!("inbox state '{other}'"))),
    }
}

fn int(n: u64) -> i64 {
    n.min(i64::MAX as u64) as i64
}

#[async_trait]
impl HistoryStore for PostgresStore {
    async fn head(&self, session: &SessionId) -> StoreResult<SessionHead> {
        let c = self.client().await?;
        ops::head(&c, session).await
    }

    async fn messages(
        &self,
        session: &SessionId,
        at_version: u64,
    ) -> StoreResult<Vec<StoredMessage>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let rows = c
            .query(
                "SELECT version, turn_id, body FROM messages WHERE session_id = $1 AND version <= $2
                 ORDER BY version, ord",
                &[&session.as_str(), &int(at_version)],
            )
            .await
            .map_err(map_err)?;
        rows.iter().map(ops::stored_message).collect()
    }

    async fn recent_messages(
        &self,
        session: &SessionId,
        at_version: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredMessage>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let rows = c
            .query(
                "SELECT version, turn_id, body FROM messages WHERE session_id = $1 AND version <= $2
                 ORDER BY version DESC, ord DESC LIMIT $3",
                &[&session.as_str(), &int(at_version), &int(limit as u64)],
            )
            .await
            .map_err(map_err)?;
        let mut out = rows
            .iter()
            .map(ops::stored_message)
            .collect::<StoreResult<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    async fn turns(&self, session: &SessionId) -> StoreResult<Vec<TurnRecord>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        ops::turns(&c, session, None).await
    }

    async fn committed_turn(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Option<CommittedTurn>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        ops::committed_turn(&c, session, turn_id).await
    }
}

#[async_trait]
impl LeaseStore for PostgresStore {
    async fn acquire_lease(
        &self,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
    ) -> StoreResult<Lease> {
        let now = self.options.clock.now_ms();
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        ops::ensure_session(&tx, session).await?;
        let current = ops::lock_lease(&tx, session).await?;
        let acquired = rules::decide_acquire(session, current.as_ref(), owner, ttl_ms, now)?;
        if acquired.requeue_claims {
            tx.execute(
                "UPDATE inbox SET state = 'pending', claim_fence = NULL
                 WHERE session_id = $1 AND state = 'claimed'",
                &[&session.as_str()],
            )
            .await
            .map_err(map_err)?;
        }
        tx.execute(
            "UPDATE leases SET owner = $2, fence = $3, expires_at_ms = $4 WHERE session_id = $1",
            &[
                &session.as_str(),
                &owner,
                &int(acquired.lease.fence),
                &int(acquired.lease.expires_at_ms),
            ],
        )
        .await
        .map_err(map_err)?;
        tx.commit().await.map_err(map_err)?;
        Ok(acquired.lease)
    }

    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64) -> StoreResult<Lease> {
        let expires_at_ms = self.options.clock.now_ms().saturating_add(ttl_ms);
        let c = self.client().await?;
        let n = c
            .execute(
                "UPDATE leases SET expires_at_ms = $4 WHERE session_id = $1 AND owner = $2 AND fence = $3",
                &[&lease.session_id.as_str(), &lease.owner, &int(lease.fence), &int(expires_at_ms)],
            )
            .await
            .map_err(map_err)?;
        if n == 0 {
            return Err(rules::lease_lost(lease));
        }
        Ok(Lease {
            expires_at_ms,
            ..lease.clone()
        })
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        let c = self.client().await?;
        c.execute(
            "UPDATE leases SET owner = NULL WHERE session_id = $1 AND owner = $2 AND fence = $3",
            &[&lease.session_id.as_str(), &lease.owner, &int(lease.fence)],
        )
        .await
        .map_err(map_err)?;
        Ok(())
    }

    async fn current_lease(&self, session: &SessionId) -> StoreResult<Option<Lease>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let row = c
            .query_opt(
                "SELECT owner, fence, expires_at_ms FROM leases WHERE session_id = $1 AND owner IS NOT NULL",
                &[&session.as_str()],
            )
            .await
            .map_err(map_err)?;
        Ok(row.map(|r| Lease {
            session_id: session.clone(),
            owner: r.get(0),
            fence: r.get::<_, i64>(1) as u64,
            expires_at_ms: r.get::<_, i64>(2) as u64,
        }))
    }
}

#[async_trait]
impl InboxStore for PostgresStore {
    async fn inbox_page(&self, session: &SessionId, limit: usize) -> StoreResult<InboxPage> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        inbox::inbox_page(&c, session, limit).await
    }

    async fn live_inputs_total(&self) -> StoreResult<u64> {
        let c = self.client().await?;
        let sql = "SELECT count(*) FROM inbox WHERE state <> 'completed'";
        let row = c.query_one(sql, &[]).await.map_err(map_err)?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    async fn live_head(&self, session: &SessionId, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        inbox::live_head(&c, session, limit).await
    }

    async fn pending_steers(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        let c = self.client().await?;
        inbox::pending_steers(&c, session, after_seq, limit).await
    }

    async fn enqueue(&self, session: &SessionId, entry: NewInboxEntry) -> StoreResult<Enqueued> {
        rules::check_id("inbox entry id", &entry.id)?;
        let payload = rules::encode_limited(
            "inbox entry",
            &entry.payload,
            self.options.max_payload_bytes,
        )?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let out = inbox::enqueue(&tx, session, &entry, &payload).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(out)
    }

    async fn claim(&self, lease: &Lease, target: ClaimTarget) -> StoreResult<Option<Claim>> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        ops::require_session(&tx, &lease.session_id).await?;
        let current = ops::lock_lease(&tx, &lease.session_id).await?;
        if !rules::lease_is_current(current.as_ref(), lease) {
            return Err(rules::lease_lost(lease));
        }
        let live = inbox::claimable(&tx, &lease.session_id).await?;
        let mut taken = rules::select_claim(&live, lease.fence, &target);
        let orphaned_from = rules::orphaned_from(&taken, lease.fence);
        for e in taken.iter_mut() {
            tx.execute(
                "UPDATE inbox SET state = 'claimed', claim_fence = $3 WHERE session_id = $1 AND id = $2",
                &[&lease.session_id.as_str(), &e.id, &int(lease.fence)],
            )
            .await
            .map_err(map_err)?;
            e.state = InboxState::Claimed;
            e.claim_fence = Some(lease.fence);
        }
        tx.commit().await.map_err(map_err)?;
        Ok(rules::into_claim(taken, orphaned_from))
    }

    async fn abandon_claims(&self, session: &SessionId, fence: u64) -> StoreResult<u64> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        c.execute(
            "UPDATE inbox SET state = 'pending', claim_fence = NULL
             WHERE session_id = $1 AND state = 'claimed' AND claim_fence = $2",
            &[&session.as_str(), &int(fence)],
        )
        .await
        .map_err(map_err)
    }

    async fn inbox(&self, session: &SessionId) -> StoreResult<Vec<InboxEntry>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        inbox::live_entries(&c, session).await
    }
}

#[async_trait]
impl CommitStore for PostgresStore {
    async fn commit(&self, req: &CommitRequest) -> StoreResult<CommitReceipt> {
        rules::validate_commit(req, self.options.max_payload_bytes)?;
        let hash = rules::commit_hash(req)?;
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        let receipt = ops::commit(&tx, req, &hash, &self.options.faults).await?;
        tx.commit().await.map_err(map_err)?;
        Ok(receipt)
    }
}

#[async_trait]
impl EventStore for PostgresStore {
    async fn append_events(&self, session: &SessionId, events: &[SessionEvent]) -> StoreResult<()> {
        for e in events {
            rules::check_id("event id", &e.id)?;
            rules::encode_limited("event", e, self.options.max_payload_bytes)?;
        }
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(map_err)?;
        ops::lock_session(&tx, session).await?;
        ops::insert_events(&tx, session, events).await?;
        tx.commit().await.map_err(map_err)
    }

    async fn events_after(
        &self,
        session: &SessionId,
        cursor: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        let c = self.client().await?;
        ops::require_session(&c, session).await?;
        let rows = c
            .query(
                "SELECT cursor, body FROM events WHERE session_id = $1 AND cursor > $2 ORDER BY cursor LIMIT $3",
                &[&session.as_str(), &int(cursor), &int(limit as u64)],
            )
            .await
            .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(StoredEvent {
                    cursor: r.get::<_, i64>(0) as u64,
                    event: rules::decode("event", r.get(1))?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl SessionStore for PostgresStore {
    fn durability_tier(&self) -> DurabilityTier {
        DurabilityTier::Durable
    }

    fn backend_name(&self) -> &'static str {
        "postgres"
    }
}
