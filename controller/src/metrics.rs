//! The controller's Prometheus metrics, served by the ops listener (`/metrics`, docs/deploy.md
//! "Monitoring"), and its readiness.
//!
//! Counters and histograms are atomics the code bumps where things happen (cheap on the hot
//! paths); gauges of state that lives elsewhere (sessions by state, linked workers, the audit
//! queue) are read when scraped, by [`Probe::metrics`]. Every label takes one of a few fixed
//! values: never a user, session, target or token id, so the series stay few however many
//! users there are.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::state::AppState;

/// Whether an authorize-session request was granted.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum Outcome {
    Allow,
    Deny,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Allow => "allow",
            Outcome::Deny => "deny",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// The kinds of per-session credential.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum CredentialKind {
    /// An SSH certificate (Vault's SSH engine or the controller's own CA).
    SshCert,
    /// Secrets leased from Vault for the session.
    Vault,
    /// A Proxmox VE API token made for the session.
    PveToken,
}

impl CredentialKind {
    const ALL: [CredentialKind; 3] = [
        CredentialKind::SshCert,
        CredentialKind::Vault,
        CredentialKind::PveToken,
    ];

    fn as_str(self) -> &'static str {
        match self {
            CredentialKind::SshCert => "ssh_cert",
            CredentialKind::Vault => "vault",
            CredentialKind::PveToken => "pve_token",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

/// How a user logged in.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum LoginMethod {
    Oidc,
    Local,
    ServiceAccount,
    /// The all-in-one `dev` mode's login.
    Dev,
}

/// Whether a login worked.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) enum LoginOutcome {
    Success,
    Failure,
}

impl LoginMethod {
    const ALL: [LoginMethod; 4] = [
        LoginMethod::Oidc,
        LoginMethod::Local,
        LoginMethod::ServiceAccount,
        LoginMethod::Dev,
    ];

    fn as_str(self) -> &'static str {
        match self {
            LoginMethod::Oidc => "oidc",
            LoginMethod::Local => "local",
            LoginMethod::ServiceAccount => "service_account",
            LoginMethod::Dev => "dev",
        }
    }
}

impl LoginOutcome {
    fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::Failure => "failure",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct LoginLabels {
    method: &'static str,
    outcome: &'static str,
}

/// A configured audit sink's name: as few as the config has.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SinkLabels {
    sink: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

/// The live states of a session (`sessions.state`), each reported even at zero; ended
/// sessions only grow, so they are counted by the events, not here.
pub(crate) const SESSION_STATES: [&str; 3] = ["minting", "pending", "active"];

/// The controller's metrics; one per process, shared through [`AppState`].
pub struct Metrics {
    registry: Registry,
    authorize_decisions: Family<OutcomeLabels, Counter>,
    authorize_seconds: Histogram,
    minted: Family<KindLabels, Counter>,
    revoked: Family<KindLabels, Counter>,
    credential_failures: Family<KindLabels, Counter>,
    logins: Family<LoginLabels, Counter>,
    store_errors: Counter,
    sessions: Family<StateLabels, Gauge>,
    linked_workers: Gauge,
    audit_queue: Gauge,
    audit_sink_lag: Family<SinkLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            authorize_decisions: Family::default(),
            // 1 ms to about 16 s.
            authorize_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            minted: Family::default(),
            revoked: Family::default(),
            credential_failures: Family::default(),
            logins: Family::default(),
            store_errors: Counter::default(),
            sessions: Family::default(),
            linked_workers: Gauge::default(),
            audit_queue: Gauge::default(),
            audit_sink_lag: Family::default(),
            registry: Registry::with_prefix("portcullis_controller"),
        };
        m.registry.register(
            "authorize_decisions",
            "Authorize-session requests decided, by outcome",
            m.authorize_decisions.clone(),
        );
        m.registry.register(
            "authorize_duration_seconds",
            "Time to decide an authorize-session request, minting included",
            m.authorize_seconds.clone(),
        );
        m.registry.register(
            "credentials_minted",
            "Per-session credentials minted, by kind",
            m.minted.clone(),
        );
        m.registry.register(
            "credentials_revoked",
            "Per-session credentials revoked, by kind",
            m.revoked.clone(),
        );
        m.registry.register(
            "credential_failures",
            "Per-session credential mints and revocation attempts that failed, by kind",
            m.credential_failures.clone(),
        );
        m.registry
            .register("logins", "Logins, by method and outcome", m.logins.clone());
        m.registry.register(
            "store_errors",
            "Store operations that failed (the database did not answer or refused)",
            m.store_errors.clone(),
        );
        m.registry.register(
            "sessions",
            "Live sessions in the store, by state",
            m.sessions.clone(),
        );
        m.registry.register(
            "linked_workers",
            "Workers with a live cluster link to this controller",
            m.linked_workers.clone(),
        );
        m.registry.register(
            "audit_queue_depth",
            "Audited actions waiting for the audit writer's next batch",
            m.audit_queue.clone(),
        );
        m.registry.register(
            "audit_sink_lag_events",
            "Audit events not yet shipped to each configured external sink",
            m.audit_sink_lag.clone(),
        );
        for state in SESSION_STATES {
            m.sessions.get_or_create(&StateLabels { state }).set(0);
        }
        for outcome in [Outcome::Allow, Outcome::Deny] {
            m.authorize_decisions
                .get_or_create(&OutcomeLabels {
                    outcome: outcome.as_str(),
                })
                .inc_by(0);
        }
        // Every bounded label set exists from the first scrape, at zero: a series that
        // appears only at its first increment hides that increment from `rate()` and from
        // an alert on it.
        for kind in CredentialKind::ALL {
            let labels = KindLabels {
                kind: kind.as_str(),
            };
            for family in [&m.minted, &m.revoked, &m.credential_failures] {
                family.get_or_create(&labels).inc_by(0);
            }
        }
        for method in LoginMethod::ALL {
            for outcome in [LoginOutcome::Success, LoginOutcome::Failure] {
                m.logins
                    .get_or_create(&LoginLabels {
                        method: method.as_str(),
                        outcome: outcome.as_str(),
                    })
                    .inc_by(0);
            }
        }
        m
    }

    /// An authorize-session request was decided after `took`.
    pub(crate) fn authorized(&self, outcome: Outcome, took: Duration) {
        self.authorize_decisions
            .get_or_create(&OutcomeLabels {
                outcome: outcome.as_str(),
            })
            .inc();
        self.authorize_seconds.observe(took.as_secs_f64());
    }

    pub(crate) fn minted(&self, kind: CredentialKind) {
        self.minted
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub(crate) fn revoked(&self, kind: CredentialKind) {
        self.revoked
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub(crate) fn credential_failed(&self, kind: CredentialKind) {
        self.credential_failures
            .get_or_create(&KindLabels {
                kind: kind.as_str(),
            })
            .inc();
    }

    pub(crate) fn login(&self, method: LoginMethod, outcome: LoginOutcome) {
        self.logins
            .get_or_create(&LoginLabels {
                method: method.as_str(),
                outcome: outcome.as_str(),
            })
            .inc();
    }

    pub(crate) fn store_error(&self) {
        self.store_errors.inc();
    }

    /// The Prometheus text exposition of every metric, with the gauges given.
    fn encode(&self, gauges: &Gauges) -> String {
        for state in SESSION_STATES {
            let count = gauges
                .sessions
                .iter()
                .find(|(s, _)| s == state)
                .map_or(0, |(_, n)| *n);
            self.sessions
                .get_or_create(&StateLabels { state })
                .set(count);
        }
        self.linked_workers.set(gauges.linked_workers);
        self.audit_queue.set(gauges.audit_queue);
        for (sink, lag) in &gauges.sink_lags {
            self.audit_sink_lag
                .get_or_create(&SinkLabels { sink: sink.clone() })
                .set(*lag);
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Gauges read at scrape time.
#[derive(Debug, Default)]
struct Gauges {
    sessions: Vec<(String, i64)>,
    linked_workers: i64,
    audit_queue: i64,
    /// Configured sinks only, with how many events each is behind.
    sink_lags: Vec<(String, i64)>,
}

/// Why the controller is not ready to serve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("the store does not answer: check the database and store.url")]
    Store,
    #[error("the keyset cannot be loaded: check the master key and the store")]
    Keys,
}

/// Ready when the store answers and the keyset loads (pure: the checks are done by the
/// caller).
pub(crate) fn readiness(store_answers: bool, keys_load: bool) -> Result<(), NotReady> {
    match (store_answers, keys_load) {
        (false, _) => Err(NotReady::Store),
        (true, false) => Err(NotReady::Keys),
        (true, true) => Ok(()),
    }
}

/// What the ops listener asks the controller: its metrics and its readiness.
#[derive(Clone)]
pub struct Probe {
    state: AppState,
}

/// How long a readiness or scrape check waits for the store.
const STORE_CHECK_TIMEOUT: Duration = Duration::from_secs(2);

impl Probe {
    pub(crate) fn new(state: AppState) -> Probe {
        Probe { state }
    }

    /// The Prometheus text exposition (OpenMetrics 1.0 text).
    pub async fn metrics(&self) -> String {
        let state = &self.state;
        let sessions = match tokio::time::timeout(
            STORE_CHECK_TIMEOUT,
            crate::store::sessions::count_live_by_state(&state.store),
        )
        .await
        {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                state.metrics.store_error();
                tracing::warn!(error = %e, "cannot count sessions for /metrics");
                Vec::new()
            }
            Err(_) => Vec::new(),
        };
        let sink_lags = if state.config.audit.sinks.is_empty() {
            Vec::new()
        } else {
            match tokio::time::timeout(
                STORE_CHECK_TIMEOUT,
                crate::store::audit::sink_lags(&state.store),
            )
            .await
            {
                Ok(Ok(rows)) => rows
                    .into_iter()
                    .filter(|(name, _)| state.config.audit.sinks.iter().any(|s| &s.name == name))
                    .collect(),
                Ok(Err(e)) => {
                    state.metrics.store_error();
                    tracing::warn!(error = %e, "cannot read the audit sinks' cursors for /metrics");
                    Vec::new()
                }
                Err(_) => Vec::new(),
            }
        };
        let gauges = Gauges {
            sink_lags,
            sessions,
            linked_workers: i64::try_from(state.links.len()).unwrap_or(i64::MAX),
            audit_queue: i64::try_from(state.audit_writer.queued()).unwrap_or(i64::MAX),
        };
        state.metrics.encode(&gauges)
    }

    /// Ready when the store answers and the keyset loads.
    pub async fn ready(&self) -> Result<(), NotReady> {
        let state = &self.state;
        let store = matches!(
            tokio::time::timeout(STORE_CHECK_TIMEOUT, state.store.ping()).await,
            Ok(Ok(()))
        );
        if !store {
            state.metrics.store_error();
        }
        let keys = store
            && matches!(
                tokio::time::timeout(
                    STORE_CHECK_TIMEOUT,
                    state.keys.active(crate::keys::Purpose::Grant)
                )
                .await,
                Ok(Ok(_))
            );
        readiness(store, keys)
    }
}

/// The handle [`AppState`] holds.
pub(crate) type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests;
