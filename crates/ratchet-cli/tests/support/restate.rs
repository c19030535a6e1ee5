//! End-to-end fixtures: the library's process harness, serialized.

#[allow(unused_imports)]
pub use ratchet_testkit::harness::*;

/// Serializes end-to-end tests: each starts a restate-server, and two of
/// them on two cores only make both slow.
static E2E_LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Takes the end-to-end lock (a failed test does not poison it for others).
pub async fn e2e_lock() -> tokio::sync::MutexGuard<'static, ()> {
    E2E_LOCK.lock().await
}

/// The ratchet binary under test.
pub fn ratchet_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_ratchet"))
}
