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
