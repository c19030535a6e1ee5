//! Scale-out: two ratchet service processes behind one Restate deployment
//! (a small TCP proxy in the test spreads connections over both), sharing
//! one PostgreSQL. 200 turns across 20 sessions; one instance is SIGKILLed
//! halfway. Every turn completes exactly once, per-session order holds, and
//! no lease or claim is left behind.

mod support;

use ratchet::model::SessionId;
use ratchet::store::prelude::*;
use ratchet::store::{PostgresStore, rules::StoreOptions};
use ratchet_testkit::harness::PostgresServer;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::restate::{RestateServer, Service, e2e_lock, ratchet_bin};
use tokio::net::{TcpListener, TcpStream};

/// Turns committed over every session.
async fn committed(store: &PostgresStore) -> usize {
    let mut total = 0;
    for s in 0..SESSIONS {
        if let Ok(head) = store
            .head(&SessionId::new(format!("scale-{s}")).unwrap())
            .await
        {
            total += head.version as usize;
        }
    }
    total
}

/// Accepts connections and forwards each to the next live backend.
async fn proxy(listener: TcpListener, backends: Vec<u16>, counts: Arc<Vec<AtomicUsize>>) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((inbound, _)) = listener.accept().await else {
            return;
        };
        let start = next.fetch_add(1, Ordering::SeqCst);
        let mut chosen = None;
        for k in 0..backends.len() {
            let i = (start + k) % backends.len();
            if let Ok(out) = TcpStream::connect(("127.0.0.1", backends[i])).await {
                chosen = Some((i, out));
                break;
            }
        }
        let Some((i, mut outbound)) = chosen else {
            continue;
        };
        counts[i].fetch_add(1, Ordering::SeqCst);
        let _ = inbound.set_nodelay(true);
        let _ = outbound.set_nodelay(true);
        tokio::spawn(async move {
            let mut inbound = inbound;
            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
        });
    }
}

const SESSIONS: usize = 20;
const PER_SESSION: usize = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_postgres_and_survive_one_being_killed() {
    let _g = e2e_lock().await;
    let pg = PostgresServer::start().unwrap();
    let url = pg.url("postgres");
    let store_spec = format!("postgres:{url}");
    let dir = tempfile::tempdir().unwrap();
    let server = RestateServer::start().unwrap();
    let env = [("RATCHET_PG_POOL_SIZE", "4")];
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    std::fs::create_dir_all(&a_dir).unwrap();
    std::fs::create_dir_all(&b_dir).unwrap();
    let mut a = Service::start(&ratchet_bin(), &store_spec, &server.admin, &a_dir, &env).unwrap();
    let b = Service::start(&ratchet_bin(), &store_spec, &server.admin, &b_dir, &env).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_port = listener.local_addr().unwrap().port();
    let counts = Arc::new(vec![AtomicUsize::new(0), AtomicUsize::new(0)]);
    let proxy_task = tokio::spawn(proxy(listener, vec![a.port, b.port], counts.clone()));
    server
        .register(&format!("http://127.0.0.1:{proxy_port}"))
        .await
        .unwrap();

    // Submit every input: sessions concurrently, each session's in order.
    let mut submits = Vec::new();
    for s in 0..SESSIONS {
        let ingress = server.ingress.clone();
        submits.push(tokio::spawn(async move {
            for n in 0..PER_SESSION {
                let body = json!({"input": {"items": [{"type": "text", "text": format!("remember item {s}-{n}")}], "input_id": format!("in-{n:02}")}});
                let (status, reply) = support::restate::post(&format!("{ingress}/Session/scale-{s}/submit"), &body).await.unwrap();
                assert_eq!(status, 200, "{reply}");
            }
        }));
    }
    for t in submits {
        t.await.unwrap();
    }

    let store = PostgresStore::connect(&url, StoreOptions::default(), 2)
        .await
        .unwrap();
    let total = SESSIONS * PER_SESSION;
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed(&store).await < total / 2 {
        assert!(
            Instant::now() < deadline,
            "stalled before halfway\n{}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    a.kill9();
    while committed(&store).await < total {
        assert!(
            Instant::now() < deadline,
            "only {} of {total} turns committed\n--- b\n{}",
            committed(&store).await,
            b.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    for s in 0..SESSIONS {
        let sid = SessionId::new(format!("scale-{s}")).unwrap();
        let turns = store.turns(&sid).await.unwrap();
        let ids: Vec<String> = turns.iter().map(|t| t.turn_id.clone()).collect();
        let expected: Vec<String> = (0..PER_SESSION)
            .map(|n| format!("turn-in-{n:02}"))
            .collect();
        assert_eq!(ids, expected, "session {s}: each input once, in FIFO order");
        let notes: Vec<String> = store
            .notes(&sid)
            .await
            .unwrap()
            .into_iter()
            .map(|n| n.text)
            .collect();
        let expected: Vec<String> = (0..PER_SESSION).map(|n| format!("item {s}-{n}")).collect();
        assert_eq!(
            notes, expected,
            "session {s}: every side effect exactly once, in order"
        );
        assert!(
            store.current_lease(&sid).await.unwrap().is_none(),
            "session {s}: lease left"
        );
        assert!(
            store.inbox(&sid).await.unwrap().is_empty(),
            "session {s}: input left claimed"
        );
        let effects = store.effect_counts(&sid).await.unwrap();
        assert!(
            effects.values().all(|n| *n <= 2),
            "session {s}: {effects:?}"
        );
    }
    assert!(
        counts[0].load(Ordering::SeqCst) > 0 && counts[1].load(Ordering::SeqCst) > 0,
        "both instances served"
    );
    proxy_task.abort();
}
