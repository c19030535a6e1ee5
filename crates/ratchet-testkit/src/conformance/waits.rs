//! Wait cases: approval of tool calls.

use super::*;
use ratchet::model::{Decided, Wait, WaitKind, WaitState};
use serde_json::{Value, json};

fn wait(id: &str, call: &str) -> Wait {
    Wait {
        wait_id: id.into(),
        call_id: call.into(),
        turn_id: "t1".into(),
        kind: WaitKind::Approval,
        tool: "charge".into(),
        arguments: serde_json::json!({"amount": 12.5}),
        deadline_ms: 1_000,
        state: WaitState::Pending,
        value: None,
        awakeable: false,
    }
}

fn verdict(decision: &str) -> Value {
    json!({"decision": decision})
}

const APPROVAL: WaitKind = WaitKind::Approval;

/// A wait opens once; the first decision settles it, the same decision
/// again is a duplicate, another is a conflict, an unknown call is unknown;
/// a settlement never overrides a decision; pending waits are listed.
pub async fn waits_settle_once(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let first = fx.store.open_wait(&s, &wait("w1", "call_0")).await.unwrap();
    assert_eq!(first.state, WaitState::Pending);
    let mut changed = wait("w1", "call_0");
    changed.deadline_ms = 9;
    let again = fx.store.open_wait(&s, &changed).await.unwrap();
    assert_eq!(again.deadline_ms, 1_000, "open is idempotent by wait id");
    fx.store.open_wait(&s, &wait("w2", "call_1")).await.unwrap();
    let pending = fx.store.waits(&s, true).await.unwrap();
    assert_eq!(
        pending
            .iter()
            .map(|w| w.wait_id.as_str())
            .collect::<Vec<_>>(),
        vec!["w1", "w2"]
    );

    let yes = json!({"decision": "approve", "note": "ok"});
    let Decided::Recorded(done) = fx
        .store
        .decide_wait(&s, APPROVAL, "call_0", &yes)
        .await
        .unwrap()
    else {
        panic!("the pending wait takes the first decision");
    };
    assert_eq!(
        (done.state, done.value.clone()),
        (WaitState::Resolved, Some(yes.clone()))
    );
    assert!(matches!(
        fx.store
            .decide_wait(&s, APPROVAL, "call_0", &yes)
            .await
            .unwrap(),
        Decided::Duplicate(_)
    ));
    assert!(matches!(
        fx.store
            .decide_wait(&s, APPROVAL, "call_0", &verdict("reject"))
            .await
            .unwrap(),
        Decided::Conflict(_)
    ));
    assert_eq!(
        fx.store
            .decide_wait(&s, APPROVAL, "nope", &yes)
            .await
            .unwrap(),
        Decided::Unknown
    );
    assert_eq!(
        fx.store
            .decide_wait(&sid("other"), APPROVAL, "call_0", &yes)
            .await
            .unwrap(),
        Decided::Unknown,
        "waits are per session"
    );
    // The turn woke at its deadline, but the decision was in first.
    let kept = fx.store.settle_wait(&s, "w1", None).await.unwrap().unwrap();
    assert_eq!(kept.state, WaitState::Resolved);
    let expired = fx.store.settle_wait(&s, "w2", None).await.unwrap().unwrap();
    assert_eq!(expired.state, WaitState::Expired);
    assert!(matches!(
        fx.store
            .decide_wait(&s, APPROVAL, "call_1", &yes)
            .await
            .unwrap(),
        Decided::Conflict(_)
    ));
    assert!(
        fx.store
            .settle_wait(&s, "w9", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(fx.store.waits(&s, true).await.unwrap().is_empty());
    assert_eq!(fx.store.waits(&s, false).await.unwrap().len(), 2);
    // A later turn's wait for a reused call id is the one decided.
    let mut later = wait("w3", "call_0");
    later.turn_id = "t2".into();
    fx.store.open_wait(&s, &later).await.unwrap();
    let Decided::Recorded(w3) = fx
        .store
        .decide_wait(&s, APPROVAL, "call_0", &verdict("reject"))
        .await
        .unwrap()
    else {
        panic!("the pending wait of the reused call id takes the decision");
    };
    assert_eq!(w3.wait_id, "w3");
    // A resolution of the other kind does not touch an approval.
    assert_eq!(
        fx.store
            .decide_wait(&s, WaitKind::ToolResult, "call_0", &json!({"content": "x"}))
            .await
            .unwrap(),
        Decided::Unknown
    );
    // Bad input is refused and stores nothing.
    assert!(fx.store.open_wait(&s, &wait("", "c")).await.is_err());
    assert_eq!(fx.store.waits(&s, false).await.unwrap().len(), 3);
}
