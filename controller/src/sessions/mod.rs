//! The session lifecycle: `minting` while Vault credentials are minted, `pending` when authorised, `active` once its first connection is
//! admitted, `terminated` with a reason (closed, expired, canceled, connection_limit,
//! worker_lost, worker_deleted, policy_changed, logout). Every change is a conditional update
//! in the store plus its audit event in one transaction; workers are told afterwards.

pub mod authorize;
pub mod credentials;
pub mod lifecycle;
pub(crate) mod limits;
pub mod live_workers;
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
