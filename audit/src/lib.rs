//! The audit log without I/O: what an event is, how the chain seals it, and how a reader
//! proves that nobody edited, removed or cut off events (docs/audit.md).
//!
//! - [`event`]: the typed event, docs/audit.md's schema as a Rust type (its `details` in
//!   `details.rs`).
//! - [`chain`]: canonical JSON (RFC 8785 for schema 3), event hashes, Ed25519 signatures and
//!   checkpoints.
//! - [`verify`]: the sans-I/O verifier (`push` events in order, then `finish`).
//!
//! Invariants: no I/O and no clock here (times come in as arguments); the writer (the
//! controller) and every verifier (the CLI, the controller's own check) use these same
//! functions, so they cannot disagree; no event type has a field for a secret.

pub mod chain;
mod details;
pub mod event;
pub mod verify;

pub use chain::{ChainError, Signer};
pub use event::{Actor, AuditEvent, Decision, Event, Kind};
