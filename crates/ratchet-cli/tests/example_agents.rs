//! The example crate's `agents` binary (two agents and a plain service in one endpoint,
//! built on the public API only) against a real restate-server: a billing
//! turn whose service is SIGKILLed right after its keyed `charge` tool step
//! recovers after a restart with the card charged exactly once; the two
//! agents keep separate sessions under the same key; the plain service
//! answers beside them.

mod support;

use ratchet::model::SessionId;
use ratchet::store::SqliteStore;
use ratchet::store::prelude::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use support::restate::{RestateServer, e2e_lock, free_port, post};

/// The example crate's binary (`examples/billing`), built by `cargo test
/// --workspace` and by scripts/test.sh.
fn example_bin() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_ratchet"))
        .parent()
        .unwrap()
        .join("agents");
    assert!(bin.exists(), "build it first: cargo build -p billing-agent");
    bin
}

struct Example {
    child: Child,
}

impl Example {
    fn start(dir: &Path, port: u16, fault: Option<&str>) -> Example {
        let mut cmd = Command::new(example_bin());
        cmd.env("AGENTS_DB", dir.join("agents.db"))
            .env("AGENTS_LEDGER", dir.join("ledger.jsonl"))
            .env("AGENTS_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("RATCHET_FAULT")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(f) = fault {
            cmd.env("RATCHET_FAULT", f);
        }
        let mut child = cmd.spawn().unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("listening on"), "{line:?}");
        Example { child }
    }

    fn wait_exit(&mut self, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        while std::time::Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Ledger lines of `kind` (`call`, `charge`, `receipt`) for `tool`.
fn ledger(dir: &Path, kind: &str, tool: &str) -> usize {
    std::fs::read_to_string(dir.join("ledger.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["kind"] == kind && (kind != "call" || v["tool"] == tool))
        .count()
}

fn turn(text: &str, id: &str) -> Value {
    json!({"input": {"items": [{"type": "text", "text": text}], "input_id": id}})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_and_a_service_share_an_endpoint_and_a_killed_charge_happens_once() {
    let _g = e2e_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let server = RestateServer::start().unwrap();
    let port = free_port().unwrap();
    let mut example = Example::start(dir.path(), port, Some("after:tool:0:call_0"));
    server
        .register(&format!("http://127.0.0.1:{port}"))
        .await
        .unwrap();
    let inv = server
        .send_to("billing", "alice", "turn", &turn("charge my card", "in-1"))
        .await
        .unwrap();
    assert!(
        example.wait_exit(Duration::from_secs(30)),
        "the fault point after the charge was never reached"
    );
    // (calls of charge, charges, receipts): tools run in order, so the
    // receipt had not been sent when the process died after the charge.
    let counts = |d: &Path| {
        (
            ledger(d, "call", "charge"),
            ledger(d, "charge", "charge"),
            ledger(d, "receipt", "receipt"),
        )
    };
    assert_eq!(counts(dir.path()), (1, 1, 0), "before the restart");
    let _example = Example::start(dir.path(), port, None);
    let (status, result) = server.attach(&inv).await.unwrap();
    assert_eq!(status, 200, "{result}");
    assert_eq!(
        result["outcome"]["text"],
        "Charged 12.50 to your card; the receipt is on its way."
    );
    // The charge step replayed, not re-run; one receipt.
    assert_eq!(counts(dir.path()), (1, 1, 1), "after the restart");

    // Same key, other agent: its own session.
    let (status, answer) = post(
        &format!("{}/support/alice/turn", server.ingress),
        &turn("What is 6*7?", "in-1"),
    )
    .await
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    assert!(answer["outcome"]["text"].as_str().unwrap().contains("42"));
    let store = SqliteStore::open(dir.path().join("agents.db")).unwrap();
    for session in ["billing/alice", "support/alice"] {
        let head = store.head(&SessionId::new(session).unwrap()).await.unwrap();
        assert_eq!(head.version, 1, "{session}");
    }
    let (status, hello) = post(
        &format!("{}/Greeter/greet", server.ingress),
        &json!("ratchet"),
    )
    .await
    .unwrap();
    assert_eq!((status, hello), (200, json!("Hello, ratchet")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratchet_serve_binds_the_agents_its_config_file_names() {
    let _g = e2e_lock().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agents.toml");
    std::fs::write(
        &file,
        r#"
[[agent]]
name = "support"
model = "demo"
tools = ["calculator"]

[[agent]]
name = "scribe"
system_prompt = "You keep notes."
tools = ["notes"]
"#,
    )
    .unwrap();
    let server = RestateServer::start().unwrap();
    let db = dir.path().join("ratchet.db");
    let store = format!("sqlite:{}", db.display());
    let agents = file.display().to_string();
    let service = support::restate::Service::start(
        &support::restate::ratchet_bin(),
        &store,
        &server.admin,
        dir.path(),
        &[("RATCHET_AGENTS", &agents)],
    )
    .unwrap();
    server.register(&service.uri()).await.unwrap();
    let call = |agent: &str, text: &str| {
        let url = format!("{}/{agent}/k/turn", server.ingress);
        let body = turn(text, "in-1");
        async move { post(&url, &body).await.unwrap() }
    };
    let (status, sum) = call("support", "What is 6*7?").await;
    assert_eq!(status, 200, "{sum}");
    assert!(sum["outcome"]["text"].as_str().unwrap().contains("42"));
    let (status, note) = call("scribe", "remember eggs").await;
    assert_eq!(status, 200, "{note}");
    let notes = SqliteStore::open(&db)
        .unwrap()
        .notes(&SessionId::new("scribe/k").unwrap())
        .await
        .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    // The default object is not bound when a file names the agents.
    let (status, _) = post(&format!("{}/Session/k/view", server.ingress), &json!(null))
        .await
        .unwrap();
    assert_eq!(status, 404);

    // A file naming an unknown tool is refused before anything serves.
    std::fs::write(&file, "[[agent]]\nname = \"x\"\ntools = [\"rocket\"]\n").unwrap();
    let refused = support::restate::Service::start(
        &support::restate::ratchet_bin(),
        &store,
        &server.admin,
        dir.path(),
        &[("RATCHET_AGENTS", &agents)],
    );
    let err = refused.err().expect("refused").to_string();
    assert!(err.contains("unknown tool 'rocket'"), "{err}");
}
