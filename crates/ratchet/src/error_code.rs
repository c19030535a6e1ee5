//! [`ErrorCode`]: every stable machine code ratchet answers with, in one
//! place, each knowing its HTTP status and whether trying again can help.
//! Codes cross the Restate journal as their string form and are read back
//! with [`std::str::FromStr`].

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::fmt;

macro_rules! codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $text:literal => $status:literal, $retry:literal;)*) => {
        /// A stable machine code of an error.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)*
        }

        impl ErrorCode {
            /// Every code, in declaration order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)*];

            /// The code as it appears in messages and replies.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $text,)*
                }
            }

            /// The HTTP status a handler answers with.
            pub fn http_status(self) -> u16 {
                match self {
                    $(ErrorCode::$variant => $status,)*
                }
            }

            /// What the code means (its documentation).
            pub fn description(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => concat!($($doc),*).trim_ascii_start(),)*
                }
            }

            /// Whether the same request may succeed if tried again later.
            pub fn is_retryable(self) -> bool {
                match self {
                    $(ErrorCode::$variant => $retry,)*
                }
            }
        }

        impl std::str::FromStr for ErrorCode {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(ErrorCode::$variant),)*
                    other => Err(format!("unknown error code '{other}'")),
                }
            }
        }
    };
}

codes! {
    /// The request is malformed.
    InvalidRequest = "invalid_request" => 400, false;
    /// A bearer token is required and was not given (or is wrong).
    Unauthorized = "unauthorized" => 401, false;
    /// An input refused at the door: its ids, content or commands.
    InvalidInput = "invalid_input" => 400, false;
    /// A store argument is empty or malformed.
    InvalidArgument = "invalid_argument" => 400, false;
    /// A payload is over its limit.
    PayloadTooLarge = "payload_too_large" => 413, false;
    /// An input id already names other content.
    InputConflict = "input_conflict" => 409, false;
    /// A turn id another input or turn already has.
    TurnIdConflict = "turn_id_conflict" => 409, false;
    /// The input is not in the inbox.
    InputNotPending = "input_not_pending" => 400, false;
    /// The input committed before (answered with its result, internally).
    InputAlreadyCommitted = "input_already_committed" => 200, false;
    /// An earlier input must run first (handled internally).
    InputNotNext = "input_not_next" => 409, true;
    /// The session was never created.
    UnknownSession = "unknown_session" => 404, false;
    /// The durable tier was given an ephemeral store.
    DurableStoreRequired = "durable_store_required" => 400, false;
    /// Another owner holds the session's lease for now.
    SessionBusy = "session_busy" => 503, true;
    /// The turn's lease was taken over.
    SessionExecutionLeaseLost = "session_execution_lease_lost" => 409, false;
    /// A turn id committed with other content.
    CommitConflict = "commit_conflict" => 409, false;
    /// The session moved past the turn's base version.
    VersionConflict = "version_conflict" => 409, false;
    /// A replayed step differs from its record.
    JournalMismatch = "journal_mismatch" => 500, false;
    /// A recorded step does not decode.
    JournalDecode = "journal_decode" => 500, false;
    /// A step's output does not encode.
    JournalEncode = "journal_encode" => 500, false;
    /// A step failed in a way worth retrying.
    StepRetryable = "step_retryable" => 503, true;
    /// A step's record is over the cap.
    StepRecordTooLarge = "step_record_too_large" => 500, false;
    /// The invocation was cancelled.
    Cancelled = "cancelled" => 409, false;
    /// The inline turn waits for a decision: it is parked, its steps kept,
    /// and `ratchet resume` continues it once the decision is in.
    TurnParked = "turn_parked" => 202, false;
    /// No tool call of the session waits for (or had) a decision.
    UnknownWait = "unknown_wait" => 404, false;
    /// The call was decided otherwise already, or its approval expired.
    WaitSettled = "wait_settled" => 409, false;
    /// The store is damaged.
    StoreCorrupt = "store_corrupt" => 500, false;
    /// The database belongs to something else.
    ForeignDatabase = "foreign_database" => 500, false;
    /// The database was written by a newer ratchet.
    SchemaTooNew = "schema_too_new" => 500, false;
    /// The store cannot be reached right now.
    StoreUnavailable = "store_unavailable" => 503, true;
    /// A test's fault point fired.
    InjectedFault = "injected_fault" => 503, true;
    /// Any other store failure.
    StoreInternal = "store_internal" => 500, false;
    /// The Restate admin API could not be reached.
    RestateAdminUnreachable = "restate_admin_unreachable" => 503, true;
    /// The Restate admin API refused.
    RestateAdminError = "restate_admin_error" => 502, true;
    /// Anything else that failed for good while running.
    RuntimeError = "runtime_error" => 500, false;
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<str> for ErrorCode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_reads_back_and_serializes_as_its_text() {
        for code in ErrorCode::ALL {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(*code));
            assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
        }
        assert!("no_such_code".parse::<ErrorCode>().is_err());
        assert_eq!(ErrorCode::InputConflict.http_status(), 409);
        assert!(ErrorCode::StoreUnavailable.is_retryable());
    }
}
