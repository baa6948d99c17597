//! The Portcullis controller: it authenticates users, authorises sessions against the zone
//! matrix policy, signs grants, keeps every piece of state in the store, and tells workers
//! when sessions end.
//!
//! Its public surface is small on purpose: [`Controller`] (start, run until shutdown),
//! [`Config`], [`open`] and the operations the `portcullis` command runs outside the API
//! ([`admin`]), with the types they name. Everything else is crate-private.
//!
//! Code map: `config` (validated configuration), `store` (SQLite/PostgreSQL, one module per
//! table), `keys` (sealed keyset and TLS CA), `api` (HTTPS JSON API, the only place that
//! speaks HTTP), `link` (the cluster link with workers), `sessions` (the authorize plan,
//! issuing and ending sessions), `recordings` (session recordings: ingest, seals, reads,
//! retention), `audit` (the audited transaction and the chain's store side), `catalog` (the
//! Proxmox host catalog: discovery, the pure plan, the sync loop, the inventory),
//! `authz` (identity and permissions from the pure policy crate). docs/architecture.md has
//! the data flow and the invariants.
#![forbid(unsafe_code)]

mod access;
pub mod admin;
mod api;
mod audit;
mod authz;
pub mod backup;
mod catalog;
mod clock;
pub mod config;
mod console;
mod enrolment;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
mod gateway;
mod ids;
mod init;
mod keys;
mod link;
mod local_auth;
mod local_users;
pub mod metrics;
mod notify;
mod oidc;
mod policy_file;
mod policy_preview;
mod recordings;
pub mod secret;
mod sessions;
mod ssh;
mod state;
mod step_up;
mod store;
mod target_labels;
mod tokens;
mod vault;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use clock::SharedClock;
pub use config::Config;
pub use keys::{KeyError, Keyset, MasterKey, Purpose};
pub use portcullis_proto::clock::{Clock, ManualClock, SystemClock};
use secret::ExposeSecret as _;
pub use state::AppState;
pub use store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Keys(#[from] keys::KeyError),
    #[error("policy: {0}")]
    Policy(String),
    #[error(transparent)]
    Oidc(#[from] oidc::OidcError),
    #[error(transparent)]
    Vault(#[from] vault::VaultError),
    #[error(transparent)]
    ApiCertificate(#[from] api::certificate::CertificateError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Opens the store (applying migrations) and the keyset: what both the daemon and the
/// offline admin commands need.
pub async fn open(config: &Config) -> Result<(Store, Keyset), ControllerError> {
    open_on(config, clock::system()).await
}

/// [`open`], the keyset on `clock`.
async fn open_on(
    config: &Config,
    clock: clock::SharedClock,
) -> Result<(Store, Keyset), ControllerError> {
    let store = Store::connect(&config.store_url, config.store_max_connections).await?;
    store.migrate().await?;
    let keys =
        Keyset::new(store.clone(), MasterKey::from_source(&config.master_key)?).with_clock(clock);
    keys.ensure().await?;
    Ok((store, keys))
}

/// What only a program embedding the controller chooses, never a config file.
#[derive(Debug, Clone)]
pub struct Options {
    /// Serve `POST /v1/auth/dev-login`, which hands a token to anyone who names a user and
    /// groups. Only `portcullis dev` turns it on.
    pub dev_login: bool,
    /// Where time comes from: the system's clock unless a test sets its own.
    pub clock: clock::SharedClock,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            dev_login: false,
            clock: clock::system(),
        }
    }
}

/// A controller with its listeners bound, ready to [`Controller::run`].
pub struct Controller {
    state: AppState,
    api: TcpListener,
    cluster: TcpListener,
    api_tls: Arc<rustls::ServerConfig>,
    /// The admin's own API certificate and its files, re-read when they change.
    api_certificate: Option<OwnCertificate>,
    link_tls: Arc<rustls::ServerConfig>,
    dial_tls: Arc<rustls::ClientConfig>,
    /// The link's and API's CA-issued certificates and the trusted CAs, kept in step with
    /// a TLS CA rotation.
    ca: Arc<keys::identities::CaIdentities>,
    vault_token_ttl: vault::TokenLife,
    /// SIGHUP, registered at start (before the readiness line), so that a reload signal
    /// never meets the default action, which would end the process.
    hangups: Option<tokio::signal::unix::Signal>,
}

impl Controller {
    /// Opens the store and keyset, loads the policy, and binds the API and cluster ports
    /// (port 0 picks a free one).
    pub async fn start(config: Config) -> Result<Controller, ControllerError> {
        Controller::start_with(config, Options::default()).await
    }

    /// Like [`Controller::start`], with options a config file cannot set.
    pub async fn start_with(
        config: Config,
        options: Options,
    ) -> Result<Controller, ControllerError> {
        // The OIDC client secret is read before anything is bound: a missing file stops the
        // start with its name.
        let oidc = match &config.oidc {
            Some(oidc) => Some(Arc::new(oidc::Relying::new(
                oidc.clone(),
                options.clock.clone(),
            )?)),
            None => None,
        };
        let (store, keys) = open_on(&config, options.clock.clone()).await?;
        let recordings = store::recordings::RecordingStore::open(
            &config.store_url,
            config.recordings.store_url.as_ref(),
            config.recordings.max_connections,
        )
        .await?;
        let (policy_tx, policy_rx) = tokio::sync::watch::channel(load_policy(&config)?);
        let ca = Arc::new(
            keys::identities::CaIdentities::start(
                keys.clone(),
                config
                    .api_certificate
                    .is_none()
                    .then(|| config.api_tls_names.clone()),
            )
            .await?,
        );
        let (api_tls, api_certificate) = api_tls_config(&ca, &config)?;
        let link_tls = link::tls_config(&ca)?;
        let dial_tls = link::dialer::client_config(&ca)?;
        let api = bind(config.api_listen, "API").await?;
        let cluster = bind(config.cluster_listen, "cluster link").await?;
        let (vault, vault_token_ttl) = match &config.ssh_backend {
            config::SshBackend::Vault(vault_config) => {
                let (vault, ttl) = vault::Vault::connect((**vault_config).clone()).await?;
                (Some(vault), ttl)
            }
            config::SshBackend::LocalCa => (None, vault::TokenLife::Unlimited),
        };
        // The store answered (it was opened and migrated): the count of lost workers starts now.
        let store_watch = Arc::new(sessions::lost::StoreWatch::new(clock::to_i64(
            options.clock.unix_secs(),
        )));
        let state = AppState {
            oidc,
            vault,
            controller_id: ids::new_id(ids::IdKind::Controller).into(),
            denials: audit::denials::Denials::new(
                config.audit.denial_window,
                options.clock.clone(),
            ),
            authorize_rate: Arc::new(sessions::limits::AuthorizeRate::new(
                config.per_user.authorize_per_minute,
            )),
            local_login: Arc::new(api::local_login::LocalLoginState::new(
                config.local_auth.backoff,
            )),
            config: Arc::new(config),
            dev_login: options.dev_login,
            clock: options.clock,
            audit_writer: audit::batch::Writer::spawn(store.clone(), keys.clone()),
            live_workers: sessions::live_workers::LiveWorkers::default(),
            store_watch,
            store,
            recordings,
            keys,
            links: link::registry::Registry::default(),
            policy: policy_rx,
            policy_tx: Arc::new(policy_tx),
            catalog_syncs: catalog::sync::Running::default(),
            metrics: Arc::new(metrics::Metrics::new()),
        };
        Ok(Controller {
            state,
            api,
            cluster,
            api_tls: Arc::new(api_tls),
            api_certificate,
            link_tls,
            dial_tls,
            ca,
            vault_token_ttl,
            hangups: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| tracing::warn!(error = %e, "SIGHUP cannot be caught; reload the policy through the API"))
                .ok(),
        })
    }

    pub fn api_addr(&self) -> std::io::Result<SocketAddr> {
        self.api.local_addr()
    }

    pub fn cluster_addr(&self) -> std::io::Result<SocketAddr> {
        self.cluster.local_addr()
    }

    /// The CA certificates (PEM) clients and workers trust: the bundle (see
    /// docs/operations.md, rotating the TLS CA).
    pub fn ca_pem(&self) -> String {
        self.ca.bundle().pem()
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// What the ops listener serves: metrics and readiness.
    pub fn probe(&self) -> metrics::Probe {
        metrics::Probe::new(self.state.clone())
    }

    /// Serves the API and the cluster link, and runs the sweeper, until `shutdown`.
    pub async fn run(self, shutdown: CancellationToken) {
        let state = self.state;
        let router = api::router(state.clone());
        let id = state.controller_id.clone();
        let api = tokio::spawn(
            api::serve(
                self.api,
                self.api_tls,
                router,
                state.config.api_connections.clone(),
                state.config.api_trusted_proxies.clone(),
                shutdown.clone(),
            )
            .instrument(tracing::info_span!("api", controller.id = %id)),
        );
        let link = tokio::spawn(
            link::serve(self.cluster, self.link_tls, state.clone(), shutdown.clone())
                .instrument(tracing::info_span!("cluster", controller.id = %id)),
        );
        let certificate_watch = self.api_certificate.map(|own| {
            tokio::spawn(
                api::certificate::watch(
                    api::certificate::Watcher::new(own.resolver, own.files),
                    shutdown.clone(),
                )
                .instrument(tracing::info_span!("api_certificate", controller.id = %id)),
            )
        });
        let ca_watch = tokio::spawn(
            keys::identities::watch(self.ca.clone(), shutdown.clone())
                .instrument(tracing::info_span!("tls_ca", controller.id = %id)),
        );
        let sweeper = tokio::spawn(
            sessions::sweeper::run(state.clone(), shutdown.clone())
                .instrument(tracing::info_span!("sweeper", controller.id = %id)),
        );
        let recordings = tokio::spawn(
            recordings::retention::run(state.clone(), shutdown.clone())
                .instrument(tracing::info_span!("recordings", controller.id = %id)),
        );
        let listener = (state.store.dialect() == store::Dialect::Postgres).then(|| {
            tokio::spawn(
                notify::listen(
                    state.clone(),
                    state.config.store_url.expose_secret().to_owned(),
                    shutdown.clone(),
                )
                .instrument(tracing::info_span!("notify", controller.id = %id)),
            )
        });
        let dialers = link::dialer::spawn_all(
            &state,
            &state.config.dial_workers,
            self.dial_tls,
            self.ca.trust.clone(),
            &shutdown,
        );
        let sinks = audit::sink::spawn_all(&state, &shutdown);
        // After the API: a sync that ends sessions or takes long never delays serving.
        let catalog_syncs: Vec<_> = state
            .config
            .catalog
            .iter()
            .map(|cluster| {
                tokio::spawn(
                    catalog::sync::run(state.clone(), cluster.clone(), shutdown.clone())
                        .instrument(tracing::info_span!("catalog", controller.id = %id, catalog.cluster = %cluster.name)),
                )
            })
            .collect();
        // Sessions' Proxmox API tokens: abandoned mints and deletions to retry.
        let pve_tokens = state
            .config
            .catalog
            .iter()
            .any(|c| c.sessions.is_some())
            .then(|| {
                tokio::spawn(
                    sessions::pve::job::run(state.clone(), shutdown.clone())
                        .instrument(tracing::info_span!("pve_tokens", controller.id = %id)),
                )
            });
        let reloads = self.hangups.map(|hangups| {
            tokio::spawn(
                policy_file::reload_on_hangup(state.clone(), hangups, shutdown.clone())
                    .instrument(tracing::info_span!("policy_reload", controller.id = %id)),
            )
        });
        let vault_tasks = state.vault.clone().map(|vault| {
            let renew = tokio::spawn(
                vault
                    .clone()
                    .keep_token_alive(self.vault_token_ttl, shutdown.clone())
                    .instrument(tracing::info_span!("vault_token", controller.id = %id)),
            );
            let job = tokio::spawn(
                sessions::credential_job::run(state.clone(), vault, shutdown.clone())
                    .instrument(tracing::info_span!("vault_credentials", controller.id = %id)),
            );
            (renew, job)
        });
        // The summaries of unauthenticated failures are written after the listeners stop,
        // so the last window is not lost.
        let denials_stop = CancellationToken::new();
        let denials = tokio::spawn(
            audit::denials::run(state.clone(), denials_stop.clone())
                .instrument(tracing::info_span!("denials", controller.id = %id)),
        );
        let _ = tokio::join!(api, link, sweeper, recordings, ca_watch);
        denials_stop.cancel();
        let _ = denials.await;
        for sink in sinks {
            let _ = sink.await;
        }
        for dialer in dialers {
            let _ = dialer.await;
        }
        if let Some(job) = pve_tokens {
            let _ = job.await;
        }
        for sync in catalog_syncs {
            let _ = sync.await;
        }
        if let Some(listener) = listener {
            let _ = listener.await;
        }
        if let Some(reloads) = reloads {
            let _ = reloads.await;
        }
        if let Some(watch) = certificate_watch {
            let _ = watch.await;
        }
        if let Some((renew, job)) = vault_tasks {
            let _ = renew.await;
            let _ = job.await;
        }
        state.recordings.close().await;
        state.store.close().await;
    }
}

/// The policy file, if one is configured; without one every session is denied.
fn load_policy(config: &Config) -> Result<Option<Arc<portcullis_policy::Policy>>, ControllerError> {
    match &config.policy_file {
        Some(path) => Ok(Some(Arc::new(
            policy_file::load(path).map_err(ControllerError::Policy)?,
        ))),
        None => {
            tracing::warn!("no policy file is configured: every session will be denied");
            Ok(None)
        }
    }
}

/// The admin's own API certificate: what handshakes are given, and the files it comes from.
struct OwnCertificate {
    resolver: Arc<api::certificate::ReloadingCertificate>,
    files: config::CertificateFiles,
}

/// The API's TLS, HTTP/1.1 only: the admin's own certificate when `[api]` names its files
/// (re-read when they change), else a server certificate for `api_tls_names` from the
/// controller CA.
fn api_tls_config(
    ca: &keys::identities::CaIdentities,
    config: &Config,
) -> Result<(rustls::ServerConfig, Option<OwnCertificate>), ControllerError> {
    let crypto = |e: portcullis_crypto::tls::TlsError| keys::KeyError::Crypto(e.to_string());
    if let Some(files) = &config.api_certificate {
        let resolver = Arc::new(api::certificate::ReloadingCertificate::new(
            api::certificate::load(files)?,
        ));
        let tls =
            portcullis_crypto::tls::https_server_config_resolved(resolver.clone(), b"http/1.1")
                .map_err(crypto)?;
        let own = OwnCertificate {
            resolver,
            files: files.clone(),
        };
        return Ok((tls, Some(own)));
    }
    let resolver = ca
        .api
        .clone()
        .ok_or(keys::KeyError::Missing("API certificate"))?;
    let api_tls = portcullis_crypto::tls::https_server_config_resolved(resolver, b"http/1.1")
        .map_err(crypto)?;
    Ok((api_tls, None))
}

async fn bind(addr: SocketAddr, what: &'static str) -> Result<TcpListener, ControllerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ControllerError::Bind { what, addr, source })
}
