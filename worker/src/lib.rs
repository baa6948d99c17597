//! The Portcullis worker: it enrols with a join token, keeps a cluster link to a controller,
//! and brokers TCP connections for clients that present a valid grant, dialling only the
//! vetted endpoint the grant names.
//!
//! Code map: [`config`], [`identity`] (key, certificate, saving), `enrol` (one enrolment
//! over any stream, whichever side dials), [`link`] (the link
//! client, dialling, the protocol peer and its driver), [`proxy`] (listener, handshake,
//! admission, relay; its TLS takes any client key whose holder proves it, the grant binds it),
//! [`gateway`] (the SSH gateway a session in gateway mode runs through instead of the relay),
//! [`table`] (sessions, keys, freshness, expiry), [`spool`] (connection events until
//! acknowledged), [`chunks`] (recording chunks until stored), [`refusals`] (the worker's refusals summed for the audit log), [`inbound`] (links controllers dial), [`accept`] (accept back-off and the
//! cap on connections still in their handshake), [`pve`] (the Proxmox API proxy a grant with `pve`
//! runs through instead of the relay: which request heads go upstream, rewritten with the
//! session's token, their record, the HTTP server, the credential and the HTTPS upstream).
#![forbid(unsafe_code)]

pub(crate) mod accept;
pub mod certs;
pub(crate) mod chunks;
pub mod config;
mod enrol;
#[cfg(any(test, fuzzing))]
#[doc(hidden)]
pub mod fuzzing;
pub(crate) mod gateway;
pub mod identity;
pub mod inbound;
pub mod link;
pub mod metrics;
pub mod proxy;
pub mod pve;
pub mod refusals;
pub mod spool;
pub mod table;

use std::net::SocketAddr;
use std::sync::Arc;

use portcullis_proto::clock::{Clock, SystemClock};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

pub use config::{Config, ConfigError};

/// Secrets (the join token): `secrecy`'s string, never printed, zeroised on drop.
pub use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("worker identity: {0}")]
    Identity(String),
    #[error("enrolment failed: {0}")]
    Enrol(String),
    #[error("this worker has not enrolled: give it a join token (worker.join_token_file or PORTCULLIS_JOIN_TOKEN)")]
    NotEnrolled,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("TLS set-up failed: {0}")]
    Tls(String),
}

/// What the worker's tasks share.
pub struct Shared {
    pub config: Config,
    /// Where time comes from (grant expiry, event times, graces, certificate renewal).
    pub clock: Arc<dyn Clock>,
    pub identity: identity::Identity,
    /// The current certificate (renewed at half-life), for the proxy listener and the link.
    pub certs: Arc<certs::Certificates>,
    pub proxy_addr: String,
    pub proxy_tls: Arc<rustls::ServerConfig>,
    pub table: table::Table,
    pub spool: spool::Spool,
    /// Recording chunks until the controller has stored them.
    pub(crate) chunks: chunks::ChunkSpool,
    /// Refusals summed per session and code until their window ends, then spooled.
    pub refusals: refusals::Refusals,
    pub link: link::LinkClient,
    /// The SSH gateway: its host key and the logins of gateway sessions.
    pub gateway: gateway::Gateway,
    /// The Proxmox API sessions served here: each one's credential, once fetched.
    pub(crate) pve: pve::credential::Sessions,
    /// Set when draining starts: no new connections.
    pub draining: CancellationToken,
    /// Set when the drain timeout ends: live connections close with reason `shutdown`.
    pub hard_stop: CancellationToken,
    /// Counters and histograms for the ops listener's `/metrics`.
    pub metrics: Arc<metrics::Metrics>,
}

#[cfg(test)]
impl Shared {
    /// A worker's shared state for unit tests: a self-signed identity, its spool in `dir`,
    /// no link until a test registers one.
    pub(crate) fn for_tests(dir: &std::path::Path) -> Arc<Shared> {
        Self::for_tests_with(dir, "")
    }

    /// [`Shared::for_tests`] with more config sections (`extra` is TOML after `[worker]`).
    pub(crate) fn for_tests_with(dir: &std::path::Path, extra: &str) -> Arc<Shared> {
        let text = format!(
            "[worker]\nname = \"w\"\nstate_dir = \"{}\"\ncontrollers = [\"c:9201\"]\n{extra}",
            dir.display()
        );
        let config = Config::parse(&text, |_| None, |_| Ok(String::new())).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["w".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let identity = identity::Identity {
            worker_id: "w_test".into(),
            key_pkcs8: Arc::new(key.serialize_der().into()),
            cert_pem: cert.pem(),
            ca_pem: cert.pem(),
            cert_issued_at: 0,
            cert_expires_at: 0,
        };
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let certs = Arc::new(certs::Certificates::new(&identity, dir.to_owned()).unwrap());
        Arc::new(Shared {
            table: table::Table::new(clock.clone()),
            clock,
            identity,
            proxy_tls: proxy_tls(certs.clone()).unwrap(),
            certs,
            proxy_addr: "127.0.0.1:0".into(),
            refusals: refusals::Refusals::new(config.refusal_window),
            spool: spool::Spool::open(dir.join("spool.jsonl")),
            chunks: chunks::ChunkSpool::open(
                dir.join("recordings"),
                config.recording.spool_max_bytes,
            ),
            link: link::LinkClient::default(),
            gateway: gateway::Gateway::new().unwrap(),
            pve: pve::credential::Sessions::default(),
            draining: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            metrics: Arc::new(metrics::Metrics::new()),
            config,
        })
    }
}

pub struct Worker {
    shared: Arc<Shared>,
    listener: TcpListener,
    /// Serves links that controllers dial in, when configured.
    inbound: Option<tokio::task::JoinHandle<Result<(), WorkerError>>>,
    link: tokio::task::JoinHandle<()>,
    link_stop: CancellationToken,
}

impl Worker {
    /// Enrols if needed and binds the proxy listener (port 0 picks one).
    pub async fn bind(config: Config) -> Result<Worker, WorkerError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let (listener, proxy_addr) = bind_proxy(&config).await?;
        let mut cluster_listener = bind_cluster(&config).await?;
        let identity = load_or_enrol(
            &config,
            cluster_listener.as_mut(),
            &proxy_addr,
            clock.as_ref(),
        )
        .await?;
        let certs = Arc::new(certs::Certificates::new(
            &identity,
            config.state_dir.clone(),
        )?);
        let proxy_tls = proxy_tls(certs.clone())?;
        let spool = spool::Spool::open(config.state_dir.join("spool.jsonl"));
        let refusals = refusals::Refusals::new(config.refusal_window);
        let chunks = chunks::ChunkSpool::open(
            config.state_dir.join("recordings"),
            config.recording.spool_max_bytes,
        );
        let shared = Arc::new(Shared {
            chunks,
            config,
            table: table::Table::new(clock.clone()),
            clock,
            identity,
            certs,
            proxy_addr,
            proxy_tls,
            refusals,
            spool,
            link: link::LinkClient::default(),
            gateway: gateway::Gateway::new()?,
            pve: pve::credential::Sessions::default(),
            draining: CancellationToken::new(),
            hard_stop: CancellationToken::new(),
            metrics: Arc::new(metrics::Metrics::new()),
        });
        // The link starts now, so that a caller can wait for it before announcing readiness.
        let link_stop = CancellationToken::new();
        let id = shared.identity.worker_id.clone();
        let link = tokio::spawn(
            link::run(shared.clone(), link_stop.clone())
                .instrument(tracing::info_span!("link", worker.id = %id)),
        );
        let inbound = cluster_listener.map(|listener| {
            tokio::spawn(
                inbound::serve(listener, shared.clone(), link_stop.clone())
                    .instrument(tracing::info_span!("inbound", worker.id = %id)),
            )
        });
        Ok(Worker {
            shared,
            listener,
            inbound,
            link,
            link_stop,
        })
    }

    /// Waits until a controller has answered (keys and reconcile received), up to `timeout`.
    /// Returns whether the worker is linked.
    pub async fn wait_linked(&self, timeout: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while tokio::time::Instant::now() < deadline {
            if self.shared.table.fresh(self.shared.config.admit_grace) {
                return true;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        false
    }

    pub fn proxy_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.proxy_listen)
    }

    /// What the ops listener serves: metrics and readiness.
    pub fn probe(&self) -> metrics::Probe {
        metrics::Probe::new(self.shared.clone())
    }

    pub fn worker_id(&self) -> &str {
        &self.shared.identity.worker_id
    }

    /// Runs until `shutdown`, then drains: no new connections, live ones kept up to the drain
    /// timeout, then ended with reason `shutdown`; spooled events are flushed if linked.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), WorkerError> {
        let shared = self.shared;
        let id = shared.identity.worker_id.clone();
        let (link, link_stop) = (self.link, self.link_stop);
        let inbound = self.inbound;
        let watchdog_stop = CancellationToken::new();
        let watchdog = {
            let (shared, stop) = (shared.clone(), watchdog_stop.clone());
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(std::time::Duration::from_millis(500));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tick.tick() => {}
                    }
                    if shared.table.isolate_if_stale(shared.config.live_grace) {
                        tracing::warn!(grace = ?shared.config.live_grace, "no controller for the live grace: ending live connections");
                    }
                }
            })
        };
        // One task spools the summed refusals as their windows end.
        let refused = {
            let (shared, stop) = (shared.clone(), watchdog_stop.clone());
            tokio::spawn(refusals::run(shared, stop))
        };
        // One task expires every session at its grant's expiry and forgets it.
        let expiry = {
            let (shared, stop) = (shared.clone(), watchdog_stop.clone());
            tokio::spawn(async move { shared.table.run_expiry(stop).await })
        };
        let tasks = tokio_util::task::TaskTracker::new();
        let accept_stop = CancellationToken::new();
        let accept = tokio::spawn(
            proxy::serve(
                self.listener,
                shared.clone(),
                accept_stop.clone(),
                tasks.clone(),
            )
            .instrument(tracing::info_span!("proxy", worker.id = %id)),
        );
        shutdown.cancelled().await;
        tracing::info!("draining: no new connections");
        shared.draining.cancel();
        accept_stop.cancel();
        let _ = accept.await;
        tasks.close();
        if tokio::time::timeout(shared.config.drain_timeout, tasks.wait())
            .await
            .is_err()
        {
            tracing::info!("drain timeout: ending live connections");
            shared.hard_stop.cancel();
            tasks.wait().await;
        }
        // The refusals of the windows still open, spooled now so the link can send them.
        shared.refusals.spool_all(&shared).await;
        // Let the link send the last events before it closes.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        while !shared.spool.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        link_stop.cancel();
        watchdog_stop.cancel();
        let _ = tokio::join!(link, watchdog, expiry, refused);
        if let Some(inbound) = inbound {
            let _ = inbound.await;
        }
        Ok(())
    }
}

/// Binds the proxy listener; the address clients are told to reach it at.
async fn bind_proxy(config: &Config) -> Result<(TcpListener, String), WorkerError> {
    let listener = TcpListener::bind(config.proxy_listen)
        .await
        .map_err(|source| WorkerError::Bind {
            addr: config.proxy_listen,
            source,
        })?;
    let bound = listener.local_addr().map_err(|source| WorkerError::Bind {
        addr: config.proxy_listen,
        source,
    })?;
    let proxy_addr = config
        .proxy_public_addr
        .clone()
        .unwrap_or_else(|| bound.to_string());
    Ok((listener, proxy_addr))
}

/// Binds the listener for links controllers dial, when configured.
async fn bind_cluster(config: &Config) -> Result<Option<accept::Listener>, WorkerError> {
    Ok(match config.cluster_listen {
        Some(addr) => Some(accept::Listener::new(
            TcpListener::bind(addr)
                .await
                .map_err(|source| WorkerError::Bind { addr, source })?,
            "cluster",
        )),
        None => None,
    })
}

/// The identity in the state directory, or a new one from enrolment: with the join token
/// over a link this worker dials, or, when it names no controller, over the first link a
/// controller dials in.
async fn load_or_enrol(
    config: &Config,
    cluster_listener: Option<&mut accept::Listener>,
    proxy_addr: &str,
    clock: &dyn Clock,
) -> Result<identity::Identity, WorkerError> {
    Ok(match identity::Identity::load(&config.state_dir)? {
        Some(identity) => identity,
        None if config.controllers.is_empty() => {
            let listener = cluster_listener.ok_or(WorkerError::NotEnrolled)?;
            inbound::enrol(listener, config, proxy_addr, clock).await?
        }
        None => {
            let token = config.join_token.as_ref().ok_or(WorkerError::NotEnrolled)?;
            identity::enrol(
                &config.state_dir,
                &config.controllers,
                token.expose_secret(),
                &config.name,
                proxy_addr,
                clock,
            )
            .await?
        }
    })
}

/// The proxy listener's TLS: 1.3 only, the current certificate, and the client-key verifier
/// (the grant names the key; admission compares them).
fn proxy_tls(certs: Arc<certs::Certificates>) -> Result<Arc<rustls::ServerConfig>, WorkerError> {
    let proxy_tls = portcullis_crypto::tls::server_config(
        Arc::new(portcullis_crypto::tls::verify::AnyKey),
        portcullis_crypto::tls::ServerCert::Resolver(certs),
        portcullis_proto::proxy::ALPN,
    )
    .map_err(|e| WorkerError::Tls(e.to_string()))?;
    Ok(Arc::new(proxy_tls))
}
