//! Store errors, each with a stable machine code and a retryable flag.

use crate::ErrorCode;

/// What can go wrong in a [`super::SessionStore`] call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The session was never created.
    #[error("unknown session '{0}'")]
    UnknownSession(String),
    /// An argument is empty or malformed.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A payload is over the configured maximum.
    #[error("{what} is {size} bytes, over the limit of {max}")]
    PayloadTooLarge {
        /// What was too large.
        what: String,
        /// Its size in bytes.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// Another owner holds the session's execution lease.
    #[error(
        "session '{session}' is busy: its execution lease is held by another owner for {expires_in_ms} ms more"
    )]
    SessionBusy {
        /// The session.
        session: String,
        /// Time until the holder's lease expires.
        expires_in_ms: u64,
    },
    /// The caller's lease was taken over or released.
    #[error("session execution lease lost on '{session}' (fence {fence})")]
    LeaseLost {
        /// The session.
        session: String,
        /// The fence the caller held.
        fence: u64,
    },
    /// A commit with this turn id but different content exists.
    #[error("turn '{turn_id}' was already committed with different content")]
    CommitConflict {
        /// The turn.
        turn_id: String,
    },
    /// The session moved past the turn's base version.
    #[error("session head is at version {actual}, the turn expected {expected}")]
    VersionConflict {
        /// The base version the turn claimed.
        expected: u64,
        /// The head found.
        actual: u64,
    },
    /// An input id already names an entry with other content.
    #[error("input '{id}' was already submitted with different content")]
    InputConflict {
        /// The input id.
        id: String,
    },
    /// Another input of the session already runs (or ran) as this turn.
    #[error("turn id '{turn_id}' is already taken in this session")]
    TurnIdTaken {
        /// The turn id.
        turn_id: String,
    },
    /// The database file is damaged or not a database.
    #[error("store is corrupt: {0}")]
    Corrupt(String),
    /// The database belongs to something else.
    #[error("not a ratchet database: {0}")]
    ForeignDatabase(String),
    /// The database was written by a newer ratchet.
    #[error(
        "database schema version {found} is newer than this build supports ({supported}); upgrade ratchet"
    )]
    SchemaTooNew {
        /// The file's schema version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// The store cannot be reached right now; try again.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A fault point armed by a test fired.
    #[error("{0}")]
    Injected(String),
    /// Anything else.
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    /// The stable machine code.
    pub fn code(&self) -> ErrorCode {
        match self {
            StoreError::UnknownSession(_) => ErrorCode::UnknownSession,
            StoreError::InvalidArgument(_) => ErrorCode::InvalidArgument,
            StoreError::PayloadTooLarge { .. } => ErrorCode::PayloadTooLarge,
            StoreError::SessionBusy { .. } => ErrorCode::SessionBusy,
            StoreError::LeaseLost { .. } => ErrorCode::SessionExecutionLeaseLost,
            StoreError::CommitConflict { .. } => ErrorCode::CommitConflict,
            StoreError::VersionConflict { .. } => ErrorCode::VersionConflict,
            StoreError::InputConflict { .. } => ErrorCode::InputConflict,
            StoreError::TurnIdTaken { .. } => ErrorCode::TurnIdConflict,
            StoreError::Corrupt(_) => ErrorCode::StoreCorrupt,
            StoreError::ForeignDatabase(_) => ErrorCode::ForeignDatabase,
            StoreError::SchemaTooNew { .. } => ErrorCode::SchemaTooNew,
            StoreError::Unavailable(_) => ErrorCode::StoreUnavailable,
            StoreError::Injected(_) => ErrorCode::InjectedFault,
            StoreError::Internal(_) => ErrorCode::StoreInternal,
        }
    }

    /// Whether trying again later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StoreError::SessionBusy { .. } | StoreError::Unavailable(_) | StoreError::Injected(_)
        )
    }
}

/// Result alias for store calls.
pub type StoreResult<T> = Result<T, StoreError>;
