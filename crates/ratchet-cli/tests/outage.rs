//! Outages longer than any retry budget: the service down for 90 s in the
//! middle of a turn (SQLite), then the store down for 90 s in the middle of
//! a turn (PostgreSQL). With the default retry policy (capped backoff, no
//! kill) the waiting invocations go on once the outage ends: every
//! acknowledged input commits once, in order, no lease or claim is left, and
//! no completed effect runs twice. The server's timers are the defaults.

mod support;

use ratchet::model::SessionId;
use ratchet::store::prelude::*;
use ratchet::store::{PostgresStore, rules::StoreOptions};
use ratchet_testkit::harness::PostgresServer;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use support::restate::{RestateServer, Service, e2e_lock, ratchet_bin};
use support::rig::{Rig, sid, turn_body};

const OUTAGE: Duration = Duration::from_secs(90);
const ASK: &str = "What is 2+3? Also remember eggs";

/// Every effect ran once, except at most the one in flight at the outage,
/// which may have run twice.
fn assert_effects_once(counts: &BTreeMap<String, u64>) {
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        counts.values().all(|n| *n <= 2) && twice.len() <= 1,
        "{counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_service_down_for_90_s_mid_turn_loses_and_repeats_nothing() {
    let _g = e2e_lock().await;
    // The service kills itself once the first tool step is journaled; the
    // pause before it leaves time for every submit to be answered first.
    let mut rig = Rig::start(&[
        ("RATCHET_PAUSE", "2000@after:model:0"),
        ("RATCHET_FAULT", "after:tool:0:call_0"),
    ])
    .await;
    for id in ["in-1", "in-2", "in-3"] {
        let (status, reply) = rig
            .server
            .call("o", "submit", &turn_body(ASK, id))
            .await
            .unwrap();
        assert_eq!(status, 200, "{reply}");
    }
    assert!(
        rig.service.wait_exit(Duration::from_secs(30)),
        "the fault point was never reached\n{}",
        rig.diagnostics()
    );
    // While it is down, Restate still acknowledges a one-way submit.
    let late = rig
        .server
        .send("o", "submit", &turn_body(ASK, "in-4"))
        .await
        .unwrap();
    assert!(late.starts_with("inv_"));
    tokio::time::sleep(OUTAGE).await;
    rig.service.restart(&[]).unwrap();
    rig.wait_for_version("o", 4, Duration::from_secs(120)).await;
    let outcomes = rig.outcomes("o").await;
    let order: Vec<&str> = outcomes.iter().map(|o| o.0.as_str()).collect();
    assert_eq!(order, ["turn-in-1", "turn-in-2", "turn-in-3", "turn-in-4"]);
    assert!(outcomes.iter().all(|o| o.1 == "finished"), "{outcomes:?}");
    let store = rig.store();
    assert_effects_once(&store.effect_counts(&sid("o")).await.unwrap());
    assert_eq!(
        store.notes(&sid("o")).await.unwrap().len(),
        4,
        "one keyed note per turn"
    );
    rig.assert_settled("o").await;
}

async fn committed(store: &PostgresStore, session: &SessionId) -> u64 {
    store.head(session).await.map(|h| h.version).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_down_for_90_s_mid_turn_loses_and_repeats_nothing() {
    let _g = e2e_lock().await;
    let mut pg = PostgresServer::start().unwrap();
    let url = pg.url("postgres");
    let dir = tempfile::tempdir().unwrap();
    let server = RestateServer::start().unwrap();
    let pause = [("RATCHET_PAUSE", "3000@after:model:0")];
    let service = Service::start(
        &ratchet_bin(),
        &format!("postgres:{url}"),
        &server.admin,
        dir.path(),
        &pause,
    )
    .unwrap();
    server.register(&service.uri()).await.unwrap();
    let store = PostgresStore::connect(&url, StoreOptions::default(), 2)
        .await
        .unwrap();
    let s = sid("pg");
    for id in ["in-1", "in-2", "in-3"] {
        let (status, reply) = server
            .call("pg", "submit", &turn_body(ASK, id))
            .await
            .unwrap();
        assert_eq!(status, 200, "{reply}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !store
        .effect_counts(&s)
        .await
        .unwrap_or_default()
        .contains_key("model:turn-in-1:0")
    {
        assert!(Instant::now() < deadline, "the first turn never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The store goes away while the turn is paused between its steps.
    pg.stop();
    tokio::time::sleep(OUTAGE).await;
    pg.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&store, &s).await < 3 {
        assert!(
            Instant::now() < deadline,
            "inputs never committed after the outage\n{}",
            service.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let turns: Vec<String> = store
        .turns(&s)
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.turn_id)
        .collect();
    assert_eq!(turns, ["turn-in-1", "turn-in-2", "turn-in-3"]);
    assert_effects_once(&store.effect_counts(&s).await.unwrap());
    assert_eq!(store.notes(&s).await.unwrap().len(), 3);
    assert!(store.inbox(&s).await.unwrap().is_empty());
    assert!(store.current_lease(&s).await.unwrap().is_none());
    assert!(!service.log().contains(&pg.password), "the password leaked");
}
