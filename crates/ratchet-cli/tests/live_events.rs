//! Live output on the event stream: with live events a step's event is
//! streamed before the commit and only once (also across a cut and resumed
//! turn), and a streaming model's tokens go out as they arrive, a retried
//! attempt resetting them first, without ever reaching the store or the
//! journal.

mod support;

use ratchet::engine::CancelToken;
use ratchet::model::{SessionId, TurnInput};
use ratchet::tools::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use support::sse::{Rig, names, read_events};

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
    // The log, read again from its start (step_ran events skipped), holds
    // just these four: the commit adds only what the steps did not.
    let ids: Vec<u64> = early.iter().chain(&rest).map(|f| f.0).collect();
    let mut again = rig.get("/sessions/s/events").send().await.unwrap();
    let mut buf = String::new();
    let log: Vec<u64> = read_events(&mut again, &mut buf, 4)
        .await
        .iter()
        .map(|f| f.0)
        .collect();
    assert_eq!(ids, log, "the commit adds only what the steps did not");
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
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
