//! Inbox cases: FIFO, idempotent enqueue, commands, claims, concurrency.

use super::*;
/// Inputs are claimed in FIFO order, and enqueueing a known id is a no-op.
pub async fn inbox_is_fifo_and_enqueue_is_idempotent(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    for i in 0..3 {
        let e = fx
            .store
            .enqueue(&s, input(&format!("in-{i}"), "q"))
            .await
            .unwrap();
        assert!(!e.duplicate);
    }
    let dup = fx.store.enqueue(&s, input("in-1", "q")).await.unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.entry.payload, InboxPayload::Input(TurnInput::text("q")));
    assert_eq!(fx.store.inbox(&s).await.unwrap().len(), 3);
    // The depth counts live entries of every session.
    fx.store
        .enqueue(&sid("other"), input("o-1", "q"))
        .await
        .unwrap();
    assert_eq!(fx.store.live_inputs_total().await.unwrap(), 4);
    let mut order = Vec::new();
    for turn in 0..3u64 {
        let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
        let claim = fx
            .store
            .claim(&lease, ClaimTarget::Next)
            .await
            .unwrap()
            .unwrap();
        order.push(claim.input.id.clone());
        fx.store
            .commit(&simple_commit(
                &lease,
                &format!("t{turn}"),
                turn,
                &claim,
                "x",
            ))
            .await
            .unwrap();
    }
    assert_eq!(order, vec!["in-0", "in-1", "in-2"]);
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    assert!(
        fx.store
            .claim(&lease, ClaimTarget::Next)
            .await
            .unwrap()
            .is_none()
    );
    // A completed id stays known: re-sending it does not run it again.
    assert!(
        fx.store
            .enqueue(&s, input("in-0", "q"))
            .await
            .unwrap()
            .duplicate
    );
    assert!(fx.store.inbox(&s).await.unwrap().is_empty());
    assert_eq!(fx.store.live_inputs_total().await.unwrap(), 1);
}

/// Commands enqueued before the earliest input are claimed with it; later
/// ones wait. A targeted claim takes the named input.
pub async fn commands_before_an_input_are_claimed_with_it(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    fx.store.enqueue(&s, command("c1", "p1")).await.unwrap();
    fx.store.enqueue(&s, input("in-1", "q")).await.unwrap();
    fx.store.enqueue(&s, command("c2", "p2")).await.unwrap();
    fx.store.enqueue(&s, input("in-2", "q")).await.unwrap();
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let claim = fx
        .store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry_ids(), vec!["c1", "in-1"]);
    fx.store
        .commit(&simple_commit(&lease, "t1", 0, &claim, "x"))
        .await
        .unwrap();
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let claim = fx
        .store
        .claim(&lease, ClaimTarget::Input("in-2".into()))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.entry_ids(), vec!["c2", "in-2"]);
    let unknown = fx
        .store
        .claim(&lease, ClaimTarget::Input("nope".into()))
        .await
        .unwrap();
    // Claims already held under this fence come back, whatever the target.
    assert_eq!(unknown.map(|c| c.input.id), Some("in-2".to_string()));
}

/// A retried claim under the same fence returns the same entries; abandoned
/// claims go back to pending and are claimed again.
pub async fn abandoned_claims_can_be_claimed_again(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    fx.store.enqueue(&s, input("in-1", "q")).await.unwrap();
    fx.store.enqueue(&s, input("in-2", "q")).await.unwrap();
    let lease = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let first = fx
        .store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    let again = fx
        .store
        .claim(&lease, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.input.id, "in-1");
    assert_eq!(again.input.id, "in-1", "retried claim is idempotent");
    let inbox = fx.store.inbox(&s).await.unwrap();
    assert_eq!(inbox[0].state, InboxState::Claimed);
    assert_eq!(inbox[1].state, InboxState::Pending);
    assert_eq!(fx.store.abandon_claims(&s, lease.fence).await.unwrap(), 1);
    assert!(
        fx.store
            .inbox(&s)
            .await
            .unwrap()
            .iter()
            .all(|e| e.state == InboxState::Pending)
    );
    fx.store.release_lease(&lease).await.unwrap();
    let b = fx.store.acquire_lease(&s, "b", TTL).await.unwrap();
    let claim = fx
        .store
        .claim(&b, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claim.input.id, "in-1");
    let stale = fx.store.claim(&lease, ClaimTarget::Next).await.unwrap_err();
    assert_eq!(stale.code(), "session_execution_lease_lost");
}

/// 16 tasks enqueue 100 inputs each (every one twice) into 4 sessions: none
/// lost, none duplicated, FIFO positions dense.
pub async fn concurrent_enqueues_lose_and_duplicate_nothing(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let mut tasks = Vec::new();
    for t in 0..16 {
        let store = fx.store.clone();
        tasks.push(tokio::spawn(async move {
            let s = sid(&format!("s{}", t % 4));
            for i in 0..100 {
                let id = format!("task{t}-in{i}");
                for _ in 0..2 {
                    store.enqueue(&s, input(&id, &id)).await.expect("enqueue");
                }
                if i % 10 == 0 {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.expect("task");
    }
    for n in 0..4 {
        let inbox = fx.store.inbox(&sid(&format!("s{n}"))).await.unwrap();
        assert_eq!(inbox.len(), 400, "session s{n}");
        let ids: HashSet<&str> = inbox.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids.len(), 400, "ids unique in s{n}");
        let seqs: Vec<u64> = inbox.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=400).collect::<Vec<u64>>(), "dense FIFO in s{n}");
        // Each task's inputs keep their order.
        for t in (n..16).step_by(4) {
            let mine: Vec<&str> = inbox
                .iter()
                .map(|e| e.id.as_str())
                .filter(|id| id.starts_with(&format!("task{t}-")))
                .collect();
            let expected: Vec<String> = (0..100).map(|i| format!("task{t}-in{i}")).collect();
            assert_eq!(mine, expected);
        }
    }
}

/// Starting a turn enqueues its input (idempotently), takes the lease,
/// claims the input with the commands before it, and reads the head; a
/// retried start by the same owner gets the same claim back.
pub async fn start_turn_enqueues_claims_and_reads_the_head(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    fx.store
        .enqueue(&s, command("c1", "be brief"))
        .await
        .unwrap();
    let target = || ClaimTarget::Input("in-1".into());
    let start = fx
        .store
        .start_turn(&s, "a", TTL, Some(input("in-1", "q")), target())
        .await
        .unwrap();
    let claim = start.claim.expect("claimed");
    assert_eq!(claim.entry_ids(), vec!["c1", "in-1"]);
    assert_eq!(start.head.version, 0);
    assert_eq!(start.lease.owner, "a");
    let again = fx
        .store
        .start_turn(&s, "a", TTL, Some(input("in-1", "q")), target())
        .await
        .unwrap();
    assert_eq!(again.lease.fence, start.lease.fence);
    assert_eq!(
        again.claim.map(|c| c.entry_ids()),
        Some(vec!["c1".to_string(), "in-1".to_string()])
    );
    let busy = fx
        .store
        .start_turn(&s, "b", TTL, None, target())
        .await
        .unwrap_err();
    assert_eq!(busy.code(), "session_busy");
    fx.store
        .commit(&simple_commit(&start.lease, "t1", 0, &claim, "x"))
        .await
        .unwrap();
    let done = fx
        .store
        .start_turn(&s, "a", TTL, None, target())
        .await
        .unwrap();
    assert!(
        done.claim.is_none(),
        "a completed input is not claimed again"
    );
    assert_eq!(done.head.version, 1);
}
