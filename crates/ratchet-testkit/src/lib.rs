//! Failure testing for ratchet: the process harness (a real restate-server,
//! a throwaway PostgreSQL, `ratchet serve` processes), the crash matrix, the
//! benchmark with its floor object, and the store conformance suite that
//! every `SessionStore` backend — ratchet's or a third party's — must pass.
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
