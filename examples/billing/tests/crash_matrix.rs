//! The crash matrix over the team's own agents, on a real restate-server:
//! this test binary is re-run as the service and SIGKILLed before and after
//! every step and inside every commit stage (the full plan: 29 points for
//! billing, 37 for refunds), restate-server is killed mid-turn, and
//! invocations are killed through the admin API. For payouts, whose turn
//! waits twice (an approval, then the bank's confirmation of a pending
//! tool), the service is also killed while the turn is suspended on each
//! wait; the matrix's resolver approves and completes once it is.
//! Beyond the matrix's own checks (committed session equal to the
//! reference, effects once, nothing left, the durable journal replaying
//! against the agent), the team checks its own ledger: the turn charged the
//! card and mailed the receipt exactly once (at most once when its
//! invocation was killed), whatever was killed.

use billing_agent::{Ledger, billing, lines, payouts, refunds};
use ratchet_testkit::chaos::Victim;
use ratchet_testkit::matrix::{AgentMatrix, CheckedPoint, MatrixEnv};
use std::sync::Mutex;

/// One matrix at a time: each runs its own restate-server and service.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The scenario's turn (`turn-in-1`, and its agent frames) charged the card
/// and mailed the receipt exactly once — its tools got the same idempotency
/// key on every attempt, whatever was killed — or, when the invocation was
/// killed (the turn is settled, not finished), at most once. A later input
/// of the session may charge again: that is another charge.
fn once_per_turn(env: &MatrixEnv, object: &str, point: &CheckedPoint) -> Result<(), String> {
    let prefix = format!("{object}/{}:turn-in-1", point.key);
    let ledger = lines(&env.dir.join("ledger.jsonl"));
    let effects: &[&str] = match object {
        "billing" => &["charge", "receipt"],
        "payouts" => &["payout"],
        _ => &["receipt"],
    };
    for effect in effects {
        let n = ledger
            .iter()
            .filter(|v| {
                v["kind"] == *effect && v["key"].as_str().is_some_and(|k| k.starts_with(&prefix))
            })
            .count();
        let allowed = if point.victim == Victim::Invocation {
            0..=1
        } else {
            1..=1
        };
        if !allowed.contains(&n) {
            return Err(format!(
                "{effect} made {n} times by turn-in-1 of {object}/{} ({})",
                point.key, point.spec
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
    // Nothing with side effects before run(): every service process runs
    // this test up to there.
    let json = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("billing-matrix.json");
    let report = AgentMatrix::new(|env| billing(env.store.clone(), ledger(env)))
        .scenario("charge", "charge my card")
        .quick(false)
        .check(|env, point| once_per_turn(env, "billing", point))
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
    // Both tools' steps are fault points; each point's journals replayed
    // (a settling invocation's only when it journaled turn steps).
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
        .check(|env, point| once_per_turn(env, "refunds", point))
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

#[test]
fn the_payouts_agent_survives_every_fault_point_across_both_waits() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let report = AgentMatrix::new(|env| payouts(env.store.clone(), ledger(env)))
        .scenario("payout", "pay alice out")
        .quick(false)
        .check(|env, point| once_per_turn(env, "payouts", point))
        .run()
        .expect("the matrix ran");
    eprintln!("{}", report.report.table());
    report.assert_passed();
    let specs: Vec<&str> = report
        .report
        .results
        .iter()
        .map(|r| r.point.spec.as_str())
        .collect();
    // Killed after each wait was announced, while the turn was suspended
    // on it, and after it was settled; each a point of its own.
    for spec in [
        "after:approval:0:call_0",
        "suspended:approval:0:call_0",
        "after:decision:0:call_0",
        "after:pending:0:call_0",
        "suspended:pending:0:call_0",
        "after:completed:0:call_0",
    ] {
        assert!(specs.contains(&spec), "{spec} not in {specs:?}");
    }
}

#[tokio::test]
async fn the_matrix_refuses_to_run_inside_a_tokio_runtime() {
    let err = AgentMatrix::new(|env| billing(env.store.clone(), ledger(env)))
        .scenario("charge", "charge my card")
        .run()
        .unwrap_err();
    assert!(err.to_string().contains("plain #[test]"), "{err}");
}

#[test]
fn the_matrix_refuses_two_scenarios_of_one_name() {
    let err = AgentMatrix::new(|env| billing(env.store.clone(), ledger(env)))
        .scenario("charge", "charge my card")
        .scenario("charge", "charge it again")
        .run()
        .unwrap_err();
    assert!(
        err.to_string().contains("two scenarios are named 'charge'"),
        "{err}"
    );
}
