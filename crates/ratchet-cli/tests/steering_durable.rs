//! Steering on the durable tier, on a real restate-server: a steer sent
//! through the `steer` handler while the turn is suspended (waiting for
//! approval of its first tool call) survives a SIGKILL of the service, and
//! the turn's next model call takes it: it sits in history after that
//! call's tool result, a `steered` event names the call, the turn's commit
//! completes it, and the drains the steer sent find nothing left to run.

mod support;

use serde_json::{Value, json};
use std::time::{Duration, Instant};
use support::restate::e2e_lock;
use support::rig::{Rig, sid, turn_body};

fn script(dir: &std::path::Path) -> String {
    let path = dir.join("script.json");
    let script = json!({"every_turn": [
        {"tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "6*7"}}]},
        {"tool_calls": [{"id": "call_1", "name": "calculator", "arguments": {"expression": "1+1"}}]},
        {"text": "done"}
    ]});
    std::fs::write(&path, script.to_string()).unwrap();
    format!("scripted:{}", path.display())
}

/// (role, first part as text) of each message in a turn reply.
fn transcript(turn: &Value) -> Vec<(String, String)> {
    turn["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["parts"][0];
            let text = match p["type"].as_str().unwrap() {
                "tool_call" => format!("call {}", p["id"].as_str().unwrap()),
                "tool_result" => format!("result {}", p["content"].as_str().unwrap()),
                _ => p["text"].as_str().unwrap_or_default().to_string(),
            };
            (m["role"].as_str().unwrap().to_string(), text)
        })
        .collect()
}

fn pair(role: &str, text: &str) -> (String, String) {
    (role.to_string(), text.to_string())
}

async fn approve(rig: &Rig, call: &str) {
    let (status, body) = rig
        .server
        .call(
            "s",
            "approve",
            &json!({"call_id": call, "decision": "approve"}),
        )
        .await
        .unwrap();
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_steer_sent_while_the_turn_is_suspended_joins_its_next_model_call() {
    let _guard = e2e_lock().await;
    let scripts = tempfile::tempdir().unwrap();
    let env: Vec<(String, String)> = [
        ("RATCHET_MODEL", script(scripts.path())),
        ("RATCHET_APPROVE_TOOLS", "calculator".into()),
        ("RATCHET_INACTIVITY_TIMEOUT_MS", "2000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let server_env = [("RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT", "2s")];
    let mut rig = Rig::start_with_server_env(&server_env, &borrowed).await;

    let id = rig
        .server
        .send("s", "turn", &turn_body("What is 6*7?", "in-1"))
        .await
        .unwrap();
    rig.pending_wait("s", "call_0").await;
    rig.await_status(&id, "suspended").await;

    let steer = turn_body("answer in words", "st-1");
    let (status, reply) = rig.server.call("s", "steer", &steer).await.unwrap();
    assert_eq!(status, 200, "{reply}");
    assert_eq!(
        (reply["input_id"].as_str(), reply["duplicate"].as_bool()),
        (Some("st-1"), Some(false))
    );
    let (status, again) = rig.server.call("s", "steer", &steer).await.unwrap();
    assert_eq!(
        (status, &again["duplicate"]),
        (200, &json!(true)),
        "{again}"
    );
    let (status, bad) = rig
        .server
        .call("s", "steer", &turn_body("   ", "st-blank"))
        .await
        .unwrap();
    assert_eq!(status, 400, "{bad}");
    assert!(
        bad["message"]
            .as_str()
            .unwrap()
            .starts_with("invalid_input"),
        "{bad}"
    );

    // The service dies with the steer stored and not yet taken.
    rig.service.kill9();
    rig.service.restart(&borrowed).unwrap();
    approve(&rig, "call_0").await;
    rig.pending_wait("s", "call_1").await;
    approve(&rig, "call_1").await;

    let (status, turn) = rig.server.attach(&id).await.unwrap();
    assert_eq!(status, 200, "{turn}\n{}", rig.diagnostics());
    assert_eq!(
        transcript(&turn),
        vec![
            pair("user", "What is 6*7?"),
            pair("assistant", "call call_0"),
            pair("tool", "result 42"),
            pair("user", "answer in words"),
            pair("assistant", "call call_1"),
            pair("tool", "result 2"),
            pair("assistant", "done"),
        ]
    );

    use ratchet::store::prelude::*;
    let events = rig.store().events_after(&sid("s"), 0, 100).await.unwrap();
    let steered: Vec<Value> = events
        .iter()
        .map(|e| serde_json::to_value(&e.event).unwrap())
        .filter(|e| e["type"] == "steered")
        .collect();
    assert_eq!(steered.len(), 1, "{steered:?}");
    assert_eq!(
        (&steered[0]["input_id"], &steered[0]["iteration"]),
        (&json!("st-1"), &json!(1))
    );

    // The steer's drains run after the turn and find nothing: one turn,
    // nothing left live.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let rows = rig
            .server
            .query("SELECT count(*) AS n FROM sys_invocation WHERE target_handler_name = 'drain' AND status != 'completed'")
            .await
            .unwrap();
        if rows[0]["n"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "drains never finished: {rows:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(rig.outcomes("s").await.len(), 1);
    rig.assert_settled("s").await;
}
