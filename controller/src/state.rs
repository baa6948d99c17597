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
    pub(crate) controller_id: Arc<str>,
    pub(crate) config: Arc<Config>,
    /// `POST /v1/auth/dev-login` is served ([`crate::Options::dev_login`], `portcullis dev`
    /// only).
    pub(crate) dev_login: bool,
    pub(crate) store: Store,
    /// Session recordings, apart from the hot path (`store::recordings`).
    pub(crate) recordings: crate::store::recordings::RecordingStore,
    pub(crate) keys: Keyset,
    pub(crate) links: Registry,
    pub(crate) policy: PolicySlot,
    pub(crate) policy_tx: Arc<watch::Sender<Option<Arc<portcullis_policy::Policy>>>>,
    /// The OpenID provider's relying party, when `[auth.oidc]` is configured.
    pub(crate) oidc: Option<Arc<crate::oidc::Relying>>,
    /// Group commit for hot audited actions (authorize-session); see [`crate::audit::batch`].
    pub(crate) audit_writer: crate::audit::batch::Writer,
    /// Live workers for new sessions, re-read at most every 250 ms.
    pub(crate) live_workers: crate::sessions::live_workers::LiveWorkers,
    /// Vault, when `ssh.backend = "vault"`.
    pub(crate) vault: Option<crate::vault::Vault>,
    /// Failures of unauthenticated callers, summed per address until their window ends.
    pub(crate) denials: crate::audit::denials::Denials,
    /// authorize-session requests per user in the current minute (`[sessions.per_user]`).
    pub(crate) authorize_rate: Arc<crate::sessions::limits::AuthorizeRate>,
    /// Since when the store has been reachable: no worker counts as lost before it has been
    /// for `workers.lost_after` ([`crate::sessions::lost`]).
    pub(crate) store_watch: Arc<crate::sessions::lost::StoreWatch>,
    /// Where time comes from (the keyset's clock too).
    pub(crate) clock: crate::clock::SharedClock,
    /// The Proxmox clusters this controller is syncing now (`catalog::sync`).
    pub(crate) catalog_syncs: crate::catalog::sync::Running,
    /// Local logins' back-off counts (`[auth.local.backoff]`) and dummy hash.
    pub(crate) local_login: Arc<crate::api::local_login::LocalLoginState>,
    /// Counters and histograms for the ops listener's `/metrics`.
    pub(crate) metrics: crate::metrics::SharedMetrics,
}

impl AppState {
    /// The store, for the offline operations the `portcullis` command runs beside a running
    /// controller (`portcullis dev`).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// This controller's id (as its readiness line and the cluster link name it).
    pub fn controller_id(&self) -> &str {
        &self.controller_id
    }

    /// The keyset (see [`AppState::store`]).
    pub fn keys(&self) -> &Keyset {
        &self.keys
    }

    /// The current policy, if one is loaded.
    pub fn policy(&self) -> Option<Arc<portcullis_policy::Policy>> {
        self.policy.borrow().clone()
    }

    /// Begins the transaction of a state change (see [`AuditedTx`]).
    pub(crate) async fn begin_audited(&self) -> Result<AuditedTx, StoreError> {
        AuditedTx::begin(&self.store, &self.keys)
            .await
            .inspect_err(|_| self.metrics.store_error())
    }

    /// Records an event that changes nothing else (a refusal, a failed reload) in a
    /// transaction of its own.
    pub(crate) async fn audit_alone(&self, event: AuditEvent) -> Result<(), StoreError> {
        self.begin_audited()
            .await?
            .commit(event)
            .await
            .inspect_err(|_| self.metrics.store_error())
    }
}
