//! SQLite-specific behaviour: durability across reopen, and refusing files
//! that are not ours without touching them.

use ratchet::model::{SessionId, TurnInput};
use ratchet::store::prelude::*;
use ratchet::store::{
    ClaimTarget, InboxPayload, NewInboxEntry, SQLITE_SCHEMA_VERSION, SqliteStore,
};

fn sid(s: &str) -> SessionId {
    SessionId::new(s).unwrap()
}

fn entry(id: &str) -> NewInboxEntry {
    NewInboxEntry {
        turn_id: None,
        id: id.into(),
        payload: InboxPayload::Input(TurnInput::text("hello")),
    }
}

#[tokio::test]
async fn data_survives_reopening_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.enqueue(&sid("s"), entry("in-1")).await.unwrap();
        store.put_note(&sid("s"), "k", "kept").await.unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    let inbox = store.inbox(&sid("s")).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].id, "in-1");
    assert_eq!(store.notes(&sid("s")).await.unwrap()[0].text, "kept");
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("junk.db");
    let junk = b"this is certainly not a sqlite database, just some bytes....".repeat(100);
    std::fs::write(&path, &junk).unwrap();
    let err = SqliteStore::open(&path).err().expect("must refuse");
    assert_eq!(err.code(), "store_corrupt", "{err}");
    assert!(err.to_string().contains("junk.db"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), junk);
}

#[tokio::test]
async fn a_sqlite_database_of_another_application_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("other.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE customers (id INTEGER PRIMARY KEY); INSERT INTO customers VALUES (7);",
        )
        .unwrap();
    }
    let err = SqliteStore::open(&path).err().expect("must refuse");
    assert_eq!(err.code(), "foreign_database", "{err}");
    let c = rusqlite::Connection::open(&path).unwrap();
    let n: i64 = c
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1, "no tables added to a foreign database");
}

#[tokio::test]
async fn a_database_from_a_newer_build_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        store.enqueue(&sid("s"), entry("in-1")).await.unwrap();
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SQLITE_SCHEMA_VERSION + 1)
            .unwrap();
    }
    let err = SqliteStore::open(&path).err().expect("must refuse");
    assert_eq!(err.code(), "schema_too_new");
    assert!(err.to_string().contains("upgrade ratchet"), "{err}");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.pragma_update(None, "user_version", SQLITE_SCHEMA_VERSION)
            .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(
        store.inbox(&sid("s")).await.unwrap().len(),
        1,
        "data intact"
    );
}

#[tokio::test]
async fn two_handles_on_one_file_share_the_lease_and_inbox() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shared.db");
    let a = SqliteStore::open(&path).unwrap();
    let b = SqliteStore::open(&path).unwrap();
    a.enqueue(&sid("s"), entry("in-1")).await.unwrap();
    assert!(b.enqueue(&sid("s"), entry("in-1")).await.unwrap().duplicate);
    let lease = a.acquire_lease(&sid("s"), "a", 60_000).await.unwrap();
    let err = b.acquire_lease(&sid("s"), "b", 60_000).await.unwrap_err();
    assert_eq!(err.code(), "session_busy");
    let claim = a.claim(&lease, ClaimTarget::Next).await.unwrap().unwrap();
    assert_eq!(claim.input.id, "in-1");
}

/// A file from a build before the live-entry counts (schema 4) opens with
/// its counts backfilled, and they follow enqueue, claim, give-back and a
/// live-entry total across sessions.
#[tokio::test]
async fn live_entry_counts_are_backfilled_on_upgrade_and_kept_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        for id in ["in-1", "in-2", "in-3"] {
            store.enqueue(&sid("s"), entry(id)).await.unwrap();
        }
        store.enqueue(&sid("t"), entry("in-1")).await.unwrap();
    }
    {
        // Back to schema 4: no count table, no triggers.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TRIGGER inbox_live_insert; DROP TRIGGER inbox_live_update;
             DROP TRIGGER inbox_live_delete; DROP TABLE inbox_live_count;
             PRAGMA user_version = 4;",
        )
        .unwrap();
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.inbox_page(&sid("s"), 1).await.unwrap().total, 3);
    assert_eq!(store.live_inputs_total().await.unwrap(), 4);
    store.enqueue(&sid("s"), entry("in-4")).await.unwrap();
    assert_eq!(store.inbox_page(&sid("s"), 1).await.unwrap().total, 4);
    let lease = store.acquire_lease(&sid("t"), "a", 60_000).await.unwrap();
    let claim = store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.input.id, "in-1");
    // Claimed is still live; given back, still live.
    assert_eq!(store.inbox_page(&sid("t"), 1).await.unwrap().total, 1);
    store.abandon_claims(&sid("t"), lease.fence).await.unwrap();
    assert_eq!(store.inbox_page(&sid("t"), 1).await.unwrap().total, 1);
    assert_eq!(store.live_inputs_total().await.unwrap(), 5);
}
