//! Commit cases: idempotency, conflicts, versions, atomicity, bad input.

use super::*;
/// The same turn committed twice returns the stored receipt; different
/// content under the same turn id is a conflict.
pub async fn commit_is_idempotent_by_turn_id_and_hash(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    let req = simple_commit(&lease, "t1", 0, &claim, "answer");
    let first = fx.store.commit(&req).await.unwrap();
    assert!(!first.replayed);
    assert_eq!(first.version, 1);
    let again = fx.store.commit(&req).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.version, 1);
    assert_eq!(again.commit_hash, first.commit_hash);
    let other = simple_commit(&lease, "t1", 0, &claim, "another answer");
    let err = fx.store.commit(&other).await.unwrap_err();
    assert_eq!(err.code(), "commit_conflict");
    let head = fx.store.head(&s).await.unwrap();
    assert_eq!(head.version, 1);
    assert_eq!(head.usage.input_tokens, 5, "usage counted once");
    assert_eq!(fx.store.messages(&s, u64::MAX).await.unwrap().len(), 2);
    assert_eq!(fx.store.turns(&s).await.unwrap().len(), 1);
    assert!(
        fx.store.inbox(&s).await.unwrap().is_empty(),
        "claim completed"
    );
    assert!(
        fx.store.current_lease(&s).await.unwrap().is_none(),
        "lease released"
    );
}

/// A commit against a stale base version is refused.
pub async fn commit_requires_the_claimed_base_version(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    let err = fx
        .store
        .commit(&simple_commit(&lease, "t1", 3, &claim, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "version_conflict");
    assert_eq!(fx.store.head(&s).await.unwrap().version, 0);
}

/// History is readable at any committed version.
pub async fn history_is_readable_at_a_version(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    for (i, turn) in ["t1", "t2"].iter().enumerate() {
        let (lease, claim) = enqueue_and_claim(&fx, &s, "a", &format!("in-{i}")).await;
        fx.store
            .commit(&simple_commit(&lease, turn, i as u64, &claim, turn))
            .await
            .unwrap();
    }
    let at1 = fx.store.messages(&s, 1).await.unwrap();
    assert_eq!(at1.len(), 2);
    assert!(at1.iter().all(|m| m.turn_id == "t1" && m.version == 1));
    let all = fx.store.messages(&s, 2).await.unwrap();
    assert_eq!(all.len(), 4);
    assert_eq!(all[3].message.text_content(), "t2");
    assert!(fx.store.messages(&s, 0).await.unwrap().is_empty());
    let tail = fx.store.recent_messages(&s, 2, 3).await.unwrap();
    assert_eq!(tail, all[1..].to_vec(), "the last 3 messages, oldest first");
    let tail_at_1 = fx.store.recent_messages(&s, 1, 10).await.unwrap();
    assert_eq!(tail_at_1, at1);
    assert!(fx.store.recent_messages(&s, 2, 0).await.unwrap().is_empty());
    let turns = fx.store.turns(&s).await.unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|t| (t.turn_id.as_str(), t.version))
            .collect::<Vec<_>>(),
        vec![("t1", 1), ("t2", 2)]
    );
}

/// A commit that fails at any stage leaves nothing behind, and the same
/// commit succeeds afterwards.
pub async fn a_commit_failing_midway_leaves_nothing_behind(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    let req = simple_commit(&lease, "t1", 0, &claim, "x");
    for stage in COMMIT_STAGES {
        fx.faults.arm(stage);
        let err = fx.store.commit(&req).await.unwrap_err();
        assert_eq!(err.code(), "injected_fault", "stage {stage}: {err}");
        let head = fx.store.head(&s).await.unwrap();
        assert_eq!(head.version, 0, "stage {stage}");
        assert_eq!(head.usage, Usage::default(), "stage {stage}");
        assert!(
            fx.store.messages(&s, u64::MAX).await.unwrap().is_empty(),
            "stage {stage}"
        );
        assert!(
            fx.store.turns(&s).await.unwrap().is_empty(),
            "stage {stage}"
        );
        assert!(
            fx.store.events_after(&s, 0, 10).await.unwrap().is_empty(),
            "stage {stage}"
        );
        let inbox = fx.store.inbox(&s).await.unwrap();
        assert_eq!(inbox.len(), 1, "stage {stage}");
        assert_eq!(inbox[0].state, InboxState::Claimed, "stage {stage}");
        assert_eq!(
            fx.store.current_lease(&s).await.unwrap().map(|l| l.fence),
            Some(lease.fence)
        );
    }
    let receipt = fx.store.commit(&req).await.unwrap();
    assert!(!receipt.replayed);
    assert_eq!(fx.store.head(&s).await.unwrap().version, 1);
}

/// Bad input gets a typed error and changes nothing.
pub async fn bad_input_gets_typed_errors_and_changes_nothing(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let ghost = sid("ghost");
    assert_eq!(
        fx.store.head(&ghost).await.unwrap_err().code(),
        "unknown_session"
    );
    assert_eq!(
        fx.store.messages(&ghost, 1).await.unwrap_err().code(),
        "unknown_session"
    );
    assert_eq!(
        fx.store
            .events_after(&ghost, 0, 1)
            .await
            .unwrap_err()
            .code(),
        "unknown_session"
    );
    assert_eq!(
        fx.store.inbox(&ghost).await.unwrap_err().code(),
        "unknown_session"
    );
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    fx.store
        .commit(&simple_commit(&lease, "t1", 0, &claim, "x"))
        .await
        .unwrap();
    let before = fx.store.messages(&s, u64::MAX).await.unwrap();

    let err = fx.store.enqueue(&s, input("", "q")).await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument");
    let big = "x".repeat(SUITE_MAX_PAYLOAD + 1);
    let err = fx
        .store
        .enqueue(&s, input("in-big", &big))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "payload_too_large", "{err}");
    assert!(fx.store.inbox(&s).await.unwrap().is_empty());
    let err = fx.store.acquire_lease(&s, "", TTL).await.unwrap_err();
    assert_eq!(err.code(), "invalid_argument");

    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let mut huge = simple_commit(&lease, "t2", 1, &claim, &big);
    huge.completed_entries.clear();
    assert_eq!(
        fx.store.commit(&huge).await.unwrap_err().code(),
        "payload_too_large"
    );
    let mut empty_turn = simple_commit(&lease, "", 1, &claim, "x");
    empty_turn.completed_entries.clear();
    assert_eq!(
        fx.store.commit(&empty_turn).await.unwrap_err().code(),
        "invalid_argument"
    );
    let mut unknown_entry = simple_commit(&lease, "t2", 1, &claim, "x");
    unknown_entry.completed_entries = vec!["nope".into()];
    assert_eq!(
        fx.store.commit(&unknown_entry).await.unwrap_err().code(),
        "invalid_argument"
    );

    assert_eq!(fx.store.messages(&s, u64::MAX).await.unwrap(), before);
    assert_eq!(fx.store.head(&s).await.unwrap().version, 1);
}

/// Settings changed by a commit are kept on the head.
pub async fn commit_applies_settings(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    let mut req = simple_commit(&lease, "t1", 0, &claim, "x");
    req.settings = Some(SessionSettings {
        system_prompt: Some("be brief".into()),
        context_limit: Some(8),
    });
    fx.store.commit(&req).await.unwrap();
    let head = fx.store.head(&s).await.unwrap();
    assert_eq!(head.settings.system_prompt.as_deref(), Some("be brief"));
    assert_eq!(head.settings.context_limit, Some(8));
}
