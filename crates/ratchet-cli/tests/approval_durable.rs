//! Approval of tool calls on the durable tier, on a real restate-server:
//! the turn suspends on an awakeable raced against a durable timer, holding
//! no compute; the service and restate-server can die meanwhile; a decision
//! through the `approve` handler (here by `ratchet approve --ingress`), or
//! Restate's own awakeable API, resumes it; the tool runs exactly once, or
//! never when rejected or expired. A turn killed while it waits is settled,
//! and its wait expires with it.

mod support;

use serde_json::{Value, json};
use std::process::Command;
use support::restate::{e2e_lock, ratchet_bin};
use support::rig::{Rig, sid, turn_body};

fn script(dir: &std::path::Path) -> String {
    let path = dir.join("script.json");
    let script = json!({"every_turn": [
        {"tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "6*7"}}]},
        {"text": "done"}
    ]});
    std::fs::write(&path, script.to_string()).unwrap();
    format!("scripted:{}", path.display())
}

async fn start(timeout_ms: &str) -> (Rig, Vec<(String, String)>) {
    let scripts = tempfile::tempdir().unwrap().keep();
    let env: Vec<(String, String)> = [
        ("RATCHET_MODEL", script(&scripts)),
        ("RATCHET_APPROVE_TOOLS", "calculator".into()),
        ("RATCHET_APPROVAL_TIMEOUT_MS", timeout_ms.into()),
        ("RATCHET_EFFECT_LEDGER", "true".into()),
        // The object's inactivity timer: a waiting turn suspends after it.
        ("RATCHET_INACTIVITY_TIMEOUT_MS", "2000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let borrowed: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    // The server's default timer too (the object's own setting wins).
    let server_env = [("RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT", "2s")];
    (
        Rig::start_with_server_env(&server_env, &borrowed).await,
        env,
    )
}

fn borrowed(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn tool_runs(rig: &Rig, session: &str) -> u64 {
    use ratchet::store::prelude::*;
    let counts = rig
        .store()
        .effect_counts(&sid(session))
        .await
        .unwrap_or_default();
    counts
        .iter()
        .filter(|(k, _)| k.starts_with("tool:"))
        .map(|(_, n)| *n)
        .sum()
}

fn tool_result(reply: &Value) -> (String, bool) {
    let result = reply["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["parts"].as_array().unwrap().iter())
        .find(|p| p["type"] == "tool_result")
        .cloned()
        .unwrap_or_else(|| panic!("no tool result in {reply}"));
    (
        result["content"].as_str().unwrap().to_string(),
        result["is_error"].as_bool().unwrap_or(false),
    )
}

/// A decision through the `approve` handler: (status, reply).
async fn decide(rig: &Rig, session: &str, call: &str, decision: &str) -> (u16, Value) {
    let body = json!({"call_id": call, "decision": decision});
    rig.server.call(session, "approve", &body).await.unwrap()
}

/// The error reply carries `code`.
fn assert_code(body: &Value, code: &str) {
    let message = body["message"].as_str().unwrap_or_default();
    assert!(message.starts_with(code), "{body}");
}

fn approve_cli(ingress: &str, session: &str, extra: &[&str]) -> std::process::Output {
    Command::new(ratchet_bin())
        .args([
            "approve",
            "--session",
            session,
            "--call",
            "call_0",
            "--ingress",
            ingress,
        ])
        .args(extra)
        .output()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_approval_survives_suspension_and_both_restarts_and_runs_the_tool_once() {
    let _guard = e2e_lock().await;
    let (mut rig, env) = start("60000").await;
    let id = rig
        .server
        .send("a", "turn", &turn_body("What is 6*7?", "in-1"))
        .await
        .unwrap();
    let wait = rig.pending_wait("a", "call_0").await;
    assert_eq!(
        (wait["call_id"].as_str(), wait["tool"].as_str()),
        (Some("call_0"), Some("calculator"))
    );
    assert!(wait["awakeable"].as_bool().unwrap(), "{wait}");
    // Past the 2 s inactivity timeout the invocation suspends: no compute.
    rig.await_status(&id, "suspended").await;
    assert_eq!(tool_runs(&rig, "a").await, 0);

    rig.service.kill9();
    rig.server.restart().unwrap();
    rig.service.restart(&borrowed(&env)).unwrap();
    rig.await_status(&id, "suspended").await;

    let out = approve_cli(&rig.server.ingress, "a", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reply: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (reply["decision"].as_str(), reply["duplicate"].as_bool()),
        (Some("approve"), Some(false))
    );

    let (status, turn) = rig.server.attach(&id).await.unwrap();
    assert_eq!(status, 200, "{turn}\n{}", rig.diagnostics());
    assert_eq!(turn["outcome"]["text"], "done", "{turn}");
    assert_eq!(tool_result(&turn), ("42".to_string(), false));
    assert_eq!(
        tool_runs(&rig, "a").await,
        1,
        "the approved tool ran exactly once"
    );

    // A second decision: the same again is idempotent, another is 409, an
    // unknown call is 404; nothing runs again.
    let again = approve_cli(&rig.server.ingress, "a", &[]);
    assert!(again.status.success());
    let again: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["duplicate"], true);
    let (status, body) = decide(&rig, "a", "call_0", "reject").await;
    assert_eq!(status, 409, "{body}");
    assert_code(&body, "wait_settled");
    let (status, body) = decide(&rig, "a", "call_7", "approve").await;
    assert_eq!(status, 404, "{body}");
    let cli = approve_cli(&rig.server.ingress, "a", &["--reject"]);
    assert!(!cli.status.success());
    assert!(String::from_utf8_lossy(&cli.stderr).contains("wait_settled"));
    assert_eq!(tool_runs(&rig, "a").await, 1);
    let events: Vec<String> = {
        use ratchet::store::prelude::*;
        rig.store()
            .events_after(&sid("a"), 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| {
                serde_json::to_value(&e.event).unwrap()["type"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    };
    for kind in [
        "approval_requested",
        "approval_decided",
        "tool_executed",
        "turn_committed",
    ] {
        assert_eq!(
            events.iter().filter(|e| *e == kind).count(),
            1,
            "{kind} once in {events:?}"
        );
    }
    rig.assert_settled("a").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejection_through_restates_awakeable_api_and_expiry_never_run_the_tool() {
    let _guard = e2e_lock().await;
    let (rig, _env) = start("6000").await;
    let rejected = rig
        .server
        .send("r", "turn", &turn_body("What is 6*7?", "in-1"))
        .await
        .unwrap();
    let expired = rig
        .server
        .send("x", "turn", &turn_body("What is 6*7?", "in-1"))
        .await
        .unwrap();
    let wait = rig.pending_wait("r", "call_0").await;
    // Restate's own API, with the id the approval_requested event published.
    let url = format!(
        "{}/restate/awakeables/{}/resolve",
        rig.server.ingress,
        wait["wait_id"].as_str().unwrap()
    );
    let (status, body) = support::restate::post(
        &url,
        &json!({"decision": "reject", "note": "over the budget"}),
    )
    .await
    .unwrap();
    assert!(status < 300, "{status} {body}");
    let (status, turn) = rig.server.attach(&rejected).await.unwrap();
    assert_eq!(status, 200, "{turn}");
    let (content, is_error) = tool_result(&turn);
    assert!(is_error && content.contains("over the budget"), "{content}");
    assert_eq!(tool_runs(&rig, "r").await, 0, "a rejected tool never runs");
    // The store recorded the decision the awakeable carried.
    let (status, body) = decide(&rig, "r", "call_0", "approve").await;
    assert_eq!(status, 409, "{body}");

    let (status, turn) = rig.server.attach(&expired).await.unwrap();
    assert_eq!(status, 200, "{turn}");
    let (content, is_error) = tool_result(&turn);
    assert!(
        is_error && content.contains("no approval arrived"),
        "{content}"
    );
    assert_eq!(tool_runs(&rig, "x").await, 0, "an expired tool never runs");
    let (status, body) = decide(&rig, "x", "call_0", "approve").await;
    assert_eq!(status, 409, "a late approval is refused: {body}");
    rig.assert_settled("r").await;
    rig.assert_settled("x").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_turn_killed_while_it_waits_is_settled_and_its_wait_expires() {
    let _guard = e2e_lock().await;
    let (rig, _env) = start("60000").await;
    let killed = rig
        .server
        .send("k", "turn", &turn_body("What is 6*7?", "in-1"))
        .await
        .unwrap();
    rig.pending_wait("k", "call_0").await;
    rig.await_status(&killed, "suspended").await;
    rig.server.kill_invocation(&killed).await.unwrap();

    // The next invocation of the session (here a drain) settles the killed
    // turn, expiring its wait.
    let (status, next) = rig.server.call("k", "drain", &json!(null)).await.unwrap();
    assert_eq!((status, &next), (200, &json!(null)), "{next}");
    let outcomes = rig.outcomes("k").await;
    assert_eq!(outcomes[0].2, "incomplete", "{outcomes:?}");
    let (status, body) = decide(&rig, "k", "call_0", "approve").await;
    assert_eq!(status, 409, "a decision for a settled turn: {body}");
    assert_code(&body, "wait_settled");
    assert_eq!(tool_runs(&rig, "k").await, 0, "the killed call never ran");
}
