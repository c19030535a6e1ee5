//! The node-loss test on `scripts/cluster.sh`'s rig (three restate-server
//! nodes, two ratchet instances on one PostgreSQL behind one load
//! balancer). Heavy for CI's two cores, so it is ignored there and run by
//! `scripts/cluster.sh test`.
//!
//! 300 turns over 30 sessions are sent one-way through the ingress of each
//! node in turn. A third of the way in, the node (of 2 and 3) that leads
//! the most partitions and ratchet instance 1 are SIGKILLed; the test waits
//! until the other nodes have taken over every partition the dead node led,
//! and restarts both a few seconds later. Then the node that leads the most
//! partitions by then is killed and left down while 60 more turns run.
//! Afterwards, in every session: every input committed exactly once and in
//! the order sent, no lease or claim left, and each keyed `notes` effect
//! made exactly once.

use ratchet::model::SessionId;
use ratchet::store::PostgresStore;
use ratchet::store::prelude::*;
use ratchet::store::rules::StoreOptions;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

const SESSIONS: usize = 30;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn script(args: &[&str]) {
    let status = Command::new(root().join("scripts/cluster.sh"))
        .args(args)
        .current_dir(root())
        .status()
        .expect("scripts/cluster.sh runs");
    assert!(status.success(), "scripts/cluster.sh {args:?} failed");
}

/// Partitions led per node (1-3), from `scripts/cluster.sh leaders`.
fn leaders() -> BTreeMap<usize, usize> {
    let out = Command::new(root().join("scripts/cluster.sh"))
        .arg("leaders")
        .current_dir(root())
        .output()
        .expect("scripts/cluster.sh leaders runs");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (name, count) = l.split_once(' ')?;
            Some((name.strip_prefix('n')?.parse().ok()?, count.parse().ok()?))
        })
        .collect()
}

/// Of nodes 2 and 3 (node 1 serves the instances' admin API), the one
/// leading the most partitions; it must lead some.
fn busiest_leader() -> usize {
    let led = leaders();
    let node = if led.get(&2) >= led.get(&3) { 2 } else { 3 };
    let count = led.get(&node).copied().unwrap_or(0);
    assert!(count > 0, "neither node 2 nor 3 leads a partition: {led:?}");
    eprintln!("partition leaders {led:?}: killing n{node}, which leads {count}");
    node
}

/// Waits until the live nodes lead all 12 partitions, none led by `dead`.
fn await_takeover(dead: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let led = leaders();
        if !led.contains_key(&dead) && led.values().sum::<usize>() == 12 {
            eprintln!("after n{dead} died, partition leaders {led:?}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "partitions not taken over from n{dead}: {led:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Stops the rig whatever the test did.
struct Rig(BTreeMap<String, String>);

impl Rig {
    fn start() -> Rig {
        script(&["start", "2"]);
        let text = std::fs::read_to_string(root().join(".ratchet/cluster/cluster.env")).unwrap();
        Rig(text
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect())
    }

    fn ingress(&self, n: usize) -> &str {
        &self.0[&format!("INGRESS_{n}")]
    }
}

impl Drop for Rig {
    fn drop(&mut self) {
        script(&["stop"]);
    }
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

fn text(s: usize, k: usize) -> String {
    if k.is_multiple_of(2) {
        format!("remember item {k} of session {s}")
    } else {
        format!("What is {k}*{s}?")
    }
}

/// Sends input `k` of session `s` one-way through node `first` (or the next
/// live node); returns the invocation id.
async fn send(rig: &Rig, live: &[usize], first: usize, s: usize, k: usize) -> String {
    let body = json!({"input": {"items": [{"type": "text", "text": text(s, k)}], "input_id": format!("in-{k}")}});
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = first;
    loop {
        let node = live[n % live.len()];
        let url = format!("{}/restate/send/Session/c{s}/turn", rig.ingress(node));
        if let Ok(resp) = http().post(&url).json(&body).send().await
            && let Ok(v) = resp.json::<Value>().await
            && let Some(id) = v["invocationId"].as_str()
        {
            return id.to_string();
        }
        assert!(Instant::now() < deadline, "no node took input {k} of c{s}");
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Waits for an invocation's result through any live node.
async fn attach(rig: &Rig, live: &[usize], id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut n = 0;
    loop {
        let node = live[n % live.len()];
        let url = format!("{}/restate/invocation/{id}/attach", rig.ingress(node));
        if let Ok(resp) = http()
            .get(&url)
            .timeout(Duration::from_secs(60))
            .send()
            .await
            && resp.status().is_success()
            && let Ok(v) = resp.json::<Value>().await
        {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "invocation {id} did not complete"
        );
        n += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "three restate nodes, PostgreSQL and two instances: run by scripts/cluster.sh test"]
async fn node_and_instance_loss_lose_reorder_and_repeat_nothing() {
    let rig = Rig::start();
    let all = [1, 2, 3];
    let mut sent: Vec<(usize, usize, String)> = Vec::new();
    // Phase 1: 300 turns; a partition leader and instance 1 lost a third of
    // the way in.
    let mut down = 0;
    for k in 1..=10 {
        let live: Vec<usize> = all.iter().copied().filter(|n| *n != down).collect();
        for s in 0..SESSIONS {
            sent.push((s, k, send(&rig, &live, s + k, s, k).await));
        }
        if k == 3 {
            down = busiest_leader();
            script(&["kill-node", &down.to_string()]);
            script(&["kill-instance", "1"]);
        }
        if k == 4 {
            await_takeover(down);
        }
        if k == 5 {
            script(&["restart-node", &down.to_string()]);
            script(&["restart-instance", "1"]);
            down = 0;
        }
    }
    // Phase 2: the busiest leader by now lost and left down; 60 more turns.
    let gone = busiest_leader();
    script(&["kill-node", &gone.to_string()]);
    let live: Vec<usize> = all.iter().copied().filter(|n| *n != gone).collect();
    for k in 11..=12 {
        for s in 0..SESSIONS {
            sent.push((s, k, send(&rig, &live, s, s, k).await));
        }
    }
    await_takeover(gone);
    for (s, k, id) in &sent {
        let reply = attach(&rig, &live, id).await;
        assert_eq!(
            reply["outcome"]["status"], "finished",
            "c{s} in-{k}: {reply}"
        );
    }

    let store = PostgresStore::connect(&rig.0["PG_URL"], StoreOptions::default(), 2)
        .await
        .unwrap();
    for s in 0..SESSIONS {
        let sid = SessionId::new(format!("c{s}")).unwrap();
        let turns = store.turns(&sid).await.unwrap();
        let ids: Vec<&str> = turns.iter().map(|t| t.turn_id.as_str()).collect();
        let want: Vec<String> = (1..=12).map(|k| format!("turn-in-{k}")).collect();
        assert_eq!(ids, want, "c{s}: every input once, in the order sent");
        assert!(
            store.current_lease(&sid).await.unwrap().is_none(),
            "c{s}: lease left"
        );
        assert!(
            store.inbox(&sid).await.unwrap().is_empty(),
            "c{s}: input left"
        );
        let notes = store.notes(&sid).await.unwrap();
        let remembered: Vec<String> = (1..=12)
            .filter(|k: &usize| k.is_multiple_of(2))
            .map(|k| format!("item {k} of session {s}"))
            .collect();
        let mut texts: Vec<String> = notes.iter().map(|n| n.text.clone()).collect();
        texts.sort();
        let mut want = remembered.clone();
        want.sort();
        assert_eq!(texts, want, "c{s}: each keyed note made exactly once");
    }
}
