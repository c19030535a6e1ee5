//! Records the turns `tests/replay.rs` replays, and replays them at once:
//! inline turns exported from the store's checkpoints, and durable turns
//! read from Restate's journal through the admin API — a finished one, a
//! frame switch, one whose invocation was killed mid-turn and then settled
//! when the input came again, and one cancelled mid-turn. The durable ones
//! run the crate's own `agents` binary on a real restate-server.
//!
//! `RATCHET_UPDATE_RECORDINGS=1` writes them into `tests/recordings/`.

use billing_agent::{Ledger, billing, refunds, support};
use ratchet::Agent;
use ratchet::engine::CancelToken;
use ratchet::engine::inline::{InlineRunner, ReplayReport};
use ratchet::journal::Recording;
use ratchet::model::{SessionId, TurnId, TurnInput};
use ratchet::store::{SessionStore, SqliteStore};
use ratchet_testkit::harness::{RestateServer, Service};
use ratchet_testkit::replay::{durable_recording, replay};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn body(text: &str, id: &str) -> Value {
    json!({"input": {"items": [{"type": "text", "text": text}], "input_id": id}})
}

/// Where recordings go: the crate's folder when updating, else `tmp`.
fn out_dir(tmp: &Path) -> PathBuf {
    if std::env::var_os("RATCHET_UPDATE_RECORDINGS").is_some() {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/recordings")
    } else {
        tmp.to_path_buf()
    }
}

fn save(dir: &Path, agent: &str, name: &str, rec: &Recording) {
    let dir = dir.join(agent);
    std::fs::create_dir_all(&dir).unwrap();
    let text = serde_json::to_string_pretty(rec).unwrap();
    std::fs::write(dir.join(format!("{name}.json")), text + "\n").unwrap();
}

async fn replays(agent: &Agent, rec: &Recording) {
    match replay(agent, rec).await.unwrap() {
        ReplayReport::Ok { .. } => {}
        other => panic!("{} diverged: {other:?}", rec.turn_id),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inline_turns_export_recordings_that_replay() {
    let tmp = tempfile::tempdir().unwrap();
    let out = out_dir(tmp.path());
    let store: Arc<dyn SessionStore> =
        Arc::new(SqliteStore::open(tmp.path().join("a.db")).unwrap());
    let ledger = Ledger::new(tmp.path().join("ledger.jsonl"));
    let cases = [
        (
            "billing",
            billing(store.clone(), ledger.clone()),
            "charge my card",
            "finished",
        ),
        (
            "refunds",
            refunds(store.clone(), ledger),
            "refund my last charge",
            "frame",
        ),
        ("support", support(store), "What is 6*7?", "math"),
    ];
    for (name, agent, text, what) in cases {
        let runner = InlineRunner::new(agent.runtime().unwrap(), "record");
        let session = SessionId::new(format!("{name}/alice")).unwrap();
        let input = TurnInput::text(text).with_input_id("in-1");
        let result = runner
            .turn(&session, input, &CancelToken::new())
            .await
            .unwrap();
        let turn = TurnId::new(&result.turn_id).unwrap();
        let rec = runner.recording(&session, &turn).await.unwrap();
        replays(&agent, &rec).await;
        save(&out, name, &format!("inline-{what}"), &rec);
    }
}

/// The crate's `agents` binary on `server`.
struct Agents {
    service: Service,
    env: Vec<(String, String)>,
}

impl Agents {
    fn start(dir: &Path, server: &RestateServer) -> Agents {
        let env = vec![
            (
                "AGENTS_DB".to_string(),
                dir.join("agents.db").display().to_string(),
            ),
            (
                "AGENTS_LEDGER".to_string(),
                dir.join("ledger.jsonl").display().to_string(),
            ),
            ("AGENTS_RESTATE_ADMIN".to_string(), server.admin.clone()),
        ];
        let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let bin = Path::new(env!("CARGO_BIN_EXE_agents"));
        let service = Service::start_program(bin, &[], "AGENTS_LISTEN", dir, &vars).unwrap();
        Agents { service, env }
    }

    /// Restarts it to pause 2 s once at `point`; the pauses logged so far.
    fn pausing_at(&mut self, point: &str) -> usize {
        let pause = format!("2000@{point}");
        let mut vars: Vec<(&str, &str)> = self
            .env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        vars.push(("RATCHET_PAUSE", &pause));
        self.service.restart(&vars).unwrap();
        self.pauses()
    }

    fn pauses(&self) -> usize {
        self.service.log().matches("pause point reached").count()
    }

    /// Waits for a pause beyond the `before` logged earlier.
    async fn wait_paused(&self, before: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while self.pauses() <= before {
            assert!(
                Instant::now() < deadline,
                "never paused:\n{}",
                self.service.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_turns_read_from_restate_replay_against_the_agents() {
    let tmp = tempfile::tempdir().unwrap();
    let out = out_dir(tmp.path());
    let server = RestateServer::start().unwrap();
    let mut agents = Agents::start(tmp.path(), &server);
    server.register(&agents.service.uri()).await.unwrap();
    let store: Arc<dyn SessionStore> =
        Arc::new(SqliteStore::open(tmp.path().join("agents.db")).unwrap());
    let ledger = Ledger::new(tmp.path().join("ledger.jsonl"));
    let billing = billing(store.clone(), ledger.clone());
    let refunds = refunds(store, ledger);
    let record = |object: &'static str, key: &'static str, text: &'static str| {
        let server = &server;
        async move {
            let inv = server
                .send_to(object, key, "turn", &body(text, "in-1"))
                .await
                .unwrap();
            (inv.clone(), server.attach(&inv).await.unwrap())
        }
    };

    let (inv, (status, reply)) = record("billing", "alice", "charge my card").await;
    assert_eq!(status, 200, "{reply}");
    let rec = durable_recording(&server.admin, &inv).await.unwrap();
    replays(&billing, &rec).await;
    save(&out, "billing", "durable-finished", &rec);

    let (inv, (status, reply)) = record("refunds", "carol", "refund my last charge").await;
    assert_eq!(status, 200, "{reply}");
    let rec = durable_recording(&server.admin, &inv).await.unwrap();
    assert!(
        rec.steps
            .iter()
            .any(|s| s.step.starts_with("agent-frame:1:"))
    );
    replays(&refunds, &rec).await;
    save(&out, "refunds", "durable-frame", &rec);

    // Killed after the charge, then settled when the input comes again.
    let before = agents.pausing_at("after:tool:0:call_0");
    let charge = body("charge my card", "in-1");
    let killed = server
        .send_to("billing", "dave", "turn", &charge)
        .await
        .unwrap();
    agents.wait_paused(before).await;
    server.kill_invocation(&killed).await.unwrap();
    let (inv, (status, reply)) = record("billing", "dave", "charge my card").await;
    assert_eq!(
        (status, &reply["outcome"]["reason"]),
        (200, &json!("incomplete")),
        "{reply}"
    );
    let rec = durable_recording(&server.admin, &inv).await.unwrap();
    replays(&billing, &rec).await;
    save(&out, "billing", "durable-killed-settled", &rec);

    // Cancelled while it pauses after the charge.
    let before = agents.pausing_at("after:tool:0:call_0");
    let inv = server
        .send_to("billing", "erin", "turn", &charge)
        .await
        .unwrap();
    agents.wait_paused(before).await;
    let (status, reply) = server
        .call_to("billing", "erin", "cancel", &json!(null))
        .await
        .unwrap();
    assert_eq!(
        (status, &reply["cancelled"]),
        (200, &json!(true)),
        "{reply}"
    );
    let (status, reply) = server.attach(&inv).await.unwrap();
    assert_eq!(
        (status, &reply["outcome"]["reason"]),
        (200, &json!("cancelled")),
        "{reply}"
    );
    let rec = durable_recording(&server.admin, &inv).await.unwrap();
    assert!(rec.cancelled_at.is_some(), "{rec:?}");
    replays(&billing, &rec).await;
    save(&out, "billing", "durable-cancelled", &rec);
}
