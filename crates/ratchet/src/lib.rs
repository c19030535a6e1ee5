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
mod error_text;
pub mod fault;
pub mod hash;
pub mod journal;
pub mod live;
pub mod llm;
pub mod metrics;
pub mod model;
pub mod observe;
pub mod plugins;
pub mod restate;
pub mod secrets;
pub mod store;
pub mod tools;
pub mod trace;

pub use agent::{Agent, AgentError};

/// Serves `endpoint` on `addr` (TCP_NODELAY on every connection) until
/// SIGTERM or Ctrl-C, then shuts down gracefully: in-flight handlers get
/// 30 s to finish. For other shutdown signals or deadlines, use
/// [`restate::serve`].
pub async fn serve(
    endpoint: restate_sdk::endpoint::Endpoint,
    addr: impl tokio::net::ToSocketAddrs,
) -> std::io::Result<restate::ShutdownReport> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    Ok(restate::serve(
        endpoint,
        listener,
        restate::termination(),
        std::time::Duration::from_secs(30),
    )
    .await)
}
pub use error_code::ErrorCode;
/// The Restate SDK this build speaks, for binding agents beside a team's
/// own services.
pub use restate_sdk;
