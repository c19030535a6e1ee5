//! PostgreSQL-specific behaviour on a real server: an outage is a retryable
//! error and never a partial commit; foreign and newer schemas are refused;
//! the password never appears in an error.

mod support;

use ratchet::model::{SessionId, TurnInput};
use ratchet::store::prelude::*;
use ratchet::store::rules::StoreOptions;
use ratchet::store::{ClaimTarget, InboxPayload, NewInboxEntry, PostgresStore, StoreError};
use ratchet_testkit::harness::PostgresServer;
use std::time::Duration;

fn sid() -> SessionId {
    SessionId::new("s").unwrap()
}

fn entry(id: &str) -> NewInboxEntry {
    NewInboxEntry {
        turn_id: None,
        id: id.into(),
        payload: InboxPayload::Input(TurnInput::text("hello")),
    }
}

async fn store(factory: &support::PostgresFactory) -> PostgresStore {
    let schema = factory.fresh_schema().await;
    PostgresStore::connect_config(factory.config(&schema), StoreOptions::default(), 2)
        .await
        .unwrap()
}

/// Retries a store call while the server comes back.
async fn eventually<T, F, Fut>(mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    for _ in 0..100 {
        match f().await {
            Ok(v) => return v,
            Err(e) if e.is_retryable() => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => panic!("non-retryable error after restart: {e}"),
        }
    }
    panic!("the store never came back");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_is_retryable_and_never_leaves_a_partial_commit() {
    let mut server = PostgresServer::start().unwrap();
    let factory = support::PostgresFactory::new(server.url("postgres"));
    let store = store(&factory).await;
    store.enqueue(&sid(), entry("in-1")).await.unwrap();
    let lease = store.acquire_lease(&sid(), "a", 600_000).await.unwrap();
    let claim = store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    let req = ratchet_testkit::conformance::simple_commit(&lease, "t1", 0, &claim, "answer");

    server.stop();
    let err = store.commit(&req).await.unwrap_err();
    assert_eq!(err.code(), "store_unavailable", "{err}");
    assert!(err.is_retryable());
    let err = store.enqueue(&sid(), entry("in-2")).await.unwrap_err();
    assert!(err.is_retryable(), "{err}");
    assert!(!err.to_string().contains(&server.password), "{err}");

    server.restart().unwrap();
    let s = sid();
    let head = eventually(|| store.head(&s)).await;
    assert_eq!(head.version, 0, "nothing of the failed commit is visible");
    assert!(store.messages(&sid(), u64::MAX).await.unwrap().is_empty());
    let receipt = eventually(|| store.commit(&req)).await;
    assert_eq!((receipt.version, receipt.replayed), (1, false));
    assert_eq!(store.messages(&sid(), u64::MAX).await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn foreign_and_newer_schemas_are_refused_and_left_alone() {
    let server = PostgresServer::start().unwrap();
    let factory = support::PostgresFactory::new(server.url("postgres"));
    let foreign = factory.fresh_schema().await;
    let (client, conn) = tokio_postgres::connect(&server.url("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client
        .batch_execute(&format!(
            "CREATE TABLE {foreign}.customers (id INT); INSERT INTO {foreign}.customers VALUES (7);"
        ))
        .await
        .unwrap();
    let err = PostgresStore::connect_config(factory.config(&foreign), StoreOptions::default(), 2)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), "foreign_database", "{err}");
    let n: i64 = client
        .query_one(&format!("SELECT count(*) FROM {foreign}.customers"), &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 1);

    let newer = factory.fresh_schema().await;
    drop(
        PostgresStore::connect_config(factory.config(&newer), StoreOptions::default(), 2)
            .await
            .unwrap(),
    );
    client
        .batch_execute(&format!(
            "UPDATE {newer}.ratchet_meta SET value = '999' WHERE key = 'schema_version'"
        ))
        .await
        .unwrap();
    let err = PostgresStore::connect_config(factory.config(&newer), StoreOptions::default(), 2)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), "schema_too_new", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_password_never_appears_in_an_error() {
    let server = PostgresServer::start().unwrap();
    let wrong = format!(
        "postgres://ratchet:not-{}@127.0.0.1:{}/postgres",
        server.password, server.port
    );
    let err = PostgresStore::connect(&wrong, StoreOptions::default(), 1)
        .await
        .err()
        .expect("refused");
    assert!(!err.to_string().contains(&server.password), "{err}");
    let garbage = format!(
        "postgres://ratchet:{}@127.0.0.1:notaport/x",
        server.password
    );
    let err = PostgresStore::connect(&garbage, StoreOptions::default(), 1)
        .await
        .err()
        .expect("refused");
    assert_eq!(err.code(), "invalid_argument");
    assert!(!err.to_string().contains(&server.password), "{err}");
    assert!(err.to_string().contains("ratchet:[redacted]@"), "{err}");
}
