//! The store conformance suite: the behaviour every [`SessionStore`] backend
//! must show, written once. A backend's tests call
//! [`crate::store_conformance_tests!`] with a [`StoreFactory`], which opens a
//! fresh, empty store for each case.
//!
//! Cases panic (via `assert!`) on a violation, as tests do.

use super::rules::{COMMIT_STAGES, StoreOptions};
use super::*;
use crate::clock::ManualClock;
use crate::fault::FaultSwitch;
use crate::model::{
    EventKind, Message, Role, SessionCommand, SessionEvent, SessionId, TurnInput, TurnOutcome,
    Usage,
};
use std::collections::HashSet;
use std::sync::Arc;

/// Opens a fresh, empty store for one conformance case.
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// A new empty store using these options.
    async fn open(&self, options: StoreOptions) -> Arc<dyn SessionStore>;
}

/// A store with the handles a case needs to steer it.
pub struct Fixture {
    /// The store.
    pub store: Arc<dyn SessionStore>,
    /// Its clock.
    pub clock: Arc<ManualClock>,
    /// Its commit fault switch.
    pub faults: FaultSwitch,
}

/// Payload limit the suite configures (small, to test rejection).
pub const SUITE_MAX_PAYLOAD: usize = 64 * 1024;
const TTL: u64 = 10_000;

async fn fixture(f: &dyn StoreFactory) -> Fixture {
    let clock = ManualClock::new(1_000_000);
    let faults = FaultSwitch::new();
    let store = f
        .open(StoreOptions {
            max_payload_bytes: SUITE_MAX_PAYLOAD,
            clock: clock.clone(),
            faults: faults.clone(),
        })
        .await;
    Fixture {
        store,
        clock,
        faults,
    }
}

fn sid(s: &str) -> SessionId {
    SessionId::new(s).expect("valid id")
}

fn input(id: &str, text: &str) -> NewInboxEntry {
    NewInboxEntry {
        id: id.to_string(),
        payload: InboxPayload::Input(TurnInput::text(text)),
    }
}

fn command(id: &str, prompt: &str) -> NewInboxEntry {
    NewInboxEntry {
        id: id.to_string(),
        payload: InboxPayload::Command(SessionCommand::SetSystemPrompt {
            prompt: prompt.to_string(),
        }),
    }
}

/// A commit of one user and one assistant message for `claim`.
pub fn simple_commit(
    lease: &Lease,
    turn_id: &str,
    base: u64,
    claim: &Claim,
    answer: &str,
) -> CommitRequest {
    CommitRequest {
        session_id: lease.session_id.clone(),
        turn_id: turn_id.to_string(),
        lease: lease.clone(),
        base_version: base,
        messages: vec![
            Message::text(format!("{turn_id}:msg:0"), Role::User, "q"),
            Message::text(format!("{turn_id}:msg:1"), Role::Assistant, answer),
        ],
        outcome: TurnOutcome::Finished(crate::model::TurnFinish::AssistantMessage {
            text: answer.to_string(),
        }),
        usage: Usage {
            input_tokens: 5,
            output_tokens: 2,
            model_calls: 1,
        },
        completed_entries: claim.entry_ids(),
        events: vec![
            SessionEvent::new(turn_id, 0, EventKind::TurnStarted { turn_index: base }),
            SessionEvent::new(
                turn_id,
                1,
                EventKind::Error {
                    code: "none".into(),
                    message: "marker".into(),
                },
            ),
        ],
        settings: None,
        keep_lease: false,
    }
}

async fn enqueue_and_claim(fx: &Fixture, s: &SessionId, owner: &str, id: &str) -> (Lease, Claim) {
    fx.store.enqueue(s, input(id, "q")).await.expect("enqueue");
    let lease = fx
        .store
        .acquire_lease(s, owner, TTL)
        .await
        .expect("acquire");
    let claim = fx
        .store
        .claim(&lease, ClaimTarget::Next)
        .await
        .expect("claim")
        .expect("an input to claim");
    (lease, claim)
}

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
    let turns = fx.store.turns(&s).await.unwrap();
    assert_eq!(
        turns
            .iter()
            .map(|t| (t.turn_id.as_str(), t.version))
            .collect::<Vec<_>>(),
        vec![("t1", 1), ("t2", 2)]
    );
}

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
    let dup = fx
        .store
        .enqueue(&s, input("in-1", "other text"))
        .await
        .unwrap();
    assert!(dup.duplicate);
    assert_eq!(dup.entry.payload, InboxPayload::Input(TurnInput::text("q")));
    assert_eq!(fx.store.inbox(&s).await.unwrap().len(), 3);
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

/// Events get cursors in order; a duplicate id is ignored; reads start
/// after a cursor.
pub async fn event_append_is_idempotent(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    fx.store.acquire_lease(&s, "a", TTL).await.unwrap();
    let events: Vec<SessionEvent> = (0..3)
        .map(|i| {
            SessionEvent::new(
                "t1",
                i,
                EventKind::TurnStarted {
                    turn_index: i as u64,
                },
            )
        })
        .collect();
    fx.store.append_events(&s, &events).await.unwrap();
    fx.store.append_events(&s, &events[1..]).await.unwrap();
    let all = fx.store.events_after(&s, 0, 100).await.unwrap();
    assert_eq!(
        all.iter().map(|e| e.cursor).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(all[2].event.id, "t1:2");
    let after = fx.store.events_after(&s, 1, 1).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].event.id, "t1:1");
    // The commit's events join the same log, deduplicated the same way.
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    let mut req = simple_commit(&lease, "t2", 0, &claim, "x");
    req.events.push(events[0].clone());
    fx.store.commit(&req).await.unwrap();
    assert_eq!(fx.store.events_after(&s, 0, 100).await.unwrap().len(), 5);
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

/// Checkpoints are kept per turn and step; a turn without a commit is
/// reported unfinished until it commits.
pub async fn checkpoints_track_unfinished_turns(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    let (lease, claim) = enqueue_and_claim(&fx, &s, "a", "in-1").await;
    for (seq, step) in ["claim", "prepare", "model:0"].iter().enumerate() {
        let cp = Checkpoint {
            session_id: s.clone(),
            turn_id: "t1".into(),
            seq: seq as u64,
            step: step.to_string(),
            record: serde_json::json!({"seq": seq}),
        };
        fx.store.put_checkpoint(&cp).await.unwrap();
        fx.store.put_checkpoint(&cp).await.unwrap();
    }
    let cps = fx.store.checkpoints(&s, "t1").await.unwrap();
    assert_eq!(
        cps.iter().map(|c| c.step.as_str()).collect::<Vec<_>>(),
        vec!["claim", "prepare", "model:0"]
    );
    assert_eq!(cps[2].record["seq"], 2);
    assert_eq!(fx.store.checkpoint_count().await.unwrap(), 3);
    assert_eq!(fx.store.unfinished_turns(&s).await.unwrap(), vec!["t1"]);
    fx.store
        .commit(&simple_commit(&lease, "t1", 0, &claim, "x"))
        .await
        .unwrap();
    assert!(fx.store.unfinished_turns(&s).await.unwrap().is_empty());
}

/// Notes are written once per key.
pub async fn notes_are_idempotent_by_key(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    assert!(fx.store.put_note(&s, "s:t1:call_0", "milk").await.unwrap());
    assert!(!fx.store.put_note(&s, "s:t1:call_0", "milk").await.unwrap());
    assert!(fx.store.put_note(&s, "s:t1:call_1", "eggs").await.unwrap());
    let notes = fx.store.notes(&s).await.unwrap();
    assert_eq!(
        notes.iter().map(|n| n.text.as_str()).collect::<Vec<_>>(),
        vec!["milk", "eggs"]
    );
}

/// The effect ledger counts every execution, per key and per session.
pub async fn effect_ledger_counts_every_execution(f: &dyn StoreFactory) {
    let fx = fixture(f).await;
    let s = sid("s");
    assert_eq!(
        fx.store.count_effect(&s, "tool:t1:call_0").await.unwrap(),
        1
    );
    assert_eq!(
        fx.store.count_effect(&s, "tool:t1:call_0").await.unwrap(),
        2
    );
    assert_eq!(fx.store.count_effect(&s, "model:t1:0").await.unwrap(), 1);
    assert_eq!(
        fx.store
            .count_effect(&sid("other"), "tool:t1:call_0")
            .await
            .unwrap(),
        1
    );
    let counts = fx.store.effect_counts(&s).await.unwrap();
    assert_eq!(counts.get("tool:t1:call_0"), Some(&2));
    assert_eq!(counts.get("model:t1:0"), Some(&1));
    assert_eq!(counts.len(), 2);
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

/// Generates one `#[tokio::test]` per conformance case for a backend.
/// `$factory` is an expression giving a `&dyn StoreFactory`.
#[macro_export]
macro_rules! store_conformance_tests {
    ($factory:expr) => {
        $crate::store_conformance_tests!(@cases $factory;
            lease_is_exclusive_until_it_expires,
            same_owner_reacquires_its_lease,
            renew_and_release_follow_the_fence,
            commit_is_rejected_after_lease_takeover,
            commit_is_idempotent_by_turn_id_and_hash,
            commit_requires_the_claimed_base_version,
            commit_can_keep_the_lease,
            history_is_readable_at_a_version,
            inbox_is_fifo_and_enqueue_is_idempotent,
            commands_before_an_input_are_claimed_with_it,
            abandoned_claims_can_be_claimed_again,
            event_append_is_idempotent,
            a_commit_failing_midway_leaves_nothing_behind,
            concurrent_enqueues_lose_and_duplicate_nothing,
            bad_input_gets_typed_errors_and_changes_nothing,
            checkpoints_track_unfinished_turns,
            notes_are_idempotent_by_key,
            commit_applies_settings,
            effect_ledger_counts_every_execution,
        );
    };
    (@cases $factory:expr; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let factory = $factory;
                $crate::store::conformance::$case(&factory).await;
            }
        )*
    };
}
