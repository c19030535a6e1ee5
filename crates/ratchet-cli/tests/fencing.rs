//! Fencing across owners on a shared PostgreSQL session: an inline
//! `ratchet turn` whose lease runs out while it is paused, and a Restate
//! turn that takes the session over. Each claimed input is committed exactly
//! once, in FIFO order; the loser gets `session_execution_lease_lost`, never
//! a commit.

mod support;

use ratchet::model::SessionId;
use ratchet::store::prelude::*;
use ratchet::store::{PostgresStore, rules::StoreOptions};
use ratchet_testkit::harness::PostgresServer;
use serde_json::json;
use std::process::Command;
use std::time::{Duration, Instant};
use support::restate::{RestateServer, Service, e2e_lock, ratchet_bin};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inline_turn_and_a_restate_turn_never_both_commit() {
    let _g = e2e_lock().await;
    let pg = PostgresServer::start().unwrap();
    let url = pg.url("postgres");
    let spec = format!("postgres:{url}");
    let dir = tempfile::tempdir().unwrap();
    let server = RestateServer::start().unwrap();
    let lease_ttl = [("RATCHET_LEASE_TTL_MS", "1000")];
    let service =
        Service::start(&ratchet_bin(), &spec, &server.admin, dir.path(), &lease_ttl).unwrap();
    server.register(&service.uri()).await.unwrap();

    // The inline turn claims input A, then pauses after its model call for
    // longer than its 1 s lease.
    let inline = Command::new(ratchet_bin())
        .args([
            "turn",
            "--store",
            &spec,
            "--session",
            "race",
            "--input-id",
            "in-a",
        ])
        .arg("What is 2+2?")
        .env("RATCHET_LEASE_TTL_MS", "1000")
        .env("RATCHET_PAUSE", "3000@after:model:0")
        .env_remove("RATCHET_FAULT")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let store = PostgresStore::connect(&url, StoreOptions::default(), 2)
        .await
        .unwrap();
    let sid = SessionId::new("race").unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let held = store.current_lease(&sid).await.ok().flatten();
        if held.is_some_and(|l| l.owner.starts_with("inline:")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the inline turn never took the lease"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // The Restate turn on input B waits out the inline lease and takes over
    // with a higher fence. Input A, claimed by the inline turn and now back
    // in the inbox, is earlier: FIFO runs it first, in the same call.
    let body =
        json!({"input": {"items": [{"type": "text", "text": "What is 3+3?"}], "input_id": "in-b"}});
    let (status, reply) = server.call("race", "turn", &body).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["outcome"]["status"], "finished");
    assert_eq!(reply["turn_id"], "turn-in-b");

    // The inline turn wakes up fenced out.
    let out = inline.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "the fenced-out inline turn must fail"
    );
    assert!(stderr.contains("session_execution_lease_lost"), "{stderr}");
    assert!(!stderr.contains(&pg.password), "{stderr}");

    let turns: Vec<String> = store
        .turns(&sid)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.turn_id)
        .collect();
    assert_eq!(
        turns,
        vec!["turn-in-a", "turn-in-b"],
        "each input committed exactly once, in FIFO order"
    );
    assert!(store.inbox(&sid).await.unwrap().is_empty());
    assert!(store.current_lease(&sid).await.unwrap().is_none());
}
