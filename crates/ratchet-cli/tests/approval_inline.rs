//! Approval of tool calls on the inline tier: the turn parks at the call
//! (its steps checkpointed, its lease let go), a decision lands in the
//! store, and `resume` continues the turn: approved, the tool runs once;
//! rejected or expired, the model is told and the tool never runs.

mod support;

use ratchet::clock::ManualClock;
use ratchet::engine::CancelToken;
use ratchet::engine::inline::InlineRunner;
use ratchet::model::{
    Decided, Decision, EventKind, Part, SessionId, TurnInput, TurnOutcome, Verdict, WaitKind,
};
use ratchet::store::SessionStore;
use serde_json::json;
use std::sync::Arc;

const TIMEOUT_MS: u64 = 60_000;

fn script() -> serde_json::Value {
    json!({"every_turn": [
        {"tool_calls": [{"id": "call_0", "name": "calculator", "arguments": {"expression": "6*7"}}]},
        {"text": "done"}
    ]})
}

struct Rig {
    runner: InlineRunner,
    store: Arc<dyn SessionStore>,
    clock: Arc<ManualClock>,
    session: SessionId,
    _dir: tempfile::TempDir,
}

fn rig() -> Rig {
    let dir = tempfile::tempdir().unwrap();
    // One clock for the store (leases) and the turn (deadlines).
    let (store, clock) = support::sqlite_with_clock(dir.path(), "approval.db");
    let mut rt = support::scripted_runtime(store.clone(), script());
    rt.clock = clock.clone();
    rt.config.approval.tools.insert("calculator".into());
    rt.config.approval.timeout_ms = TIMEOUT_MS;
    Rig {
        runner: support::runner(rt),
        store,
        clock,
        session: SessionId::new("approvals").unwrap(),
        _dir: dir,
    }
}

impl Rig {
    /// Runs the turn up to its approval: it must park.
    async fn park(&self) {
        let input = TurnInput::text("What is 6*7?").with_input_id("in-1");
        let err = self
            .runner
            .turn(&self.session, input, &CancelToken::new())
            .await
            .expect_err("the turn parks at the call");
        assert!(err.is_parked(), "{err}");
        assert!(err.to_string().contains("call_0"), "{err}");
    }

    async fn tool_runs(&self) -> u64 {
        let counts = self.store.effect_counts(&self.session).await.unwrap();
        counts
            .iter()
            .filter(|(k, _)| k.starts_with("tool:"))
            .map(|(_, n)| *n)
            .sum()
    }

    async fn events(&self) -> Vec<EventKind> {
        let all = self
            .store
            .events_after(&self.session, 0, 100)
            .await
            .unwrap();
        all.into_iter().map(|e| e.event.kind).collect()
    }

    async fn decide(&self, verdict: Verdict, note: Option<&str>) -> Decided {
        let d = Decision {
            decision: verdict,
            note: note.map(str::to_string),
        };
        self.store
            .decide_wait(
                &self.session,
                WaitKind::Approval,
                "call_0",
                &serde_json::to_value(&d).unwrap(),
            )
            .await
            .unwrap()
    }

    /// Resumes the parked turn; returns its answer and the tool's result.
    async fn resume(&self) -> (String, String, bool) {
        let done = self.runner.resume(&self.session, false).await.unwrap();
        assert_eq!(done.len(), 1, "one turn resumed");
        let turn = &done[0];
        let TurnOutcome::Finished(f) = &turn.outcome else {
            panic!("the resumed turn finishes: {:?}", turn.outcome);
        };
        let answer = serde_json::to_value(f).unwrap()["text"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let (content, is_error) = turn
            .messages
            .iter()
            .flat_map(|m| m.parts.iter())
            .find_map(|p| match p {
                Part::ToolResult {
                    content, is_error, ..
                } => Some((content.clone(), *is_error)),
                _ => None,
            })
            .expect("the call has a result");
        (answer, content, is_error)
    }
}

#[tokio::test]
async fn an_approved_call_runs_once_after_the_turn_parked() {
    let rig = rig();
    rig.park().await;
    let view = ratchet::engine::view_of(rig.store.as_ref(), &rig.session)
        .await
        .unwrap();
    assert_eq!(view.pending_waits.len(), 1);
    let wait = &view.pending_waits[0];
    assert_eq!(
        (wait.call_id.as_str(), wait.tool.as_str()),
        ("call_0", "calculator")
    );
    assert_eq!(wait.arguments, json!({"expression": "6*7"}));
    assert_eq!(wait.deadline_ms, 1_764_000_000_000 + TIMEOUT_MS);
    assert_eq!(rig.tool_runs().await, 0, "nothing runs before approval");
    let requested = rig.events().await;
    assert!(
        requested.iter().any(|e| matches!(e,
            EventKind::ApprovalRequested { tool_call_id, wait_id, .. }
                if tool_call_id == "call_0" && *wait_id == wait.wait_id)),
        "{requested:?}"
    );
    // Resuming before the decision parks again, and repeats nothing.
    let err = rig.runner.resume(&rig.session, false).await.unwrap_err();
    assert!(err.is_parked(), "{err}");
    assert!(matches!(
        rig.decide(Verdict::Approve, None).await,
        Decided::Recorded(_)
    ));
    let (answer, content, is_error) = rig.resume().await;
    assert_eq!(
        (answer.as_str(), content.as_str(), is_error),
        ("done", "42", false)
    );
    assert_eq!(
        rig.tool_runs().await,
        1,
        "the approved tool ran exactly once"
    );
    let events = rig.events().await;
    let asked = events
        .iter()
        .filter(|e| matches!(e, EventKind::ApprovalRequested { .. }))
        .count();
    assert_eq!(asked, 1, "one approval_requested, however often it parked");
    assert!(events.iter().any(|e| matches!(e,
        EventKind::ApprovalDecided { decision, .. } if decision == "approve")));
    assert!(
        rig.runner
            .resume(&rig.session, false)
            .await
            .unwrap()
            .is_empty(),
        "nothing left to resume"
    );
    let view = ratchet::engine::view_of(rig.store.as_ref(), &rig.session)
        .await
        .unwrap();
    assert!(view.pending_waits.is_empty());
    // A second decision: the same is a duplicate, another a conflict.
    assert!(matches!(
        rig.decide(Verdict::Approve, None).await,
        Decided::Duplicate(_)
    ));
    assert!(matches!(
        rig.decide(Verdict::Reject, None).await,
        Decided::Conflict(_)
    ));
}

#[tokio::test]
async fn a_rejected_call_never_runs_and_the_model_reads_the_note() {
    let rig = rig();
    rig.park().await;
    rig.decide(Verdict::Reject, Some("over the budget")).await;
    let (answer, content, is_error) = rig.resume().await;
    assert_eq!(answer, "done");
    assert!(is_error);
    assert!(
        content.contains("rejected") && content.contains("over the budget"),
        "{content}"
    );
    assert_eq!(rig.tool_runs().await, 0, "a rejected tool never runs");
    assert!(rig.events().await.iter().any(|e| matches!(e,
        EventKind::ApprovalDecided { decision, note, .. }
            if decision == "reject" && note.as_deref() == Some("over the budget"))));
}

#[tokio::test]
async fn an_expired_approval_is_not_run_and_a_late_decision_is_refused() {
    let rig = rig();
    rig.park().await;
    rig.clock.advance(TIMEOUT_MS + 1);
    let (_, content, is_error) = rig.resume().await;
    assert!(
        is_error && content.contains("no approval arrived"),
        "{content}"
    );
    assert_eq!(rig.tool_runs().await, 0);
    assert!(matches!(
        rig.decide(Verdict::Approve, None).await,
        Decided::Conflict(_)
    ));
    let unknown = rig
        .store
        .decide_wait(
            &rig.session,
            WaitKind::Approval,
            "call_9",
            &json!({"decision": "approve"}),
        )
        .await
        .unwrap();
    assert_eq!(unknown, Decided::Unknown);
}

#[tokio::test]
async fn an_agent_refuses_an_approval_policy_for_a_tool_it_lacks() {
    let store: Arc<dyn SessionStore> = Arc::new(ratchet::store::MemoryStore::new());
    let err = ratchet::Agent::new("Billing")
        .store(store)
        .model(Arc::new(ratchet::llm::DemoModel::new()))
        .require_approval("refund")
        .runtime()
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("invalid_approval_policy") && text.contains("refund"),
        "{text}"
    );
}

/// A tool whose work finishes later: it submits a job and answers pending.
struct Job;

#[async_trait::async_trait]
impl ratchet::tools::Tool for Job {
    fn name(&self) -> &str {
        "job"
    }
    fn description(&self) -> &str {
        "starts a job that finishes later"
    }
    fn parameters(&self) -> serde_json::Value {
        json!({"type": "object"})
    }
    fn idempotency(&self) -> ratchet::tools::IdempotencyClass {
        ratchet::tools::IdempotencyClass::Keyed
    }
    async fn call(
        &self,
        _ctx: &ratchet::tools::ToolContext,
        _args: serde_json::Value,
    ) -> Result<ratchet::tools::ToolOutput, ratchet::tools::ToolError> {
        Ok(ratchet::tools::ToolOutput::pending(
            "job J-1 submitted",
            std::time::Duration::from_millis(TIMEOUT_MS),
        ))
    }
}

fn job_rig() -> Rig {
    let r = rig();
    let mut rt = r.runner.runtime().clone();
    rt.config.approval.tools.clear();
    rt.tools.register(Arc::new(Job));
    let script = json!({"every_turn": [
        {"tool_calls": [{"id": "call_0", "name": "job", "arguments": {}}]},
        {"text": "done"}
    ]});
    rt.model =
        Arc::new(ratchet::llm::ScriptedProvider::from_json_str(&script.to_string()).unwrap());
    Rig {
        runner: support::runner(rt),
        ..r
    }
}

#[tokio::test]
async fn a_pending_tool_runs_once_and_the_model_sees_the_result_completed_later() {
    let rig = job_rig();
    rig.park().await;
    assert_eq!(
        rig.tool_runs().await,
        1,
        "the tool ran and answered pending"
    );
    let view = ratchet::engine::view_of(rig.store.as_ref(), &rig.session)
        .await
        .unwrap();
    let wait = &view.pending_waits[0];
    assert_eq!(
        (wait.kind, wait.tool.as_str()),
        (WaitKind::ToolResult, "job")
    );
    assert_eq!(wait.arguments, json!({"receipt": "job J-1 submitted"}));
    // An approval decision does not complete a tool, and vice versa.
    assert_eq!(rig.decide(Verdict::Approve, None).await, Decided::Unknown);
    let result = json!({"content": "7 rows exported"});
    let done = rig
        .store
        .decide_wait(&rig.session, WaitKind::ToolResult, "call_0", &result)
        .await
        .unwrap();
    assert!(matches!(done, Decided::Recorded(_)));
    let (answer, content, is_error) = rig.resume().await;
    assert_eq!(
        (answer.as_str(), content.as_str(), is_error),
        ("done", "7 rows exported", false)
    );
    assert_eq!(rig.tool_runs().await, 1, "completing it ran nothing again");
    let events = rig.events().await;
    assert!(events.iter().any(
        |e| matches!(e, EventKind::ToolPending { tool_call_id, .. } if tool_call_id == "call_0")
    ));
    assert!(events.iter().any(|e| matches!(
        e,
        EventKind::ToolCompleted {
            is_error: false,
            expired: false,
            ..
        }
    )));
}

#[tokio::test]
async fn a_pending_tool_whose_result_never_comes_tells_the_model_the_outcome_is_unknown() {
    let rig = job_rig();
    rig.park().await;
    rig.clock.advance(TIMEOUT_MS + 1);
    let (_, content, is_error) = rig.resume().await;
    assert!(
        is_error && content.contains("outcome is unknown"),
        "{content}"
    );
    assert!(
        rig.events()
            .await
            .iter()
            .any(|e| matches!(e, EventKind::ToolCompleted { expired: true, .. }))
    );
    let late = rig
        .store
        .decide_wait(
            &rig.session,
            WaitKind::ToolResult,
            "call_0",
            &json!({"content": "late"}),
        )
        .await
        .unwrap();
    assert!(
        matches!(late, Decided::Conflict(_)),
        "a late result is refused"
    );
}
