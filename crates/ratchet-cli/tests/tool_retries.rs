//! Tool retries that keep their key, and idempotency classes that take
//! effect, on the inline tier over a real SQLite file. A retryable error is
//! retried inside the call's own step with the same idempotency key. A call
//! cut off mid-flight (the turn's future dropped there, as when the process
//! dies) is run again on recovery with the same key unless its tool is
//! `Unsafe`: that one is not run again, the model is told the outcome is
//! unknown, and an event records it.

mod support;

use async_trait::async_trait;
use ratchet::engine::{CancelToken, RetryPolicy};
use ratchet::model::{EventKind, Part, SessionId, TurnInput, TurnOutcome};
use ratchet::store::SessionStore;
use ratchet::tools::{
    IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput, builtin_registry,
};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A tool that fails with a retryable error `fail_first` times, and hangs
/// on call number `hang_on` (from 1) until its future is dropped. It keeps
/// the idempotency key of every call.
struct Flaky {
    class: IdempotencyClass,
    fail_first: usize,
    hang_on: Option<usize>,
    keys: Arc<Mutex<Vec<String>>>,
}

#[async_trait]
impl Tool for Flaky {
    fn name(&self) -> &str {
        "act"
    }
    fn description(&self) -> &str {
        "does something in the world"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn idempotency(&self) -> IdempotencyClass {
        self.class
    }
    fn timeout(&self) -> Option<Duration> {
        Some(Duration::from_secs(3600))
    }
    fn retry_policy(&self) -> Option<RetryPolicy> {
        Some(RetryPolicy {
            attempts: 3,
            initial_backoff_ms: 1,
            max_backoff_ms: 2,
        })
    }
    async fn call(&self, ctx: &ToolContext, _args: Value) -> Result<ToolOutput, ToolError> {
        let n = {
            let mut keys = self.keys.lock().unwrap();
            keys.push(ctx.idempotency_key.clone());
            keys.len()
        };
        if self.hang_on == Some(n) {
            std::future::pending::<()>().await;
        }
        if n <= self.fail_first {
            return Err(ToolError::Retryable(format!("503 on call {n}")));
        }
        Ok(ToolOutput::text(format!("acted on call {n}")))
    }
}

struct Rig {
    runner: ratchet::engine::inline::InlineRunner,
    store: Arc<dyn SessionStore>,
    keys: Arc<Mutex<Vec<String>>>,
    session: SessionId,
    _dir: tempfile::TempDir,
}

fn rig(class: IdempotencyClass, fail_first: usize, hang_on: Option<usize>) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let store = support::sqlite_in(dir.path(), "tools.db");
    let keys = Arc::new(Mutex::new(Vec::new()));
    let script = json!({"every_turn": [
        {"tool_calls": [{"id": "call_0", "name": "act", "arguments": {}}]},
        {"text": "done"}
    ]});
    let mut rt = support::scripted_runtime(store.clone(), script);
    // The timeline's step_ran events, which carry each step's retries.
    rt.config.live_events = true;
    let tool = Flaky {
        class,
        fail_first,
        hang_on,
        keys: keys.clone(),
    };
    rt.tools = builtin_registry().with(Arc::new(tool));
    Rig {
        runner: support::runner(rt),
        store,
        keys,
        session: SessionId::new("tools").unwrap(),
        _dir: dir,
    }
}

impl Rig {
    async fn run(&self) -> ratchet::engine::TurnResult {
        let input = TurnInput::text("go").with_input_id("in-1");
        let cancel = CancelToken::new();
        let turn = self.runner.turn(&self.session, input, &cancel);
        turn.await.unwrap()
    }

    fn keys(&self) -> Vec<String> {
        self.keys.lock().unwrap().clone()
    }

    /// The result the model got for call_0.
    async fn result(&self) -> (String, bool) {
        let stored = self.store.messages(&self.session, u64::MAX).await.unwrap();
        stored
            .iter()
            .flat_map(|m| m.message.parts.iter())
            .find_map(|p| match p {
                Part::ToolResult {
                    content, is_error, ..
                } => Some((content.clone(), *is_error)),
                _ => None,
            })
            .expect("a tool result")
    }

    async fn unknown_events(&self) -> usize {
        let events = self
            .store
            .events_after(&self.session, 0, 100)
            .await
            .unwrap();
        events
            .iter()
            .filter(|e| matches!(e.event.kind, EventKind::ToolOutcomeUnknown { .. }))
            .count()
    }

    /// Runs the turn until the tool has been called `calls` times, then
    /// drops it there, as a dying process would; then resumes it.
    async fn cut_and_resume(&self, calls: usize) -> TurnOutcome {
        let input = TurnInput::text("go").with_input_id("in-1");
        let cancel = CancelToken::new();
        tokio::select! {
            r = self.runner.turn(&self.session, input, &cancel) => panic!("the turn ended: {r:?}"),
            _ = async {
                while self.keys().len() < calls {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } => {}
        }
        let done = self.runner.resume(&self.session, true).await.unwrap();
        assert_eq!(done.len(), 1, "the cut turn resumes");
        done[0].outcome.clone()
    }
}

fn finished(outcome: &TurnOutcome) -> bool {
    matches!(outcome, TurnOutcome::Finished(_))
}

#[tokio::test]
async fn a_retryable_error_is_retried_in_the_same_step_with_the_same_key() {
    let retries = || {
        let text = ratchet::metrics::render(None);
        let line = text
            .lines()
            .find_map(|l| l.strip_prefix("ratchet_retries_total{kind=\"tool\"} "))
            .map(|n| n.parse::<u64>().unwrap());
        line.unwrap_or(0)
    };
    let before = retries();
    let rig = rig(IdempotencyClass::Keyed, 2, None);
    let turn = rig.run().await;
    assert!(finished(&turn.outcome), "{:?}", turn.outcome);
    let keys = rig.keys();
    assert_eq!(keys.len(), 3, "two 503s, then success");
    // Other tests here retry too: the counter only grows.
    assert!(retries() >= before + 2, "the metric counts both retries");
    let events = rig.store.events_after(&rig.session, 0, 100).await.unwrap();
    let ran = events.iter().find_map(|e| match &e.event.kind {
        EventKind::StepRan { step, retries, .. } if step == "tool:0:call_0" => Some(*retries),
        _ => None,
    });
    assert_eq!(ran, Some(2), "the step's timeline bar shows its retries");
    assert!(keys.iter().all(|k| *k == keys[0]), "one key: {keys:?}");
    assert_eq!(rig.result().await, ("acted on call 3".to_string(), false));
    let steps = rig
        .store
        .checkpoints(&rig.session, &turn.turn_id)
        .await
        .unwrap();
    let tool_steps = steps.iter().filter(|c| c.step.starts_with("tool:")).count();
    assert_eq!(tool_steps, 1, "the retries are inside one step");
}

#[tokio::test]
async fn a_tool_out_of_retries_tells_the_model_and_the_turn_goes_on() {
    let rig = rig(IdempotencyClass::Unsafe, 5, None);
    let turn = rig.run().await;
    assert!(finished(&turn.outcome), "{:?}", turn.outcome);
    assert_eq!(rig.keys().len(), 3, "the tool's own policy: 3 attempts");
    let (content, is_error) = rig.result().await;
    assert!(is_error, "{content}");
    assert_eq!(content, "failed after 3 attempt(s): 503 on call 3");
}

#[tokio::test]
async fn a_call_cut_mid_flight_runs_again_with_its_key_unless_its_tool_is_unsafe() {
    for class in [
        IdempotencyClass::Pure,
        IdempotencyClass::Idempotent,
        IdempotencyClass::Keyed,
    ] {
        let rig = rig(class, 0, Some(1));
        let outcome = rig.cut_and_resume(1).await;
        assert!(finished(&outcome), "{class:?}: {outcome:?}");
        let keys = rig.keys();
        assert_eq!(keys.len(), 2, "{class:?}: run again on recovery");
        assert_eq!(keys[0], keys[1], "{class:?}: with the same key");
        assert_eq!(rig.result().await, ("acted on call 2".to_string(), false));
        assert_eq!(rig.unknown_events().await, 0);
    }

    let rig = rig(IdempotencyClass::Unsafe, 0, Some(1));
    let outcome = rig.cut_and_resume(1).await;
    assert!(finished(&outcome), "{outcome:?}");
    assert_eq!(rig.keys().len(), 1, "an unsafe call is never run again");
    let (content, is_error) = rig.result().await;
    assert!(
        is_error && content.starts_with("outcome unknown"),
        "{content}"
    );
    assert_eq!(rig.unknown_events().await, 1);
    assert!(
        rig.runner
            .resume(&rig.session, true)
            .await
            .unwrap()
            .is_empty(),
        "nothing left to resume"
    );
}
