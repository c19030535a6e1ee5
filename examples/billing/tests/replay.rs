//! The deploy gate: every recording in `tests/recordings/<agent>/` — inline
//! exports and durable turns read from Restate's journal (finished, frame
//! switch, killed and settled, cancelled) — replays against this build of
//! its agent with every effect served from the recording. Built with
//! `--features reorder-steps` (tool calls run in reverse order, as a
//! changed build might), each recording with two tool calls of one model
//! call must diverge at the reordered step, and say which field changed.
//! `tests/record.rs` makes the recordings.

use billing_agent::{Ledger, billing, refunds, support};
use ratchet::Agent;
use ratchet::store::{MemoryStore, SessionStore};
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn recordings(agent: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/recordings")
        .join(agent)
}

/// The agents as the service builds them (replay never touches the store
/// or the ledger: every effect comes from the recording).
fn agents() -> Vec<Agent> {
    let store: Arc<dyn SessionStore> = Arc::new(MemoryStore::new());
    let ledger = Ledger::new("/nonexistent/ledger.jsonl");
    vec![
        billing(store.clone(), ledger.clone()),
        refunds(store.clone(), ledger),
        support(store),
    ]
}

#[cfg(not(feature = "reorder-steps"))]
#[tokio::test]
async fn every_recording_replays_on_this_build() {
    for agent in agents() {
        ratchet_testkit::replay::assert_dir(&agent, recordings(agent.name())).await;
    }
}

#[cfg(feature = "reorder-steps")]
#[tokio::test]
async fn a_build_with_reordered_tool_calls_diverges_at_the_named_step() {
    use ratchet::engine::inline::ReplayReport;
    use ratchet_testkit::replay::replay_dir;
    let mut diverged = 0;
    for agent in agents() {
        for (path, report) in replay_dir(&agent, recordings(agent.name())).await.unwrap() {
            // Only a model call that asked for two tools runs them reordered.
            let recording = ratchet_testkit::replay::read(&path).unwrap();
            let two_calls = recording.steps.iter().any(|s| s.step == "tool:0:call_1");
            match report {
                ReplayReport::Diverged {
                    step, divergence, ..
                } if two_calls => {
                    assert_eq!(step, "tool:0:call_1", "{}", path.display());
                    let f = &divergence.fields;
                    assert_eq!(f.len(), 1, "{}: {f:?}", path.display());
                    assert_eq!(
                        (
                            f[0].field.as_str(),
                            f[0].expected.as_str(),
                            f[0].actual.as_str()
                        ),
                        ("call_id", "call_0", "call_1"),
                        "{}",
                        path.display()
                    );
                    diverged += 1;
                }
                ReplayReport::Ok { .. } if !two_calls => {}
                other => panic!("{}: {other:?}", path.display()),
            }
        }
    }
    // The finished (inline and durable) and the cancelled billing turns.
    assert_eq!(diverged, 3);
}
