//! Controller configuration: a TOML file parsed into a raw struct that denies unknown keys,
//! then validated into [`Config`] before any port is bound.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

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
    pub api_max_body_bytes: usize,
    /// Timeouts and caps of the API's connections (`[api.connections]`).
    pub api_connections: crate::api::limits::ConnectionLimits,
    pub cluster_listen: SocketAddr,
    /// Timeouts and caps of cluster-link connections that have not authenticated yet.
    pub cluster_handshakes: crate::link::gate::HandshakeLimits,
    /// Workers this controller dials (outbound-only control plane), `HOST:PORT`.
    pub dial_workers: Vec<String>,
    pub policy_file: Option<PathBuf>,
    pub token_lifetime: Duration,
    pub session_default_max: Duration,
    pub session_pending_timeout: Duration,
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
    /// Lifetime of SSH certificates (sshd checks it only at login).
    pub ssh_certificate_ttl: Duration,
    /// The workers' egress addresses: SSH certificates are valid only from these.
    pub ssh_source_addresses: Vec<String>,
    /// Checkpoints and external sinks of the audit log (`[audit]`).
    pub audit: crate::audit::config::AuditConfig,
    /// Where SSH certificates (and other per-session credentials) come from.
    pub ssh_backend: SshBackend,
}

/// `[sessions.per_user]`: what one user may hold and ask for; 0 turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PerUserLimits {
    /// Live sessions (minting, pending or active, not expired) one user may hold at once.
    pub max_live: u32,
    /// authorize-session requests one user may make per minute, counted by each controller.
    pub authorize_per_minute: u32,
}

impl Default for PerUserLimits {
    fn default() -> Self {
        PerUserLimits {
            max_live: 100,
            authorize_per_minute: 120,
        }
    }
}

/// The source of SSH user certificates (`ssh.backend`).
#[derive(Debug, Clone, Default)]
pub enum SshBackend {
    /// The embedded CA of the keyset (`local-ca`, the default).
    #[default]
    LocalCa,
    /// HashiCorp Vault or OpenBao (`vault`, configured in `[vault]`).
    Vault(Box<VaultConfig>),
}

/// `[vault]`: how the controller reaches Vault and what it asks for.
#[derive(Debug, Clone)]
pub struct VaultConfig {
    /// `https://vault.example:8200` (plain `http://` only for loopback test servers).
    pub address: String,
    /// A PEM bundle of CAs to trust for Vault's TLS certificate, besides none other.
    pub ca_file: Option<PathBuf>,
    pub auth: VaultAuth,
    /// The SSH secrets engine mount and the role used unless a target names its own.
    pub ssh_mount: String,
    pub ssh_role: Option<String>,
    /// The token role per-session tokens are created through (`auth/token/create/ROLE`).
    pub token_role: String,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// The longest wait between two attempts of a pending revocation.
    pub revoke_retry_max: Duration,
    /// How long a mint may stay unfinished before any controller treats it as abandoned.
    pub mint_timeout: Duration,
    /// How often the job that retries revocations and recovers abandoned mints runs.
    pub job_interval: Duration,
}

/// How the controller logs in to Vault.
#[derive(Debug, Clone)]
pub enum VaultAuth {
    /// A token read from a file (0600) at start and whenever it must log in again.
    TokenFile(PathBuf),
    /// A token from an environment variable (`PORTCULLIS_VAULT_TOKEN` by default).
    TokenEnv(String),
    /// AppRole: a role id and a file holding the secret id.
    AppRole {
        mount: String,
        role_id: String,
        secret_id_file: PathBuf,
    },
}

/// Where the master key that seals the keyset comes from.
#[derive(Debug, Clone)]
pub enum MasterKeySource {
    File(PathBuf),
    /// Hex from `PORTCULLIS_MASTER_KEY`.
    Env(SecretString),
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("config file {path} line {line}: `{key}` is no longer a config key: {advice}")]
    Removed {
        path: String,
        line: usize,
        key: &'static str,
        advice: &'static str,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    #[serde(default)]
    store: RawStore,
    #[serde(default)]
    keys: RawKeys,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    cluster: RawCluster,
    #[serde(default)]
    policy: RawPolicy,
    #[serde(default)]
    auth: RawAuth,
    #[serde(default)]
    sessions: RawSessions,
    #[serde(default)]
    workers: RawWorkers,
    #[serde(default)]
    ssh: RawSsh,
    #[serde(default)]
    audit: crate::audit::config::RawAudit,
    vault: Option<RawVault>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSsh {
    certificate_ttl: Option<DurationValue>,
    source_addresses: Option<Vec<String>>,
    backend: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVault {
    address: Option<String>,
    ca_file: Option<PathBuf>,
    token_file: Option<PathBuf>,
    token_env: Option<String>,
    approle_mount: Option<String>,
    approle_role_id: Option<String>,
    approle_secret_id_file: Option<PathBuf>,
    ssh_mount: Option<String>,
    ssh_role: Option<String>,
    token_role: Option<String>,
    request_timeout: Option<DurationValue>,
    revoke_retry_max: Option<DurationValue>,
    mint_timeout: Option<DurationValue>,
    job_interval: Option<DurationValue>,
}

/// A Vault path segment (mount, role): letters, digits, `-`, `_`, `.`, and `/` inside mounts.
fn vault_segment(value: &str, key: &'static str, slash: bool) -> Result<String, ConfigError> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && !value.starts_with('/')
        && !value.ends_with('/')
        && !value.contains("..")
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b) || (slash && b == b'/'));
    if ok {
        Ok(value.to_owned())
    } else {
        Err(ConfigError::Invalid {
            key,
            message: format!(
                "{value:?} is not a Vault mount or role name (letters, digits, -, _, .)"
            ),
        })
    }
}

impl RawVault {
    fn validate(&self, env: &impl Fn(&str) -> Option<String>) -> Result<VaultConfig, ConfigError> {
        let address = self.address.clone().ok_or(ConfigError::Invalid {
            key: "vault.address",
            message: "missing: ssh.backend = \"vault\" needs the Vault address, e.g. https://vault.internal:8200".into(),
        })?;
        let loopback_http = address.strip_prefix("http://").is_some_and(|rest| {
            rest.starts_with("127.") || rest.starts_with("localhost") || rest.starts_with("[::1]")
        });
        if !(address.starts_with("https://") || loopback_http) {
            return Err(ConfigError::Invalid {
                key: "vault.address",
                message: format!(
                    "{address:?} must start with https:// (plain http:// only on loopback)"
                ),
            });
        }
        let approle = (&self.approle_role_id, &self.approle_secret_id_file);
        let auth = match (approle, &self.token_file) {
            ((Some(_), None), _) | ((None, Some(_)), _) => {
                return Err(ConfigError::Invalid {
                    key: "vault.approle_role_id",
                    message: "AppRole needs both approle_role_id and approle_secret_id_file".into(),
                })
            }
            ((Some(_), Some(_)), Some(_)) => {
                return Err(ConfigError::Invalid {
                    key: "vault.token_file",
                    message: "choose one way to log in: token_file or AppRole, not both".into(),
                })
            }
            ((Some(role_id), Some(file)), None) => VaultAuth::AppRole {
                mount: vault_segment(
                    self.approle_mount.as_deref().unwrap_or("approle"),
                    "vault.approle_mount",
                    true,
                )?,
                role_id: role_id.clone(),
                secret_id_file: file.clone(),
            },
            ((None, None), Some(file)) => VaultAuth::TokenFile(file.clone()),
            ((None, None), None) => {
                let name = self
                    .token_env
                    .clone()
                    .unwrap_or_else(|| "PORTCULLIS_VAULT_TOKEN".into());
                if env(&name).is_none() {
                    return Err(ConfigError::Invalid {
                        key: "vault.token_file",
                        message: format!(
                            "no way to log in to Vault: set token_file, approle_role_id with approle_secret_id_file, or the environment variable {name}"
                        ),
                    });
                }
                VaultAuth::TokenEnv(name)
            }
        };
        let ssh_role = self
            .ssh_role
            .as_deref()
            .map(|r| vault_segment(r, "vault.ssh_role", false))
            .transpose()?;
        let token_role = vault_segment(
            self.token_role.as_deref().ok_or(ConfigError::Invalid {
                key: "vault.token_role",
                message: "missing: the token role per-session tokens are created through, e.g. \"portcullis-session\"".into(),
            })?,
            "vault.token_role",
            false,
        )?;
        Ok(VaultConfig {
            address: address.trim_end_matches('/').to_owned(),
            ca_file: self.ca_file.clone(),
            auth,
            ssh_mount: vault_segment(
                self.ssh_mount.as_deref().unwrap_or("ssh"),
                "vault.ssh_mount",
                true,
            )?,
            ssh_role,
            token_role,
            request_timeout: positive(
                duration(
                    &self.request_timeout,
                    "vault.request_timeout",
                    Duration::from_secs(10),
                )?,
                "vault.request_timeout",
            )?,
            revoke_retry_max: positive(
                duration(
                    &self.revoke_retry_max,
                    "vault.revoke_retry_max",
                    Duration::from_secs(30),
                )?,
                "vault.revoke_retry_max",
            )?,
            mint_timeout: positive(
                duration(
                    &self.mint_timeout,
                    "vault.mint_timeout",
                    Duration::from_secs(60),
                )?,
                "vault.mint_timeout",
            )?,
            job_interval: positive(
                duration(
                    &self.job_interval,
                    "vault.job_interval",
                    Duration::from_secs(1),
                )?,
                "vault.job_interval",
            )?,
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStore {
    url: Option<String>,
    max_connections: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    master_key_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    listen: Option<String>,
    tls_names: Option<Vec<String>>,
    max_body_bytes: Option<usize>,
    token_lifetime: Option<DurationValue>,
    #[serde(default)]
    connections: crate::api::limits::RawConnectionLimits,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCluster {
    listen: Option<String>,
    dial_workers: Option<Vec<String>>,
    handshake_timeout: Option<DurationValue>,
    first_frame_timeout: Option<DurationValue>,
    max_handshakes: Option<usize>,
    max_handshakes_per_source: Option<usize>,
}

impl RawCluster {
    fn handshake_limits(&self) -> Result<crate::link::gate::HandshakeLimits, ConfigError> {
        let d = crate::link::gate::HandshakeLimits::default();
        let timeout = |value: &Option<DurationValue>, key: &'static str, default: Duration| {
            positive(duration(value, key, default)?, key)
        };
        let total = self.max_handshakes.unwrap_or(d.places.total);
        if total == 0 {
            return Err(ConfigError::Invalid {
                key: "cluster.max_handshakes",
                message: "must be at least 1".into(),
            });
        }
        let per_source = self
            .max_handshakes_per_source
            .unwrap_or(d.places.per_source);
        if !(1..=total).contains(&per_source) {
            return Err(ConfigError::Invalid {
                key: "cluster.max_handshakes_per_source",
                message: format!("must be between 1 and cluster.max_handshakes ({total})"),
            });
        }
        Ok(crate::link::gate::HandshakeLimits {
            handshake_timeout: timeout(
                &self.handshake_timeout,
                "cluster.handshake_timeout",
                d.handshake_timeout,
            )?,
            first_frame_timeout: timeout(
                &self.first_frame_timeout,
                "cluster.first_frame_timeout",
                d.first_frame_timeout,
            )?,
            places: portcullis_proto::handshakes::Limits { total, per_source },
        })
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuth {
    /// Removed: the development login exists only in `portcullis dev`. Read (whatever its
    /// value) only to refuse it with its line and what to do instead.
    dev_login: Option<toml::Spanned<serde::de::IgnoredAny>>,
    login_rate_limit_per_minute: Option<u32>,
    oidc: Option<crate::oidc::config::RawOidc>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSessions {
    default_max_duration: Option<DurationValue>,
    pending_timeout: Option<DurationValue>,
    sweep_interval: Option<DurationValue>,
    #[serde(default)]
    per_user: RawPerUser,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPerUser {
    max_live: Option<u32>,
    authorize_per_minute: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkers {
    heartbeat_interval: Option<DurationValue>,
    lost_after: Option<DurationValue>,
    join_token_ttl: Option<DurationValue>,
    cert_lifetime: Option<DurationValue>,
    join_rate_limit_per_minute: Option<u32>,
}

/// A duration written as seconds (`30`, `0.5`) or in words (`"8h"`, `"90s"`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum DurationValue {
    Seconds(f64),
    Text(String),
}

impl DurationValue {
    fn to_duration(&self, key: &'static str) -> Result<Duration, ConfigError> {
        match self {
            // `try_from`: a number too large for a Duration (1e300) is refused, not a panic.
            DurationValue::Seconds(s) if s.is_finite() && *s >= 0.0 => {
                Duration::try_from_secs_f64(*s).map_err(|_| ConfigError::Invalid {
                    key,
                    message: format!("{s} seconds is too long; write e.g. \"8h\" or \"30d\""),
                })
            }
            DurationValue::Seconds(s) => Err(ConfigError::Invalid {
                key,
                message: format!("{s} is not a non-negative number of seconds"),
            }),
            DurationValue::Text(t) => {
                humantime::parse_duration(t).map_err(|e| ConfigError::Invalid {
                    key,
                    message: format!(
                        "{t:?} is not a duration ({e}); write e.g. 30, 0.5, \"90s\" or \"8h\""
                    ),
                })
            }
        }
    }
}

pub(crate) fn duration(
    value: &Option<DurationValue>,
    key: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    value.as_ref().map_or(Ok(default), |v| v.to_duration(key))
}

pub(crate) fn positive(d: Duration, key: &'static str) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::Invalid {
            key,
            message: "must be greater than zero".into(),
        });
    }
    Ok(d)
}

fn socket(
    value: &Option<String>,
    key: &'static str,
    default: &str,
) -> Result<SocketAddr, ConfigError> {
    let text = value.as_deref().unwrap_or(default);
    text.parse().map_err(|_| ConfigError::Invalid {
        key,
        message: format!("{text:?} is not an IP:PORT address (e.g. 127.0.0.1:9200)"),
    })
}

/// A minimal CIDR check (`ADDR/LEN`) for `ssh.source_addresses`.
mod ipnet_like {
    pub struct Cidr;

    impl std::str::FromStr for Cidr {
        type Err = ();

        fn from_str(s: &str) -> Result<Self, ()> {
            let (addr, len) = s.split_once('/').ok_or(())?;
            let addr: std::net::IpAddr = addr.parse().map_err(|_| ())?;
            let len: u8 = len.parse().map_err(|_| ())?;
            let max = if addr.is_ipv4() { 32 } else { 128 };
            if len <= max {
                Ok(Cidr)
            } else {
                Err(())
            }
        }
    }
}

fn dial_workers(addrs: Vec<String>) -> Result<Vec<String>, ConfigError> {
    for addr in &addrs {
        let ok = addr.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !ok {
            return Err(ConfigError::Invalid {
                key: "cluster.dial_workers",
                message: format!("{addr:?} is not HOST:PORT"),
            });
        }
    }
    Ok(addrs)
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
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
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
        if let Some(removed) = &raw.auth.dev_login {
            return Err(ConfigError::Removed {
                path: origin.to_owned(),
                line: text[..removed.span().start].matches('\n').count() + 1,
                key: "auth.dev_login",
                advice: "the development login exists only in `portcullis dev`. Delete the \
                         line; for an admin token without OIDC login, run `portcullis controller \
                         issue-token --config FILE --user NAME --group GROUP` on the controller",
            });
        }
        Self::validate(raw, env)
    }

    fn validate(
        raw: RawConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let store_url = env("PORTCULLIS_DATABASE_URL")
            .or(raw.store.url)
            .ok_or(ConfigError::Invalid {
                key: "store.url",
                message: "missing: set it to sqlite:///path/portcullis.db or postgres://... (or PORTCULLIS_DATABASE_URL)".into(),
            })?;
        if !(store_url.starts_with("sqlite:")
            || store_url.starts_with("postgres://")
            || store_url.starts_with("postgresql://"))
        {
            return Err(ConfigError::Invalid {
                key: "store.url",
                message: "must start with sqlite: or postgres://".into(),
            });
        }
        let master_key = match (env("PORTCULLIS_MASTER_KEY"), raw.keys.master_key_file) {
            (Some(hex), _) => MasterKeySource::Env(SecretString::from(hex)),
            (None, Some(path)) => MasterKeySource::File(path),
            (None, None) => {
                return Err(ConfigError::Invalid {
                    key: "keys.master_key_file",
                    message: "missing: point it at a file holding 64 hex characters (or set PORTCULLIS_MASTER_KEY)".into(),
                })
            }
        };
        let tls_names = raw
            .api
            .tls_names
            .unwrap_or_else(|| vec!["localhost".into(), "127.0.0.1".into()]);
        if tls_names.is_empty() {
            return Err(ConfigError::Invalid {
                key: "api.tls_names",
                message: "needs at least one name".into(),
            });
        }
        let max_body = raw.api.max_body_bytes.unwrap_or(64 * 1024);
        if !(1024..=16 * 1024 * 1024).contains(&max_body) {
            return Err(ConfigError::Invalid {
                key: "api.max_body_bytes",
                message: "must be between 1024 and 16777216".into(),
            });
        }
        let max_connections = raw.store.max_connections.unwrap_or(10);
        if max_connections == 0 {
            return Err(ConfigError::Invalid {
                key: "store.max_connections",
                message: "must be at least 1".into(),
            });
        }
        let ssh_sources = raw.ssh.source_addresses.clone().unwrap_or_default();
        for addr in &ssh_sources {
            if addr.parse::<std::net::IpAddr>().is_err()
                && addr.parse::<ipnet_like::Cidr>().is_err()
            {
                return Err(ConfigError::Invalid {
                    key: "ssh.source_addresses",
                    message: format!("{addr:?} is not an IP address or CIDR"),
                });
            }
        }
        let ssh_backend = match raw.ssh.backend.as_deref().unwrap_or("local-ca") {
            "local-ca" => SshBackend::LocalCa,
            "vault" => SshBackend::Vault(Box::new(
                raw.vault
                    .as_ref()
                    .ok_or(ConfigError::Invalid {
                        key: "vault",
                        message: "ssh.backend = \"vault\" needs a [vault] section".into(),
                    })?
                    .validate(&env)?,
            )),
            other => {
                return Err(ConfigError::Invalid {
                    key: "ssh.backend",
                    message: format!("{other:?} is not a backend: use \"local-ca\" or \"vault\""),
                })
            }
        };
        let s = &raw.sessions;
        let w = &raw.workers;
        let audit = raw.audit.validate()?;
        let oidc = match raw.auth.oidc {
            Some(raw_oidc) => Some(raw_oidc.validate(&env)?),
            None => None,
        };
        Ok(Config {
            audit,
            ssh_backend,
            store_url: SecretString::from(store_url),
            store_max_connections: max_connections,
            master_key,
            api_listen: socket(&raw.api.listen, "api.listen", "127.0.0.1:9200")?,
            api_tls_names: tls_names,
            api_max_body_bytes: max_body,
            api_connections: raw.api.connections.validate()?,
            cluster_listen: socket(&raw.cluster.listen, "cluster.listen", "127.0.0.1:9201")?,
            cluster_handshakes: raw.cluster.handshake_limits()?,
            dial_workers: dial_workers(raw.cluster.dial_workers.clone().unwrap_or_default())?,
            policy_file: raw.policy.file,
            login_rate_limit: raw.auth.login_rate_limit_per_minute.unwrap_or(30),
            join_rate_limit: raw.workers.join_rate_limit_per_minute.unwrap_or(10),
            oidc,
            token_lifetime: positive(
                duration(
                    &raw.api.token_lifetime,
                    "api.token_lifetime",
                    Duration::from_secs(8 * 3600),
                )?,
                "api.token_lifetime",
            )?,
            session_default_max: positive(
                duration(
                    &s.default_max_duration,
                    "sessions.default_max_duration",
                    Duration::from_secs(8 * 3600),
                )?,
                "sessions.default_max_duration",
            )?,
            per_user: PerUserLimits {
                max_live: s
                    .per_user
                    .max_live
                    .unwrap_or(PerUserLimits::default().max_live),
                authorize_per_minute: s
                    .per_user
                    .authorize_per_minute
                    .unwrap_or(PerUserLimits::default().authorize_per_minute),
            },
            session_pending_timeout: positive(
                duration(
                    &s.pending_timeout,
                    "sessions.pending_timeout",
                    Duration::from_secs(300),
                )?,
                "sessions.pending_timeout",
            )?,
            sweep_interval: positive(
                duration(
                    &s.sweep_interval,
                    "sessions.sweep_interval",
                    Duration::from_secs(5),
                )?,
                "sessions.sweep_interval",
            )?,
            heartbeat_interval: positive(
                duration(
                    &w.heartbeat_interval,
                    "workers.heartbeat_interval",
                    Duration::from_secs(1),
                )?,
                "workers.heartbeat_interval",
            )?,
            worker_lost_after: positive(
                duration(&w.lost_after, "workers.lost_after", Duration::from_secs(30))?,
                "workers.lost_after",
            )?,
            join_token_ttl: positive(
                duration(
                    &w.join_token_ttl,
                    "workers.join_token_ttl",
                    Duration::from_secs(3600),
                )?,
                "workers.join_token_ttl",
            )?,
            ssh_certificate_ttl: positive(
                duration(
                    &raw.ssh.certificate_ttl,
                    "ssh.certificate_ttl",
                    Duration::from_secs(300),
                )?,
                "ssh.certificate_ttl",
            )?,
            ssh_source_addresses: ssh_sources,
            worker_cert_lifetime: positive(
                duration(
                    &w.cert_lifetime,
                    "workers.cert_lifetime",
                    Duration::from_secs(24 * 3600),
                )?,
                "workers.cert_lifetime",
            )?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ExposeSecret as _;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, "test.toml", |_| None)
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let c =
            parse("[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n").unwrap();
        assert_eq!(c.api_listen.port(), 9200);
        assert_eq!(c.token_lifetime, Duration::from_secs(8 * 3600));
        assert_eq!(c.per_user, PerUserLimits::default());
        let c = parse(
            "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n\
             [sessions.per_user]\nmax_live = 0\nauthorize_per_minute = 5\n",
        )
        .unwrap();
        assert_eq!(c.per_user.max_live, 0);
        assert_eq!(c.per_user.authorize_per_minute, 5);
    }

    #[test]
    fn dev_login_is_refused_with_its_line_and_what_to_do() {
        for value in ["true", "false"] {
            let err = parse(&format!(
                "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n[auth]\ndev_login = {value}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("test.toml line 6")
                    && err.contains("`auth.dev_login` is no longer a config key")
                    && err.contains("portcullis dev")
                    && err.contains("portcullis controller issue-token"),
                "{err}"
            );
        }
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let err = parse("[store]\nurl = \"sqlite://x.db\"\nmax_conections = 3\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("max_conections") && err.contains("line 3"),
            "{err}"
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
        let err = parse(&format!("{base}[api]\nlisten = \"localhost\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("api.listen"), "{err}");
        let err = parse(&format!("{base}[sessions]\nsweep_interval = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sessions.sweep_interval"), "{err}");
        let err = parse(&format!("{base}[sessions]\nsweep_interval = 0\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("greater than zero"), "{err}");
        let err = parse(&format!("{base}[sessions]\nsweep_interval = 1e300\n"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("sessions.sweep_interval") && err.contains("too long"),
            "{err}"
        );
        let c = parse(&format!("{base}[sessions]\nsweep_interval = 0.25\n")).unwrap();
        assert_eq!(c.sweep_interval, Duration::from_millis(250));
        let err = parse("[keys]\nmaster_key_file = \"m\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("store.url"), "{err}");
    }

    #[test]
    fn cluster_handshake_limits_have_defaults_and_name_bad_keys() {
        let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
        let c = parse(base).unwrap();
        assert_eq!(
            c.cluster_handshakes,
            crate::link::gate::HandshakeLimits::default()
        );
        let c = parse(&format!(
            "{base}[cluster]\nhandshake_timeout = \"3s\"\nfirst_frame_timeout = 0.5\n\
             max_handshakes = 8\nmax_handshakes_per_source = 2\n"
        ))
        .unwrap();
        let l = c.cluster_handshakes;
        assert_eq!(l.handshake_timeout, Duration::from_secs(3));
        assert_eq!(l.first_frame_timeout, Duration::from_millis(500));
        assert_eq!((l.places.total, l.places.per_source), (8, 2));
        for (lines, key) in [
            ("handshake_timeout = 0", "cluster.handshake_timeout"),
            (
                "first_frame_timeout = \"never\"",
                "cluster.first_frame_timeout",
            ),
            ("max_handshakes = 0", "cluster.max_handshakes"),
            (
                "max_handshakes = 4\nmax_handshakes_per_source = 5",
                "cluster.max_handshakes_per_source",
            ),
            (
                "max_handshakes_per_source = 0",
                "cluster.max_handshakes_per_source",
            ),
        ] {
            let err = parse(&format!("{base}[cluster]\n{lines}\n"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{lines}: {err}");
        }
    }

    #[test]
    fn env_overrides_store_and_master_key() {
        let c = Config::parse("", "t", |k| match k {
            "PORTCULLIS_DATABASE_URL" => Some("postgres://db/x".into()),
            "PORTCULLIS_MASTER_KEY" => Some("00".repeat(32)),
            _ => None,
        })
        .unwrap();
        assert!(c.store_url.expose_secret().starts_with("postgres://"));
        assert!(matches!(c.master_key, MasterKeySource::Env(_)));
    }

    #[test]
    fn vault_backend_is_validated() {
        let base = "[store]\nurl = \"sqlite://x.db\"\n[keys]\nmaster_key_file = \"m\"\n";
        let c = parse(base).unwrap();
        assert!(matches!(c.ssh_backend, SshBackend::LocalCa));
        let err = parse(&format!("{base}[ssh]\nbackend = \"vault\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[vault]"), "{err}");
        let err = parse(&format!("{base}[ssh]\nbackend = \"hsm\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("ssh.backend"), "{err}");
        let vault =
            "[vault]\naddress = \"https://v:8200\"\ntoken_role = \"ps\"\nssh_role = \"r\"\n";
        let err = parse(&format!("{base}[ssh]\nbackend = \"vault\"\n{vault}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("PORTCULLIS_VAULT_TOKEN"), "{err}");
        let c = parse(&format!(
            "{base}[ssh]\nbackend = \"vault\"\n{vault}approle_role_id = \"id\"\napprole_secret_id_file = \"s\"\n"
        ))
        .unwrap();
        let SshBackend::Vault(v) = c.ssh_backend else {
            panic!("not vault")
        };
        assert!(matches!(v.auth, VaultAuth::AppRole { ref mount, .. } if mount == "approle"));
        assert_eq!(v.ssh_mount, "ssh");
        let err = parse(&format!(
            "{base}[ssh]\nbackend = \"vault\"\n[vault]\naddress = \"http://vault.example\"\ntoken_role = \"ps\"\ntoken_file = \"t\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("https://"), "{err}");
        let err = parse(&format!(
            "{base}[ssh]\nbackend = \"vault\"\n{vault}token_file = \"t\"\nssh_mount = \"../sys\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("vault.ssh_mount"), "{err}");
    }
}
