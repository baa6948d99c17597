//! The state every handler and background task of a controller shares.

use std::sync::Arc;

use tokio::sync::watch;

use crate::audit::{AuditEvent, AuditedTx};
use crate::config::Config;
use crate::keys::Keyset;
use crate::link::registry::Registry;
use crate::store::{Store, StoreError};

/// The loaded policy, or none (then every session is denied).
pub(crate) type PolicySlot = watch::Receiver<Option<Arc<portcullis_policy::Policy>>>;

#[derive(Clone)]
pub struct AppState {
    pub controller_id: Arc<str>,
    pub config: Arc<Config>,
    /// `POST /v1/auth/dev-login` is served ([`crate::Options::dev_login`], `portcullis dev`
    /// only).
    pub dev_login: bool,
    pub store: Store,
    pub keys: Keyset,
    pub links: Registry,
    pub policy: PolicySlot,
    pub policy_tx: Arc<watch::Sender<Option<Arc<portcullis_policy::Policy>>>>,
    /// The OpenID provider's relying party, when `[auth.oidc]` is configured.
    pub oidc: Option<Arc<crate::oidc::Relying>>,
    /// Group commit for hot audited actions (authorize-session); see [`crate::audit::batch`].
    pub audit_writer: crate::audit::batch::Writer,
    /// Live workers for new sessions, re-read at most every 250 ms.
    pub live_workers: crate::sessions::live_workers::LiveWorkers,
    /// Vault, when `ssh.backend = "vault"`.
    pub vault: Option<crate::vault::Vault>,
    /// Failures of unauthenticated callers, summed per address until their window ends.
    pub denials: crate::audit::denials::Denials,
    /// authorize-session requests per user in the current minute (`[sessions.per_user]`).
    pub authorize_rate: Arc<crate::sessions::limits::AuthorizeRate>,
    /// Where time comes from (the keyset's clock too).
    pub clock: crate::clock::SharedClock,
}

impl AppState {
    /// The current policy, if one is loaded.
    pub fn policy(&self) -> Option<Arc<portcullis_policy::Policy>> {
        self.policy.borrow().clone()
    }

    /// Begins the transaction of a state change (see [`AuditedTx`]).
    pub(crate) async fn begin_audited(&self) -> Result<AuditedTx, StoreError> {
        AuditedTx::begin(&self.store, &self.keys).await
    }

    /// Records an event that changes nothing else (a refusal, a failed reload) in a
    /// transaction of its own.
    pub(crate) async fn audit_alone(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.begin_audited().await?.commit(event).await
    }
}
