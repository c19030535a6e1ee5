//! One session's state in the memory store, and the reads it answers.

use crate::model::{SessionEvent, StoredEvent, Usage};
use crate::store::commit_plan::Stage;
use crate::store::rules::LeaseRow;
use crate::store::{
    Checkpoint, CommittedTurn, InboxEntry, InboxPage, InboxState, Note, SessionSettings,
    StoreError, StoreResult, StoredMessage, TurnRecord,
};
use std::collections::{BTreeMap, HashSet};

#[derive(Clone, Default)]
pub(super) struct SessionState {
    pub(super) version: u64,
    pub(super) settings: SessionSettings,
    pub(super) usage: Usage,
    pub(super) messages: Vec<StoredMessage>,
    pub(super) turns: Vec<TurnRecord>,
    pub(super) lease: Option<LeaseRow>,
    pub(super) inbox: Vec<InboxEntry>,
    pub(super) events: Vec<StoredEvent>,
    pub(super) event_ids: HashSet<String>,
    pub(super) checkpoints: Vec<Checkpoint>,
    pub(super) notes: Vec<Note>,
    pub(super) effects: BTreeMap<String, u64>,
    pub(super) waits: Vec<crate::model::Wait>,
}

impl SessionState {
    pub(super) fn append_events(&mut self, events: &[SessionEvent]) {
        for e in events {
            if self.event_ids.insert(e.id.clone()) {
                let cursor = self.events.len() as u64 + 1;
                self.events.push(StoredEvent {
                    cursor,
                    event: e.clone(),
                });
            }
        }
    }
}

impl SessionState {
    /// Writes one stage of a commit plan.
    pub(super) fn apply(&mut self, stage: &Stage<'_>) -> StoreResult<()> {
        match stage {
            Stage::Messages {
                version,
                turn_id,
                messages,
            } => self.messages.extend(messages.iter().map(|m| StoredMessage {
                version: *version,
                turn_id: turn_id.to_string(),
                message: m.clone(),
            })),
            Stage::Inbox { completed } => {
                for id in completed.iter() {
                    let entry = self.inbox.iter_mut().find(|e| e.id == *id).ok_or_else(|| {
                        StoreError::InvalidArgument(format!("unknown inbox entry '{id}'"))
                    })?;
                    entry.state = InboxState::Completed;
                }
            }
            Stage::Events { events } => self.append_events(events),
            Stage::Head {
                version,
                usage,
                settings,
            } => {
                self.version = *version;
                self.usage = *usage;
                if let Some(settings) = settings {
                    self.settings = (*settings).clone();
                }
            }
            Stage::ReleaseLease { fence } => {
                if let Some(row) = self.lease.as_mut().filter(|r| r.fence == *fence) {
                    row.owner = None;
                }
            }
            Stage::Receipt { req, version, hash } => self.turns.push(TurnRecord {
                turn_id: req.turn_id.clone(),
                version: *version,
                outcome: req.outcome.clone(),
                usage: req.usage,
                commit_hash: hash.to_string(),
                started_at_ms: req.started_at_ms,
                finished_at_ms: req.finished_at_ms,
            }),
        }
        Ok(())
    }

    /// A committed turn and its messages.
    pub(super) fn committed(&self, turn_id: &str) -> Option<CommittedTurn> {
        let t = self.turns.iter().find(|t| t.turn_id == turn_id)?;
        Some(CommittedTurn {
            record: t.clone(),
            messages: self
                .messages
                .iter()
                .filter(|m| m.version == t.version)
                .map(|m| m.message.clone())
                .collect(),
        })
    }

    /// The first `limit` live entries and their count.
    pub(super) fn page(&self, limit: usize) -> InboxPage {
        let live = self
            .inbox
            .iter()
            .filter(|e| e.state != InboxState::Completed);
        InboxPage {
            entries: live.clone().take(limit).cloned().collect(),
            total: live.count() as u64,
        }
    }
}
