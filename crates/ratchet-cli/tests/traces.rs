//! Traces: a durable turn's spans, exported over OTLP/HTTP by `ratchet
//! serve`, reach a real receiver (Arize Phoenix from PyPI, installed by
//! scripts/install-otel-receiver.sh) in the trace the ingress request
//! started, which restate-server's own spans (exported over OTLP/gRPC to
//! the same receiver) belong to, with each span under the right parent.

mod support;

use serde_json::{Value, json};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::restate::{e2e_lock, free_port};
use support::rig::Rig;

/// A Phoenix server on free loopback ports with its own working dir.
struct Phoenix {
    child: Child,
    http: u16,
    dir: tempfile::TempDir,
}

impl Phoenix {
    fn start() -> Phoenix {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let bin = root.join(".tools/otel/venv/bin/phoenix");
        assert!(
            bin.exists(),
            "Phoenix is not installed: run scripts/install-otel-receiver.sh"
        );
        let dir = tempfile::tempdir().unwrap();
        let (http, grpc) = (free_port().unwrap(), free_port().unwrap());
        let log = std::fs::File::create(dir.path().join("phoenix.log")).unwrap();
        let child = Command::new(bin)
            .arg("serve")
            .env("PHOENIX_WORKING_DIR", dir.path())
            .env("PHOENIX_HOST", "127.0.0.1")
            .env("PHOENIX_PORT", http.to_string())
            // Its OTLP/gRPC receiver is not used here; a free port keeps
            // it off anyone else's.
            .env("PHOENIX_GRPC_PORT", grpc.to_string())
            // No usage reports: traffic stays on loopback.
            .env("PHOENIX_TELEMETRY_ENABLED", "false")
            .env("PHOENIX_ENABLE_MCP_SERVER", "false")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("phoenix serve");
        Phoenix { child, http, dir }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("phoenix.log")).unwrap_or_default()
    }

    async fn wait_ready(&self) {
        let url = format!("http://127.0.0.1:{}/v1/projects", self.http);
        let deadline = Instant::now() + Duration::from_secs(120);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("Phoenix never came up\n{}", self.log());
    }

    /// Every span's trace, name and parent, for a failure message.
    async fn spans_of_all(&self) -> String {
        let url = format!(
            "http://127.0.0.1:{}/v1/projects/default/spans?limit=1000",
            self.http
        );
        let Ok(r) = reqwest::get(&url).await else {
            return "(unreadable)".into();
        };
        let v: Value = r.json().await.unwrap_or_default();
        let line = |s: &Value| {
            let (t, n, p) = (&s["context"]["trace_id"], &s["name"], &s["parent_id"]);
            format!("{t} {n} <- {p}")
        };
        let spans = v["data"].as_array().cloned().unwrap_or_default();
        spans.iter().map(line).collect::<Vec<_>>().join("\n")
    }

    /// The spans of `trace` the receiver holds.
    async fn spans(&self, trace: &str) -> Vec<Value> {
        let url = format!(
            "http://127.0.0.1:{}/v1/projects/default/spans?limit=1000&trace_id={trace}",
            self.http
        );
        match reqwest::get(&url).await {
            Ok(r) if r.status().is_success() => {
                let v: Value = r.json().await.unwrap_or_default();
                v["data"].as_array().cloned().unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }
}

impl Drop for Phoenix {
    fn drop(&mut self) {
        // By PID: SIGTERM, then SIGKILL if it lingers.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Spans of one trace, looked up by name and parent.
struct Tree(Vec<Value>);

impl Tree {
    fn named(&self, name: &str) -> Vec<&Value> {
        self.0.iter().filter(|s| s["name"] == name).collect()
    }

    /// The one span named `name`.
    fn one(&self, name: &str) -> &Value {
        let v = self.named(name);
        assert_eq!(v.len(), 1, "spans named {name:?} in:\n{}", self.outline());
        v[0]
    }

    fn parent_of(&self, span: &Value) -> Option<&Value> {
        let p = &span["parent_id"];
        self.0.iter().find(|s| &s["context"]["span_id"] == p)
    }

    /// Asserts that the span named `child` (each of them) sits under the
    /// span named `parent`.
    fn under(&self, child: &str, parent: &str) {
        let kids = self.named(child);
        assert!(
            !kids.is_empty(),
            "no span {child:?} in:\n{}",
            self.outline()
        );
        for kid in kids {
            let p = self
                .parent_of(kid)
                .map(|p| p["name"].as_str().unwrap_or(""));
            assert_eq!(
                p,
                Some(parent),
                "parent of {child:?} in:\n{}",
                self.outline()
            );
        }
    }

    fn outline(&self) -> String {
        let line = |s: &Value| {
            let p = self
                .parent_of(s)
                .map_or("-", |p| p["name"].as_str().unwrap_or(""));
            format!("{} <- {p}", s["name"])
        };
        self.0.iter().map(line).collect::<Vec<_>>().join("\n")
    }
}

fn attr<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["attributes"].get(key)
}

/// Waits until the trace holds ratchet's `commit` step, and (when
/// `with_restate`) restate's attempt span above ratchet's (both exporters
/// batch; ratchet's flushes at shutdown).
async fn collected(phoenix: &Phoenix, trace: &str, with_restate: bool) -> Tree {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let tree = Tree(phoenix.spans(trace).await);
        let joined = tree.named("Session/turn").iter().any(|s| {
            tree.parent_of(s)
                .is_some_and(|p| p["name"] == "invocation-attempt Session/{key}/turn")
        });
        if (joined || !with_restate) && !tree.named("step commit").is_empty() {
            return tree;
        }
        if Instant::now() > deadline {
            let all = phoenix.spans_of_all().await;
            panic!(
                "the trace never filled:\n{}\nall spans:\n{all}\n{}",
                tree.outline(),
                phoenix.log()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Starts a turn through the ingress as a traced client would.
async fn traced_turn(rig: &Rig, session: &str, trace: &str) -> reqwest::Result<reqwest::Response> {
    reqwest::Client::new()
        .post(format!("{}/Session/{session}/turn", rig.server.ingress))
        .header("content-type", "application/json")
        .header("traceparent", format!("00-{trace}-00f067aa0ba902b7-01"))
        .json(&json!({"input": {"items": [{"type": "text", "text": "What is 17*23+4?"}], "input_id": "t-1"}}))
        .send()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_turn_s_spans_arrive_in_the_request_s_trace_with_the_right_parents() {
    let _g = e2e_lock().await;
    let phoenix = Phoenix::start();
    phoenix.wait_ready().await;
    let http = format!("http://127.0.0.1:{}", phoenix.http);
    let restate_to = format!("otlp+http://127.0.0.1:{}/v1/traces", phoenix.http);
    // A batch delay longer than the test: ratchet's spans can only arrive
    // through the flush at shutdown (SIGTERM), which this checks too.
    let mut rig = Rig::start_with_server_env(
        &[("RESTATE_TRACING_ENDPOINT", &restate_to)],
        &[
            ("RATCHET_OTLP_ENDPOINT", &http),
            ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
        ],
    )
    .await;
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let resp = traced_turn(&rig, "traced", trace).await.unwrap();
    assert_eq!(resp.status(), 200, "{}", rig.diagnostics());
    rig.service.terminate(Duration::from_secs(30));
    let tree = collected(&phoenix, trace, true).await;

    // One trace: the client's span, restate-server's, then ratchet's.
    assert!(tree.0.iter().all(|s| s["context"]["trace_id"] == trace));
    let ingress = tree.one("ingress Session/{key}/turn");
    assert_eq!(
        ingress["parent_id"],
        "00f067aa0ba902b7",
        "{}",
        tree.outline()
    );
    tree.under(
        "invocation-start Session/{key}/turn",
        "ingress Session/{key}/turn",
    );
    tree.under("Session/turn", "invocation-attempt Session/{key}/turn");
    let handler = tree.one("Session/turn");
    let attempt = tree.parent_of(handler).unwrap();
    assert_eq!(
        attr(handler, "restate.invocation_id"),
        attr(attempt, "restate.invocation.id")
    );
    tree.under("turn", "Session/turn");
    let turn = tree.one("turn");
    assert_eq!(attr(turn, "session_id"), Some(&json!("traced")));
    assert_eq!(attr(turn, "turn_id"), Some(&json!("turn-t-1")));
    for phase in ["claim", "prepare", "effect_loop", "finalize", "commit"] {
        tree.under(phase, "turn");
    }
    steps_ran(&tree, &[], &STEPS);
    let calls = tree.named("model_call");
    assert_eq!(calls.len(), 2, "{}", tree.outline());
    tree.under("tool_call", "step tool:0:call_0");
    let tool = tree.one("tool_call");
    assert_eq!(attr(tool, "tool"), Some(&json!("calculator")));
    for call in calls.into_iter().chain([tool]) {
        assert_eq!(attr(call, "attempt").map(plain), Some("1".into()));
    }
    // Ids, names and counters only: no message text leaves the process.
    let text = serde_json::to_string(&tree.0).unwrap();
    assert!(!text.contains("17*23"), "message text in a span");

    // A crash after the tool step: the retried attempt's spans show the
    // steps it replayed from the journal, and only the rest ran.
    let otel = [
        ("RATCHET_OTLP_ENDPOINT", http.as_str()),
        ("OTEL_BSP_SCHEDULE_DELAY", "600000"),
    ];
    let faulty = [otel[0], otel[1], ("RATCHET_FAULT", "after:tool:0:call_0")];
    rig.service.restart(&faulty).unwrap();
    let trace2 = "5bf92f3577b34da6a3ce929d0e0e4737";
    let traceparent = [("traceparent", format!("00-{trace2}-00f067aa0ba902b7-01"))];
    let question = json!({"input": {"items": [{"type": "text", "text": "What is 17*23+4?"}], "input_id": "t-1"}});
    let status = rig
        .turn_across_a_crash("crashed", &question, &traceparent, &otel)
        .await;
    assert_eq!(status, 200, "{}", rig.diagnostics());
    rig.service.terminate(Duration::from_secs(30));
    // restate-server's spans of this one are not waited for: its batch
    // exporter now and then never sends a batch (seen twice in ten runs);
    // the join is checked above. Ratchet's own spans must all be here,
    // under the attempt span restate named in the request.
    let tree = collected(&phoenix, trace2, false).await;
    let handler = tree.one("Session/turn");
    let parent = handler["parent_id"].as_str().unwrap_or("");
    assert!(
        parent.len() == 16 && parent != "00f067aa0ba902b7",
        "{handler}"
    );
    assert!(tree.0.iter().all(|s| s["context"]["trace_id"] == trace2));
    steps_ran(&tree, &STEPS[..4], &STEPS[4..]);
    assert_eq!(tree.named("model_call").len(), 1, "{}", tree.outline());
    assert!(tree.named("tool_call").is_empty(), "{}", tree.outline());
}

/// A turn's steps with the phase each runs in.
const STEPS: [(&str, &str); 7] = [
    ("claim", "claim"),
    ("prepare", "prepare"),
    ("model:0", "effect_loop"),
    ("tool:0:call_0", "effect_loop"),
    ("model:1", "effect_loop"),
    ("finalize", "finalize"),
    ("commit", "commit"),
];

/// Asserts each step's span sits in its phase and says whether it was
/// replayed from the journal or ran.
fn steps_ran(tree: &Tree, replayed: &[(&str, &str)], ran: &[(&str, &str)]) {
    for (list, was) in [(replayed, true), (ran, false)] {
        for (step, phase) in list {
            let name = format!("step {step}");
            tree.under(&name, phase);
            let span = tree.one(&name);
            assert_eq!(attr(span, "replayed"), Some(&json!(was)), "{name}: {span}");
            assert_eq!(attr(span, "step"), Some(&json!(step)));
        }
    }
}

/// An attribute as text, however the receiver typed it.
fn plain(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_string)
}
