//! The durable tier end to end: a real restate-server (from the npm
//! package), the real `ratchet serve` binary, real SQLite files.

mod support;

use ratchet::store::SqliteStore;
use ratchet::store::prelude::*;
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use support::restate::{RestateServer, Service, e2e_lock, ratchet_bin};
use support::rig::{Rig, sid, turn_body};

/// Committed messages and turn outcomes of a session, as comparable JSON.
async fn committed(db: &Path, session: &str) -> Value {
    let store = SqliteStore::open(db).unwrap();
    let messages = store.messages(&sid(session), u64::MAX).await.unwrap();
    let turns = store.turns(&sid(session)).await.unwrap();
    let outcomes: Vec<&ratchet::model::TurnOutcome> = turns.iter().map(|t| &t.outcome).collect();
    json!({"messages": messages.iter().map(|m| &m.message).collect::<Vec<_>>(), "outcomes": outcomes})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_turn_runs_end_to_end_and_writes_no_checkpoints() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[]).await;
    let (status, turn) = rig
        .server
        .call(
            "s1",
            "turn",
            &turn_body("What is 17*23+4? Also remember milk", "in-1"),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{turn}\n{}", rig.diagnostics());
    assert_eq!(turn["outcome"]["status"], "finished");
    assert!(turn["outcome"]["text"].as_str().unwrap().contains("395"));
    assert_eq!(turn["receipt"]["version"], 1);
    // The same input again is a duplicate: nothing new runs. The same id
    // with other content is a conflict, and nothing is stored.
    let (status, dup) = rig
        .server
        .call(
            "s1",
            "submit",
            &turn_body("What is 17*23+4? Also remember milk", "in-1"),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{dup}");
    assert_eq!(dup["duplicate"], true);
    let (status, conflict) = rig
        .server
        .call("s1", "submit", &turn_body("What is 17*23+4?", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 409, "{conflict}");
    assert!(
        conflict.to_string().contains("input_conflict"),
        "{conflict}"
    );
    let (status, view) = rig.server.call("s1", "view", &json!(null)).await.unwrap();
    assert_eq!(status, 200, "{view}");
    assert_eq!(view["head"]["version"], 1);
    assert_eq!(view["recent_messages"].as_array().unwrap().len(), 5);
    let store = rig.store();
    assert_eq!(
        store.checkpoint_count().await.unwrap(),
        0,
        "the orchestrator's journal is the only record"
    );
    let effects = store.effect_counts(&sid("s1")).await.unwrap();
    assert!(effects.values().all(|n| *n == 1), "{effects:?}");
    assert!(store.current_lease(&sid("s1")).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_a_clear_4xx_and_change_nothing() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[]).await;
    let (status, _) = rig
        .server
        .call("s1", "turn", &turn_body("hello", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    let before = committed(&rig.db(), "s1").await;
    let url = format!("{}/Session/s1/turn", rig.server.ingress);
    let raw = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .body("{\"input\": {\"items\": [")
        .send()
        .await
        .unwrap();
    assert!(
        (400..500).contains(&raw.status().as_u16()),
        "malformed JSON: {}",
        raw.status()
    );
    let cases = [
        json!({"items": []}),
        json!({"input": {"input_id": "x"}}),
        json!({"input": {"items": [{"type": "video", "uri": "x"}]}}),
        turn_body(&"x".repeat(70 * 1024), "in-big"),
    ];
    for body in cases {
        let (status, reply) = rig.server.call("s1", "turn", &body).await.unwrap();
        assert!((400..500).contains(&status), "{status} {reply}");
    }
    let (status, reply) = rig.server.call("", "view", &json!(null)).await.unwrap();
    assert!((400..500).contains(&status), "{status} {reply}");
    assert_eq!(committed(&rig.db(), "s1").await, before);
    assert!(rig.store().inbox(&sid("s1")).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_durable_tier_refuses_an_in_memory_store() {
    let _g = e2e_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = RestateServer::start().expect("restate-server");
    let service = Service::start(&ratchet_bin(), "memory", &server.admin, dir.path(), &[])
        .expect("ratchet serve");
    server.register(&service.uri()).await.expect("register");
    let (status, reply) = server
        .call("s1", "turn", &turn_body("hello", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 400, "{reply}");
    assert!(
        reply.to_string().contains("durable_store_required"),
        "{reply}"
    );
    assert!(reply.to_string().contains("memory"), "{reply}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_submits_with_duplicates_run_once_each_in_fifo_order() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[]).await;
    let unique = 35;
    let mut calls = Vec::new();
    for i in 0..50 {
        let id = format!("in-{:02}", i % unique);
        let body = turn_body(&format!("hello number {}", i % unique), &id);
        let ingress = rig.server.ingress.clone();
        calls.push(tokio::spawn(async move {
            support::restate::post(&format!("{ingress}/Session/fifo/submit"), &body)
                .await
                .unwrap()
        }));
    }
    let mut duplicates = 0;
    for c in calls {
        let (status, reply) = c.await.unwrap();
        assert_eq!(status, 200, "{reply}");
        duplicates += reply["duplicate"].as_bool().unwrap() as usize;
    }
    assert_eq!(duplicates, 50 - unique);
    rig.wait_for_version("fifo", unique as u64, Duration::from_secs(120))
        .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let store = rig.store();
    let turns = store.turns(&sid("fifo")).await.unwrap();
    assert_eq!(turns.len(), unique, "each input once");
    // FIFO: turns committed in the order their inputs were enqueued.
    let messages = store.messages(&sid("fifo"), u64::MAX).await.unwrap();
    let firsts: Vec<String> = messages
        .iter()
        .filter(|m| m.message.role == ratchet::model::Role::User)
        .map(|m| m.turn_id.clone())
        .collect();
    let mut sorted = firsts.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), unique);
    let inbox_order = committed_input_order(&rig.db()).await;
    assert_eq!(firsts, inbox_order, "turns follow inbox order");
    assert!(
        store.inbox(&sid("fifo")).await.unwrap().is_empty(),
        "nothing left claimed or pending"
    );
    assert!(store.current_lease(&sid("fifo")).await.unwrap().is_none());
}

/// Turn ids in the order their inputs entered the inbox.
async fn committed_input_order(db: &Path) -> Vec<String> {
    let c = rusqlite::Connection::open(db).unwrap();
    let mut stmt = c
        .prepare("SELECT id FROM inbox WHERE session_id = 'fifo' ORDER BY seq")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|id| format!("turn-{}", id.unwrap()))
        .collect()
}

const THREE_TOOLS: &str = "What is 17*23+4? Also remember milk";

/// Runs the crash-free reference turn on session `reference`, restarts the
/// service with `fault`, and sends the same turn on session `crashed`.
async fn reference_then_crashed_turn(rig: &mut Rig, fault: (&str, &str)) -> String {
    let (status, _) = rig
        .server
        .call("reference", "turn", &turn_body(THREE_TOOLS, "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200);
    rig.service.restart(&[fault]).unwrap();
    rig.server
        .send("crashed", "turn", &turn_body(THREE_TOOLS, "in-1"))
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_killed_between_tool_steps_recovers_with_no_tool_run_twice() {
    let _g = e2e_lock().await;
    let mut rig = Rig::start(&[]).await;
    // Kill the service right after the first tool step is recorded.
    let inv = reference_then_crashed_turn(&mut rig, ("RATCHET_FAULT", "after:tool:0:call_0")).await;
    assert!(
        rig.service.wait_exit(Duration::from_secs(30)),
        "fault point never reached\n{}",
        rig.diagnostics()
    );
    let before = rig.store().effect_counts(&sid("crashed")).await.unwrap();
    assert_eq!(before.get("tool:turn-in-1:call_0"), Some(&1));
    assert_eq!(before.get("tool:turn-in-1:call_1"), None);
    rig.service.restart(&[]).unwrap();
    let (status, result) = rig.server.attach(&inv).await.unwrap();
    assert_eq!(status, 200, "{result}\n{}", rig.diagnostics());
    assert_eq!(result["outcome"]["status"], "finished");
    let after = rig.store().effect_counts(&sid("crashed")).await.unwrap();
    assert!(
        after.values().all(|n| *n == 1),
        "every effect ran once: {after:?}"
    );
    assert_eq!(after.len(), 4, "{after:?}");
    assert_eq!(
        committed(&rig.db(), "crashed").await,
        committed(&rig.db(), "reference").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restate_server_killed_mid_turn_recovers_with_no_tool_run_twice() {
    let _g = e2e_lock().await;
    let mut rig = Rig::start(&[]).await;
    let inv =
        reference_then_crashed_turn(&mut rig, ("RATCHET_PAUSE", "3000@after:tool:0:call_0")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rig.service.log().contains("pause point reached") {
        assert!(
            Instant::now() < deadline,
            "pause never reached\n{}",
            rig.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    rig.server.kill9();
    rig.server.restart().unwrap();
    let (status, result) = rig.server.attach(&inv).await.unwrap();
    assert_eq!(status, 200, "{result}\n{}", rig.diagnostics());
    assert_eq!(result["outcome"]["status"], "finished");
    let after = rig.store().effect_counts(&sid("crashed")).await.unwrap();
    assert_eq!(after.get("tool:turn-in-1:call_0"), Some(&1), "{after:?}");
    assert!(
        after.values().all(|n| *n <= 2),
        "the in-flight effect at most twice: {after:?}"
    );
    assert_eq!(
        committed(&rig.db(), "crashed").await,
        committed(&rig.db(), "reference").await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_mid_turn_commits_cancelled_and_a_new_turn_succeeds() {
    let _g = e2e_lock().await;
    let rig = Rig::start(&[("RATCHET_PAUSE", "3000@after:tool:0:call_0")]).await;
    let inv = rig
        .server
        .send("s1", "turn", &turn_body(THREE_TOOLS, "in-1"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while !rig.service.log().contains("pause point reached") {
        assert!(
            Instant::now() < deadline,
            "pause never reached\n{}",
            rig.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, reply) = rig.server.call("s1", "cancel", &json!(null)).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["cancelled"], true, "{reply}");
    assert_eq!(reply["invocation_id"], inv.as_str());
    let (status, result) = rig.server.attach(&inv).await.unwrap();
    assert_eq!(status, 200, "{result}\n{}", rig.diagnostics());
    assert_eq!(result["outcome"]["status"], "stopped", "{result}");
    assert_eq!(result["outcome"]["reason"], "cancelled", "{result}");
    let results: Vec<&Value> = result["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["parts"].as_array().unwrap())
        .filter(|p| p["type"] == "tool_result")
        .collect();
    assert_eq!(
        results[0]["content"], "395",
        "the completed tool result is kept"
    );
    assert!(results[1..].iter().all(|p| p["is_error"] == true));
    // The cancelled turn replays cleanly on the same build: the step the
    // cancel signal overtook is recorded, and replay refuses it as cancelled
    // just as the orchestrator did.
    let bin = ratchet_bin();
    let export = std::process::Command::new(&bin)
        .args(["export", "--invocation", &inv, "--admin", &rig.server.admin])
        .output()
        .unwrap();
    assert!(
        export.status.success(),
        "{}",
        String::from_utf8_lossy(&export.stderr)
    );
    let recording: Value = serde_json::from_slice(&export.stdout).unwrap();
    assert!(recording["cancelled_at"].is_string(), "{recording}");
    let file = rig.dir.path().join("cancelled.json");
    std::fs::write(&file, &export.stdout).unwrap();
    let replay = std::process::Command::new(&bin)
        .arg("replay")
        .arg("--recording")
        .arg(&file)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&replay.stdout);
    assert!(
        replay.status.success() && said.contains("replay ok"),
        "{said}{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    let store = rig.store();
    assert!(
        store.current_lease(&sid("s1")).await.unwrap().is_none(),
        "lease released"
    );
    let (status, next) = rig
        .server
        .call("s1", "turn", &turn_body("What is 1+1?", "in-2"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["outcome"]["status"], "finished");
    assert_eq!(next["turn_index"], 1);
    let (_, none) = rig.server.call("s1", "cancel", &json!(null)).await.unwrap();
    assert_eq!(none["cancelled"], false);
}
