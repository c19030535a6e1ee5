//! The session store: sessions and history, the execution lease, the inbox,
//! the atomic final commit, the event log, inline checkpoints and tool notes.
//!
//! One trait, [`SessionStore`], three backends (memory; SQLite behind the
//! `sqlite` feature, on by default; PostgreSQL behind `postgres`) and one
//! conformance suite every backend must pass unchanged (in the
//! `ratchet-testkit` crate, for third-party backends too).
//! Rules shared by the backends (validation, hashing) live in [`rules`] so
//! that no backend can drift from another.

pub mod commit_plan;
mod error;
mod memory;
#[cfg(feature = "postgres")]
mod postgres;
pub mod rules;
#[cfg(feature = "sqlite")]
mod sqlite;
mod types;

pub use error::{StoreError, StoreResult};
pub use memory::MemoryStore;
#[cfg(feature = "postgres")]
pub use postgres::{
    DEFAULT_POOL_SIZE as POSTGRES_DEFAULT_POOL_SIZE, PgTls, PostgresStore, SslMode,
    redact as redact_postgres_url,
};
pub use rules::SqliteSync;
#[cfg(feature = "sqlite")]
pub use sqlite::{
    APPLICATION_ID as SQLITE_APPLICATION_ID, SCHEMA_VERSION as SQLITE_SCHEMA_VERSION, SqliteStore,
};
pub use types::*;

/// Every store trait, for callers that use a store through `dyn SessionStore`.
pub mod prelude {
    pub use super::{
        CheckpointStore, CommitStore, EffectLedger, EventStore, HistoryStore, InboxStore,
        LeaseStore, NoteStore, SessionStore, WaitStore,
    };
}

use crate::model::{Decided, SessionEvent, SessionId, StoredEvent, Wait, WaitKind};
use async_trait::async_trait;

/// Whether a store survives the process.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DurabilityTier {
    /// Lost when the process exits (the memory store).
    Ephemeral,
    /// Survives crashes (SQLite, Postgres).
    Durable,
}

/// A session's committed history: its head, messages and turns.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// The session's head; `UnknownSession` if it was never created.
    async fn head(&self, session: &SessionId) -> StoreResult<SessionHead>;

    /// Committed messages with version `<= at_version`, in order.
    async fn messages(
        &self,
        session: &SessionId,
        at_version: u64,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// The last `limit` committed messages with version `<= at_version`, in
    /// order: what a turn reads for its context, whatever the history length.
    async fn recent_messages(
        &self,
        session: &SessionId,
        at_version: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredMessage>>;

    /// Committed turns, in order.
    async fn turns(&self, session: &SessionId) -> StoreResult<Vec<TurnRecord>>;

    /// One committed turn and the messages it appended; `None` if no turn
    /// of that id committed.
    async fn committed_turn(
        &self,
        session: &SessionId,
        turn_id: &str,
    ) -> StoreResult<Option<CommittedTurn>>;
}

/// The session execution lease: who may run the session's turns now.
#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the session's execution lease (creating the session if new).
    /// The same owner re-acquiring keeps its fence; a new owner gets a
    /// higher fence once the lease expired or was released, or at once when
    /// [`rules::supersedes`] says the holder has ended. Claims made under
    /// older fences go back to pending, except when superseding an ended
    /// invocation: then they stay, and the next claim takes them first as
    /// orphans, to be settled.
    async fn acquire_lease(
        &self,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
    ) -> StoreResult<Lease>;

    /// Extends a lease still held; `LeaseLost` otherwise.
    async fn renew_lease(&self, lease: &Lease, ttl_ms: u64) -> StoreResult<Lease>;

    /// Releases a lease still held; a lease already lost is left alone.
    async fn release_lease(&self, lease: &Lease) -> StoreResult<()>;

    /// The current lease row, if any owner holds one (expired or not).
    async fn current_lease(&self, session: &SessionId) -> StoreResult<Option<Lease>>;
}

/// The inbox: inputs and session commands, FIFO per session.
#[async_trait]
pub trait InboxStore: Send + Sync {
    /// Adds an input or command to the inbox (creating the session if new).
    /// Idempotent by entry id: a known id with the same payload returns the
    /// original entry (in whatever state it is); with another payload it is
    /// `InputConflict`. A turn id another entry or turn has is `TurnIdTaken`.
    /// Neither error stores anything.
    async fn enqueue(&self, session: &SessionId, entry: NewInboxEntry) -> StoreResult<Enqueued>;

    /// Claims work under `lease`: the earliest live input, with the commands
    /// enqueued before it, if it is the target (FIFO: a later input is never
    /// claimed while an earlier one is live). An input claimed under an older
    /// fence is taken again and reported orphaned. Claims already held under
    /// this fence are returned again, so a retried claim is idempotent.
    async fn claim(&self, lease: &Lease, target: ClaimTarget) -> StoreResult<Option<Claim>>;

    /// Returns every entry claimed under `fence` to pending.
    async fn abandon_claims(&self, session: &SessionId, fence: u64) -> StoreResult<u64>;

    /// Entries not yet completed (pending or claimed), in FIFO order.
    async fn inbox(&self, session: &SessionId) -> StoreResult<Vec<InboxEntry>>;

    /// The first `limit` entries of [`InboxStore::inbox`] and how many
    /// there are, at a cost that does not grow with the backlog's payloads.
    async fn inbox_page(&self, session: &SessionId, limit: usize) -> StoreResult<InboxPage>;

    /// How many entries are live (pending or claimed) in all sessions: the
    /// inbox depth the metrics report.
    async fn live_inputs_total(&self) -> StoreResult<u64>;

    /// The first `limit` live entries, FIFO, without the count
    /// [`InboxStore::inbox_page`] makes: what `drain` reads to find the next
    /// input, at a cost that does not grow with the backlog. An unknown
    /// session is `UnknownSession`.
    async fn live_head(&self, session: &SessionId, limit: usize) -> StoreResult<Vec<InboxEntry>> {
        Ok(self.inbox_page(session, limit).await?.entries)
    }

    /// The first `limit` pending steering messages after FIFO position
    /// `after_seq`, oldest first, read through an index of pending steers
    /// (no scan of the backlog). A running turn reads them at each model
    /// call; they stay pending until its commit completes them. An unknown
    /// session has none.
    async fn pending_steers(
        &self,
        session: &SessionId,
        after_seq: u64,
        limit: usize,
    ) -> StoreResult<Vec<InboxEntry>>;
}

/// The final commit of a turn, in one transaction.
#[async_trait]
pub trait CommitStore: Send + Sync {
    /// The final commit, in one transaction. See [`CommitRequest`].
    async fn commit(&self, request: &CommitRequest) -> StoreResult<CommitReceipt>;
}

/// The per-session, append-only event log.
#[async_trait]
pub trait EventStore: Send + Sync {
    /// Appends events; ids already present are ignored.
    async fn append_events(&self, session: &SessionId, events: &[SessionEvent]) -> StoreResult<()>;

    /// Events after `cursor` (0 for all), at most `limit`.
    async fn events_after(
        &self,
        session: &SessionId,
        cursor: u64,
        limit: usize,
    ) -> StoreResult<Vec<StoredEvent>>;
}

/// Inline-tier step records (absent under the durable tier).
#[async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Records an inline-tier step; a record for the same step is kept as is.
    async fn put_checkpoint(&self, checkpoint: &Checkpoint) -> StoreResult<()>;

    /// A turn's checkpoints, in step order.
    async fn checkpoints(&self, session: &SessionId, turn_id: &str)
    -> StoreResult<Vec<Checkpoint>>;

    /// Turns with checkpoints but no commit: inline turns a crash cut short.
    async fn unfinished_turns(&self, session: &SessionId) -> StoreResult<Vec<String>>;

    /// Counts every checkpoint row in the store.
    async fn checkpoint_count(&self) -> StoreResult<u64>;
}

/// Keyed notes that tools write (see `tools::SessionNotes`).
#[async_trait]
pub trait NoteStore: Send + Sync {
    /// Stores a note once per key; returns whether it was new.
    async fn put_note(&self, session: &SessionId, key: &str, text: &str) -> StoreResult<bool>;

    /// The session's notes, in the order written.
    async fn notes(&self, session: &SessionId) -> StoreResult<Vec<Note>>;
}

/// Durable waits (approval of tool calls): one row per wait, so decisions
/// are idempotent and a decision for an unknown or settled call is told
/// apart. The rules are `model::wait::{decide, settle}`, shared by every
/// backend.
#[async_trait]
pub trait WaitStore: Send + Sync {
    /// Opens a wait; idempotent by wait id (an existing row is returned as
    /// it is).
    async fn open_wait(&self, session: &SessionId, wait: &Wait) -> StoreResult<Wait>;

    /// Resolves the wait of `kind` that `call_id` names in the session (its
    /// pending one, else its latest) with `value` (a decision, a tool's
    /// result).
    async fn decide_wait(
        &self,
        session: &SessionId,
        kind: WaitKind,
        call_id: &str,
        value: &serde_json::Value,
    ) -> StoreResult<Decided>;

    /// Settles a wait the turn woke from: with the value it woke with, or
    /// expired (`None`). A wait already settled keeps its state. Returns
    /// the row as it stands after; `None` if there is no such wait.
    async fn settle_wait(
        &self,
        session: &SessionId,
        wait_id: &str,
        woke_with: Option<&serde_json::Value>,
    ) -> StoreResult<Option<Wait>>;

    /// The session's waits, oldest first; only pending ones if asked.
    async fn waits(&self, session: &SessionId, pending_only: bool) -> StoreResult<Vec<Wait>>;
}

/// The effect ledger: how often each model and tool call body ran (failure testing; written only when `EngineConfig::effect_ledger` is on).
#[async_trait]
pub trait EffectLedger: Send + Sync {
    /// Counts one execution of an effect (a model or tool call body), outside
    /// any commit: the ledger that proves each effect ran once.
    async fn count_effect(&self, session: &SessionId, key: &str) -> StoreResult<u64>;

    /// Executions per effect key.
    async fn effect_counts(
        &self,
        session: &SessionId,
    ) -> StoreResult<std::collections::BTreeMap<String, u64>>;
}

/// Everything the runtime keeps about sessions: every capability, in one
/// trait object the runtime holds. A backend implements each capability
/// trait and this one. Callers that need one capability take just that trait.
#[async_trait]
pub trait SessionStore:
    HistoryStore
    + LeaseStore
    + InboxStore
    + CommitStore
    + EventStore
    + CheckpointStore
    + NoteStore
    + EffectLedger
    + WaitStore
{
    /// Whether this store survives the process.
    fn durability_tier(&self) -> DurabilityTier;

    /// A short name for messages (`memory`, `sqlite`, `postgres`).
    fn backend_name(&self) -> &'static str;

    /// Starts a turn: enqueues `enqueue` (idempotently) if given, takes the
    /// lease as `owner`, claims `target` and reads the head. Backends may do
    /// it in one transaction; the default composes the calls above.
    async fn start_turn(
        &self,
        session: &SessionId,
        owner: &str,
        ttl_ms: u64,
        enqueue: Option<NewInboxEntry>,
        target: ClaimTarget,
    ) -> StoreResult<TurnStart> {
        let enqueued = match enqueue {
            Some(entry) => Some(self.enqueue(session, entry).await?),
            None => None,
        };
        let lease = self.acquire_lease(session, owner, ttl_ms).await?;
        let claim = self.claim(&lease, target).await?;
        let head = self.head(session).await?;
        let next_live = match claim {
            Some(_) => None,
            None => rules::next_live_input(&self.inbox(session).await?),
        };
        Ok(TurnStart {
            lease,
            claim,
            head,
            enqueued,
            next_live,
        })
    }
}
