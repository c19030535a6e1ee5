#![warn(missing_docs)]
//! ratchet: crash-resilient LLM agent turns.
//!
//! A turn claims its input, prepares the model context, runs an effect loop
//! of model and tool calls, finalizes and commits atomically. Each phase is a
//! journal step: in-process on SQLite (the inline tier) or a journaled
//! Restate step (the durable tier). See `docs/DESIGN.md`.
//!
//! The front door is [`Agent`]: name it, give it a store, a model and
//! tools, and bind it into a Restate endpoint.

mod agent;
pub mod clock;
pub mod engine;
mod error_code;
pub mod fault;
pub mod hash;
pub mod journal;
pub mod llm;
pub mod model;
pub mod plugins;
pub mod restate;
pub mod store;
pub mod tools;

pub use agent::{Agent, AgentError};
pub use error_code::ErrorCode;
/// The Restate SDK this build speaks, for binding agents beside a team's
/// own services.
pub use restate_sdk;
