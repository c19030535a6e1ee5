//! Shared fixtures for integration tests.
#![allow(dead_code)]

pub mod http;
pub mod mcp;
pub mod pki;
pub mod restate;
pub mod rig;
pub mod sse;

use async_trait::async_trait;
use ratchet::store::prelude::*;
use ratchet::store::rules::StoreOptions;
use ratchet::store::{MemoryStore, SqliteStore};
use ratchet_testkit::conformance::StoreFactory;
use std::sync::Arc;

/// Opens a fresh memory store per case.
pub struct MemoryFactory;

#[async_trait]
impl StoreFactory for MemoryFactory {
    async fn open(&self, options: StoreOptions) -> Arc<dyn SessionStore> {
        Arc::new(MemoryStore::with_options(options))
    }
}

/// Opens a fresh SQLite file per case in a temp dir it owns.
pub struct SqliteFactory {
    dir: tempfile::TempDir,
}

impl SqliteFactory {
    /// A factory with its own temp dir, removed when it drops.
    pub fn new() -> Self {
        SqliteFactory {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }
}

#[async_trait]
impl StoreFactory for SqliteFactory {
    async fn open(&self, options: StoreOptions) -> Arc<dyn SessionStore> {
        let n = std::fs::read_dir(self.dir.path())
            .map(|d| d.count())
            .unwrap_or(0);
        let path = self.dir.path().join(format!("store-{n}.db"));
        Arc::new(SqliteStore::open_with(path, options).expect("open sqlite"))
    }
}

use ratchet::clock::ManualClock;
use ratchet::engine::inline::InlineRunner;
use ratchet::engine::{EngineConfig, RetryPolicy, Runtime};
use ratchet::llm::{ModelProvider, ScriptedProvider};
use ratchet::plugins::PluginSet;
use ratchet::tools::builtin_registry;

/// A runtime on `store` with a scripted model, a fixed clock and fast retries.
pub fn scripted_runtime(store: Arc<dyn SessionStore>, script: serde_json::Value) -> Runtime {
    let model = ScriptedProvider::from_json_str(&script.to_string()).expect("valid script");
    runtime_with(store, Arc::new(model))
}

/// A runtime on `store` with `model`, a fixed clock and fast retries.
pub fn runtime_with(store: Arc<dyn SessionStore>, model: Arc<dyn ModelProvider>) -> Runtime {
    Runtime {
        store,
        model,
        tools: builtin_registry(),
        plugins: PluginSet::new(),
        clock: ManualClock::new(1_764_000_000_000),
        config: EngineConfig {
            provider_retry: RetryPolicy {
                attempts: 3,
                initial_backoff_ms: 1,
                max_backoff_ms: 2,
            },
            effect_ledger: true,
            ..EngineConfig::default()
        },
    }
}

/// An inline runner with a fixed owner name.
pub fn runner(rt: Runtime) -> InlineRunner {
    InlineRunner::new(rt, "test-owner")
}

/// A fresh SQLite store in `dir`.
pub fn sqlite_in(dir: &std::path::Path, name: &str) -> Arc<dyn SessionStore> {
    Arc::new(SqliteStore::open(dir.join(name)).expect("open sqlite"))
}

/// A fresh SQLite store in `dir` on a manual clock, returned too, for a
/// runtime to share: leases and deadlines then read one time.
pub fn sqlite_with_clock(
    dir: &std::path::Path,
    name: &str,
) -> (Arc<dyn SessionStore>, Arc<ratchet::clock::ManualClock>) {
    let clock = ratchet::clock::ManualClock::new(1_764_000_000_000);
    let options = StoreOptions {
        clock: clock.clone(),
        ..StoreOptions::default()
    };
    let store = SqliteStore::open_with(dir.join(name), options).expect("open sqlite");
    (Arc::new(store), clock)
}

/// Opens a fresh schema of a PostgreSQL database per case.
pub struct PostgresFactory {
    url: String,
    next: std::sync::atomic::AtomicUsize,
}

impl PostgresFactory {
    /// A factory on the database at `url`.
    pub fn new(url: String) -> Self {
        PostgresFactory {
            url,
            next: std::sync::atomic::AtomicUsize::new(0),
        }
    }

    /// A new empty schema; returns its name.
    pub async fn fresh_schema(&self) -> String {
        let n = self.next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let schema = format!("case_{n}");
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .expect("create schema");
        drop(client);
        let _ = task.await;
        schema
    }

    /// The connection config for `schema`.
    pub fn config(&self, schema: &str) -> tokio_postgres::Config {
        let mut config: tokio_postgres::Config = self.url.parse().expect("url");
        config.options(format!("-c search_path={schema}"));
        config
    }
}

#[async_trait]
impl StoreFactory for PostgresFactory {
    async fn open(&self, options: StoreOptions) -> Arc<dyn SessionStore> {
        let schema = self.fresh_schema().await;
        Arc::new(
            ratchet::store::PostgresStore::connect_config(self.config(&schema), options, 4)
                .await
                .expect("open postgres store"),
        )
    }
}

/// The session most engine tests use.
pub fn sid() -> ratchet::model::SessionId {
    ratchet::model::SessionId::new("s").unwrap()
}

/// A fresh memory store.
pub fn memory() -> Arc<dyn SessionStore> {
    Arc::new(MemoryStore::new())
}

/// A script whose first turn runs `steps` (one entry per model call).
pub fn script(steps: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "turns": [steps] })
}

/// Runs one turn of `text` on the test session.
pub async fn one_turn(rt: ratchet::engine::Runtime, text: &str) -> ratchet::engine::TurnResult {
    runner(rt)
        .turn(
            &sid(),
            ratchet::model::TurnInput::text(text),
            &ratchet::engine::CancelToken::new(),
        )
        .await
        .expect("turn runs")
}

/// Every row of every table of a SQLite file, as sorted text: equal
/// snapshots mean nothing stored changed.
pub fn sqlite_snapshot(path: &std::path::Path) -> String {
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .expect("open the store read-only");
    let mut tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables.sort();
    let mut out = String::new();
    for table in tables {
        let mut stmt = conn.prepare(&format!("SELECT * FROM \"{table}\"")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        out.push_str(&format!("[{table}]\n{}\n", rows.join("\n")));
    }
    out
}

/// The `ratchet` binary under test in `dir`, with no fault or pause point
/// and no `RATCHET_DB` from the caller's environment, counting effects.
pub fn ratchet_cli(dir: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_ratchet"));
    c.current_dir(dir)
        .args(args)
        .env_remove("RATCHET_FAULT")
        .env_remove("RATCHET_PAUSE")
        .env_remove("RATCHET_DB")
        .env("RATCHET_EFFECT_LEDGER", "true");
    c
}

/// Runs `ratchet serve --agents` on `toml`, which must be refused at
/// start-up without a panic; returns its stderr.
#[allow(dead_code)]
pub fn refused_agents_file(dir: &std::path::Path, toml: &str, env: &[(&str, &str)]) -> String {
    let path = dir.join("agents.toml");
    std::fs::write(&path, toml).unwrap();
    let out = ratchet_cli(dir, &["serve", "--agents"])
        .arg(&path)
        .args(["--listen", "127.0.0.1:0"])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{toml} was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "{stderr}");
    stderr
}
