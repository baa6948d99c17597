//! Why a session ended or a connection closed: one closed set of reasons, as the store keeps
//! them (`sessions.termination_reason`, `connections.close_reason`) and as the link carries
//! them ([`SessionEnd`](super::SessionEnd), a closed [`ConnectionEvent`](super::ConnectionEvent)).
//!
//! A reason's text (`as_str`, `Display`, `FromStr`) and its serde form are the same
//! snake_case string, by construction: both come from one table below. That text is stored
//! and sent, so a shipped reason's text never changes.
//!
//! An unknown reason is refused, never mapped to a catch-all: it does not parse, so a frame
//! carrying one does not decode, and the link treats it as it treats any malformed frame (it
//! closes the link: fail closed). Adding a reason is therefore a change of the link protocol:
//! it ships with a new `PROTOCOL_VERSION`, or once every peer knows it.

use serde::{Deserialize, Serialize};

macro_rules! reasons {
    ($($(#[doc = $doc:literal])+ $variant:ident = $text:literal,)+) => {
        /// Why a session ended or a connection closed.
        ///
        /// A connection that closes because its session ended closes with the session's
        /// reason; `closed`, `shutdown`, `controller_unreachable` and `target_unreachable`
        /// are the worker's own reasons for closing one connection.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EndReason {
            $($(#[doc = $doc])+ #[serde(rename = $text)] $variant,)+
        }

        impl EndReason {
            /// Every reason, in declaration order.
            pub const ALL: &'static [EndReason] = &[$(EndReason::$variant),+];

            /// The text stored and sent for this reason.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(EndReason::$variant => $text,)+
                }
            }
        }

        impl std::str::FromStr for EndReason {
            type Err = UnknownEndReason;

            fn from_str(text: &str) -> Result<EndReason, UnknownEndReason> {
                match text {
                    $($text => Ok(EndReason::$variant),)+
                    _ => Err(UnknownEndReason(text.to_owned())),
                }
            }
        }
    };
}

reasons! {
    /// The client or the target closed the connection.
    Closed = "closed",
    /// The session's lifetime ran out, or the grant a connection was admitted with expired.
    Expired = "expired",
    /// A user or an admin ended the session (`DELETE /v1/sessions/{id}`).
    Canceled = "canceled",
    /// The last connection the session's limit allows has closed.
    ConnectionLimit = "connection_limit",
    /// The session's worker stopped reporting to every controller.
    WorkerLost = "worker_lost",
    /// An admin deleted the session's worker.
    WorkerDeleted = "worker_deleted",
    /// A reloaded policy no longer allows the session.
    PolicyChanged = "policy_changed",
    /// The worker shut down and its drain timeout ran out.
    Shutdown = "shutdown",
    /// The user logged out the API token the session was authorised with.
    Logout = "logout",
    /// An admin revoked all of the user's tokens (`portcullis users revoke`).
    UserRevoked = "user_revoked",
    /// The worker heard no controller for its live grace and ended every connection.
    ControllerUnreachable = "controller_unreachable",
    /// The worker could not reach the target, so the connection never carried a byte.
    TargetUnreachable = "target_unreachable",
    /// Vault refused or failed to mint the session's credentials.
    CredentialMintFailed = "credential_mint_failed",
    /// Minting the session's credentials never finished (a controller died or hung meanwhile).
    CredentialMintAbandoned = "credential_mint_abandoned",
    /// No connection was open and the session's client gave no sign for
    /// `sessions.idle_timeout`.
    Idle = "idle",
    /// The store holds the session as ended but without a reason (what a worker is told then).
    Terminated = "terminated",
    /// The store has no such session (what a worker holding one is told).
    UnknownSession = "unknown_session",
}

impl std::fmt::Display for EndReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A text that names no [`EndReason`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not a session end reason this version knows (it knows {known}); if a newer \
     version wrote it, upgrade this one",
    known = known_reasons()
)]
pub struct UnknownEndReason(pub String);

fn known_reasons() -> String {
    EndReason::ALL
        .iter()
        .map(|r| r.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
