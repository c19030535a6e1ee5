//! Always-replay over the team's own agents: after every step each turn is
//! executed again from the top, on an agent built afresh, with the steps so
//! far served from the journal. The billing and support agents are
//! deterministic between steps; a planted tool whose name depends on the
//! process (as a tool set discovered at start-up would) is caught at the
//! first step whose input it changes.

use async_trait::async_trait;
use billing_agent::{Ledger, billing, lines, support};
use ratchet::model::TurnInput;
use ratchet::tools::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
use ratchet_testkit::always::{AlwaysReplayError, always_replay};
use serde_json::{Value, json};
use std::sync::Arc;

#[tokio::test]
async fn a_billing_turn_asks_for_the_same_steps_on_every_re_execution() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.jsonl");
    let ledger = Ledger::new(&path);
    let report = always_replay(
        |store| billing(store, ledger.clone()),
        "alice",
        &[TurnInput::text("charge my card")],
    )
    .await
    .unwrap();
    let steps = &report.steps[0];
    assert_eq!(
        steps,
        &[
            "claim",
            "prepare",
            "model:0",
            "tool:0:call_0",
            "tool:0:call_1",
            "model:1",
            "finalize",
            "commit"
        ]
    );
    // One execution per step, and the last one that finds every step done.
    assert_eq!(report.re_executions, steps.len() + 1);
    assert_eq!(
        report.turns[0].outcome.answer_text(),
        Some("Charged 12.50 to your card; the receipt is on its way.")
    );
    // Each effect ran once: a replayed step never runs its body again.
    let ledger = lines(&path);
    let calls = |tool: &str| {
        ledger
            .iter()
            .filter(|v| v["kind"] == "call" && v["tool"] == tool)
            .count()
    };
    assert_eq!((calls("charge"), calls("receipt")), (1, 1), "{ledger:?}");
}

#[tokio::test]
async fn consecutive_support_turns_replay_on_the_history_they_built() {
    let report = always_replay(
        support,
        "bob",
        &[TurnInput::text("What is 6*7?"), TurnInput::text("And 2+3?")],
    )
    .await
    .unwrap();
    assert_eq!(report.turns.len(), 2);
    assert!(
        report.turns[0]
            .outcome
            .answer_text()
            .unwrap()
            .contains("42")
    );
    assert!(report.turns[1].outcome.answer_text().unwrap().contains('5'));
    assert_eq!(report.turns[1].turn_index, 1);
    let steps: usize = report.steps.iter().map(Vec::len).sum();
    assert_eq!(report.re_executions, steps + 2);
}

/// The planted bug: a lookup tool registered under its backend's
/// connection id, so every process offers the model another tool name.
struct Lookup {
    name: String,
}

impl Lookup {
    fn connect() -> Self {
        let connection = uuid::Uuid::new_v4().simple().to_string();
        Lookup {
            name: format!("lookup_{}", &connection[..8]),
        }
    }
}

#[async_trait]
impl Tool for Lookup {
    fn name(&self) -> &str {
        &self.name
    }
    fn description(&self) -> &str {
        "Looks a customer up."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}})
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Pure
    }
    async fn call(&self, _ctx: &ToolContext, _args: Value) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text("alice"))
    }
}

#[tokio::test]
async fn a_tool_named_per_process_is_caught_at_the_first_model_step() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(dir.path().join("ledger.jsonl"));
    let err = always_replay(
        |store| billing(store, ledger.clone()).tool(Arc::new(Lookup::connect())),
        "alice",
        &[TurnInput::text("charge my card")],
    )
    .await
    .unwrap_err();
    let AlwaysReplayError::Nondeterministic {
        step,
        re_execution,
        divergence,
        ..
    } = &err
    else {
        panic!("expected nondeterminism, got {err}");
    };
    assert_eq!(step, "model:0", "{err}");
    // model:0 ran live on the third execution; the fourth differs.
    assert_eq!(*re_execution, 3, "{err}");
    let fields: Vec<&str> = divergence.fields.iter().map(|f| f.field.as_str()).collect();
    assert_eq!(fields, ["input_hash"], "{err}");
    assert!(err.to_string().contains("step 'model:0'"), "{err}");
}

#[tokio::test]
async fn a_frame_switching_turn_re_executes_across_its_frames() {
    let dir = tempfile::tempdir().unwrap();
    let ledger = Ledger::new(dir.path().join("ledger.jsonl"));
    let report = always_replay(
        |store| billing_agent::refunds(store, ledger.clone()),
        "carol",
        &[TurnInput::text("refund my last charge")],
    )
    .await
    .unwrap();
    let steps = &report.steps[0];
    assert!(
        steps.contains(&"agent-frame:1:tool:0:call_0".to_string()),
        "{steps:?}"
    );
    assert_eq!(report.re_executions, steps.len() + 1);
    let last = report.turns[0].final_outcome();
    assert_eq!(last.answer_text(), Some("Refund receipt sent."));
}

/// A tool whose answer is too large to journal.
struct Dump;

#[async_trait]
impl Tool for Dump {
    fn name(&self) -> &str {
        "dump"
    }
    fn description(&self) -> &str {
        "Dumps the customer's history."
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {}})
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Pure
    }
    async fn call(&self, _ctx: &ToolContext, _args: Value) -> Result<ToolOutput, ToolError> {
        Ok(ToolOutput::text("x".repeat(10_000)))
    }
}

#[tokio::test]
async fn a_step_that_fails_terminally_is_journaled_as_failed_and_served_so_again() {
    let script =
        json!({"turns": [[{"tool_calls": [{"name": "dump", "arguments": {}}]}, {"text": "done"}]]});
    let make = |store| {
        let model = ratchet::llm::ScriptedProvider::from_json_str(&script.to_string()).unwrap();
        ratchet::Agent::new("dumper")
            .store(store)
            .model(Arc::new(model))
            .tool(Arc::new(Dump))
            .config(ratchet::engine::EngineConfig {
                max_step_record_bytes: 4096,
                ..Default::default()
            })
    };
    let report = always_replay(make, "dana", &[TurnInput::text("dump it")])
        .await
        .unwrap();
    let outcome = &report.turns[0].outcome;
    assert_eq!(
        outcome.stop_reason(),
        Some(ratchet::model::StopReason::RuntimeError),
        "{outcome:?}"
    );
    let steps = &report.steps[0];
    assert!(steps.contains(&"tool:0:call_0".to_string()), "{steps:?}");
    assert_eq!(
        steps.last().map(String::as_str),
        Some("commit"),
        "{steps:?}"
    );
    assert_eq!(report.re_executions, steps.len() + 1);
}
