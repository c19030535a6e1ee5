//! The observation API's test rig: a runtime whose store is served by
//! `ratchet::observe` on a free loopback port, and a reader of its
//! Server-Sent Events.

use super::{runner, scripted_runtime, sqlite_in};
use ratchet::engine::CancelToken;
use ratchet::model::{SessionId, TurnInput};
use ratchet::observe::{ObserveApi, serve_observe};
use serde_json::{Value, json};
use std::time::Duration;

pub const TOKEN: &str = "observe-token-5b2e9c71";

pub struct Rig {
    pub runner: ratchet::engine::inline::InlineRunner,
    pub base: String,
    pub http: reqwest::Client,
    _dir: tempfile::TempDir,
}

pub async fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_in(dir.path(), "observe.db");
    let script = json!({"every_turn": [
        {"tool_calls": [{"id": "c0", "name": "calculator", "arguments": {"expression": "6*7"}}]},
        {"text": "42"}
    ]});
    let rt = scripted_runtime(store, script);
    Rig::serve(rt, dir).await
}

impl Rig {
    /// Serves `rt`'s store on a free loopback port, with the token.
    pub async fn serve(rt: ratchet::engine::Runtime, dir: tempfile::TempDir) -> Rig {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let api = ObserveApi::new(rt.store.clone())
            .bearer_token(TOKEN)
            .poll_interval(Duration::from_millis(20));
        tokio::spawn(serve_observe(api, listener, std::future::pending()));
        Rig {
            runner: runner(rt),
            base,
            http: reqwest::Client::builder().no_proxy().build().unwrap(),
            _dir: dir,
        }
    }
}

impl Rig {
    pub async fn turn(&self, session: &str, input_id: &str) {
        let session = SessionId::new(session).unwrap();
        let input = TurnInput::text("6*7?").with_input_id(input_id);
        self.runner
            .turn(&session, input, &CancelToken::new())
            .await
            .unwrap();
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.base))
            .bearer_auth(TOKEN)
    }
}

/// One SSE event: (id, event name, data).
pub type Frame = (u64, String, Value);

/// Reads `n` events from an open stream (comments, `retry:` and
/// `step_ran` events skipped).
pub async fn read_events(resp: &mut reqwest::Response, buf: &mut String, n: usize) -> Vec<Frame> {
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
            // The timeline's step_ran events are checked on their own.
            if let (Some(id), Some(data)) = (id, data)
                && event != "step_ran"
            {
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

pub fn names(frames: &[Frame]) -> Vec<&str> {
    frames.iter().map(|f| f.1.as_str()).collect()
}
