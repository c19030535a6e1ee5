//! The store conformance suite (`ratchet_testkit::conformance`), run
//! unchanged against every backend: memory, SQLite, and PostgreSQL on a
//! real server started for the test.

mod support;

use ratchet_testkit::conformance::{StoreFactory, cases, run_all};
use ratchet_testkit::harness::PostgresServer;

async fn passes(backend: &str, factory: &dyn StoreFactory) {
    match run_all(factory).await {
        Ok(n) => assert_eq!(n, cases().len()),
        Err(failures) => panic!(
            "{backend} fails {} case(s):\n{}",
            failures.len(),
            failures.join("\n")
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_store_passes_the_conformance_suite() {
    passes("memory", &support::MemoryFactory).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sqlite_store_passes_the_conformance_suite() {
    passes("sqlite", &support::SqliteFactory::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_postgres_store_passes_the_conformance_suite() {
    let server = PostgresServer::start().expect("start PostgreSQL");
    let factory = support::PostgresFactory::new(server.url("postgres"));
    passes("postgres", &factory).await;
}

#[test]
fn the_suite_covers_every_promised_behaviour() {
    let names: Vec<&str> = cases().iter().map(|(n, _)| *n).collect();
    assert!(names.len() >= 19, "{names:?}");
    for needed in [
        "lease_is_exclusive_until_it_expires",
        "commit_is_rejected_after_lease_takeover",
        "a_commit_failing_midway_leaves_nothing_behind",
        "concurrent_enqueues_lose_and_duplicate_nothing",
    ] {
        assert!(names.contains(&needed), "{needed}");
    }
}
