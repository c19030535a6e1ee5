//! Connecting to PostgreSQL: the pool, recognising a database (schema) as
//! ours, refusing a foreign or newer one, versioned migrations under an
//! advisory lock, and error mapping (an outage is retryable).

use super::tls::PgTls;
use crate::store::StoreError;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};

/// Migrations in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: the whole store.
    "CREATE TABLE ratchet_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        version BIGINT NOT NULL DEFAULT 0,
        settings TEXT NOT NULL DEFAULT '{}',
        usage TEXT NOT NULL DEFAULT '{\"input_tokens\":0,\"output_tokens\":0,\"model_calls\":0}'
    );
    CREATE TABLE messages (
        session_id TEXT NOT NULL, version BIGINT NOT NULL, ord BIGINT NOT NULL,
        turn_id TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (session_id, version, ord)
    );
    CREATE TABLE turns (
        session_id TEXT NOT NULL, turn_id TEXT NOT NULL, version BIGINT NOT NULL,
        outcome TEXT NOT NULL, usage TEXT NOT NULL, commit_hash TEXT NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    );
    CREATE TABLE leases (
        session_id TEXT PRIMARY KEY, owner TEXT, fence BIGINT NOT NULL, expires_at_ms BIGINT NOT NULL
    );
    CREATE TABLE inbox (
        session_id TEXT NOT NULL, seq BIGINT NOT NULL, id TEXT NOT NULL, payload TEXT NOT NULL,
        state TEXT NOT NULL, claim_fence BIGINT,
        PRIMARY KEY (session_id, seq), UNIQUE (session_id, id)
    );
    CREATE INDEX inbox_live ON inbox (session_id, state, seq);
    CREATE TABLE events (
        session_id TEXT NOT NULL, cursor BIGINT NOT NULL, id TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (session_id, cursor), UNIQUE (session_id, id)
    );
    CREATE TABLE checkpoints (
        session_id TEXT NOT NULL, turn_id TEXT NOT NULL, seq BIGINT NOT NULL, step TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (session_id, turn_id, step)
    );
    CREATE TABLE notes (
        session_id TEXT NOT NULL, key TEXT NOT NULL, seq BIGINT NOT NULL, text TEXT NOT NULL,
        PRIMARY KEY (session_id, key)
    );
    CREATE TABLE effects (
        session_id TEXT NOT NULL, key TEXT NOT NULL, count BIGINT NOT NULL,
        PRIMARY KEY (session_id, key)
    );
    INSERT INTO ratchet_meta (key, value) VALUES ('application', 'ratchet');",
    // 2: each input's turn id, unique per session; turn start and finish times.
    "ALTER TABLE inbox ADD COLUMN turn_id TEXT;
    CREATE UNIQUE INDEX inbox_turn ON inbox (session_id, turn_id);
    ALTER TABLE turns ADD COLUMN started_at_ms BIGINT NOT NULL DEFAULT 0;
    ALTER TABLE turns ADD COLUMN finished_at_ms BIGINT NOT NULL DEFAULT 0;",
    // 3: durable waits (approval of tool calls), one row per wait.
    "CREATE TABLE waits (
        session_id TEXT NOT NULL, seq BIGINT NOT NULL, wait_id TEXT NOT NULL,
        call_id TEXT NOT NULL, state TEXT NOT NULL, body TEXT NOT NULL,
        PRIMARY KEY (session_id, wait_id)
    );
    CREATE INDEX waits_call ON waits (session_id, call_id, seq);
    CREATE INDEX waits_state ON waits (session_id, state, seq);",
    // 4: steering messages, found by a running turn through their own index;
    // live entries in FIFO order, so a claim reads a few rows, not the backlog.
    "ALTER TABLE inbox ADD COLUMN steer BOOLEAN NOT NULL DEFAULT FALSE;
    CREATE INDEX inbox_steer ON inbox (session_id, seq) WHERE steer AND state = 'pending';
    CREATE INDEX inbox_live_fifo ON inbox (session_id, seq) WHERE state <> 'completed';",
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Advisory lock key serializing migrations ("RTCH").
const MIGRATION_LOCK: i64 = 0x5254_4348;

/// Maps a PostgreSQL error: an outage, a dropped connection, a
/// serialization failure or a deadlock is retryable.
pub fn map_err(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code().code();
        let retryable = code.starts_with("08")
            || matches!(
                code,
                "40001" | "40P01" | "55P03" | "57P01" | "57P02" | "57P03" | "53300"
            );
        let msg = format!("postgres {code}: {}", db.message());
        return if retryable {
            StoreError::Unavailable(msg)
        } else {
            StoreError::Internal(msg)
        };
    }
    // No server error: the connection failed or closed, or TLS refused the
    // server; the causes say which.
    let text = crate::error_text::with_causes(&e);
    StoreError::Unavailable(format!("postgres connection: {text}"))
}

/// Maps a pool error (all of them mean: not now).
pub fn pool_err(e: deadpool_postgres::PoolError) -> StoreError {
    match e {
        deadpool_postgres::PoolError::Backend(e) => map_err(e),
        other => StoreError::Unavailable(format!("postgres pool: {other}")),
    }
}

/// A pool of `size` connections.
pub fn pool(
    mut config: tokio_postgres::Config,
    tls: &PgTls,
    size: usize,
) -> Result<Pool, StoreError> {
    config.ssl_mode(tls.driver_mode());
    let manager = Manager::from_config(
        config,
        tls.connector()?,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager)
        .max_size(size.max(1))
        .build()
        .map_err(|e| StoreError::Internal(format!("postgres pool: {e}")))
}

/// Checks the schema is ours (or empty) and applies missing migrations.
pub async fn migrate(pool: &Pool) -> Result<(), StoreError> {
    let mut client = pool.get().await.map_err(pool_err)?;
    let tx = client.transaction().await.map_err(map_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(map_err)?;
    let ours: bool = tx
        .query_one("SELECT to_regclass('ratchet_meta') IS NOT NULL", &[])
        .await
        .map_err(map_err)?
        .get(0);
    let current: i64 = if ours {
        let app: Option<String> = tx
            .query_opt(
                "SELECT value FROM ratchet_meta WHERE key = 'application'",
                &[],
            )
            .await
            .map_err(map_err)?
            .map(|r| r.get(0));
        if app.as_deref() != Some("ratchet") {
            return Err(StoreError::ForeignDatabase(
                "the schema has a ratchet_meta table of another application".into(),
            ));
        }
        tx.query_opt(
            "SELECT value FROM ratchet_meta WHERE key = 'schema_version'",
            &[],
        )
        .await
        .map_err(map_err)?
        .and_then(|r| r.get::<_, String>(0).parse().ok())
        .unwrap_or(0)
    } else {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()",
                &[],
            )
            .await
            .map_err(map_err)?
            .get(0);
        if tables > 0 {
            return Err(StoreError::ForeignDatabase(
                "the schema holds tables of another application".into(),
            ));
        }
        0
    };
    if current > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: current,
            supported: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        tx.batch_execute(sql).await.map_err(map_err)?;
        let version = (i as i64 + 1).to_string();
        tx.execute(
            "INSERT INTO ratchet_meta (key, value) VALUES ('schema_version', $1)
             ON CONFLICT (key) DO UPDATE SET value = $1",
            &[&version],
        )
        .await
        .map_err(map_err)?;
        tracing::info!(schema_version = i + 1, "applied postgres store migration");
    }
    tx.commit().await.map_err(map_err)
}

/// A connection string with its password masked (in the userinfo, a
/// query parameter or a `password=` pair), for logs and errors.
pub fn redact(url: &str) -> String {
    crate::secrets::redact(url).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_survive_redaction() {
        assert_eq!(
            redact("postgres://app:s3cret@db:5432/ratchet"),
            "postgres://app:[redacted]@db:5432/ratchet"
        );
        assert!(!redact("postgres://app@db/x?password=s3cret").contains("s3cret"));
        assert_eq!(redact("postgres://db/ratchet"), "postgres://db/ratchet");
        assert!(!redact("host=db password=s3cret").contains("s3cret"));
    }
}
