//! Shared fixtures for integration tests.
#![allow(dead_code)]

pub mod restate;

use async_trait::async_trait;
use ratchet::store::conformance::StoreFactory;
use ratchet::store::rules::StoreOptions;
use ratchet::store::{MemoryStore, SessionStore, SqliteStore};
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
