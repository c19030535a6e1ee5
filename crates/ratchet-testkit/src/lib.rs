//! Failure testing for ratchet and for a team's own agents: the process
//! harness (a real restate-server, a throwaway PostgreSQL, service
//! processes), the crash matrix (ratchet's scenarios in [`chaos`], a team's
//! agent in [`matrix`]), replay of recordings against a team's agent
//! ([`replay`]), always-replay ([`always`]), the benchmark with its floor
//! object, and the store conformance suite that every `SessionStore`
//! backend — ratchet's or a third party's — must pass.
//!
//! Nothing here ships in the library a team embeds.

pub mod always;
pub mod bench;
pub mod chaos;
pub mod conformance;
mod floor;
pub mod harness;
pub mod matrix;
pub mod replay;

pub use floor::Floor;
