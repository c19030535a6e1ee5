//! The in-memory store: `Ephemeral`, for tests and the inline tier's
//! throwaway sessions. Refused by the durable tier.

use super::commit_plan::{self, CommitReads, Decision};
use super::rules::{self, LeaseRow, StoreOptions};
use super::*;
use crate::model::{SessionEvent, SessionId, StoredEvent};
use state::SessionState;
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

mod state;
mod waits;

/// A store that lives in this process only.
pub struct MemoryStore {
    options: StoreOptions,
    sessions: Mutex<HashMap<SessionId, SessionState>>,
}

impl MemoryStore {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::with_options(StoreOptions::default())
    }

    /// An empty store.
    pub fn with_options(options: StoreOptions) -> Self {
        MemoryStore {
            options,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn with_session<T>(
        &self,
        session: &SessionId,
        f: impl FnOnce(&mut SessionState) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let s = all
            .get_mut(session)
            .ok_or_else(|| StoreError::UnknownSession(session.to_string()))?;
        f(s)
    }

    fn with_session_or_new<T>(
        &self,
        session: &SessionId,
        f: impl FnOnce(&mut SessionState) -> StoreResult<T>,
    ) -> StoreResult<T> {
        let mut all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        f(all.entry(session.clone()).or_default())
    }
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn head(&self, session: &SessionId) -> StoreResult<SessionHead> {
        self.with_session(session, |s| {
            Ok(SessionHead {
                session_id: session.clone(),
                version: s.version,
                settings: s.settings.clone(),
                usage: s.usage,
            })
        })
    }

    async fn messages(
        &self,
        session: &SessionId,
        at_version: u64,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.with_session(session, |s| {
            Ok(s.messages
                .iter()
                .take_while(|m| m.version <= at_version)
                .cloned()
                .collect())
        })
    }

    async fn recent_messages(
        &self,
        session: &SessionId,
        at_version: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredMessage>> {
        self.with_session(session, |s| {
            let end = s.messages.partition_point(|m| m.version <= at_version);
            Ok(s.messages[end.saturating_sub(limit)..end].to_vec())
        })
    }

    async fn turns(&self, session: &SessionId) -> StoreResult<Vec<TurnRecord>> {
        self.with_session(session, |s| Ok(s.turns.clone()))
    }

    async fn committed_turn(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Option<CommittedTurn>> {
        self.with_session(session, |s| Ok(s.committed(turn_id)))
    }
}

#[async_trait]
impl LeaseStore for MemoryStore {
    async fn acquire_lease(
        &self,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
    ) -> StoreResult<Lease> {
        let now = self.options.clock.now_ms();
        self.with_session_or_new(session, |s| {
            let acquired = rules::decide_acquire(session, s.lease.as_ref(), owner, ttl_ms, now)?;
            if acquired.requeue_claims {
                for e in s.inbox.iter_mut() {
                    if e.state == InboxState::Claimed {
                        e.state = InboxState::Pending;
                        e.claim_fence = None;
                    }
                }
            }
            s.lease = Some(LeaseRow {
                owner: Some(owner.to_string()),
                fence: acquired.lease.fence,
                expires_at_ms: acquired.lease.expires_at_ms,
            });
            Ok(acquired.lease)
        })
    }

    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64) -> StoreResult<Lease> {
        let now = self.options.clock.now_ms();
        self.with_session(&lease.session_id, |s| {
            if !rules::lease_is_current(s.lease.as_ref(), lease) {
                return Err(rules::lease_lost(lease));
            }
            let expires_at_ms = now.saturating_add(ttl_ms);
            if let Some(row) = s.lease.as_mut() {
                row.expires_at_ms = expires_at_ms;
            }
            Ok(Lease {
                expires_at_ms,
                ..lease.clone()
            })
        })
    }

    async fn release_lease(&self, lease: &Lease) -> StoreResult<()> {
        self.with_session(&lease.session_id, |s| {
            if rules::lease_is_current(s.lease.as_ref(), lease)
                && let Some(row) = s.lease.as_mut()
            {
                row.owner = None;
            }
            Ok(())
        })
    }

    async fn current_lease(&self, session: &SessionId) -> StoreResult<Option<Lease>> {
        self.with_session(session, |s| {
            Ok(s.lease.as_ref().and_then(|row| {
                row.owner.as_ref().map(|owner| Lease {
                    session_id: session.clone(),
                    owner: owner.clone(),
                    fence: row.fence,
                    expires_at_ms: row.expires_at_ms,
                })
            }))
        })
    }
}

#[async_trait]
impl InboxStore for MemoryStore {
    async fn inbox_page(&self, session: &SessionId, limit: usize) -> StoreResult<InboxPage> {
        self.with_session(session, |s| Ok(s.page(limit)))
    }

    async fn live_inputs_total(&self) -> StoreResult<u64> {
        let all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let live = |s: &SessionState| {
            s.inbox
                .iter()
                .filter(|e| e.state != InboxState::Completed)
                .count() as u64
        };
        Ok(all.values().map(live).sum())
    }

    async fn pending_steers(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>> {
        let steers = self.with_session(session, |s| {
            Ok(s.inbox
                .iter()
                .filter(|e| {
                    e.state == InboxState::Pending && e.payload.is_steer() && e.seq > after_seq
                })
                .take(limit)
                .cloned()
                .collect())
        });
        match steers {
            Err(StoreError::UnknownSession(_)) => Ok(Vec::new()),
            other => other,
        }
    }

    async fn enqueue(&self, session: &SessionId, entry: NewInboxEntry) -> StoreResult<Enqueued> {
        rules::check_id("inbox entry id", &entry.id)?;
        rules::encode_limited(
            "inbox entry",
            &entry.payload,
            self.options.max_payload_bytes,
        )?;
        self.with_session_or_new(session, |s| {
            let existing = s.inbox.iter().find(|e| e.id == entry.id).cloned();
            let turn_taken = entry.turn_id.as_ref().is_some_and(|t| {
                s.inbox.iter().any(|e| e.turn_id.as_ref() == Some(t))
                    || s.turns.iter().any(|r| r.turn_id == *t)
            });
            if let Some(found) = rules::decide_enqueue(&entry, existing, turn_taken)? {
                return Ok(found);
            }
            let stored = InboxEntry {
                id: entry.id,
                seq: s.inbox.len() as u64 + 1,
                payload: entry.payload,
                state: InboxState::Pending,
                claim_fence: None,
                turn_id: entry.turn_id,
            };
            s.inbox.push(stored.clone());
            Ok(Enqueued {
                entry: stored,
                duplicate: false,
            })
        })
    }

    async fn claim(&self, lease: &Lease, target: ClaimTarget) -> StoreResult<Option<Claim>> {
        self.with_session(&lease.session_id, |s| {
            if !rules::lease_is_current(s.lease.as_ref(), lease) {
                return Err(rules::lease_lost(lease));
            }
            let live: Vec<InboxEntry> = s
                .inbox
                .iter()
                .filter(|e| e.state != InboxState::Completed)
                .cloned()
                .collect();
            let mut taken = rules::select_claim(&live, lease.fence, &target);
            let orphaned_from = rules::orphaned_from(&taken, lease.fence);
            for t in taken.iter_mut() {
                t.state = InboxState::Claimed;
                t.claim_fence = Some(lease.fence);
                if let Some(e) = s.inbox.iter_mut().find(|e| e.id == t.id) {
                    *e = t.clone();
                }
            }
            Ok(rules::into_claim(taken, orphaned_from))
        })
    }

    async fn abandon_claims(&self, session: &SessionId, fence: u64) -> StoreResult<u64> {
        self.with_session(session, |s| {
            let mut n = 0;
            for e in s.inbox.iter_mut() {
                if e.state == InboxState::Claimed && e.claim_fence == Some(fence) {
                    e.state = InboxState::Pending;
                    e.claim_fence = None;
                    n += 1;
                }
            }
            Ok(n)
        })
    }

    async fn inbox(&self, session: &SessionId) -> StoreResult<Vec<InboxEntry>> {
        self.with_session(session, |s| {
            Ok(s.inbox
                .iter()
                .filter(|e| e.state != InboxState::Completed)
                .cloned()
                .collect())
        })
    }
}

#[async_trait]
impl CommitStore for MemoryStore {
    async fn commit(&self, req: &CommitRequest) -> StoreResult<CommitReceipt> {
        rules::validate_commit(req, self.options.max_payload_bytes)?;
        let hash = rules::commit_hash(req)?;
        let faults = &self.options.faults;
        self.with_session(&req.session_id, |s| {
            let reads = CommitReads {
                receipt: s
                    .turns
                    .iter()
                    .find(|t| t.turn_id == req.turn_id)
                    .map(|t| (t.version, t.commit_hash.clone())),
                lease: s.lease.clone(),
                head: Some((s.version, s.usage)),
            };
            let plan = match commit_plan::decide(req, hash, reads)? {
                Decision::Replayed(receipt) => return Ok(receipt),
                Decision::Apply(plan) => plan,
            };
            // Write a copy and keep it only if every stage passes: a failure
            // at any stage leaves the session untouched.
            let mut next = s.clone();
            for stage in plan.stages() {
                next.apply(&stage)?;
                faults
                    .check(stage.fault_point())
                    .map_err(StoreError::Injected)?;
            }
            *s = next;
            Ok(plan.receipt())
        })
    }
}

#[async_trait]
impl EventStore for MemoryStore {
    async fn append_events(&self, session: &SessionId, events: &[SessionEvent]) -> StoreResult<()> {
        for e in events {
            rules::check_id("event id", &e.id)?;
            rules::encode_limited("event", e, self.options.max_payload_bytes)?;
        }
        self.with_session(session, |s| {
            s.append_events(events);
            Ok(())
        })
    }

    async fn events_after(
        &self,
        session: &SessionId,
        cursor: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>> {
        self.with_session(session, |s| {
            Ok(s.events
                .iter()
                .filter(|e| e.cursor > cursor)
                .take(limit)
                .cloned()
                .collect())
        })
    }
}

#[async_trait]
impl CheckpointStore for MemoryStore {
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()> {
        rules::check_id("turn id", &checkpoint.turn_id)?;
        rules::check_id("step name", &checkpoint.step)?;
        rules::encode_limited(
            "checkpoint",
            &checkpoint.record,
            self.options.max_payload_bytes,
        )?;
        self.with_session(&checkpoint.session_id, |s| {
            let known = s
                .checkpoints
                .iter()
                .any(|c| c.turn_id == checkpoint.turn_id && c.step == checkpoint.step);
            if !known {
                s.checkpoints.push(checkpoint.clone());
            }
            Ok(())
        })
    }

    async fn checkpoints(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Vec<Checkpoint>> {
        self.with_session(session, |s| {
            let mut v: Vec<Checkpoint> = s
                .checkpoints
                .iter()
                .filter(|c| c.turn_id == turn_id)
                .cloned()
                .collect();
            v.sort_by_key(|c| c.seq);
            Ok(v)
        })
    }

    async fn unfinished_turns(&self, session: &SessionId) -> StoreResult<Vec<String>> {
        self.with_session(session, |s| {
            let mut out: Vec<String> = Vec::new();
            for c in &s.checkpoints {
                let committed = s.turns.iter().any(|t| t.turn_id == c.turn_id);
                if !committed && !out.contains(&c.turn_id) {
                    out.push(c.turn_id.clone());
                }
            }
            Ok(out)
        })
    }

    async fn checkpoint_count(&self) -> StoreResult<u64> {
        let all = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        Ok(all.values().map(|s| s.checkpoints.len() as u64).sum())
    }
}

#[async_trait]
impl NoteStore for MemoryStore {
    async fn put_note(&self, session: &SessionId, key: &str, text: &str) -> StoreResult<bool> {
        rules::check_id("note key", key)?;
        rules::encode_limited("note", &text, self.options.max_payload_bytes)?;
        self.with_session_or_new(session, |s| {
            if s.notes.iter().any(|n| n.key == key) {
                return Ok(false);
            }
            s.notes.push(Note {
                key: key.to_string(),
                text: text.to_string(),
            });
            Ok(true)
        })
    }

    async fn notes(&self, session: &SessionId) -> StoreResult<Vec<Note>> {
        self.with_session(session, |s| Ok(s.notes.clone()))
    }
}

#[async_trait]
impl EffectLedger for MemoryStore {
    async fn count_effect(&self, session: &SessionId, key: &str) -> StoreResult<u64> {
        rules::check_id("effect key", key)?;
        self.with_session_or_new(session, |s| {
            let n = s.effects.entry(key.to_string()).or_insert(0);
            *n += 1;
            Ok(*n)
        })
    }

    async fn effect_counts(&self, session: &SessionId) -> StoreResult<BTreeMap<String, u64>> {
        self.with_session(session, |s| Ok(s.effects.clone()))
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn durability_tier(&self) -> DurabilityTier {
        DurabilityTier::Ephemeral
    }

    fn backend_name(&self) -> &'static str {
        "memory"
    }
}
