//! The crash matrix over the team's own agents, on a real restate-server:
//! this test binary is re-run as the service and SIGKILLed before and after
//! every step and inside every commit stage (the full plan: 29 points for
//! billing, 37 for refunds), restate-server is killed mid-turn, and
//! invocations are killed through the admin API.
//! Beyond the matrix's own checks (committed session equal to the
//! reference, effects once, nothing left, the durable journal replaying
//! against the agent), the team checks its own ledger: whatever was
//! killed, the turn charged the card and mailed the receipt at most once.

use billing_agent::{Ledger, billing, lines, refunds};
use ratchet_testkit::matrix::{AgentMatrix, MatrixEnv};
use std::sync::Mutex;

/// One matrix at a time: each runs its own restate-server and service.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The scenario's turn (`turn-in-1`, and its agent frames) made each
/// effect at most once: its tools got the same idempotency key on every
/// attempt, whatever was killed. (A later input of the session may charge
/// again: that is another charge.)
fn once_per_key(env: &MatrixEnv, object: &str, key: &str) -> Result<(), String> {
    let prefix = format!("{object}/{key}:turn-in-1");
    let ledger = lines(&env.dir.join("ledger.jsonl"));
    for effect in ["charge", "receipt"] {
        let n = ledger
            .iter()
            .filter(|v| {
                v["kind"] == effect && v["key"].as_str().is_some_and(|k| k.starts_with(&prefix))
            })
            .count();
        if n > 1 {
            return Err(format!(
                "{effect} made {n} times for session {object}/{key}"
            ));
        }
    }
    Ok(())
}

fn ledger(env: &MatrixEnv) -> std::sync::Arc<Ledger> {
    Ledger::new(env.dir.join("ledger.jsonl"))
}

#[test]
fn the_billing_agent_survives_every_fault_point() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let out = tempfile::tempdir().unwrap();
    let json = out.path().join("matrix.json");
    let report = AgentMatrix::new(|env| billing(env.store.clone(), ledger(env)))
        .scenario("charge", "charge my card")
        .quick(false)
        .check(|env, key| once_per_key(env, "billing", key))
        .json(&json)
        .run()
        .expect("the matrix ran");
    eprintln!("{}", report.report.table());
    report.assert_passed();
    // The report for CI, as JSON.
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(v["agent"], "billing");
    assert_eq!(v["failed"], 0);
    assert_eq!(v["points"], report.report.points());
    assert_eq!(v["results"][0]["point"]["spec"], "before:claim");
    // Both tools' steps are fault points, and each point's journal replayed.
    let specs: Vec<&str> = report
        .report
        .results
        .iter()
        .map(|r| r.point.spec.as_str())
        .collect();
    assert!(specs.contains(&"after:tool:0:call_0"), "{specs:?}");
    assert!(
        report.replays > report.report.points(),
        "{}",
        report.replays
    );
}

#[test]
fn the_refunds_agent_survives_every_fault_point_across_its_frame() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let report = AgentMatrix::new(|env| refunds(env.store.clone(), ledger(env)))
        .scenario("refund", "refund my last charge")
        .quick(false)
        .check(|env, key| once_per_key(env, "refunds", key))
        .run()
        .expect("the matrix ran");
    eprintln!("{}", report.report.table());
    report.assert_passed();
    let frame_points = report
        .report
        .results
        .iter()
        .filter(|r| r.point.spec.contains("agent-frame:1:"))
        .count();
    assert!(frame_points >= 2, "{}", report.report.table());
}
