//! The session lifecycle: `minting` while Vault credentials are minted, `pending` when authorised, `active` once its first connection is
//! admitted, `terminated` with a reason (closed, expired, canceled, connection_limit,
//! worker_lost, worker_deleted, policy_changed, logout). Every change is a conditional update
//! in the store plus its audit event in one transaction; workers are told afterwards.
//!
//! Authorising runs one way: `authorize` reads the facts, the pure `plan` decides, `issue`
//! signs and commits, `mint` asks Vault (`credentials`). Ending runs one way too:
//! `lifecycle::end_session` commits the end, then tells the worker (`crate::notify`) and
//! starts the revocations (`credentials`); neither calls back into `lifecycle`. The callers
//! of `end_session` (the API, the link, the `sweeper`, the `credential_job`) sit above it.

pub mod authorize;
pub mod credential_job;
pub mod credentials;
pub mod error;
pub(crate) mod issue;
#[cfg(test)]
mod layering_tests;
pub mod lifecycle;
pub(crate) mod limits;
pub mod live_workers;
pub(crate) mod mint;
pub(crate) mod plan;
pub mod sweeper;

/// A session's state, parsed from the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionState {
    /// Committed, with credentials being minted from Vault; not usable yet.
    Minting,
    Pending,
    Active,
    Terminated,
}

impl SessionState {
    pub fn parse(text: &str) -> Option<SessionState> {
        match text {
            "minting" => Some(SessionState::Minting),
            "pending" => Some(SessionState::Pending),
            "active" => Some(SessionState::Active),
            "terminated" => Some(SessionState::Terminated),
            _ => None,
        }
    }

    pub fn is_live(self) -> bool {
        self != SessionState::Terminated
    }
}
