//! The durable tier on Restate: [`RestateJournal`] (every step a named
//! `ctx.run`) and the [`Session`] virtual object whose handlers run turns.
//! A platform team binds `Session` into its own endpoint, or runs
//! `ratchet serve`.

pub mod admin;
mod approve;
mod journal;
mod named;
mod options;
mod reads;
pub mod schemas;
mod serve;
mod session;
mod traced;
mod wire;

pub use crate::engine::SessionView;
pub use journal::RestateJournal;
pub use options::{DurableOptions, OnMaxAttempts};
pub use serve::{ShutdownReport, serve, termination};
pub use session::{
    ApproveBody, ApproveReply, CancelReply, CompleteToolBody, CompleteToolReply, ConfigureBody,
    ConfigureReply, DEFAULT_OBJECT_NAME, Session, SubmitReply, TurnBody, check_object_name,
    store_session_id,
};
pub use wire::{Empty, NoInput, Reply, Request};
