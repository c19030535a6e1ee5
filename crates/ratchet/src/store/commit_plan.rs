//! The final commit, planned once for every backend. A backend reads three
//! things inside its transaction ([`CommitReads`]: a receipt already stored
//! for the turn, the lease row, the head), [`decide`] makes every decision
//! (replayed, conflict, lease lost, version moved), and the backend applies
//! the plan's [`Stage`]s in order, each in its own SQL (or memory), passing
//! the fault point after each. Nothing about what a commit means is written
//! in a backend.

use super::rules::{self, LeaseRow};
use super::{CommitReceipt, CommitRequest, SessionSettings, StoreError, StoreResult};
use crate::model::{Message, SessionEvent, Usage};

/// What a backend read before writing, under its locks.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CommitReads {
    /// A commit already stored for this turn id: (version, hash).
    pub receipt: Option<(u64, String)>,
    /// The session's lease row.
    pub lease: Option<LeaseRow>,
    /// The session's head (version, total usage); `None`: no such session.
    pub head: Option<(u64, Usage)>,
}

/// What a commit does.
#[derive(Debug)]
pub enum Decision<'a> {
    /// The same turn committed the same content before: its receipt.
    Replayed(CommitReceipt),
    /// Write these stages.
    Apply(CommitPlan<'a>),
}

/// The writes of one commit.
#[derive(Debug)]
pub struct CommitPlan<'a> {
    req: &'a CommitRequest,
    hash: String,
    version: u64,
    usage: Usage,
}

/// One write of a commit, in the order a plan applies them.
#[derive(Debug)]
pub enum Stage<'a> {
    /// Append the turn's messages at `version`.
    Messages {
        /// The version the turn produces.
        version: u64,
        /// The turn.
        turn_id: &'a str,
        /// Its messages, in order.
        messages: &'a [Message],
    },
    /// Mark the claimed inbox entries completed; an unknown id is
    /// `InvalidArgument`.
    Inbox {
        /// The entry ids.
        completed: &'a [String],
    },
    /// Append the turn's events (ids already present are skipped).
    Events {
        /// The events.
        events: &'a [SessionEvent],
    },
    /// Move the head: version, total usage, and settings if commands
    /// changed them.
    Head {
        /// The new version.
        version: u64,
        /// The new total usage.
        usage: Usage,
        /// New settings, if any.
        settings: Option<&'a SessionSettings>,
    },
    /// Release the lease held under `fence` (skipped when an agent frame
    /// keeps it).
    ReleaseLease {
        /// The fence the turn holds.
        fence: u64,
    },
    /// Store the turn record, which is also the receipt a retried commit
    /// finds.
    Receipt {
        /// The request (outcome, usage, times).
        req: &'a CommitRequest,
        /// The version it produced.
        version: u64,
        /// The content hash.
        hash: &'a str,
    },
}

impl Stage<'_> {
    /// The fault point after this stage (`rules::COMMIT_STAGES`).
    pub fn fault_point(&self) -> &'static str {
        let i = match self {
            Stage::Messages { .. } => 0,
            Stage::Inbox { .. } => 1,
            Stage::Events { .. } => 2,
            Stage::Head { .. } => 3,
            Stage::ReleaseLease { .. } => 4,
            Stage::Receipt { .. } => 5,
        };
        rules::COMMIT_STAGES[i]
    }
}

/// Decides a commit from what the backend read.
pub fn decide<'a>(
    req: &'a CommitRequest,
    hash: String,
    reads: CommitReads,
) -> StoreResult<Decision<'a>> {
    if let Some((version, stored)) = reads.receipt {
        if stored != hash {
            return Err(StoreError::CommitConflict {
                turn_id: req.turn_id.clone(),
            });
        }
        return Ok(Decision::Replayed(CommitReceipt {
            turn_id: req.turn_id.clone(),
            version,
            commit_hash: hash,
            replayed: true,
        }));
    }
    let Some((head, mut usage)) = reads.head else {
        return Err(StoreError::UnknownSession(req.session_id.to_string()));
    };
    if !rules::lease_is_current(reads.lease.as_ref(), &req.lease) {
        return Err(rules::lease_lost(&req.lease));
    }
    if head != req.base_version {
        return Err(StoreError::VersionConflict {
            expected: req.base_version,
            actual: head,
        });
    }
    usage.add(&req.usage);
    Ok(Decision::Apply(CommitPlan {
        req,
        hash,
        version: head + 1,
        usage,
    }))
}

impl<'a> CommitPlan<'a> {
    /// The writes, in order.
    pub fn stages(&self) -> Vec<Stage<'_>> {
        let req = self.req;
        let mut stages = vec![
            Stage::Messages {
                version: self.version,
                turn_id: &req.turn_id,
                messages: &req.messages,
            },
            Stage::Inbox {
                completed: &req.completed_entries,
            },
            Stage::Events {
                events: &req.events,
            },
            Stage::Head {
                version: self.version,
                usage: self.usage,
                settings: req.settings.as_ref(),
            },
        ];
        if !req.keep_lease {
            stages.push(Stage::ReleaseLease {
                fence: req.lease.fence,
            });
        }
        stages.push(Stage::Receipt {
            req,
            version: self.version,
            hash: &self.hash,
        });
        stages
    }

    /// The receipt once every stage is written.
    pub fn receipt(&self) -> CommitReceipt {
        CommitReceipt {
            turn_id: self.req.turn_id.clone(),
            version: self.version,
            commit_hash: self.hash.clone(),
            replayed: false,
        }
    }
}
