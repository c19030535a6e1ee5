//! The records a store keeps and the requests it takes.

use crate::model::{
    Message, SessionCommand, SessionEvent, SessionId, TurnInput, TurnOutcome, Usage,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Per-session settings, changed by session commands.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionSettings {
    /// Replaces the runtime's default system prompt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_prompt: Option<String>,
    /// History messages kept in the model's context.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_limit: Option<u32>,
}

impl SessionSettings {
    /// Applies a session command.
    pub fn apply(&mut self, command: &SessionCommand) {
        match command {
            SessionCommand::SetSystemPrompt { prompt } => self.system_prompt = Some(prompt.clone()),
            SessionCommand::SetContextLimit { max_messages } => {
                self.context_limit = Some(*max_messages)
            }
        }
    }
}

/// A session's head: its version, settings and total usage.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SessionHead {
    /// The session.
    pub session_id: SessionId,
    /// Committed turns so far.
    pub version: u64,
    /// Its settings.
    pub settings: SessionSettings,
    /// Usage summed over every committed turn.
    pub usage: Usage,
}

/// A message as committed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StoredMessage {
    /// The version the message's turn produced.
    pub version: u64,
    /// The turn that wrote it.
    pub turn_id: String,
    /// The message.
    pub message: Message,
}

/// A committed turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TurnRecord {
    /// The turn.
    pub turn_id: String,
    /// The version it produced (its index + 1).
    pub version: u64,
    /// How it ended.
    pub outcome: TurnOutcome,
    /// Tokens it used.
    pub usage: Usage,
    /// Hash of its commit content.
    pub commit_hash: String,
    /// When it claimed its input (the injected clock; 0 for older records).
    #[serde(default)]
    pub started_at_ms: u64,
    /// When it finalized (the injected clock; 0 for older records).
    #[serde(default)]
    pub finished_at_ms: u64,
}

/// A committed turn with the messages it appended: enough to answer a
/// re-sent input with the result it already has.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommittedTurn {
    /// The turn's record.
    pub record: TurnRecord,
    /// The messages it appended, in order.
    pub messages: Vec<Message>,
}

/// One page of a session's live inbox, with the total count.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InboxPage {
    /// Live entries (pending or claimed), oldest first.
    pub entries: Vec<InboxEntry>,
    /// How many live entries there are in all.
    pub total: u64,
}

/// A session execution lease.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Lease {
    /// The session.
    pub session_id: SessionId,
    /// Who holds it.
    pub owner: String,
    /// Monotonic per session; a commit is a compare-and-set on it.
    pub fence: u64,
    /// When it expires unless renewed.
    pub expires_at_ms: u64,
}

/// What an inbox entry carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "body", rename_all = "snake_case")]
pub enum InboxPayload {
    /// A turn input.
    Input(TurnInput),
    /// A session command.
    Command(SessionCommand),
    /// A steering message: the running turn takes it at its next model
    /// call; with none running (or none that calls the model again) it runs
    /// as an ordinary input.
    Steer(TurnInput),
}

impl InboxPayload {
    /// The input an entry carries (an input or a steer), `None` for a command.
    pub fn input(&self) -> Option<&TurnInput> {
        match self {
            InboxPayload::Input(i) | InboxPayload::Steer(i) => Some(i),
            InboxPayload::Command(_) => None,
        }
    }

    /// Whether the entry is a steering message.
    pub fn is_steer(&self) -> bool {
        matches!(self, InboxPayload::Steer(_))
    }
}

/// An entry to enqueue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct NewInboxEntry {
    /// Idempotency id, unique per session.
    pub id: String,
    /// The turn an input runs as; unique per session, so no two inputs
    /// can ever commit under one turn id. `None` for commands.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
    /// What it carries.
    pub payload: InboxPayload,
}

/// Where an inbox entry is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum InboxState {
    /// Waiting.
    Pending,
    /// Claimed by a turn not yet committed.
    Claimed,
    /// Done: a turn committed it.
    Completed,
}

/// An inbox entry as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct InboxEntry {
    /// Idempotency id.
    pub id: String,
    /// FIFO position, from 1.
    pub seq: u64,
    /// What it carries.
    pub payload: InboxPayload,
    /// Where it is in its life.
    pub state: InboxState,
    /// The fence of the lease that claimed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claim_fence: Option<u64>,
    /// The turn an input runs as (absent on entries older stores wrote).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn_id: Option<String>,
}

/// The result of an enqueue.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Enqueued {
    /// The entry (the original one for a duplicate).
    pub entry: InboxEntry,
    /// Whether the id was already known.
    pub duplicate: bool,
}

/// Which input a claim takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClaimTarget {
    /// The earliest pending input.
    Next,
    /// This input (with the commands enqueued before it).
    Input(String),
}

/// Work claimed for one turn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Claim {
    /// Commands to apply before the input, in order.
    pub commands: Vec<InboxEntry>,
    /// The input.
    pub input: InboxEntry,
    /// The input was claimed before by an owner that lost its lease
    /// without committing: the fence it was claimed under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphaned_from: Option<u64>,
}

impl Claim {
    /// Ids of every entry in the claim.
    pub fn entry_ids(&self) -> Vec<String> {
        self.commands
            .iter()
            .chain(std::iter::once(&self.input))
            .map(|e| e.id.clone())
            .collect()
    }
}

/// Everything one turn commits, atomically.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CommitRequest {
    /// The session.
    pub session_id: SessionId,
    /// The turn; the receipt is keyed by it.
    pub turn_id: String,
    /// The lease the turn holds; the commit checks its fence.
    pub lease: Lease,
    /// The head version the turn read history at.
    pub base_version: u64,
    /// Messages to append.
    pub messages: Vec<Message>,
    /// The turn's outcome.
    pub outcome: TurnOutcome,
    /// The turn's usage.
    pub usage: Usage,
    /// Inbox entries the turn completes.
    pub completed_entries: Vec<String>,
    /// Events to append (ids already present are ignored).
    pub events: Vec<SessionEvent>,
    /// New settings, when session commands changed them.
    pub settings: Option<SessionSettings>,
    /// Keep the lease (an agent frame follows) instead of releasing it.
    pub keep_lease: bool,
    /// When the turn claimed its input (kept with the turn, not hashed).
    #[serde(default)]
    pub started_at_ms: u64,
    /// When the turn finalized (kept with the turn, not hashed).
    #[serde(default)]
    pub finished_at_ms: u64,
}

/// Proof of a commit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CommitReceipt {
    /// The turn.
    pub turn_id: String,
    /// The version the turn produced.
    pub version: u64,
    /// Hash of the commit content.
    pub commit_hash: String,
    /// Whether this call found the commit already made.
    pub replayed: bool,
}

/// An inline-tier step record.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Checkpoint {
    /// The session.
    pub session_id: SessionId,
    /// The turn.
    pub turn_id: String,
    /// Position of the step in the turn, from 0.
    pub seq: u64,
    /// The step name.
    pub step: String,
    /// The step record (input hash and output), as JSON.
    pub record: serde_json::Value,
}

/// A durable note written by the `notes` tool.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Note {
    /// Idempotency key (`{session}:{turn}:{tool_call_id}`).
    pub key: String,
    /// The note.
    pub text: String,
}

/// What a turn starts from: its lease, its claim, and the session head.
#[derive(Clone, Debug, PartialEq)]
pub struct TurnStart {
    /// The lease taken.
    pub lease: Lease,
    /// The work claimed (`None` when the target is not the next live input).
    pub claim: Option<Claim>,
    /// The head the turn reads history at.
    pub head: SessionHead,
    /// The entry enqueued (or found) when the start enqueued one.
    pub enqueued: Option<Enqueued>,
    /// When nothing was claimed: the earliest live input, which must run
    /// before the target (FIFO).
    pub next_live: Option<InboxEntry>,
}
