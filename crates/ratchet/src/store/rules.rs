//! Rules every backend applies the same way: argument checks, payload
//! limits, the commit hash, which entries a claim takes, and who gets a
//! lease. Backends do the IO; the decisions are made here, once.

use super::{
    ClaimTarget, CommitRequest, Enqueued, InboxEntry, InboxState, Lease, NewInboxEntry, StoreError,
    StoreResult,
};
use crate::clock::{self, SharedClock};
use crate::fault::FaultSwitch;
use crate::model::SessionId;
use serde::Serialize;

/// How hard SQLite syncs a commit to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SqliteSync {
    /// `synchronous=FULL`: an acknowledged commit survives power loss (the
    /// default).
    #[default]
    Full,
    /// `synchronous=NORMAL`: faster; the last commits may be lost on power
    /// loss or an OS crash (never on a process crash).
    Normal,
}

/// Default payload limit: 1 MiB.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1 << 20;

/// Options every backend takes.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// Largest inbox entry, message or commit accepted, in bytes of JSON.
    pub max_payload_bytes: usize,
    /// Where lease expiry reads time.
    pub clock: SharedClock,
    /// In-process fault points inside the commit (`commit:<stage>`).
    pub faults: FaultSwitch,
    /// How the SQLite backend syncs commits (other backends ignore it).
    pub sqlite_sync: SqliteSync,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            max_payload_bytes: DEFAULT_MAX_PAYLOAD_BYTES,
            clock: clock::system(),
            faults: FaultSwitch::new(),
            sqlite_sync: SqliteSync::default(),
        }
    }
}

/// The stages of a commit, in order; a fault can be armed between any two.
pub const COMMIT_STAGES: [&str; 6] = [
    "commit:messages",
    "commit:inbox",
    "commit:events",
    "commit:head",
    "commit:lease",
    "commit:receipt",
];

/// Rejects an empty id.
pub fn check_id(what: &str, id: &str) -> StoreResult<()> {
    if id.trim().is_empty() {
        return Err(StoreError::InvalidArgument(format!(
            "{what} must not be empty"
        )));
    }
    Ok(())
}

/// Checks a wait before it is stored; returns its JSON.
pub fn check_wait(wait: &crate::model::Wait, max: usize) -> StoreResult<String> {
    check_id("wait id", &wait.wait_id)?;
    check_id("tool call id", &wait.call_id)?;
    check_id("turn id", &wait.turn_id)?;
    encode_limited("wait", wait, max)
}

/// Serializes a payload, rejecting one over the limit.
pub fn encode_limited<T: Serialize>(what: &str, value: &T, max: usize) -> StoreResult<String> {
    let json = serde_json::to_string(value).map_err(|e| StoreError::Internal(e.to_string()))?;
    if json.len() > max {
        return Err(StoreError::PayloadTooLarge {
            what: what.to_string(),
            size: json.len(),
            max,
        });
    }
    Ok(json)
}

/// Decodes a stored JSON column, reporting damage as corruption.
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, json: &str) -> StoreResult<T> {
    serde_json::from_str(json).map_err(|e| StoreError::Corrupt(format!("stored {what}: {e}")))
}

/// Checks a commit request before any write.
pub fn validate_commit(req: &CommitRequest, max: usize) -> StoreResult<()> {
    check_id("turn id", &req.turn_id)?;
    check_id("lease owner", &req.lease.owner)?;
    if req.lease.session_id != req.session_id {
        return Err(StoreError::InvalidArgument(
            "lease belongs to another session".into(),
        ));
    }
    for m in &req.messages {
        check_id("message id", &m.id)?;
    }
    encode_limited("commit", &hashed_content(req), max)?;
    Ok(())
}

#[derive(Serialize)]
struct HashedContent<'a> {
    session_id: &'a SessionId,
    turn_id: &'a str,
    base_version: u64,
    messages: &'a [crate::model::Message],
    outcome: &'a crate::model::TurnOutcome,
    usage: &'a crate::model::Usage,
    completed_entries: &'a [String],
    events: &'a [crate::model::SessionEvent],
    settings: &'a Option<super::SessionSettings>,
    keep_lease: bool,
}

fn hashed_content(req: &CommitRequest) -> HashedContent<'_> {
    HashedContent {
        session_id: &req.session_id,
        turn_id: &req.turn_id,
        base_version: req.base_version,
        messages: &req.messages,
        outcome: &req.outcome,
        usage: &req.usage,
        completed_entries: &req.completed_entries,
        events: &req.events,
        settings: &req.settings,
        keep_lease: req.keep_lease,
    }
}

/// The commit's content hash. The lease is left out: the same turn retried
/// by its owner commits the same content whatever its lease's expiry.
pub fn commit_hash(req: &CommitRequest) -> StoreResult<String> {
    crate::hash::digest(&hashed_content(req)).map_err(|e| StoreError::Internal(e.to_string()))
}

/// A lease row as a backend stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseRow {
    /// The holder; `None` once released.
    pub owner: Option<String>,
    /// The last fence handed out.
    pub fence: u64,
    /// Expiry of the holder's lease.
    pub expires_at_ms: u64,
}

/// The decision of an acquire: the lease, and whether older claims must
/// return to pending (a new owner took over).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// The lease granted.
    pub lease: Lease,
    /// Whether the fence moved.
    pub new_fence: bool,
    /// Whether claims under older fences go back to pending, to run again:
    /// when the old holder's lease ran out or was released. Not when an
    /// invocation takes over from an ended invocation ([`supersedes`]):
    /// those claims stay, and the next claim settles them as orphans.
    pub requeue_claims: bool,
}

/// Whether `owner` may take the lease from `holder` at once, without
/// waiting for its expiry. Owners named `inv_…` are Restate invocation ids,
/// and Restate never runs two exclusive handlers of one object key at once,
/// retries included: an invocation that finds another invocation's lease
/// knows that one has ended for good (killed, or failed without releasing).
/// Any other owner (an inline process) keeps its lease until it expires.
pub fn supersedes(owner: &str, holder: &str) -> bool {
    const INVOCATION: &str = "inv_";
    owner != holder && owner.starts_with(INVOCATION) && holder.starts_with(INVOCATION)
}

/// Decides an acquire from the current row.
pub fn decide_acquire(
    session: &SessionId,
    current: Option<&LeaseRow>,
    owner: &str,
    ttl_ms: u64,
    now_ms: u64,
) -> StoreResult<Acquired> {
    check_id("lease owner", owner)?;
    let expires_at_ms = now_ms.saturating_add(ttl_ms);
    let orphans_stay = current
        .and_then(|row| row.owner.as_deref())
        .is_some_and(|holder| supersedes(owner, holder));
    let grant = |fence: u64, new_fence: bool| Acquired {
        lease: Lease {
            session_id: session.clone(),
            owner: owner.to_string(),
            fence,
            expires_at_ms,
        },
        new_fence,
        requeue_claims: new_fence && !orphans_stay,
    };
    match current {
        None => Ok(grant(1, true)),
        Some(row) if row.owner.as_deref() == Some(owner) => Ok(grant(row.fence, false)),
        Some(row) if row.owner.is_none() || row.expires_at_ms <= now_ms || orphans_stay => {
            Ok(grant(row.fence + 1, true))
        }
        Some(row) => Err(StoreError::SessionBusy {
            session: session.to_string(),
            expires_in_ms: row.expires_at_ms - now_ms,
        }),
    }
}

/// Whether `lease` is the one the row says is held. Expiry alone does not
/// void it: until another owner takes over, the fence is still current.
pub fn lease_is_current(row: Option<&LeaseRow>, lease: &Lease) -> bool {
    matches!(row, Some(r) if r.fence == lease.fence && r.owner.as_deref() == Some(lease.owner.as_str()))
}

/// The lease-lost error for `lease`.
pub fn lease_lost(lease: &Lease) -> StoreError {
    StoreError::LeaseLost {
        session: lease.session_id.to_string(),
        fence: lease.fence,
    }
}

/// Picks what a claim takes from the live (pending or claimed) entries in
/// FIFO order: entries already claimed under this fence if there are any;
/// else the earliest live input, with the live commands before it, when it
/// is the target. An input claimed under an older fence belongs to an owner
/// that lost its lease without committing: it is still the earliest, so it
/// is taken again (and reported orphaned) before any later input can run.
/// A later input is never taken while an earlier one is live.
pub fn select_claim(live: &[InboxEntry], fence: u64, target: &ClaimTarget) -> Vec<InboxEntry> {
    let held: Vec<InboxEntry> = live
        .iter()
        .filter(|e| e.state == InboxState::Claimed && e.claim_fence == Some(fence))
        .cloned()
        .collect();
    if held.iter().any(is_input) {
        return held;
    }
    let Some(first) = live.iter().position(is_input) else {
        return Vec::new();
    };
    let wanted = match target {
        ClaimTarget::Next => true,
        ClaimTarget::Input(id) => live[first].id == *id,
    };
    if !wanted {
        return Vec::new();
    }
    live[..=first].to_vec()
}

/// Rows per page when a backend reads the claimable prefix.
pub const CLAIM_PAGE: usize = 16;

/// Appends a page of live entries (FIFO, after those in `out`) up to and
/// including the first input; `true` once the prefix is complete (an input
/// found, or the page was the last). That prefix is all [`select_claim`]
/// can take: entries held under the current fence are the earliest live
/// input and the commands before it, and otherwise it takes the first live
/// input with the commands before it. So a claim never reads the backlog.
pub fn claimable_prefix(out: &mut Vec<InboxEntry>, page: Vec<InboxEntry>) -> bool {
    let last_page = page.len() < CLAIM_PAGE;
    for e in page {
        let input = is_input(&e);
        out.push(e);
        if input {
            return true;
        }
    }
    last_page
}

/// The earliest live input: the only one a claim may take.
pub fn next_live_input(live: &[InboxEntry]) -> Option<InboxEntry> {
    live.iter().find(|e| is_input(e)).cloned()
}

fn is_input(e: &InboxEntry) -> bool {
    e.payload.input().is_some()
}

/// What an enqueue does, given the entry already stored under the same id
/// and whether another entry already has the new entry's turn id.
pub fn decide_enqueue(
    entry: &NewInboxEntry,
    same_id: Option<InboxEntry>,
    turn_taken: bool,
) -> StoreResult<Option<Enqueued>> {
    if let Some(existing) = same_id {
        if existing.payload != entry.payload {
            return Err(StoreError::InputConflict {
                id: entry.id.clone(),
            });
        }
        return Ok(Some(Enqueued {
            entry: existing,
            duplicate: true,
        }));
    }
    if turn_taken && let Some(turn_id) = &entry.turn_id {
        return Err(StoreError::TurnIdTaken {
            turn_id: turn_id.clone(),
        });
    }
    Ok(None)
}

/// The older fence the input of a selection was claimed under, if any:
/// read it before the selection is marked claimed under `fence`.
pub fn orphaned_from(taken: &[InboxEntry], fence: u64) -> Option<u64> {
    taken
        .last()
        .filter(|e| e.state == InboxState::Claimed)
        .and_then(|e| e.claim_fence)
        .filter(|f| *f != fence)
}

/// Splits claimed entries into a [`super::Claim`] (the input is last).
pub fn into_claim(
    mut entries: Vec<InboxEntry>,
    orphaned_from: Option<u64>,
) -> Option<super::Claim> {
    let input = entries.pop()?;
    Some(super::Claim {
        commands: entries,
        input,
        orphaned_from,
    })
}
