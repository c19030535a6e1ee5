//! Pure data shared by every layer: ids, messages and their parts, turn
//! inputs, outcomes, session events and token usage. Nothing here does IO.

mod event;
mod ids;
mod input;
mod message;
mod outcome;
mod usage;
pub mod wait;

pub use event::{EventKind, SessionEvent, StoredEvent};
pub use ids::{IdError, SessionId, TurnId};
pub use input::{InputItem, SessionCommand, TurnInput};
pub use message::{Message, Part, Role};
pub use outcome::{StopReason, TurnFinish, TurnOutcome, TurnStop};
pub use usage::Usage;
pub use wait::{Decided, Decision, ToolCompletion, Verdict, Wait, WaitKind, WaitState};
