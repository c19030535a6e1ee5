//! The observation API (`ratchet::observe`) on a real SQLite store, served
//! on a free loopback port and read over real HTTP: the event stream
//! (Server-Sent Events) follows a session live, resumes exactly after
//! `Last-Event-ID`, the view is JSON, a bearer token guards both, and bad
//! requests get typed errors.

mod support;

use ratchet::engine::CancelToken;
use ratchet::model::{SessionId, TurnInput};
use ratchet::observe::{ObserveApi, serve_observe};
use ratchet::store::prelude::*;
use ratchet::tools::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "observe-token-5b2e9c71";

struct Rig {
    runner: ratchet::engine::inline::InlineRunner,
    base: String,
    http: reqwest::Client,
    _dir: tempfile::TempDir,
}

async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_in(dir.path(), "observe.db");
    let script = json!({"every_turn": [
        {"tool_calls": [{"id": "c0", "name": "calculator", "arguments": {"expression": "6*7"}}]},
        {"text": "42"}
    ]});
    let rt = support::scripted_runtime(store, script);
    Rig::serve(rt, dir).await
}

impl Rig {
    /// Serves `rt`'s store on a free loopback port, with the token.
    async fn serve(rt: ratchet::engine::Runtime, dir: tempfile::TempDir) -> Rig {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let api = ObserveApi::new(rt.store.clone())
            .bearer_token(TOKEN)
            .poll_interval(Duration::from_millis(20));
        tokio::spawn(serve_observe(api, listener, std::future::pending()));
        Rig {
            runner: support::runner(rt),
            base,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: dir,
        }
    }
}

impl Rig {
    async fn turn(&self, session: &str, input_id: &str) {
        let session = SessionId::new(session).unwrap();
        let input = TurnInput::text("6*7?").with_input_id(input_id);
        self.runner
            .turn(&session, input, &CancelToken::new())
            .await
            .unwrap();
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }
}

/// One SSE event: (id, event name, data).
type Frame = (u64, String, Value);

/// Reads `n` events from an open stream (comments and `retry:` skipped).
async fn read_events(resp: &mut reqwest::Response, buf: &mut String, n: usize) -> Vec<Frame> {
    let mut out = Vec::new();
    while out.len() < n {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, String::new(), None);
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("id: ") {
                    id = v.parse().ok();
                } else if let Some(v) = line.strip_prefix("event: ") {
                    event = v.to_string();
                } else if let Some(v) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(v).ok();
                }
            }
            if let (Some(id), Some(data)) = (id, data) {
                out.push((id, event, data));
            }
        }
        if out.len() >= n {
            break;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .expect("the stream stays open");
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    out
}

fn names(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.1.as_str()).collect()
}

#[tokio::test]
async fn the_stream_follows_a_session_live_and_resumes_exactly_after_last_event_id() {
    let rig = rig().await;
    rig.turn("s", "in-1").await;
    let mut resp = rig.get("/sessions/s/events").send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut buf = String::new();
    let first = read_events(&mut resp, &mut buf, 3).await;
    assert_eq!(
        names(&first),
        ["turn_started", "tool_executed", "turn_committed"]
    );
    assert_eq!(
        first.iter().map(|f| f.0).collect::<Vec<_>>(),
        [1, 2, 3],
        "ids are the log's positions"
    );
    assert_eq!(first[1].2["name"], "calculator");
    assert_eq!(
        first[0].2["id"], "turn-in-1:0",
        "the store's event id rides along"
    );

    // The open stream follows the session: the next turn's events arrive.
    rig.turn("s", "in-2").await;
    let live = read_events(&mut resp, &mut buf, 3).await;
    assert_eq!(live.iter().map(|f| f.0).collect::<Vec<_>>(), [4, 5, 6]);
    assert_eq!(live[2].2["version"], 2);
    drop(resp);

    // A reconnect after event 2 gets 3.. and nothing before.
    let mut again = rig
        .get("/sessions/s/events")
        .header("Last-Event-ID", "2")
        .send()
        .await
        .unwrap();
    let mut buf = String::new();
    let resumed = read_events(&mut again, &mut buf, 4).await;
    assert_eq!(
        resumed.iter().map(|f| f.0).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    let mut by_query = rig.get("/sessions/s/events?after=5").send().await.unwrap();
    let mut buf = String::new();
    assert_eq!(read_events(&mut by_query, &mut buf, 1).await[0].0, 6);

    // A stream opened before a session exists waits for its first event.
    let mut early = rig.get("/sessions/later/events").send().await.unwrap();
    assert_eq!(early.status(), 200);
    rig.turn("later", "in-1").await;
    let mut buf = String::new();
    assert_eq!(
        read_events(&mut early, &mut buf, 1).await[0].1,
        "turn_started"
    );
}

#[tokio::test]
async fn the_view_is_json_and_bad_requests_get_typed_errors() {
    let rig = rig().await;
    rig.turn("agent/k1", "in-1").await;
    for path in ["/sessions/agent/k1", "/sessions/agent%2Fk1"] {
        let resp = rig.get(path).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let view: Value = resp.json().await.unwrap();
        assert_eq!(view["head"]["version"], 1, "{view}");
        assert_eq!(view["recent_messages"].as_array().unwrap().len(), 4);
    }
    let check = |resp: reqwest::Response, status: u16, code: &'static str| async move {
        assert_eq!(resp.status().as_u16(), status);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["code"], code, "{body}");
        assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
    };
    let url = |p: &str| format!("{}{p}", rig.base);
    check(
        rig.http
            .get(url("/sessions/s/events"))
            .send()
            .await
            .unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let wrong = rig.http.get(url("/sessions/agent/k1")).bearer_auth("nope");
    check(wrong.send().await.unwrap(), 401, "unauthorized").await;
    check(
        rig.get("/sessions/nobody").send().await.unwrap(),
        404,
        "unknown_session",
    )
    .await;
    check(
        rig.get("/sessions/").send().await.unwrap(),
        400,
        "invalid_request",
    )
    .await;
    check(
        rig.get("/elsewhere").send().await.unwrap(),
        404,
        "invalid_request",
    )
    .await;
    let bad_id = rig.get("/sessions/s/events").header("Last-Event-ID", "abc");
    check(bad_id.send().await.unwrap(), 400, "invalid_request").await;
    let post = rig.http.post(url("/sessions/s")).bearer_auth(TOKEN);
    check(post.send().await.unwrap(), 405, "invalid_request").await;
}

/// A tool whose second call waits until released (or forever).
struct Gate {
    calls: std::sync::atomic::AtomicUsize,
    release: Arc<tokio::sync::Notify>,
    hang: bool,
}

#[async_trait::async_trait]
impl Tool for Gate {
    fn name(&self) -> &str {
        "gate"
    }
    fn description(&self) -> &str {
        "waits at its second call"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Idempotent
    }
    async fn call(&self, _ctx: &ToolContext, _args: Value) -> Result<ToolOutput, ToolError> {
        let n = 1 + self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        if n == 2 {
            if self.hang {
                std::future::pending::<()>().await;
            }
            self.release.notified().await;
        }
        Ok(ToolOutput::text(format!("call {n}")))
    }
}

/// A rig whose agent appends events live, with the gate tool.
async fn live_rig(hang: bool) -> (Rig, Arc<tokio::sync::Notify>) {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_in(dir.path(), "live.db");
    let script = json!({"every_turn": [
        {"tool_calls": [{"id": "c0", "name": "gate", "arguments": {}}]},
        {"tool_calls": [{"id": "c1", "name": "gate", "arguments": {}}]},
        {"text": "done"}
    ]});
    let mut rt = support::scripted_runtime(store, script);
    rt.config.live_events = true;
    let release = Arc::new(tokio::sync::Notify::new());
    rt.tools.register(Arc::new(Gate {
        calls: Default::default(),
        release: release.clone(),
        hang,
    }));
    (Rig::serve(rt, dir).await, release)
}

#[tokio::test]
async fn with_live_events_a_step_s_event_streams_before_the_commit_and_only_once() {
    let (rig, release) = live_rig(false).await;
    let mut resp = rig.get("/sessions/s/events").send().await.unwrap();
    let mut buf = String::new();
    let turn = rig.turn("s", "in-1");
    let watch = async {
        // The turn waits in its second tool call: what came so far came
        // from its steps, not its commit.
        let early = read_events(&mut resp, &mut buf, 2).await;
        release.notify_one();
        let rest = read_events(&mut resp, &mut buf, 2).await;
        (early, rest)
    };
    let ((), (early, rest)) = tokio::join!(turn, watch);
    assert_eq!(names(&early), ["turn_started", "tool_executed"]);
    assert_eq!(early[1].2["tool_call_id"], "c0");
    assert_eq!(early[1].2["id"], "turn-in-1:tool:0:c0", "the step's id");
    assert_eq!(names(&rest), ["tool_executed", "turn_committed"]);
    let ids: Vec<u64> = early.iter().chain(&rest).map(|f| f.0).collect();
    assert_eq!(
        ids,
        [1, 2, 3, 4],
        "the commit adds only what the steps did not"
    );
}

#[tokio::test]
async fn a_turn_cut_mid_flight_and_resumed_streams_each_event_once() {
    let (rig, _release) = live_rig(true).await;
    let session = SessionId::new("s").unwrap();
    let input = TurnInput::text("go").with_input_id("in-1");
    let cancel = CancelToken::new();
    let mut resp = rig.get("/sessions/s/events").send().await.unwrap();
    let mut buf = String::new();
    tokio::select! {
        r = rig.runner.turn(&session, input, &cancel) => panic!("the turn ended: {r:?}"),
        seen = read_events(&mut resp, &mut buf, 2) => {
            assert_eq!(names(&seen), ["turn_started", "tool_executed"]);
        }
    }
    // The turn's future is dropped mid-call, as when its process dies;
    // resumed, it replays the first call's step and runs the second again
    // (which now answers: the gate hangs only on its second call).
    let done = rig.runner.resume(&session, true).await.unwrap();
    assert_eq!(done.len(), 1);
    let rest = read_events(&mut resp, &mut buf, 2).await;
    assert_eq!(names(&rest), ["tool_executed", "turn_committed"]);
    assert_eq!(rest[0].2["tool_call_id"], "c1");
    let mut again = rig.get("/sessions/s/events").send().await.unwrap();
    let mut buf = String::new();
    let all = read_events(&mut again, &mut buf, 4).await;
    let calls: Vec<&str> = all
        .iter()
        .filter_map(|f| f.2["tool_call_id"].as_str())
        .collect();
    assert_eq!(calls, ["c0", "c1"], "each call's event once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ratchet_serve_http_streams_a_durable_turn_as_it_runs() {
    let _guard = support::restate::e2e_lock().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let rig = support::rig::Rig::start(&[
        ("RATCHET_HTTP", addr.as_str()),
        ("RATCHET_HTTP_TOKEN", TOKEN),
        // The second tool step waits 1.5 s first: the stream must show the
        // first one before the turn commits.
        ("RATCHET_PAUSE", "1500@after:tool:0:call_0"),
    ])
    .await;
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let url = format!("http://{addr}/sessions/d/events");
    let unauthorized = http.get(&url).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    let mut resp = http.get(&url).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let id = rig
        .server
        .send(
            "d",
            "turn",
            &support::rig::turn_body("What is 17*23+4 and what time is it?", "in-1"),
        )
        .await
        .unwrap();
    assert!(id.starts_with("inv_"), "{id}");
    let mut buf = String::new();
    let early = read_events(&mut resp, &mut buf, 2).await;
    assert_eq!(names(&early), ["turn_started", "tool_executed"]);
    let head = rig.store().head(&SessionId::new("d").unwrap()).await;
    assert!(
        head.map_or(true, |h| h.version == 0),
        "seen before the turn committed"
    );
    let mut rest = Vec::new();
    while rest.last().is_none_or(|f: &Frame| f.1 != "turn_committed") {
        rest.extend(read_events(&mut resp, &mut buf, 1).await);
    }
    let ids: Vec<u64> = early.iter().chain(&rest).map(|f| f.0).collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "no gaps, no repeats"
    );
    let view: Value = http
        .get(format!("http://{addr}/sessions/d"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["head"]["version"], 1, "{view}");
}

#[tokio::test]
async fn a_streaming_model_s_tokens_go_out_live_and_a_retry_resets_them_first() {
    use ratchet::llm::{OpenAiClient, OpenAiConfig, OpenAiParams};
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = calls.clone();
    let chunk = |text: &str| {
        format!(
            "data: {}\n\n",
            json!({"choices": [{"index": 0, "delta": {"content": text}}]})
        )
    };
    let port = support::http::serve(move |_req| {
        let n = 1 + counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        // The first answer is cut after one token (retryable); the
        // second streams to its end.
        let body = if n == 1 {
            chunk("Four")
        } else {
            let end = json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]});
            format!(
                "{}{}data: {end}\n\ndata: [DONE]\n\n",
                chunk("Forty"),
                chunk("-two")
            )
        };
        (200, body)
    })
    .await;
    let config = OpenAiConfig::new(format!("http://127.0.0.1:{port}/v1"), "gpt-test").with_params(
        OpenAiParams {
            stream: true,
            ..OpenAiParams::default()
        },
    );
    let client = OpenAiClient::with_api_key(config, "sk-live-test-0b3c71d2")
        .unwrap()
        .with_delta_sink(Arc::new(ratchet::live::LiveDeltas));
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_in(dir.path(), "tokens.db");
    let rt = support::runtime_with(store.clone(), Arc::new(client));
    let rig = Rig::serve(rt, dir).await;
    let mut resp = rig.get("/sessions/tok/events").send().await.unwrap();
    // The stream has subscribed once its first bytes (retry:) arrived.
    let first = tokio::time::timeout(Duration::from_secs(5), resp.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let mut buf = String::from_utf8_lossy(&first).to_string();
    rig.turn("tok", "in-1").await;

    // Live frames carry no id: read them by name.
    let mut live = Vec::new();
    while !buf.contains("event: turn_committed") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
    for block in buf.split("\n\n") {
        if block.lines().any(|l| l.starts_with("id: ")) {
            continue;
        }
        let event = block.lines().find_map(|l| l.strip_prefix("event: "));
        let data = block.lines().find_map(|l| l.strip_prefix("data: "));
        if let (Some(event), Some(data)) = (event, data) {
            let data: Value = serde_json::from_str(data).unwrap();
            let text = data["delta"]["text"].as_str().unwrap_or("").to_string();
            live.push((event.to_string(), data["attempt"].as_u64().unwrap(), text));
            assert_eq!(data["step"], "model:0");
            assert_eq!(data["turn_id"], "turn-in-1");
        }
    }
    let want = [
        ("model_delta", 1, "Four"),
        ("model_attempt_reset", 2, ""),
        ("model_delta", 2, "Forty"),
        ("model_delta", 2, "-two"),
    ];
    let got: Vec<(&str, u64, &str)> = live
        .iter()
        .map(|(e, a, t)| (e.as_str(), *a, t.as_str()))
        .collect();
    assert_eq!(got, want);
    // Tokens never enter the log or the journal; the answer does.
    let stored = store
        .events_after(&SessionId::new("tok").unwrap(), 0, 100)
        .await
        .unwrap();
    assert!(stored.iter().all(|e| {
        let v = serde_json::to_value(&e.event.kind).unwrap();
        !v["type"].as_str().unwrap().starts_with("model_")
    }));
    let turn_id = "turn-in-1";
    let steps = store
        .checkpoints(&SessionId::new("tok").unwrap(), turn_id)
        .await
        .unwrap();
    let model = steps.iter().find(|c| c.step == "model:0").unwrap();
    let record = model.record.to_string();
    assert!(
        record.contains("Forty-two") && !record.contains("\"Four\""),
        "{record}"
    );
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
}
