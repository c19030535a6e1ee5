//! Opening a SQLite file: recognising it as ours, refusing a foreign or
//! newer one, and applying versioned migrations.

use crate::store::{SqliteSync, StoreError};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;

/// Prepared statements the connection keeps. It holds every statement
/// the backend has (a test counts them), so none is ever evicted and
/// parsed again: with rusqlite's default of 16, a turn's statements
/// pushed each other out and their re-preparation took 2.6% of the
/// service's CPU under load.
pub const STATEMENT_CACHE_CAPACITY: usize = 64;

/// `PRAGMA application_id` of a ratchet database ("RTCH").
pub const APPLICATION_ID: i64 = 0x5254_4348;

/// Migrations in order; the schema version is the number applied.
const MIGRATIONS: &[&str] = &[
    // 1: the whole store.
    "CREATE TABLE sessions (
        id TEXT PRIMARY KEY,
        version INTEGER NOT NULL DEFAULT 0,
        settings TEXT NOT NULL DEFAULT '{}',
        usage TEXT NOT NULL DEFAULT '{\"input_tokens\":0,\"output_tokens\":0,\"model_calls\":0}'
    );
    CREATE TABLE messages (
        session_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        ord INTEGER NOT NULL,
        turn_id TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (session_id, version, ord)
    );
    CREATE TABLE turns (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        version INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        usage TEXT NOT NULL,
        commit_hash TEXT NOT NULL,
        PRIMARY KEY (session_id, turn_id)
    );
    CREATE TABLE leases (
        session_id TEXT PRIMARY KEY,
        owner TEXT,
        fence INTEGER NOT NULL,
        expires_at_ms INTEGER NOT NULL
    );
    CREATE TABLE inbox (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        id TEXT NOT NULL,
        payload TEXT NOT NULL,
        state TEXT NOT NULL,
        claim_fence INTEGER,
        PRIMARY KEY (session_id, seq),
        UNIQUE (session_id, id)
    );
    CREATE INDEX inbox_live ON inbox (session_id, state, seq);
    CREATE TABLE events (
        session_id TEXT NOT NULL,
        cursor INTEGER NOT NULL,
        id TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (session_id, cursor),
        UNIQUE (session_id, id)
    );
    CREATE TABLE checkpoints (
        session_id TEXT NOT NULL,
        turn_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        step TEXT NOT NULL,
        record TEXT NOT NULL,
        PRIMARY KEY (session_id, turn_id, step)
    );
    CREATE TABLE notes (
        session_id TEXT NOT NULL,
        key TEXT NOT NULL,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL,
        PRIMARY KEY (session_id, key)
    );
    CREATE TABLE effects (
        session_id TEXT NOT NULL,
        key TEXT NOT NULL,
        count INTEGER NOT NULL,
        PRIMARY KEY (session_id, key)
    );",
    // 2: each input's turn id, unique per session; turn start and finish times.
    "ALTER TABLE inbox ADD COLUMN turn_id TEXT;
    CREATE UNIQUE INDEX inbox_turn ON inbox (session_id, turn_id);
    ALTER TABLE turns ADD COLUMN started_at_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE turns ADD COLUMN finished_at_ms INTEGER NOT NULL DEFAULT 0;",
    // 3: durable waits (approval of tool calls), one row per wait.
    "CREATE TABLE waits (
        session_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        wait_id TEXT NOT NULL,
        call_id TEXT NOT NULL,
        state TEXT NOT NULL,
        body TEXT NOT NULL,
        PRIMARY KEY (session_id, wait_id)
    );
    CREATE INDEX waits_call ON waits (session_id, call_id, seq);
    CREATE INDEX waits_state ON waits (session_id, state, seq);",
    // 4: steering messages, found by a running turn through their own index;
    // live entries in FIFO order, so a claim reads a few rows, not the backlog.
    "ALTER TABLE inbox ADD COLUMN steer INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX inbox_steer ON inbox (session_id, seq) WHERE steer = 1 AND state = 'pending';
    CREATE INDEX inbox_live_fifo ON inbox (session_id, seq) WHERE state != 'completed';",
    // 5: each session's count of live inbox entries, kept by triggers, so
    // a view's `pending_total` is one row whatever the backlog (a count
    // over the live index cost a 10,000-entry backlog's view 1.2 ms).
    "CREATE TABLE inbox_live_count (
        session_id TEXT PRIMARY KEY,
        n INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO inbox_live_count (session_id, n)
        SELECT session_id, count(*) FROM inbox WHERE state != 'completed' GROUP BY session_id;
    CREATE TRIGGER inbox_live_insert AFTER INSERT ON inbox WHEN NEW.state != 'completed' BEGIN
        INSERT INTO inbox_live_count (session_id, n) VALUES (NEW.session_id, 1)
            ON CONFLICT (session_id) DO UPDATE SET n = n + 1;
    END;
    CREATE TRIGGER inbox_live_update AFTER UPDATE OF state ON inbox
        WHEN (OLD.state != 'completed') != (NEW.state != 'completed') BEGIN
        INSERT INTO inbox_live_count (session_id, n)
            VALUES (NEW.session_id, IIF(NEW.state != 'completed', 1, -1))
            ON CONFLICT (session_id) DO UPDATE SET n = n + excluded.n;
    END;
    CREATE TRIGGER inbox_live_delete AFTER DELETE ON inbox WHEN OLD.state != 'completed' BEGIN
        UPDATE inbox_live_count SET n = n - 1 WHERE session_id = OLD.session_id;
    END;",
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Maps a SQLite error to a store error.
pub fn map_err(e: rusqlite::Error) -> StoreError {
    match e.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Unavailable(e.to_string())
        }
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
            StoreError::Corrupt(e.to_string())
        }
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::DiskFull) => {
            StoreError::Unavailable(e.to_string())
        }
        _ => StoreError::Internal(e.to_string()),
    }
}

/// Opens (creating if new) and migrates a database file.
pub fn open(path: &Path, durability: SqliteSync) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn = Connection::open_with_flags(path, flags)
        .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(map_err)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    // The first read of the header tells a database from anything else.
    let app_id: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(|e| describe_open_error(path, e))?;
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| describe_open_error(path, e))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| describe_open_error(path, e))?;
    if app_id != APPLICATION_ID && (app_id != 0 || tables > 0) {
        return Err(StoreError::ForeignDatabase(format!(
            "{} is a SQLite database of another application",
            path.display()
        )));
    }
    if version > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found: version,
            supported: SCHEMA_VERSION,
        });
    }
    conn.pragma_update(None, "journal_mode", "WAL")
        .map_err(map_err)?;
    // FULL: a commit the store acknowledged survives power loss. Restate
    // records the commit step's receipt once the step returns, and replay
    // never runs a completed step again, so a receipt must never outlive its
    // commit. `NORMAL` in WAL mode may lose the last transactions.
    let sync = if durability == SqliteSync::Normal {
        "NORMAL"
    } else {
        "FULL"
    };
    conn.pragma_update(None, "synchronous", sync)
        .map_err(map_err)?;
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(map_err)?;
    migrate(&conn, version)?;
    Ok(conn)
}

fn describe_open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    match map_err(e) {
        StoreError::Corrupt(m) => StoreError::Corrupt(format!(
            "{} is not a readable SQLite database ({m})",
            path.display()
        )),
        other => other,
    }
}

fn migrate(conn: &Connection, from: i64) -> Result<(), StoreError> {
    if from >= SCHEMA_VERSION {
        return Ok(());
    }
    // Another process may be migrating the same file: take the write lock,
    // then read the version again under it.
    conn.execute_batch("BEGIN IMMEDIATE").map_err(map_err)?;
    let result = (|| {
        let current: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
            let to = i as i64 + 1;
            conn.execute_batch(sql)?;
            conn.execute_batch(&format!(
                "PRAGMA application_id = {APPLICATION_ID}; PRAGMA user_version = {to};"
            ))?;
            tracing::info!(schema_version = to, "applied store migration");
        }
        conn.execute_batch("COMMIT")
    })();
    if let Err(e) = result {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(map_err(e));
    }
    Ok(())
}
