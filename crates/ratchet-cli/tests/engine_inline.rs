//! The turn engine on the inline tier: every outcome path, tool error
//! handling, retries, plugins, cancellation and session commands.
//! Determinism, replay and limits are in `engine_durability.rs`.

mod support;

use async_trait::async_trait;
use ratchet::engine::CancelToken;
use ratchet::model::{InputItem, Part, Role, StopReason, TurnFinish, TurnInput, TurnOutcome};
use ratchet::plugins::{BlockList, PluginSet};
use ratchet::tools::{IdempotencyClass, Tool, ToolContext, ToolError, ToolOutput};
use serde_json::{Value, json};
use std::sync::Arc;
use support::{memory, one_turn, runner, script, scripted_runtime, sid};

/// A tool whose result ends the turn, or that fails fatally.
struct Finisher;

#[async_trait]
impl Tool for Finisher {
    fn name(&self) -> &str {
        "finish"
    }
    fn description(&self) -> &str {
        "ends the turn"
    }
    fn parameters(&self) -> Value {
        json!({"type": "object", "properties": {"mode": {"enum": ["value", "error", "fatal"]}}, "required": ["mode"]})
    }
    fn idempotency(&self) -> IdempotencyClass {
        IdempotencyClass::Pure
    }
    async fn call(&self, _ctx: &ToolContext, args: Value) -> Result<ToolOutput, ToolError> {
        match args["mode"].as_str() {
            Some("fatal") => Err(ToolError::Fatal("disk on fire".into())),
            Some("error") => Ok(ToolOutput {
                ends_turn: true,
                ..ToolOutput::error("cannot finish")
            }),
            _ => Ok(ToolOutput {
                ends_turn: true,
                value: Some(json!({"done": true})),
                ..ToolOutput::text("done")
            }),
        }
    }
}

fn with_finisher(mut rt: ratchet::engine::Runtime) -> ratchet::engine::Runtime {
    rt.tools.register(Arc::new(Finisher));
    rt
}

fn finish_call(mode: &str) -> Value {
    json!([{"tool_calls": [{"id": "call_0", "name": "finish", "arguments": {"mode": mode}}]}])
}

#[tokio::test]
async fn demo_model_answers_arithmetic_through_the_calculator() {
    let rt = support::runtime_with(memory(), Arc::new(ratchet::llm::DemoModel::new()));
    let store = rt.store.clone();
    let t = one_turn(rt, "What is 17*23+4?").await;
    assert!(
        t.outcome.answer_text().unwrap().contains("395"),
        "{:?}",
        t.outcome
    );
    let roles: Vec<Role> = t.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        vec![Role::User, Role::Assistant, Role::Tool, Role::Assistant]
    );
    assert!(
        matches!(&t.messages[2].parts[0], Part::ToolResult { content, .. } if content == "395")
    );
    let history = store.messages(&sid(), u64::MAX).await.unwrap();
    assert_eq!(history.len(), 4);
    let effects = store.effect_counts(&sid()).await.unwrap();
    assert_eq!(
        effects.values().filter(|n| **n == 1).count(),
        effects.len(),
        "{effects:?}"
    );
}

#[tokio::test]
async fn a_plain_answer_finishes_with_the_assistant_message() {
    let rt = scripted_runtime(memory(), script(json!([{"text": "hello there"}])));
    let t = one_turn(rt, "hi").await;
    assert_eq!(
        t.outcome,
        TurnOutcome::Finished(TurnFinish::AssistantMessage {
            text: "hello there".into()
        })
    );
    assert_eq!(t.turn_index, 0);
    assert_eq!(t.receipt.version, 1);
    assert_eq!(t.messages[0].id, format!("{}:msg:0", t.turn_id));
    assert_eq!(t.messages[1].id, format!("{}:msg:1", t.turn_id));
}

#[tokio::test]
async fn a_final_value_directive_finishes_with_the_value() {
    let rt = scripted_runtime(memory(), script(json!([{"final_value": {"answer": 42}}])));
    let t = one_turn(rt, "compute").await;
    assert_eq!(
        t.outcome,
        TurnOutcome::Finished(TurnFinish::FinalValue {
            value: json!({"answer": 42})
        })
    );
}

#[tokio::test]
async fn a_tool_that_ends_the_turn_gives_tool_value_or_tool_error() {
    let rt = with_finisher(scripted_runtime(memory(), script(finish_call("value"))));
    let t = one_turn(rt, "go").await;
    assert_eq!(
        t.outcome,
        TurnOutcome::Finished(TurnFinish::ToolValue {
            tool_call_id: "call_0".into(),
            value: json!({"done": true})
        })
    );
    let rt = with_finisher(scripted_runtime(memory(), script(finish_call("error"))));
    let t = one_turn(rt, "go").await;
    assert_eq!(t.outcome.stop_reason(), Some(StopReason::ToolError));
}

#[tokio::test]
async fn a_fatal_tool_failure_stops_the_turn_and_answers_every_call() {
    let steps = json!([{"tool_calls": [
        {"id": "call_0", "name": "finish", "arguments": {"mode": "fatal"}},
        {"id": "call_1", "name": "calculator", "arguments": {"expression": "1+1"}}
    ]}]);
    let rt = with_finisher(scripted_runtime(memory(), script(steps)));
    let t = one_turn(rt, "go").await;
    assert_eq!(t.outcome.stop_reason(), Some(StopReason::ToolFailure));
    let answered: Vec<&str> = t
        .messages
        .iter()
        .flat_map(|m| m.tool_result_ids())
        .collect();
    assert_eq!(
        answered,
        vec!["call_0", "call_1"],
        "no call left without a result"
    );
}

#[tokio::test]
async fn unknown_tools_and_bad_arguments_come_back_to_the_model_as_errors() {
    let steps = json!([
        {"tool_calls": [
            {"id": "call_0", "name": "teleport", "arguments": {}},
            {"id": "call_1", "name": "calculator", "arguments": {"expr": "1"}}
        ]},
        {"text": "sorry, those tools failed"}
    ]);
    let rt = scripted_runtime(memory(), script(steps));
    let t = one_turn(rt, "go").await;
    assert_eq!(t.outcome.answer_text(), Some("sorry, those tools failed"));
    let results: Vec<(String, bool)> = t
        .messages
        .iter()
        .flat_map(|m| m.parts.iter())
        .filter_map(|p| match p {
            Part::ToolResult {
                content, is_error, ..
            } => Some((content.clone(), *is_error)),
            _ => None,
        })
        .collect();
    assert!(
        results[0].1 && results[0].0.contains("unknown tool 'teleport'"),
        "{results:?}"
    );
    assert!(
        results[1].1 && results[1].0.contains("missing required property"),
        "{results:?}"
    );
}

#[tokio::test]
async fn an_agent_frame_switch_runs_the_task_as_the_next_turn() {
    let s = json!({"turns": [
        [{"switch_frame": {"frame_id": "researcher", "task": "look it up"}}],
        [{"text": "found it"}]
    ]});
    let rt = scripted_runtime(memory(), s);
    let store = rt.store.clone();
    let t = one_turn(rt, "research this").await;
    assert!(matches!(t.outcome, TurnOutcome::AgentFrameSwitch { .. }));
    assert_eq!(t.frames.len(), 1);
    assert_eq!(t.frames[0].turn_id, format!("{}:agent-frame:1", t.turn_id));
    assert_eq!(t.final_outcome().answer_text(), Some("found it"));
    assert_eq!(store.head(&sid()).await.unwrap().version, 2);
    assert!(
        store.current_lease(&sid()).await.unwrap().is_none(),
        "lease released after the chain"
    );
}

#[tokio::test]
async fn stop_reasons_cover_incomplete_provider_error_submitted_error_and_max_turns() {
    let cases = [
        (json!([{"text": ""}]), StopReason::Incomplete),
        (
            json!([{"error": {"retryable": false, "message": "bad key"}}]),
            StopReason::ProviderError,
        ),
        (
            json!([{"fail_times": 5, "text": "never"}]),
            StopReason::ProviderError,
        ),
        (
            json!([{"submit_error": "I cannot do that"}]),
            StopReason::SubmittedError,
        ),
    ];
    for (steps, reason) in cases {
        let rt = scripted_runtime(memory(), script(steps.clone()));
        let t = one_turn(rt, "go").await;
        assert_eq!(t.outcome.stop_reason(), Some(reason), "{steps}");
    }
    let call = json!({"tool_calls": [{"id": "c", "name": "calculator", "arguments": {"expression": "1"}}]});
    let mut rt = scripted_runtime(memory(), script(json!([call, call, call])));
    rt.config.max_iterations = 2;
    let t = one_turn(rt, "loop").await;
    assert_eq!(t.outcome.stop_reason(), Some(StopReason::MaxTurns));
}

#[tokio::test]
async fn retryable_provider_errors_are_retried_by_the_policy() {
    let rt = scripted_runtime(
        memory(),
        script(json!([{"fail_times": 2, "text": "third time lucky"}])),
    );
    let store = rt.store.clone();
    let t = one_turn(rt, "go").await;
    assert_eq!(t.outcome.answer_text(), Some("third time lucky"));
    let counts = store.effect_counts(&sid()).await.unwrap();
    assert_eq!(counts.get(&format!("model:{}:0", t.turn_id)), Some(&3));
}

#[tokio::test]
async fn bad_input_is_refused_at_the_door_and_the_session_stays_usable() {
    let rt = scripted_runtime(memory(), json!({"responses": [{"text": "fine"}]}));
    let store = rt.store.clone();
    let r = runner(rt);
    let bad = [
        TurnInput::text("   "),
        TurnInput {
            items: vec![],
            input_id: None,
            trace_turn_id: None,
        },
        TurnInput {
            items: vec![InputItem::Image {
                uri: "ftp://nowhere/x.png".into(),
                media_type: None,
            }],
            input_id: None,
            trace_turn_id: None,
        },
    ];
    // Inputs that could never run are refused at the door: nothing stored.
    for input in bad {
        let err = r
            .turn(&sid(), input, &CancelToken::new())
            .await
            .unwrap_err();
        assert_eq!(err.code(), "invalid_input", "{err}");
    }
    // So is an input over the size limit, which could never be recorded.
    let inbox_len = || async { store.inbox(&sid()).await.map_or(0, |i| i.len()) };
    let before = inbox_len().await;
    let err = r
        .turn(
            &sid(),
            TurnInput::text("x".repeat(70 * 1024)),
            &CancelToken::new(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "payload_too_large", "{err}");
    assert_eq!(inbox_len().await, before);
    assert_eq!(before, 0, "no refused input was stored");
    assert!(store.head(&sid()).await.is_err(), "no session was created");
    let ok = r
        .turn(&sid(), TurnInput::text("hello"), &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(ok.outcome.answer_text(), Some("fine"));
    assert_eq!(ok.turn_index, 0);
    assert!(
        store
            .events_after(&sid(), 0, 100)
            .await
            .unwrap()
            .iter()
            .all(|e| !matches!(&e.event.kind, ratchet::model::EventKind::Error { .. }))
    );
}

#[tokio::test]
async fn a_plugin_can_abort_the_turn() {
    let mut rt = scripted_runtime(memory(), script(json!([{"text": "x"}])));
    rt.plugins = PluginSet::new().with(Arc::new(BlockList(vec!["password".into()])));
    let t = one_turn(rt, "tell me the PASSWORD").await;
    assert_eq!(t.outcome.stop_reason(), Some(StopReason::PluginAbort));
}

#[tokio::test]
async fn a_cancelled_turn_commits_cancelled_and_releases_the_lease() {
    let rt = scripted_runtime(
        memory(),
        json!({"responses": [{"text": "x"}, {"text": "after"}]}),
    );
    let store = rt.store.clone();
    let r = runner(rt);
    let cancel = CancelToken::new();
    cancel.cancel();
    let t = r
        .turn(&sid(), TurnInput::text("go"), &cancel)
        .await
        .unwrap();
    assert_eq!(t.outcome.stop_reason(), Some(StopReason::Cancelled));
    assert!(store.current_lease(&sid()).await.unwrap().is_none());
    let next = r
        .turn(&sid(), TurnInput::text("again"), &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(next.outcome.answer_text(), Some("x"));
}

#[tokio::test]
async fn session_commands_apply_before_the_next_input() {
    let rt = scripted_runtime(memory(), json!({"responses": [{"text": "ok"}]}));
    let store = rt.store.clone();
    store
        .enqueue(
            &sid(),
            ratchet::store::NewInboxEntry {
                id: "cmd-1".into(),
                turn_id: None,
                payload: ratchet::store::InboxPayload::Command(
                    ratchet::model::SessionCommand::SetSystemPrompt {
                        prompt: "Answer in French.".into(),
                    },
                ),
            },
        )
        .await
        .unwrap();
    one_turn(rt, "hi").await;
    let head = store.head(&sid()).await.unwrap();
    assert_eq!(
        head.settings.system_prompt.as_deref(),
        Some("Answer in French.")
    );
    assert!(store.inbox(&sid()).await.unwrap().is_empty());
}

/// Records what each hook saw of the turn.
#[derive(Default)]
struct Witness(std::sync::Mutex<Vec<String>>);

#[async_trait]
impl ratchet::plugins::Plugin for Witness {
    fn name(&self) -> &str {
        "witness"
    }
    fn system_prompt(&self, turn: &ratchet::plugins::TurnInfo<'_>) -> Option<String> {
        self.note("system_prompt", turn);
        None
    }
    async fn prepare(
        &self,
        turn: &ratchet::plugins::TurnInfo<'_>,
        _input: &TurnInput,
    ) -> Result<(), String> {
        self.note("prepare", turn);
        Ok(())
    }
    fn transform_context(
        &self,
        turn: &ratchet::plugins::TurnInfo<'_>,
        _messages: &mut Vec<ratchet::model::Message>,
    ) {
        self.note("context", turn);
    }
    async fn finalize(
        &self,
        turn: &ratchet::plugins::TurnInfo<'_>,
        _outcome: &TurnOutcome,
    ) -> Option<Value> {
        self.note("finalize", turn);
        None
    }
}

impl Witness {
    fn note(&self, hook: &str, turn: &ratchet::plugins::TurnInfo<'_>) {
        let prompt = turn.settings.system_prompt.as_deref().unwrap_or("-");
        self.0.lock().unwrap().push(format!(
            "{hook} {} {} {prompt}",
            turn.session_id, turn.turn_id
        ));
    }
}

#[tokio::test]
async fn plugins_see_the_session_the_turn_and_its_settings() {
    let witness = Arc::new(Witness::default());
    let mut rt = scripted_runtime(memory(), json!({"responses": [{"text": "ok"}]}));
    rt.plugins = PluginSet::new().with(witness.clone());
    rt.store
        .enqueue(
            &sid(),
            ratchet::store::NewInboxEntry {
                id: "cmd-1".into(),
                turn_id: None,
                payload: ratchet::store::InboxPayload::Command(
                    ratchet::model::SessionCommand::SetSystemPrompt {
                        prompt: "Be brief.".into(),
                    },
                ),
            },
        )
        .await
        .unwrap();
    let t = runner(rt)
        .turn(
            &sid(),
            TurnInput::text("hi").with_input_id("in-1"),
            &CancelToken::new(),
        )
        .await
        .unwrap();
    assert_eq!(t.turn_id, "turn-in-1");
    let seen = witness.0.lock().unwrap().clone();
    let want: Vec<String> = ["system_prompt", "prepare", "context", "finalize"]
        .iter()
        .map(|h| format!("{h} {} turn-in-1 Be brief.", sid()))
        .collect();
    assert_eq!(seen, want);
}
