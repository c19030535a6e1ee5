//! The durable tier on Restate: [`RestateJournal`] (every step a named
//! `ctx.run`) and the [`Session`] virtual object whose handlers run turns.
//! A platform team binds `Session` into its own endpoint, or runs
//! `ratchet serve`.

pub mod admin;
mod floor;
mod journal;
pub mod schemas;
mod session;

pub use floor::Floor;
pub use journal::RestateJournal;
pub use session::{CancelReply, Session, SessionClient, SessionView, SubmitReply, TurnBody};
