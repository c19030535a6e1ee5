//! Effects slower than Restate's timers never loop. The restate-server here
//! runs invoker timers of 1 s + 2 s, far shorter than an 8 s model or tool
//! call. ratchet cuts each call at its own timeout, retries it a bounded
//! number of times, and derives the object's handler timers from those
//! timeouts, so Restate never aborts the step: each call is made exactly the
//! bounded number of times and the turn commits a typed stop.
//!
//! The service runs in this process through the library's public API (the
//! way a platform team embeds it), with a slow model and slow tools.

mod support;

use async_trait::async_trait;
use ratchet::engine::{EngineConfig, RetryPolicy, Runtime};
use ratchet::llm::{ModelProvider, ModelRequest, ModelResponse, ProviderError, ScriptedProvider};
use ratchet::plugins::PluginSet;
use ratchet::restate::{DurableOptions, Session};
use ratchet::store::SqliteStore;
use ratchet::store::prelude::*;
use ratchet::tools::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput, ToolRegistry};
use restate_sdk::endpoint::Endpoint;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use support::restate::{RestateServer, e2e_lock};
use support::rig::{sid, turn_body};

const SLOW: Duration = Duration::from_secs(8);
const SHORT_SERVER_TIMERS: [(&str, &str); 2] = [
    ("RESTATE_WORKER__INVOKER__INACTIVITY_TIMEOUT", "1s"),
    ("RESTATE_WORKER__INVOKER__ABORT_TIMEOUT", "2s"),
];

/// A model that takes `delay` before answering as its script says.
struct SlowModel {
    script: ScriptedProvider,
    delay: Duration,
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl ModelProvider for SlowModel {
    fn name(&self) -> String {
        "slow".into()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(self.delay).await;
        self.script.complete(request).await
    }
}

/// A tool that always takes too long.
struct SlowTool {
    name: &'static str,
    class: IdempotencyClass,
    calls: Arc<AtomicU32>,
}

#[async_trait]
impl Tool for SlowTool {
    fn name(&self) -> &str {
        self.name
    }
    fn description(&self) -> &str {
        "takes its time"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn idempotency(&self) -> IdempotencyClass {
        self.class
    }
    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(2))
    }
    async fn call(&self, _ctx: &ToolContext, _args: Value) -> Result<ToolOutput, ToolError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(SLOW).await;
        Ok(ToolOutput::text("too late"))
    }
}

struct Embedded {
    server: RestateServer,
    store: Arc<SqliteStore>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Embedded {
    async fn start(model: SlowModel, tools: ToolRegistry) -> Embedded {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path().join("ratchet.db")).unwrap());
        let fast = RetryPolicy {
            attempts: 2,
            initial_backoff_ms: 10,
            max_backoff_ms: 10,
        };
        let rt = Runtime {
            store: store.clone(),
            model: Arc::new(model),
            tools,
            plugins: PluginSet::new(),
            clock: ratchet::clock::system(),
            config: EngineConfig {
                model_timeout_ms: 2_000,
                provider_retry: fast.clone(),
                tool_retry: fast,
                ..EngineConfig::default()
            },
        };
        let options = DurableOptions {
            timer_margin: Duration::from_secs(2),
            ..DurableOptions::default()
        };
        assert_eq!(
            options.abort_timeout(&rt),
            Duration::from_millis(2 * 2_000 + 10 + 2_000),
            "the abort timer covers both attempts of the slowest step"
        );
        assert_eq!(options.inactivity_timeout(&rt), Duration::from_secs(2));
        let session = Session::new(rt).with_options(options);
        let endpoint = Endpoint::builder().bind(session.definition()).build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(ratchet::restate::serve(
            endpoint,
            listener,
            async {
                let _ = stopped.await;
            },
            Duration::from_secs(1),
        ));
        let server = RestateServer::start_with(&SHORT_SERVER_TIMERS).unwrap();
        server
            .register(&format!("http://127.0.0.1:{port}"))
            .await
            .unwrap();
        Embedded {
            server,
            store,
            stop: Some(stop),
            _dir: dir,
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn script(v: Value) -> ScriptedProvider {
    ScriptedProvider::from_json_str(&v.to_string()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_slower_than_the_server_timers_is_called_the_bounded_number_of_times() {
    let _g = e2e_lock().await;
    let calls = Arc::new(AtomicU32::new(0));
    let model = SlowModel {
        script: script(json!({"turns": [[{"text": "late"}]]})),
        delay: SLOW,
        calls: calls.clone(),
    };
    let rig = Embedded::start(model, ToolRegistry::new()).await;
    let (status, turn) = rig
        .server
        .call("m", "turn", &turn_body("hello", "in-1"))
        .await
        .unwrap();
    assert_eq!(status, 200, "{turn}\n{}", rig.server.log());
    assert_eq!(turn["outcome"]["reason"], "provider_error", "{turn}");
    assert!(
        turn["outcome"]["message"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{turn}"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "two attempts, never more");
    assert_eq!(rig.store.head(&sid("m")).await.unwrap().version, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_tool_is_retried_only_when_its_class_allows_and_the_turn_commits() {
    let _g = e2e_lock().await;
    let keyed = Arc::new(AtomicU32::new(0));
    let unsafe_calls = Arc::new(AtomicU32::new(0));
    let call = |name: &str| json!([{"tool_calls": [{"name": name}]}, {"text": "done"}]);
    let model = SlowModel {
        script: script(json!({"turns": [call("charge"), call("launch")]})),
        delay: Duration::ZERO,
        calls: Arc::new(AtomicU32::new(0)),
    };
    let tools = ToolRegistry::new()
        .with(Arc::new(SlowTool {
            name: "charge",
            class: IdempotencyClass::Keyed,
            calls: keyed.clone(),
        }))
        .with(Arc::new(SlowTool {
            name: "launch",
            class: IdempotencyClass::Unsafe,
            calls: unsafe_calls.clone(),
        }));
    let rig = Embedded::start(model, tools).await;
    for (id, counter, want) in [("in-1", &keyed, 2), ("in-2", &unsafe_calls, 1)] {
        let (status, turn) = rig
            .server
            .call("t", "turn", &turn_body("go", id))
            .await
            .unwrap();
        assert_eq!(status, 200, "{turn}\n{}", rig.server.log());
        assert_eq!(turn["outcome"]["reason"], "tool_failure", "{turn}");
        assert_eq!(counter.load(Ordering::SeqCst), want, "{id}");
    }
    assert_eq!(rig.store.head(&sid("t")).await.unwrap().version, 2);
}
