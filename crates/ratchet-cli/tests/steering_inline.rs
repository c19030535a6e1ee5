//! Steering on the inline tier: a steer enqueued while a turn runs joins it
//! at its next model call (the model sees it after the tool results before
//! that call, a `steered` event says which call, the commit completes it);
//! one no model call takes, or one sent with no turn running, runs as an
//! ordinary input in its FIFO place. A steer sent to a parked turn joins it
//! when it resumes.

mod support;

use async_trait::async_trait;
use ratchet::engine::{CancelToken, admit};
use ratchet::llm::{FinishReason, ModelProvider, ModelRequest, ModelResponse, ProviderError};
use ratchet::model::{
    Decision, EventKind, Message, Part, Role, SessionId, TurnInput, TurnOutcome, Usage, Verdict,
    WaitKind,
};

use ratchet::store::SessionStore;
use serde_json::json;
use std::sync::{Arc, Mutex};

/// A model that calls the calculator twice, then answers, and steers the
/// session itself while it thinks: `steer_at[i]` is the steer it enqueues
/// during model call `i` of the first turn. Once that turn is done ("done"
/// is in history), it answers "noted".
struct SteeringModel {
    store: Arc<dyn SessionStore>,
    session: SessionId,
    steer_at: Vec<Option<&'static str>>,
    seen: Mutex<Vec<ModelRequest>>,
}

fn call(id: &str, expression: &str) -> Part {
    Part::ToolCall {
        id: id.into(),
        name: "calculator".into(),
        arguments: json!({ "expression": expression }),
    }
}

fn text_of(m: &Message) -> String {
    m.text_content()
}

#[async_trait]
impl ModelProvider for SteeringModel {
    fn name(&self) -> String {
        "steering-test".into()
    }

    async fn complete(&self, request: &ModelRequest) -> Result<ModelResponse, ProviderError> {
        self.seen.lock().unwrap().push(request.clone());
        let first_done = request
            .messages
            .iter()
            .any(|m| m.role == Role::Assistant && text_of(m) == "done");
        let i = request.iteration as usize;
        let (parts, finish_reason) = if first_done {
            (
                vec![Part::Text {
                    text: "noted".into(),
                }],
                FinishReason::Stop,
            )
        } else {
            if let Some(Some(text)) = self.steer_at.get(i) {
                let input = TurnInput::text(*text).with_input_id(format!("steer-{i}"));
                let entry = admit(input, 64 * 1024, || unreachable!())
                    .unwrap()
                    .into_steer_entry();
                self.store.enqueue(&self.session, entry).await.unwrap();
            }
            match i {
                0 => (vec![call("call_a", "1+1")], FinishReason::ToolCalls),
                1 => (vec![call("call_b", "2+2")], FinishReason::ToolCalls),
                _ => (
                    vec![Part::Text {
                        text: "done".into(),
                    }],
                    FinishReason::Stop,
                ),
            }
        };
        Ok(ModelResponse {
            parts,
            usage: Usage::default(),
            finish_reason,
            directive: None,
        })
    }
}

struct Rig {
    runner: ratchet::engine::inline::InlineRunner,
    store: Arc<dyn SessionStore>,
    model: Arc<SteeringModel>,
    session: SessionId,
    _dir: tempfile::TempDir,
}

fn rig(steer_at: Vec<Option<&'static str>>, approve: bool) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    // One clock for the store (leases) and the turn (a parked lease).
    let (store, clock) = support::sqlite_with_clock(dir.path(), "steer.db");
    let session = SessionId::new("steered").unwrap();
    let model = Arc::new(SteeringModel {
        store: store.clone(),
        session: session.clone(),
        steer_at,
        seen: Mutex::new(Vec::new()),
    });
    let mut rt = support::runtime_with(store.clone(), model.clone());
    rt.clock = clock;
    if approve {
        rt.config.approval.tools.insert("calculator".into());
    }
    Rig {
        runner: support::runner(rt),
        store,
        model,
        session,
        _dir: dir,
    }
}

impl Rig {
    async fn events(&self) -> Vec<EventKind> {
        let all = self
            .store
            .events_after(&self.session, 0, 100)
            .await
            .unwrap();
        all.into_iter().map(|e| e.event.kind).collect()
    }

    async fn history(&self) -> Vec<(Role, String)> {
        let stored = self.store.messages(&self.session, u64::MAX).await.unwrap();
        stored
            .into_iter()
            .map(|m| {
                let text = match m.message.parts.first() {
                    Some(Part::ToolCall { id, .. }) => format!("call {id}"),
                    Some(Part::ToolResult { content, .. }) => format!("result {content}"),
                    _ => text_of(&m.message),
                };
                (m.message.role, text)
            })
            .collect()
    }

    async fn live_inbox(&self) -> Vec<String> {
        let live = self.store.inbox(&self.session).await.unwrap();
        live.into_iter().map(|e| e.id).collect()
    }
}

fn steered(events: &[EventKind]) -> Vec<(String, u32)> {
    events
        .iter()
        .filter_map(|e| match e {
            EventKind::Steered {
                input_id,
                iteration,
            } => Some((input_id.clone(), *iteration)),
            _ => None,
        })
        .collect()
}

/// The first turn's history with a steer taken by model call 1.
fn steered_transcript(steer: &str) -> Vec<(Role, String)> {
    vec![
        u("start"),
        a("call call_a"),
        t("result 2"),
        u(steer),
        a("call call_b"),
        t("result 4"),
        a("done"),
    ]
}

fn u(s: &str) -> (Role, String) {
    (Role::User, s.into())
}
fn a(s: &str) -> (Role, String) {
    (Role::Assistant, s.into())
}
fn t(s: &str) -> (Role, String) {
    (Role::Tool, s.into())
}

#[tokio::test]
async fn a_steer_joins_the_running_turn_at_its_next_model_call() {
    let rig = rig(vec![Some("use more precision"), None, None], false);
    let input = TurnInput::text("start").with_input_id("in-1");
    let result = rig
        .runner
        .turn(&rig.session, input, &CancelToken::new())
        .await
        .unwrap();
    assert!(matches!(result.outcome, TurnOutcome::Finished(_)));

    // Sent during call 0, so call 1 is the first to take it; the model
    // sees it after call 0's tool result.
    let seen = rig.model.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "three model calls, no extra turn");
    let users = |r: &ModelRequest| -> Vec<String> {
        r.messages
            .iter()
            .filter(|m| m.role == Role::User)
            .map(text_of)
            .collect()
    };
    assert_eq!(users(&seen[0]), vec!["start"]);
    assert_eq!(users(&seen[1]), vec!["start", "use more precision"]);
    let last = seen[1].messages.last().unwrap();
    assert_eq!(text_of(last), "use more precision", "after the tool result");
    assert_eq!(users(&seen[2]), vec!["start", "use more precision"]);
    // Each call's context is the previous call's, then what the turn
    // added since: its steer once, in its place (the model calls keep the
    // context between them and copy only what is new).
    let roles = |r: &ModelRequest| -> Vec<Role> { r.messages.iter().map(|m| m.role).collect() };
    let (s, u, a, t) = (Role::System, Role::User, Role::Assistant, Role::Tool);
    assert_eq!(roles(&seen[1]), vec![s, u, a, t, u]);
    assert_eq!(roles(&seen[2]), vec![s, u, a, t, u, a, t]);
    assert_eq!(seen[2].messages[..5], seen[1].messages[..]);

    assert_eq!(
        rig.history().await,
        steered_transcript("use more precision")
    );
    // Message ids stay unique and ordered by position.
    let ids: Vec<String> = result.messages.iter().map(|m| m.id.clone()).collect();
    let expected: Vec<String> = (0..7)
        .map(|n| format!("{}:msg:{n}", result.turn_id))
        .collect();
    assert_eq!(ids, expected);
    assert_eq!(
        steered(&rig.events().await),
        vec![("steer-0".to_string(), 1)]
    );
    // The commit completed the steer with the input: one turn, nothing left.
    assert_eq!(rig.store.head(&rig.session).await.unwrap().version, 1);
    assert!(rig.live_inbox().await.is_empty());
    assert!(
        rig.runner
            .drain(&rig.session, &CancelToken::new())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_steer_no_model_call_takes_runs_as_an_ordinary_input() {
    // Sent during the last call: no later call takes it.
    let rig = rig(vec![None, None, Some("one more thing")], false);
    let input = TurnInput::text("start").with_input_id("in-1");
    rig.runner
        .turn(&rig.session, input, &CancelToken::new())
        .await
        .unwrap();
    assert!(steered(&rig.events().await).is_empty());
    assert_eq!(rig.live_inbox().await, vec!["steer-2"]);

    // And one sent with no turn running queues behind it.
    let idle = || TurnInput::text("and another").with_input_id("st-idle");
    let sent = rig.runner.steer(&rig.session, idle()).await.unwrap();
    assert!(!sent.duplicate);
    let again = rig.runner.steer(&rig.session, idle()).await.unwrap();
    assert!(again.duplicate, "a steer id is idempotent");
    let conflict = rig
        .runner
        .submit(&rig.session, idle())
        .await
        .expect_err("an input under a steer's id is a conflict");
    assert_eq!(conflict.code(), ratchet::ErrorCode::InputConflict);
    let bad = rig
        .runner
        .steer(&rig.session, TurnInput::text("   "))
        .await
        .expect_err("a blank steer is refused");
    assert_eq!(bad.code(), ratchet::ErrorCode::InvalidInput);
    assert_eq!(rig.live_inbox().await, vec!["steer-2", "st-idle"]);

    // The first runs as the input of its own turn; the second, still
    // pending when that turn's first model call starts, joins it there:
    // steers keep the order they were sent in.
    let ran = rig
        .runner
        .drain(&rig.session, &CancelToken::new())
        .await
        .unwrap();
    assert_eq!(ran.len(), 1);
    let history = rig.history().await;
    assert_eq!(
        history[history.len() - 3..],
        [u("one more thing"), u("and another"), a("noted")]
    );
    assert_eq!(
        steered(&rig.events().await),
        vec![("st-idle".to_string(), 0)]
    );
    assert!(rig.live_inbox().await.is_empty());
    assert_eq!(rig.store.head(&rig.session).await.unwrap().version, 2);
}

#[tokio::test]
async fn a_steer_sent_to_a_parked_turn_joins_it_when_it_resumes() {
    let rig = rig(vec![None, None, None], true);
    let input = TurnInput::text("start").with_input_id("in-1");
    let parked = rig
        .runner
        .turn(&rig.session, input, &CancelToken::new())
        .await
        .expect_err("the turn parks at the approval of call_a");
    assert!(parked.is_parked(), "{parked}");
    rig.runner
        .steer(
            &rig.session,
            TurnInput::text("round to integers").with_input_id("st-parked"),
        )
        .await
        .unwrap();
    let approve = |call: &'static str| {
        let store = rig.store.clone();
        let session = rig.session.clone();
        async move {
            let d = Decision {
                decision: Verdict::Approve,
                note: None,
            };
            store
                .decide_wait(
                    &session,
                    WaitKind::Approval,
                    call,
                    &serde_json::to_value(&d).unwrap(),
                )
                .await
                .unwrap();
        }
    };
    approve("call_a").await;
    let err = rig
        .runner
        .resume(&rig.session, false)
        .await
        .expect_err("it parks again at call_b");
    assert!(err.is_parked(), "{err}");
    approve("call_b").await;
    let done = rig.runner.resume(&rig.session, false).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(rig.history().await, steered_transcript("round to integers"));
    assert_eq!(
        steered(&rig.events().await),
        vec![("st-parked".to_string(), 1)]
    );
    assert!(rig.live_inbox().await.is_empty());
}
