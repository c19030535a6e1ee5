//! Steering cases: pending steers are found after a position, a commit
//! completes the ones its turn took, and a steer no turn took runs as an
//! ordinary input in its FIFO place.

use super::*;

pub(super) fn steer(id: &str, text: &str) -> NewInboxEntry {
    NewInboxEntry {
        id: id.to_string(),
        turn_id: Some(format!("turn-{id}")),
        payload: InboxPayload::Steer(TurnInput::text(text)),
    }
}

/// Takes the lease as owner `a` and claims the next input.
async fn claim_next(fx: &Fixture, s: &SessionId) -> (Lease, Claim) {
    let lease = fx.store.acquire_lease(s, "a", TTL).await.unwrap();
    let claim = fx.store.claim(&lease, ClaimTarget::Next).await.unwrap();
    (lease, claim.expect("an input to claim"))
}

fn ids(entries: &[InboxEntry]) -> Vec<&str> {
    entries.iter().map(|e| e.id.as_str()).collect()
}

/// `pending_steers` lists only pending steers after a position, FIFO and
/// bounded; the commit that completes a steer takes it out of the list;
/// one left pending is claimed as an input, carrying its steer payload.
pub async fn steers_are_read_after_a_position_and_completed_by_the_commit(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    assert!(
        fx.store.pending_steers(&s, 0, 10).await.unwrap().is_empty(),
        "an unknown session has no steers"
    );
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-0").await;
    fx.store.enqueue(&s, steer("st-1", "left")).await.unwrap();
    fx.store.enqueue(&s, command("cmd-1", "p")).await.unwrap();
    fx.store.enqueue(&s, input("in-2", "q")).await.unwrap();
    fx.store.enqueue(&s, steer("st-3", "right")).await.unwrap();
    fx.store.enqueue(&s, steer("st-4", "later")).await.unwrap();
    let dup = fx.store.enqueue(&s, steer("st-1", "left")).await.unwrap();
    assert!(dup.duplicate, "a known steer id is a duplicate");
    let conflict = fx.store.enqueue(&s, input("st-1", "left")).await;
    assert!(
        matches!(conflict, Err(StoreError::InputConflict { .. })),
        "an input under a steer's id is a conflict: {conflict:?}"
    );

    let all = fx.store.pending_steers(&s, 0, 10).await.unwrap();
    assert_eq!(ids(&all), vec!["st-1", "st-3", "st-4"]);
    assert!(all.iter().all(|e| e.payload.is_steer()));
    let first = fx.store.pending_steers(&s, 0, 2).await.unwrap();
    assert_eq!(ids(&first), vec!["st-1", "st-3"], "bounded by the limit");
    let after = fx.store.pending_steers(&s, first[1].seq, 10).await.unwrap();
    assert_eq!(ids(&after), vec!["st-4"], "only after the position");

    // The running turn took st-1 and st-3: its commit completes them.
    let mut req = simple_commit(&lease, "t0", 0, &claim, "x");
    req.completed_entries
        .extend(["st-1".to_string(), "st-3".to_string()]);
    fx.store.commit(&req).await.unwrap();
    let left = fx.store.pending_steers(&s, 0, 10).await.unwrap();
    assert_eq!(ids(&left), vec!["st-4"]);
    let live: Vec<String> = fx
        .store
        .inbox(&s)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(live, vec!["cmd-1", "in-2", "st-4"]);
    let head = fx.store.live_head(&s, 2).await.unwrap();
    assert_eq!(ids(&head), vec!["cmd-1", "in-2"], "the first live entries");

    // Nothing takes st-4 before in-2 (FIFO); after it, st-4 is the input.
    let (lease, claim) = claim_next(&fx, &s).await;
    assert_eq!(claim.input.id, "in-2");
    fx.store
        .commit(&simple_commit(&lease, "t1", 1, &claim, "y"))
        .await
        .unwrap();
    let (_, claim) = claim_next(&fx, &s).await;
    assert_eq!(claim.input.id, "st-4");
    assert_eq!(
        claim.input.payload,
        InboxPayload::Steer(TurnInput::text("later"))
    );
    assert!(
        fx.store.pending_steers(&s, 0, 10).await.unwrap().is_empty(),
        "a claimed steer is no longer pending"
    );
}
