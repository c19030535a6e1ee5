//! MCP tools against a real MCP server nobody here wrote: the reference
//! server `@modelcontextprotocol/server-everything`, installed from npm by
//! scripts/install-mcp.sh, over stdio (a child process of the runtime) and
//! streamable HTTP (a server the test starts on a free loopback port). The
//! turns run on the inline tier over a real SQLite file; the `tools` step
//! and every call are journal steps there as on the durable tier.

mod support;

use async_trait::async_trait;
use ratchet::engine::{CancelToken, Runtime, TurnResult};
use ratchet::llm::{ModelProvider, ModelRequest, ModelResponse, ProviderError, ScriptedProvider};
use ratchet::model::{EventKind, Part, SessionId, StopReason, TurnInput, TurnOutcome};
use ratchet::store::SessionStore;
use ratchet::tools::IdempotencyClass;
use ratchet::tools::mcp::{McpServer, McpSource};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::mcp::everything_js;

/// server-everything over stdio, tagged so the test can find its process.
fn stdio_server(tag: &str) -> McpServer {
    McpServer::stdio("everything", "node")
        .args([everything_js().display().to_string(), "stdio".into()])
        .env("RATCHET_TEST_TAG", tag)
        .attempts(2)
        .timeout(Duration::from_secs(20))
}

/// A scripted model that also keeps the tool names of every request.
struct Recording {
    inner: ScriptedProvider,
    offered: Mutex<Vec<Vec<(String, Value)>>>,
}

#[async_trait]
impl ModelProvider for Recording {
    fn name(&self) -> String {
        "recording".into()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        let tools = request
            .tools
            .iter()
            .map(|t| (t.name.clone(), t.parameters.clone()))
            .collect();
        self.offered.lock().unwrap().push(tools);
        self.inner.complete(request).await
    }
}

struct Rig {
    runner: ratchet::engine::inline::InlineRunner,
    store: Arc<dyn SessionStore>,
    model: Arc<Recording>,
    session: SessionId,
    _dir: tempfile::TempDir,
}

fn rig(script: Value, servers: Vec<McpServer>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_in(dir.path(), "mcp.db");
    let model = Arc::new(Recording {
        inner: ScriptedProvider::from_json_str(&script.to_string()).unwrap(),
        offered: Mutex::new(Vec::new()),
    });
    let mut rt: Runtime = support::runtime_with(store.clone(), model.clone());
    for server in servers {
        rt.tools
            .add_source(Arc::new(McpSource::new(server).unwrap()));
    }
    Rig {
        runner: support::runner(rt),
        store,
        model,
        session: SessionId::new("mcp").unwrap(),
        _dir: dir,
    }
}

fn calls(calls: Value) -> Value {
    json!({ "tool_calls": calls })
}

impl Rig {
    async fn turn(&self, input_id: &str) -> TurnResult {
        let input = TurnInput::text("use the tools").with_input_id(input_id);
        self.runner
            .turn(&self.session, input, &CancelToken::new())
            .await
            .unwrap()
    }

    async fn steps(&self, turn: &TurnResult) -> Vec<(String, Value)> {
        let rows = self
            .store
            .checkpoints(&self.session, &turn.turn_id)
            .await
            .unwrap();
        rows.into_iter()
            .map(|r| (r.step, r.record["output"].clone()))
            .collect()
    }

    async fn events(&self) -> Vec<EventKind> {
        let all = self
            .store
            .events_after(&self.session, 0, 500)
            .await
            .unwrap();
        all.into_iter().map(|e| e.event.kind).collect()
    }
}

/// The result the model got for each call, by call id.
fn results(turn: &TurnResult) -> Vec<(String, String, bool)> {
    turn.messages
        .iter()
        .flat_map(|m| m.parts.iter())
        .filter_map(|p| match p {
            Part::ToolResult {
                tool_call_id,
                content,
                is_error,
            } => Some((tool_call_id.clone(), content.clone(), *is_error)),
            _ => None,
        })
        .collect()
}

fn finished(turn: &TurnResult) {
    assert!(
        matches!(turn.outcome, TurnOutcome::Finished(_)),
        "{:?}",
        turn.outcome
    );
}

#[tokio::test]
async fn stdio_tools_are_listed_in_a_step_offered_with_their_schemas_and_called_as_tool_steps() {
    let script = json!({"every_turn": [
        calls(json!([
            {"id": "sum", "name": "everything__get-sum", "arguments": {"a": 2, "b": 3}},
            {"id": "bad", "name": "everything__get-sum", "arguments": {"a": "two"}},
            {"id": "echo", "name": "everything__echo", "arguments": {"message": "hi there"}}
        ])),
        {"text": "done"}
    ]});
    let rig = rig(script, vec![stdio_server("listing")]);
    let turn = rig.turn("in-1").await;
    finished(&turn);
    let got = results(&turn);
    assert_eq!(
        got[0],
        ("sum".into(), "The sum of 2 and 3 is 5.".into(), false)
    );
    assert!(got[1].2, "arguments off the schema are refused: {got:?}");
    assert!(got[1].1.contains("invalid arguments"), "{}", got[1].1);
    assert_eq!(got[2], ("echo".into(), "Echo: hi there".into(), false));

    let offered = rig.model.offered.lock().unwrap()[0].clone();
    let sum = offered
        .iter()
        .find(|(n, _)| n == "everything__get-sum")
        .expect("get-sum offered under its prefixed name");
    assert_eq!(sum.1["required"], json!(["a", "b"]), "with its schema");
    assert!(
        offered.iter().any(|(n, _)| n == "calculator"),
        "beside the built-ins"
    );

    let steps = rig.steps(&turn).await;
    let names: Vec<&str> = steps.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "claim",
            "prepare",
            "tools",
            "model:0",
            "tool:0:sum",
            "tool:0:bad",
            "tool:0:echo",
            "model:1",
            "finalize",
            "commit"
        ]
    );
    let listing = &steps[2].1["sources"][0];
    assert_eq!(listing["source"], "everything");
    assert!(
        listing["tools"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["offered"] == "everything__get-sum" && t["name"] == "get-sum"),
        "{listing}"
    );
    let counts = rig.store.effect_counts(&rig.session).await.unwrap();
    let started = counts
        .iter()
        .filter(|(k, _)| k.starts_with("started:"))
        .count();
    assert_eq!(
        started, 3,
        "MCP tools are unsafe by default: each call counts its start"
    );
}

#[tokio::test]
async fn a_replayed_turn_offers_and_calls_what_its_tools_step_recorded_with_the_server_gone() {
    let script = json!({"every_turn": [
        calls(json!([{"id": "sum", "name": "everything__get-sum", "arguments": {"a": 20, "b": 22}}])),
        {"text": "done"}
    ]});
    let live = rig(script.clone(), vec![stdio_server("replay")]);
    let turn = live.turn("in-1").await;
    finished(&turn);
    let recording = live
        .runner
        .recording(&live.session, &turn.turn_id.parse().unwrap())
        .await;
    let recording = recording.unwrap();
    // The same agent, but its server can no longer start: replay needs
    // neither the server nor its tool list.
    let gone = McpServer::stdio("everything", "/nonexistent/mcp-server").attempts(1);
    let dead = rig(script, vec![gone]);
    let report = ratchet::engine::inline::replay(dead.runner.runtime(), &recording)
        .await
        .expect("the recording replays");
    assert_eq!(
        report,
        ratchet::engine::inline::ReplayReport::Ok { steps: 8 },
        "claim, prepare, tools, model:0, tool:0:sum, model:1, finalize, commit: all served"
    );
    assert_eq!(results(&turn)[0].1, "The sum of 20 and 22 is 42.");
}

/// The pid of the stdio server tagged `tag`, a child of this process.
fn server_pid(tag: &str) -> Option<i32> {
    let me = std::process::id() as i32;
    support::mcp::tagged(tag)
        .into_iter()
        .find_map(|(pid, ppid)| (ppid == me).then_some(pid))
}

/// Runs a turn whose first call is a 3-second operation and SIGKILLs the
/// server one second into it; the second call is get-sum.
async fn kill_mid_call(class: IdempotencyClass, tag: &str) -> (Rig, TurnResult) {
    let script = json!({"every_turn": [
        calls(json!([{"id": "long", "name": "everything__trigger-long-running-operation",
                      "arguments": {"duration": 3, "steps": 3}}])),
        calls(json!([{"id": "sum", "name": "everything__get-sum", "arguments": {"a": 1, "b": 2}}])),
        {"text": "done"}
    ]});
    let rig = rig(script, vec![stdio_server(tag).idempotency(class)]);
    let killer = async {
        let pid = loop {
            match server_pid(tag) {
                Some(pid) => break pid,
                None => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        };
        // The listing takes well under a second; then the call runs.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // SAFETY: signals a child process of this test.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
        pid
    };
    let (turn, killed) = tokio::join!(rig.turn("in-1"), killer);
    assert_ne!(server_pid(tag), Some(killed), "the killed server is gone");
    (rig, turn)
}

#[tokio::test]
async fn an_unsafe_call_whose_server_dies_mid_call_is_not_repeated_and_the_next_call_reconnects() {
    let (rig, turn) = kill_mid_call(IdempotencyClass::Unsafe, "unsafe-kill").await;
    finished(&turn);
    let got = results(&turn);
    assert!(got[0].2, "{got:?}");
    assert!(
        got[0]
            .1
            .starts_with("outcome unknown: mcp_server_unavailable: server 'everything'"),
        "{}",
        got[0].1
    );
    assert_eq!(
        got[1].1, "The sum of 1 and 2 is 3.",
        "a new server answers the next call"
    );
    let unknown = rig
        .events()
        .await
        .into_iter()
        .filter(|e| matches!(e, EventKind::ToolOutcomeUnknown { .. }))
        .count();
    assert_eq!(unknown, 1, "an event records the unknown outcome");
}

#[tokio::test]
async fn an_idempotent_call_whose_server_dies_mid_call_is_retried_in_its_step() {
    let (rig, turn) = kill_mid_call(IdempotencyClass::Idempotent, "idem-kill").await;
    finished(&turn);
    let got = results(&turn);
    assert!(!got[0].2, "retried on a new server and completed: {got:?}");
    assert!(
        got[0].1.contains("Long running operation completed"),
        "{}",
        got[0].1
    );
    let steps = rig.steps(&turn).await;
    assert_eq!(
        steps.iter().filter(|(s, _)| s == "tool:0:long").count(),
        1,
        "the retry is inside the one step"
    );
}

/// server-everything over streamable HTTP on `port`, stopped on drop.
struct HttpServer(std::process::Child);

impl HttpServer {
    async fn start(port: u16) -> HttpServer {
        let server = HttpServer(
            std::process::Command::new("node")
                .arg(everything_js())
                .arg("streamableHttp")
                .env("PORT", port.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("node starts"),
        );
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server-everything did not listen on {port}");
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn an_http_server_that_restarts_is_reconnected_and_one_that_is_gone_is_reported() {
    let port = ratchet_testkit::harness::free_port().unwrap();
    let script = json!({"every_turn": [
        calls(json!([{"id": "sum", "name": "everything__get-sum", "arguments": {"a": 4, "b": 5}}])),
        {"text": "done"}
    ]});
    let url = format!("http://127.0.0.1:{port}/mcp");
    // A restarted server-everything leaves the old session's requests
    // unanswered: the listing attempt times out and the next connects anew.
    let http = McpServer::http("everything", url)
        .attempts(3)
        .timeout(Duration::from_secs(4));
    let rig = rig(script, vec![http]);
    let server = HttpServer::start(port).await;
    let first = rig.turn("in-1").await;
    finished(&first);
    assert_eq!(results(&first)[0].1, "The sum of 4 and 5 is 9.");

    // A restart loses the server's sessions: the client's session is
    // stale, the listing fails once, connects again and goes on.
    drop(server);
    let server = HttpServer::start(port).await;
    let second = rig.turn("in-2").await;
    finished(&second);
    assert_eq!(
        results(&second)[0].1,
        "The sum of 4 and 5 is 9.",
        "{:?}",
        rig.events().await
    );

    drop(server);
    let third = rig.turn("in-3").await;
    finished(&third);
    let got = results(&third);
    assert!(got[0].2 && got[0].1.contains("unknown tool"), "{got:?}");
    let unavailable: Vec<String> = rig
        .events()
        .await
        .into_iter()
        .filter_map(|e| match e {
            EventKind::ToolSourceUnavailable { source, message } => {
                Some(format!("{source}: {message}"))
            }
            _ => None,
        })
        .collect();
    assert_eq!(unavailable.len(), 1, "{unavailable:?}");
    assert!(
        unavailable[0]
            .starts_with("everything: not listed after 3 attempt(s): mcp_server_unavailable"),
        "{}",
        unavailable[0]
    );
}

#[tokio::test]
async fn a_required_server_that_cannot_start_stops_the_turn_with_a_typed_failure() {
    let script = json!({"every_turn": [{"text": "never asked"}]});
    let gone = McpServer::stdio("gone", "/nonexistent/mcp-server")
        .attempts(2)
        .required(true);
    let rig = rig(script, vec![gone]);
    let turn = rig.turn("in-1").await;
    let TurnOutcome::Stopped(stopped) = &turn.outcome else {
        panic!("{:?}", turn.outcome);
    };
    assert_eq!(stopped.reason, StopReason::ToolFailure);
    assert!(
        stopped.message.starts_with(
            "required tool source 'gone' is unavailable: not listed after 2 attempt(s): \
             mcp_server_unavailable: server 'gone': cannot start"
        ),
        "{}",
        stopped.message
    );
    assert!(
        rig.model.offered.lock().unwrap().is_empty(),
        "no model call"
    );
}

#[tokio::test]
async fn a_stdio_server_sees_only_the_environment_it_is_given_and_passed_secrets_are_redacted() {
    let secret = "mcp-test-secret-value-7d1f0c";
    // SAFETY: set before any server of this test starts; the variables are
    // this test's own.
    unsafe {
        std::env::set_var("RATCHET_MCP_TEST_TOKEN", secret);
        std::env::set_var("RATCHET_MCP_PARENT_ONLY", "parent-only-value");
    }
    let script = json!({"every_turn": [
        calls(json!([{"id": "env", "name": "everything__get-env", "arguments": {}}])),
        {"text": "done"}
    ]});
    let server = stdio_server("env").env_from("RATCHET_MCP_TEST_TOKEN");
    let rig = rig(script, vec![server]);
    let turn = rig.turn("in-1").await;
    finished(&turn);
    let (_, env, _) = results(&turn).remove(0);
    assert!(env.contains("RATCHET_MCP_TEST_TOKEN"), "passed on: {env}");
    assert!(!env.contains(secret), "its value is redacted: {env}");
    assert!(
        !env.contains("RATCHET_MCP_PARENT_ONLY"),
        "not inherited: {env}"
    );
    let stored = rig.store.messages(&rig.session, u64::MAX).await.unwrap();
    assert!(!serde_json::to_string(&stored).unwrap().contains(secret));
    for (_, record) in rig.steps(&turn).await {
        assert!(!record.to_string().contains(secret));
    }
}
