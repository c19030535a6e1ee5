//! The store conformance suite: the behaviour every [`SessionStore`] backend
//! must show, written once. A backend's tests call
//! `run_all` with a [`StoreFactory`], which opens a
//! fresh, empty store for each case.
//!
//! Cases panic (via `assert!`) on a violation, as tests do.

mod commit;
mod fifo;
mod inbox;
mod lease;
mod records;
mod steers;
mod waits;

pub use commit::*;
pub use fifo::*;
pub use inbox::*;
pub use lease::*;
pub use records::*;
pub use steers::*;
pub use waits::*;

pub(crate) use async_trait::async_trait;
use ratchet::clock::ManualClock;
use ratchet::fault::FaultSwitch;
use ratchet::model::{
    EventKind, Message, Role, SessionCommand, SessionEvent, SessionId, TurnInput, TurnOutcome,
    Usage,
};
pub(crate) use ratchet::store::rules::{COMMIT_STAGES, StoreOptions};
pub(crate) use ratchet::store::*;
use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;
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
pub(super) const TTL: u64 = 10_000;

pub(super) async fn fixture(f: &dyn StoreFactory) -> Fixture {
    let clock = ManualClock::new(1_000_000);
    let faults = FaultSwitch::new();
    let store = f
        .open(StoreOptions {
            max_payload_bytes: SUITE_MAX_PAYLOAD,
            clock: clock.clone(),
            faults: faults.clone(),
            ..StoreOptions::default()
        })
        .await;
    Fixture {
        store,
        clock,
        faults,
    }
}

pub(super) fn sid(s: &str) -> SessionId {
    SessionId::new(s).expect("valid id")
}

pub(super) fn input(id: &str, text: &str) -> NewInboxEntry {
    NewInboxEntry {
        id: id.to_string(),
        turn_id: Some(format!("turn-{id}")),
        payload: InboxPayload::Input(TurnInput::text(text)),
    }
}

pub(super) fn command(id: &str, prompt: &str) -> NewInboxEntry {
    NewInboxEntry {
        id: id.to_string(),
        turn_id: None,
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
        outcome: TurnOutcome::Finished(ratchet::model::TurnFinish::AssistantMessage {
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
        started_at_ms: 0,
        finished_at_ms: 0,
    }
}

pub(super) async fn enqueue_and_claim(
    fx: &Fixture,
    s: &SessionId,
    owner: &str,
    id: &str,
) -> (Lease, Claim) {
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

/// A conformance case: runs against a factory, panics on a violation.
pub type Case = for<'a> fn(&'a dyn StoreFactory) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        /// Every case, by name: the one list of what a store must do.
        pub fn cases() -> Vec<(&'static str, Case)> {
            vec![$(
                (stringify!($name), {
                    fn case(f: &dyn StoreFactory) -> Pin<Box<dyn Future<Output = ()> + Send + '_>> {
                        Box::pin($name(f))
                    }
                    case as Case
                }),
            )*]
        }
    };
}

cases!(
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
    start_turn_enqueues_claims_and_reads_the_head,
    a_later_input_is_never_claimed_while_an_earlier_one_is_live,
    an_ended_invocation_s_claim_is_taken_over_as_an_orphan,
    an_expired_inline_owner_s_claims_run_again,
    enqueue_refuses_conflicting_ids_and_stores_nothing,
    committed_turns_and_inbox_pages_read_back,
    waits_settle_once,
    steers_are_read_after_a_position_and_completed_by_the_commit,
);

/// Runs every case against `factory`; returns how many ran, or the failed
/// cases with their messages (every case runs, whatever fails first).
pub async fn run_all(factory: &dyn StoreFactory) -> Result<usize, Vec<String>> {
    use futures::FutureExt;
    let mut failures = Vec::new();
    let all = cases();
    for (name, case) in &all {
        if let Err(panic) = std::panic::AssertUnwindSafe(case(factory))
            .catch_unwind()
            .await
        {
            let msg = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default();
            failures.push(format!("{name}: {msg}"));
        }
    }
    if failures.is_empty() {
        Ok(all.len())
    } else {
        Err(failures)
    }
}
