//! Lease cases: exclusivity, expiry, fencing, re-acquire, takeover.

use super::*;
/// A second owner is refused while the lease is live, and takes it with a
/// higher fence once it expires.
pub async fn lease_is_exclusive_until_it_expires(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let a = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let err = fx.store.acquire_lease(&s, "b", TTL).await.unwrap_err();
    assert_eq!(err.code(), "session_busy", "{err}");
    assert!(err.is_retryable());
    fx.clock.advance(TTL - 1);
    assert!(fx.store.acquire_lease(&s, "b", TTL).await.is_err());
    fx.clock.advance(1);
    let b = fx.store.acquire_lease(&s, "b", TTL).await.unwrap();
    assert!(b.fence > a.fence, "fence {} !> {}", b.fence, a.fence);
    assert_eq!(
        fx.store.current_lease(&s).await.unwrap().unwrap().owner,
        "b"
    );
}

/// The same owner re-acquiring (a retried invocation) succeeds with its fence.
pub async fn same_owner_reacquires_its_lease(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let first = fx.store.acquire_lease(&s, "inv-1", TTL).await.unwrap();
    fx.clock.advance(100);
    let again = fx.store.acquire_lease(&s, "inv-1", TTL).await.unwrap();
    assert_eq!(again.fence, first.fence);
    assert!(again.expires_at_ms > first.expires_at_ms);
}

/// Renewal extends a held lease and fails with `lease_lost` after takeover;
/// a released lease goes to the next owner with a higher fence.
pub async fn renew_and_release_follow_the_fence(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let a = fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    fx.clock.advance(TTL / 2);
    let a = fx.store.renew_lease(&a, TTL).await.unwrap();
    fx.clock.advance(TTL / 2 + 1);
    assert!(
        fx.store.acquire_lease(&s, "b", TTL).await.is_err(),
        "renewed lease must hold"
    );
    fx.clock.advance(TTL);
    let b = fx.store.acquire_lease(&s, "b", TTL).await.unwrap();
    let err = fx.store.renew_lease(&a, TTL).await.unwrap_err();
    assert_eq!(err.code(), "session_execution_lease_lost");
    // Releasing a lost lease leaves the holder alone.
    fx.store.release_lease(&a).await.unwrap();
    assert_eq!(
        fx.store.current_lease(&s).await.unwrap().unwrap().owner,
        "b"
    );
    fx.store.release_lease(&b).await.unwrap();
    assert!(fx.store.current_lease(&s).await.unwrap().is_none());
    let c = fx.store.acquire_lease(&s, "c", TTL).await.unwrap();
    assert!(c.fence > b.fence);
}

/// After another owner takes over, the old owner's commit is refused, its
/// claim is back in the inbox, and nothing it wrote is visible.
pub async fn commit_is_rejected_after_lease_takeover(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (a, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    fx.clock.advance(TTL + 1);
    let b = fx.store.acquire_lease(&s, "b", TTL).await.unwrap();
    let err = fx
        .store
        .commit(&simple_commit(&a, "t1", 0, &claim, "x"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "session_execution_lease_lost", "{err}");
    assert_eq!(fx.store.head(&s).await.unwrap().version, 0);
    assert!(fx.store.messages(&s, u64::MAX).await.unwrap().is_empty());
    let reclaimed = fx
        .store
        .claim(&b, ClaimTarget::Next)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reclaimed.input.id, "in-1");
    assert_eq!(reclaimed.input.claim_fence, Some(b.fence));
    fx.store
        .commit(&simple_commit(&b, "t1", 0, &reclaimed, "x"))
        .await
        .unwrap();
    assert_eq!(fx.store.head(&s).await.unwrap().version, 1);
}

/// A commit may keep its lease for a following agent frame.
pub async fn commit_can_keep_the_lease(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    let mut req = simple_commit(&lease, "t1", 0, &claim, "x");
    req.keep_lease = true;
    fx.store.commit(&req).await.unwrap();
    let held = fx.store.current_lease(&s).await.unwrap().unwrap();
    assert_eq!((held.owner.as_str(), held.fence), ("a", lease.fence));
    assert!(fx.store.acquire_lease(&s, "b", TTL).await.is_err());
}
