//! The turn engine's durability: byte-identical history from the same
//! script, replay of recordings (and divergence when the build changes),
//! a poisoned step committing `RuntimeError`, and lease renewal on a long
//! turn.

mod support;

use async_trait::async_trait;
use ratchet::engine::CancelToken;
use ratchet::engine::inline::{ReplayReport, replay};
use ratchet::model::{Part, StopReason, TurnInput};
use ratchet::store::MemoryStore;
use ratchet::store::prelude::*;
use ratchet::tools::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
use serde_json::{Value, json};
use std::sync::Arc;
use support::{memory, one_turn, runner, script, scripted_runtime, sid, sqlite_in};

async fn committed_bytes(store: &Arc<dyn SessionStore>) -> String {
    let m = store.messages(&sid(), u64::MAX).await.unwrap();
    let t = store.turns(&sid()).await.unwrap();
    let e = store.events_after(&sid(), 0, 1000).await.unwrap();
    serde_json::to_string(&(m, t, e)).unwrap()
}

#[tokio::test]
async fn the_same_script_commits_byte_identical_history_twice() {
    let dir = tempfile::tempdir().unwrap();
    let steps = json!({"turns": [
        [{"tool_calls": [{"id": "call_0", "name": "clock", "arguments": {}},
                         {"id": "call_1", "name": "calculator", "arguments": {"expression": "6*7"}}]},
         {"text": "it is late and 42", "usage": {"input_tokens": 10, "output_tokens": 5}}],
        [{"text": "second"}]
    ]});
    let mut outputs = Vec::new();
    for name in ["a.db", "b.db"] {
        let store = sqlite_in(dir.path(), name);
        let r = runner(scripted_runtime(store.clone(), steps.clone()));
        for (i, text) in ["first", "second"].iter().enumerate() {
            let input = TurnInput::text(*text).with_input_id(format!("in-{i}"));
            r.turn(&sid(), input, &CancelToken::new()).await.unwrap();
        }
        outputs.push(committed_bytes(&store).await);
    }
    assert_eq!(outputs[0], outputs[1]);
    assert!(
        outputs[0].contains("2025-11-24T16:00:00.000Z"),
        "clock from the injected clock"
    );
}

#[tokio::test]
async fn a_recorded_turn_replays_and_a_changed_build_diverges_at_the_right_step() {
    let steps = json!([
        {"tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "2+2"}}]},
        {"text": "4"}
    ]);
    let rt = scripted_runtime(memory(), script(steps));
    let r = runner(rt.clone());
    let t = r
        .turn(&sid(), TurnInput::text("2+2?"), &CancelToken::new())
        .await
        .unwrap();
    let rec = r
        .recording(&sid(), &ratchet::model::TurnId::new(&t.turn_id).unwrap())
        .await
        .unwrap();
    let names: Vec<&str> = rec.steps.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "claim",
            "prepare",
            "model:0",
            "tool:0:call_0",
            "model:1",
            "finalize",
            "commit"
        ]
    );
    assert_eq!(
        replay(&rt, &rec).await.unwrap(),
        ReplayReport::Ok { steps: 7 }
    );

    // A build whose tool set differs sends the model a different context.
    let mut other = rt.clone();
    other.tools = ratchet::tools::ToolRegistry::new().with(Arc::new(ratchet::tools::Calculator));
    match replay(&other, &rec).await.unwrap() {
        ReplayReport::Diverged { step, .. } => assert_eq!(step, "model:0"),
        ok => panic!("expected divergence, got {ok:?}"),
    }
    // Steps recorded in another order diverge at the first swapped step.
    let mut swapped = rec.clone();
    swapped.steps.swap(3, 4);
    match replay(&rt, &swapped).await.unwrap() {
        ReplayReport::Diverged { step, expected, .. } => {
            assert_eq!(step, "tool:0:call_0");
            assert!(expected.contains("model:1"), "{expected}");
        }
        ok => panic!("expected divergence, got {ok:?}"),
    }
    // A recorded tool result that was tampered with changes the next input.
    let mut tampered = rec.clone();
    tampered.steps[3].output["content"] = json!("5");
    match replay(&rt, &tampered).await.unwrap() {
        ReplayReport::Diverged { step, .. } => assert_eq!(step, "model:1"),
        ok => panic!("expected divergence, got {ok:?}"),
    }
}

#[tokio::test]
async fn a_model_answer_too_large_to_record_stops_with_runtime_error_and_the_session_stays_usable()
{
    let huge = "x".repeat(1_200_000);
    let s = json!({"turns": [[{"text": huge}], [{"text": "small"}]]});
    let rt = scripted_runtime(memory(), s);
    let store = rt.store.clone();
    let r = runner(rt);
    let t = r
        .turn(&sid(), TurnInput::text("big"), &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(
        t.outcome.stop_reason(),
        Some(StopReason::RuntimeError),
        "{:?}",
        t.outcome
    );
    assert!(format!("{:?}", t.outcome).contains("step_record_too_large"));
    assert!(
        store.inbox(&sid()).await.unwrap().is_empty(),
        "the input is consumed, not retried"
    );
    let next = r
        .turn(&sid(), TurnInput::text("again"), &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(next.outcome.answer_text(), Some("small"));
}

/// A tool that moves the injected clock 20 s on and reports the lease
/// expiry it sees.
/// Advances the clock 20 s per call and answers with the lease's expiry,
/// read from the store the test handed it (tools themselves see no store).
struct Slow(
    Arc<ratchet::clock::ManualClock>,
    Arc<dyn ratchet::store::SessionStore>,
);

#[async_trait]
impl Tool for Slow {
    fn name(&self) -> &str {
        "slow"
    }
    fn description(&self) -> &str {
        "takes 20 seconds"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object"})
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Pure
    }
    async fn call(&self, ctx: &ToolContext, _args: Value) -> Result<ToolOutput, ToolError> {
        let lease = self
            .1
            .current_lease(&ctx.session_id)
            .await
            .unwrap()
            .unwrap();
        self.0.advance(20_000);
        Ok(ToolOutput::text(lease.expires_at_ms.to_string()))
    }
}

#[tokio::test]
async fn a_long_turn_renews_its_lease_before_it_runs_out() {
    let slow = |id: &str| json!({"tool_calls": [{"id": id, "name": "slow", "arguments": {}}]});
    let clock = ratchet::clock::ManualClock::new(1_000_000);
    let store = MemoryStore::with_options(ratchet::store::rules::StoreOptions {
        clock: clock.clone(),
        ..Default::default()
    });
    let script = script(json!([slow("call_0"), slow("call_1"), {"text": "done"}]));
    let store: Arc<dyn ratchet::store::SessionStore> = Arc::new(store);
    let mut rt = scripted_runtime(store.clone(), script);
    rt.clock = clock.clone();
    rt.tools.register(Arc::new(Slow(clock, store)));
    let ttl = rt.config.lease_ttl_ms;
    let t = one_turn(rt, "go slowly").await;
    assert_eq!(t.outcome.answer_text(), Some("done"));
    let seen: Vec<u64> = t
        .messages
        .iter()
        .flat_map(|m| m.parts.iter())
        .filter_map(|p| match p {
            Part::ToolResult { content, .. } => content.parse().ok(),
            _ => None,
        })
        .collect();
    assert_eq!(seen[0], 1_000_000 + ttl, "fresh lease: not renewed yet");
    assert_eq!(
        seen[1],
        1_020_000 + ttl,
        "renewed once half the TTL was gone"
    );
}
