//! Shared fixtures for integration tests.
#![allow(dead_code)]

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
