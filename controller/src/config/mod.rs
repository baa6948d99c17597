//! Controller configuration: a TOML file parsed into a raw struct that denies unknown keys,
//! then validated into [`Config`] before any port is bound.
//!
//! One module per section, named for what it holds (`store`, `api`, `cluster`, `sessions`,
//! `workers`, `ssh`, `auth`); the sections that belong to a subsystem live beside it
//! (`[api.connections]` in `api/limits`, `[audit]` in `audit/config`, `[auth.oidc]` in
//! `oidc/config`, `[vault]` in `vault/config`). Every section parses its values with
//! `values` and fails with [`ConfigError`] (`error`); neither of those depends on a section.

mod api;
mod auth;
mod cluster;
mod console;
pub(crate) mod error;
mod recordings;
mod sessions;
mod ssh;
mod store;
pub(crate) mod values;
mod workers;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use crate::vault::config::{VaultAuth, VaultConfig};
pub use api::CertificateFiles;
pub use console::ConsoleConfig;
pub use error::ConfigError;
pub use recordings::RecordingsConfig;
pub use sessions::PerUserLimits;
pub use ssh::SshBackend;
pub use store::MasterKeySource;

use crate::secret::SecretString;

/// A validated controller configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub store_url: SecretString,
    pub store_max_connections: u32,
    pub master_key: MasterKeySource,
    pub api_listen: SocketAddr,
    /// Names and addresses the API's TLS certificate is valid for.
    pub api_tls_names: Vec<String>,
    /// The admin's own certificate for the API; none: one from the internal CA for
    /// `api_tls_names`. The cluster link and the proxy always use the internal CA.
    pub api_certificate: Option<CertificateFiles>,
    pub api_max_body_bytes: usize,
    /// Timeouts and caps of the API's connections (`[api.connections]`).
    pub api_connections: crate::api::limits::ConnectionLimits,
    /// Load balancers whose PROXY protocol header is believed (`[api] trusted_proxies`);
    /// a connection from one must start with a header.
    pub api_trusted_proxies: portcullis_net::proxy_header::TrustedProxies,
    pub cluster_listen: SocketAddr,
    /// Timeouts and caps of cluster-link connections that have not authenticated yet.
    pub cluster_handshakes: crate::link::gate::HandshakeLimits,
    /// Workers this controller dials (outbound-only control plane), `HOST:PORT`.
    pub dial_workers: Vec<String>,
    pub policy_file: Option<PathBuf>,
    pub token_lifetime: Duration,
    pub session_default_max: Duration,
    pub session_pending_timeout: Duration,
    /// A pending or active session with no open connection and no sign of its client for
    /// this long ends with reason `idle` (`sessions::idle`).
    pub session_idle_timeout: Duration,
    /// Per-user limits on sessions (`[sessions.per_user]`).
    pub per_user: PerUserLimits,
    pub sweep_interval: Duration,
    pub heartbeat_interval: Duration,
    pub worker_lost_after: Duration,
    pub join_token_ttl: Duration,
    pub worker_cert_lifetime: Duration,
    pub login_rate_limit: u32,
    /// Join attempts per client address and minute (`workers.join_rate_limit_per_minute`),
    /// counted before any certificate is issued.
    pub join_rate_limit: u32,
    /// Login with the organisation's OpenID provider (`[auth.oidc]`); none: OIDC is off.
    pub oidc: Option<crate::oidc::config::OidcConfig>,
    /// Local users and service accounts (`[auth.local]`).
    pub(crate) local_auth: crate::local_auth::config::LocalAuthConfig,
    /// Lifetime of SSH certificates (sshd checks it only at login).
    pub ssh_certificate_ttl: Duration,
    /// The workers' egress addresses: SSH certificates are valid only from these.
    pub ssh_source_addresses: Vec<String>,
    /// Checkpoints and external sinks of the audit log (`[audit]`).
    pub audit: crate::audit::config::AuditConfig,
    /// Where SSH certificates (and other per-session credentials) come from.
    pub ssh_backend: SshBackend,
    /// Where recordings are stored and how long they are kept (`[recordings]`).
    pub recordings: RecordingsConfig,
    /// The web console's session timeouts (`[console]`).
    pub console: ConsoleConfig,
    /// The Proxmox clusters whose guests become targets (`[[catalog.proxmox]]`).
    pub catalog: Vec<crate::catalog::config::ProxmoxCluster>,
    /// The ops listener (`[ops]`): metrics, health and readiness over plain HTTP.
    pub ops: portcullis_net::ops::OpsListen,
    /// Just-in-time access requests (`[access]`).
    pub access: crate::access::config::AccessConfig,
}

/// Where the controller's ops listener listens when `[ops] listen` is absent.
pub(crate) const DEFAULT_OPS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9290);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: store::RawStore,
    #[serde(default)]
    keys: store::RawKeys,
    #[serde(default)]
    api: api::RawApi,
    #[serde(default)]
    cluster: cluster::RawCluster,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    auth: auth::RawAuth,
    #[serde(default)]
    sessions: sessions::RawSessions,
    #[serde(default)]
    workers: workers::RawWorkers,
    #[serde(default)]
    ssh: ssh::RawSsh,
    #[serde(default)]
    audit: crate::audit::config::RawAudit,
    #[serde(default)]
    recordings: recordings::RawRecordings,
    #[serde(default)]
    console: console::RawConsole,
    #[serde(default)]
    catalog: crate::catalog::config::RawCatalog,
    vault: Option<crate::vault::config::RawVault>,
    #[serde(default)]
    ops: RawOps,
    #[serde(default)]
    access: crate::access::config::RawAccess,
}

/// `[ops]`: the ops listener's address (`""` turns it off) or `enabled = false`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOps {
    listen: Option<String>,
    enabled: Option<bool>,
}

/// `[policy]`: the policy file, reloaded when it changes.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: Option<PathBuf>,
}

impl Config {
    /// Reads and validates a config file; `PORTCULLIS_DATABASE_URL` and
    /// `PORTCULLIS_MASTER_KEY` override the file.
    pub fn load(path: &std::path::Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, |k| std::env::var(k).ok())
    }

    /// Like [`Config::load`], with `env` looking up the overriding variables (the binary
    /// takes `PORTCULLIS_MASTER_KEY` out of the process environment at start).
    pub fn load_with_env(
        path: &std::path::Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Self::parse(&text, &path.display().to_string(), env)
    }

    /// Parses config text; `env` looks up overriding environment variables.
    pub fn parse(
        text: &str,
        origin: &str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: origin.to_owned(),
            message: e.to_string(),
        })?;
        raw.auth.refuse_removed(text, origin)?;
        Self::validate(raw, env)
    }

    /// Validates section by section; the first bad key is the error.
    fn validate(
        raw: RawConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let store = raw.store.validate(&env)?;
        let master_key = raw.keys.validate(&env)?;
        let api = raw.api.validate()?;
        let ssh = raw.ssh.validate(raw.vault.as_ref(), &env)?;
        let audit = raw.audit.validate()?;
        let auth = raw.auth.validate(&env)?;
        let cluster = raw.cluster.validate()?;
        let sessions = raw.sessions.validate()?;
        let workers = raw.workers.validate()?;
        let recordings = raw.recordings.validate(&env)?;
        let console = raw.console.validate()?;
        let catalog = raw.catalog.validate(raw.vault.is_some())?;
        let access = raw.access.validate()?;
        let ops = portcullis_net::ops::OpsListen::parse(
            raw.ops.listen.as_deref(),
            raw.ops.enabled,
            DEFAULT_OPS_LISTEN,
        )
        .map_err(|message| ConfigError::Invalid {
            key: "ops.listen",
            message,
        })?;
        Ok(Config {
            ops,
            store_url: store.url,
            store_max_connections: store.max_connections,
            master_key,
            api_listen: api.listen,
            api_tls_names: api.tls_names,
            api_certificate: api.certificate,
            api_max_body_bytes: api.max_body_bytes,
            api_connections: api.connections,
            api_trusted_proxies: api.trusted_proxies,
            cluster_listen: cluster.listen,
            cluster_handshakes: cluster.handshakes,
            dial_workers: cluster.dial_workers,
            policy_file: raw.policy.file,
            token_lifetime: api.token_lifetime,
            session_default_max: sessions.default_max,
            session_pending_timeout: sessions.pending_timeout,
            session_idle_timeout: sessions.idle_timeout,
            per_user: sessions.per_user,
            sweep_interval: sessions.sweep_interval,
            heartbeat_interval: workers.heartbeat_interval,
            worker_lost_after: workers.lost_after,
            join_token_ttl: workers.join_token_ttl,
            worker_cert_lifetime: workers.cert_lifetime,
            login_rate_limit: auth.login_rate_limit,
            join_rate_limit: workers.join_rate_limit,
            oidc: auth.oidc,
            local_auth: auth.local,
            ssh_certificate_ttl: ssh.certificate_ttl,
            ssh_source_addresses: ssh.source_addresses,
            audit,
            ssh_backend: ssh.backend,
            recordings,
            console,
            catalog,
            access,
        })
    }
}

#[cfg(test)]
mod tests;
