//! FIFO and settlement cases: a later input never overtakes a live earlier
//! one, an ended invocation's claim survives its takeover as an orphan,
//! enqueue refuses conflicting ids, and committed turns read back whole.

use super::*;

/// A later input cannot be claimed while an earlier one is live, pending
/// or claimed; once the earlier one commits, it can.
pub async fn a_later_input_is_never_claimed_while_an_earlier_one_is_live(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    for id in ["in-a", "in-b"] {
        fx.store.enqueue(&s, input(id, "q")).await.unwrap();
    }
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let target_b = ClaimTarget::Input("in-b".into());
    assert!(
        fx.store
            .claim(&lease, target_b.clone())
            .await
            .unwrap()
            .is_none(),
        "in-b must wait for in-a"
    );
    let a = fx
        .store
        .claim(&lease, ClaimTarget::Input("in-a".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.input.id, "in-a");
    assert_eq!(a.orphaned_from, None);
    fx.store
        .commit(&simple_commit(&lease, "turn-in-a", 0, &a, "x"))
        .await
        .unwrap();
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let b = fx.store.claim(&lease, target_b).await.unwrap().unwrap();
    assert_eq!(b.input.id, "in-b");
}

/// An invocation finding another invocation's lease takes over at once
/// (that one has ended), and the ended one's claim stays claimed: the next
/// claim takes it first, reported orphaned, before any later input.
pub async fn an_ended_invocation_s_claim_is_taken_over_as_an_orphan(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (dead, claim) = enqueue_and_claim(&fx, &s, "inv_dead", "in-a").await;
    fx.store.enqueue(&s, input("in-b", "q")).await.unwrap();
    let next = fx.store.acquire_lease(&s, "inv_next", TTL).await.unwrap();
    assert!(next.fence > dead.fence, "a takeover moves the fence");
    assert!(
        fx.store
            .claim(&next, ClaimTarget::Input("in-b".into()))
            .await
            .unwrap()
            .is_none(),
        "the orphan comes first"
    );
    let orphan = fx
        .store
        .claim(&next, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(orphan.input.id, "in-a");
    assert_eq!(orphan.orphaned_from, Some(dead.fence));
    let refused = fx
        .store
        .commit(&simple_commit(&dead, "turn-in-a", 0, &claim, "late"))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), "session_execution_lease_lost");
    fx.store
        .commit(&simple_commit(&next, "turn-in-a", 0, &orphan, "settled"))
        .await
        .unwrap();
    let lease = fx.store.acquire_lease(&s, "inv_next", TTL).await.unwrap();
    let b = fx
        .store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((b.input.id.as_str(), b.orphaned_from), ("in-b", None));
}

/// An inline owner's lease is never taken by an invocation before it
/// expires; once it has, its claims go back to pending to run again.
pub async fn an_expired_inline_owner_s_claims_run_again(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (_inline, _claim) = enqueue_and_claim(&fx, &s, "inline:host:1:x", "in-a").await;
    let busy = fx
        .store
        .acquire_lease(&s, "inv_other", TTL)
        .await
        .unwrap_err();
    assert_eq!(busy.code(), "session_busy");
    fx.clock.advance(TTL + 1);
    let next = fx.store.acquire_lease(&s, "inv_other", TTL).await.unwrap();
    let inbox = fx.store.inbox(&s).await.unwrap();
    assert_eq!(inbox[0].state, InboxState::Pending);
    let again = fx
        .store
        .claim(&next, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (again.input.id.as_str(), again.orphaned_from),
        ("in-a", None)
    );
}

/// A known id with other content, or a new id with a turn id already
/// taken, is refused and stores nothing.
pub async fn enqueue_refuses_conflicting_ids_and_stores_nothing(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    fx.store.enqueue(&s, input("in-a", "q")).await.unwrap();
    let conflict = fx
        .store
        .enqueue(&s, input("in-a", "other"))
        .await
        .unwrap_err();
    assert_eq!(conflict.code(), "input_conflict", "{conflict}");
    let mut same_turn = input("in-b", "q");
    same_turn.turn_id = Some("turn-in-a".into());
    let taken = fx.store.enqueue(&s, same_turn).await.unwrap_err();
    assert_eq!(taken.code(), "turn_id_conflict", "{taken}");
    let inbox = fx.store.inbox(&s).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0].payload, InboxPayload::Input(TurnInput::text("q")));
    assert_eq!(inbox[0].turn_id.as_deref(), Some("turn-in-a"));
    // A turn id of a committed turn (an agent frame, say) is taken too.
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let claim = fx
        .store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    fx.store
        .commit(&simple_commit(&lease, "frame-x", 0, &claim, "x"))
        .await
        .unwrap();
    let mut frame = input("in-c", "q");
    frame.turn_id = Some("frame-x".into());
    assert_eq!(
        fx.store.enqueue(&s, frame).await.unwrap_err().code(),
        "turn_id_conflict"
    );
}

/// A committed turn reads back with its messages and times; the live
/// inbox pages with its total count.
pub async fn committed_turns_and_inbox_pages_read_back(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    for i in 0..5 {
        fx.store
            .enqueue(&s, input(&format!("in-{i}"), "q"))
            .await
            .unwrap();
    }
    let page = fx.store.inbox_page(&s, 2).await.unwrap();
    assert_eq!(page.total, 5);
    let ids: Vec<&str> = page.entries.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["in-0", "in-1"]);
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let claim = fx
        .store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    let mut req = simple_commit(&lease, "turn-in-0", 0, &claim, "answer");
    req.started_at_ms = 1_000;
    req.finished_at_ms = 1_250;
    fx.store.commit(&req).await.unwrap();
    let turn = fx
        .store
        .committed_turn(&s, "turn-in-0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(turn.messages, req.messages);
    assert_eq!(turn.record.version, 1);
    assert_eq!(
        (turn.record.started_at_ms, turn.record.finished_at_ms),
        (1_000, 1_250)
    );
    assert!(fx.store.committed_turn(&s, "nope").await.unwrap().is_none());
    assert_eq!(fx.store.inbox_page(&s, 10).await.unwrap().total, 4);
}
