//! Worker configuration: TOML parsed into a raw struct that denies unknown keys, then
//! validated into [`Config`] before any port is bound.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::accept::GateLimits;
use crate::SecretString;

#[derive(Debug, Clone)]
pub struct Config {
    pub name: String,
    pub state_dir: PathBuf,
    /// Controller cluster addresses (`HOST:PORT`), tried in order.
    pub controllers: Vec<String>,
    pub proxy_listen: SocketAddr,
    /// Where controllers dial this worker (outbound-only control plane); with it,
    /// `controllers` may be empty.
    pub cluster_listen: Option<SocketAddr>,
    /// What clients dial; defaults to the bound proxy address.
    pub proxy_public_addr: Option<String>,
    /// Source IP for connections to targets.
    pub egress_addr: Option<IpAddr>,
    pub join_token: Option<SecretString>,
    /// New connections are admitted only while a controller was heard within this time.
    pub admit_grace: Duration,
    /// Live connections are kept this long without any controller, then ended with reason
    /// `controller_unreachable` (recorded when a link returns).
    pub live_grace: Duration,
    pub drain_timeout: Duration,
    /// A connection to the proxy port or `cluster_listen` must finish its TLS handshake
    /// within this time, or it is closed.
    pub handshake_timeout: Duration,
    /// A proxy client must send its hello within this time after the TLS handshake.
    pub hello_timeout: Duration,
    /// Connections not authenticated yet (in their TLS handshake or, on the proxy port,
    /// before their hello), per listener: in total and per source address. Beyond these,
    /// new connections are closed at once.
    pub handshake_limits: GateLimits,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("worker config: {0}")]
    Parse(String),
    #[error("worker config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    worker: RawWorker,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorker {
    name: String,
    state_dir: PathBuf,
    #[serde(default)]
    controllers: Vec<String>,
    cluster_listen: Option<String>,
    proxy_listen: Option<String>,
    proxy_public_addr: Option<String>,
    egress_addr: Option<String>,
    join_token_file: Option<PathBuf>,
    admit_grace_secs: Option<f64>,
    live_grace_secs: Option<f64>,
    drain_timeout_secs: Option<f64>,
    handshake_timeout_secs: Option<f64>,
    hello_timeout_secs: Option<f64>,
    max_handshakes: Option<usize>,
    max_handshakes_per_source: Option<usize>,
}

fn count(value: Option<usize>, key: &'static str, default: usize) -> Result<usize, ConfigError> {
    match value.unwrap_or(default) {
        0 => Err(ConfigError::Invalid {
            key,
            message: "must be at least 1".into(),
        }),
        n => Ok(n),
    }
}

fn secs(value: Option<f64>, key: &'static str, default: f64) -> Result<Duration, ConfigError> {
    let v = value.unwrap_or(default);
    if !v.is_finite() || v <= 0.0 {
        return Err(ConfigError::Invalid {
            key,
            message: format!("{v} must be a positive number of seconds"),
        });
    }
    // `try_from`: a number too large for a Duration (1e300) is refused, not a panic.
    Duration::try_from_secs_f64(v).map_err(|_| ConfigError::Invalid {
        key,
        message: format!("{v} seconds is too long"),
    })
}

impl Config {
    /// A config with defaults for everything but the essentials.
    pub fn new(
        name: &str,
        state_dir: PathBuf,
        controllers: Vec<String>,
        proxy_listen: SocketAddr,
    ) -> Config {
        Config {
            name: name.to_owned(),
            state_dir,
            controllers,
            proxy_listen,
            cluster_listen: None,
            proxy_public_addr: None,
            egress_addr: None,
            join_token: None,
            admit_grace: Duration::from_secs(5),
            live_grace: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            handshake_limits: GateLimits {
                total: 512,
                per_source: 64,
            },
        }
    }

    /// Parses a worker config; `PORTCULLIS_JOIN_TOKEN` supplies the join token when no file
    /// is named.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        Self::parse(
            text,
            |k| std::env::var(k).ok(),
            |path| std::fs::read_to_string(path),
        )
    }

    /// Parses config text without touching the process: `env` looks up environment
    /// variables and `read` reads the join token file.
    pub fn parse(
        text: &str,
        env: impl Fn(&str) -> Option<String>,
        read: impl Fn(&Path) -> std::io::Result<String>,
    ) -> Result<Config, ConfigError> {
        let raw: Raw = toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))?;
        let w = raw.worker;
        let cluster_listen = match &w.cluster_listen {
            Some(text) => Some(text.parse().map_err(|_| ConfigError::Invalid {
                key: "worker.cluster_listen",
                message: format!("{text:?} is not IP:PORT"),
            })?),
            None => None,
        };
        if w.controllers.is_empty() && cluster_listen.is_none() {
            return Err(ConfigError::Invalid {
                key: "worker.controllers",
                message: "name at least one controller HOST:PORT, or set worker.cluster_listen for controllers to dial in".into(),
            });
        }
        let listen_text = w.proxy_listen.unwrap_or_else(|| "127.0.0.1:9202".into());
        let proxy_listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: "worker.proxy_listen",
            message: format!("{listen_text:?} is not IP:PORT"),
        })?;
        let egress_addr = match w.egress_addr {
            Some(text) => Some(text.parse().map_err(|_| ConfigError::Invalid {
                key: "worker.egress_addr",
                message: format!("{text:?} is not an IP address"),
            })?),
            None => None,
        };
        let join_token = match w.join_token_file {
            Some(path) => Some(SecretString::from(
                read(&path)
                    .map_err(|e| ConfigError::Invalid {
                        key: "worker.join_token_file",
                        message: format!("cannot read {}: {e}", path.display()),
                    })?
                    .trim()
                    .to_owned(),
            )),
            None => env("PORTCULLIS_JOIN_TOKEN").map(SecretString::from),
        };
        Ok(Config {
            name: w.name,
            state_dir: w.state_dir,
            controllers: w.controllers,
            proxy_listen,
            cluster_listen,
            proxy_public_addr: w.proxy_public_addr,
            egress_addr,
            join_token,
            admit_grace: secs(w.admit_grace_secs, "worker.admit_grace_secs", 5.0)?,
            live_grace: secs(w.live_grace_secs, "worker.live_grace_secs", 60.0)?,
            drain_timeout: secs(w.drain_timeout_secs, "worker.drain_timeout_secs", 30.0)?,
            handshake_timeout: secs(
                w.handshake_timeout_secs,
                "worker.handshake_timeout_secs",
                10.0,
            )?,
            hello_timeout: secs(w.hello_timeout_secs, "worker.hello_timeout_secs", 5.0)?,
            handshake_limits: GateLimits {
                total: count(w.max_handshakes, "worker.max_handshakes", 512)?,
                per_source: count(
                    w.max_handshakes_per_source,
                    "worker.max_handshakes_per_source",
                    64,
                )?,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_config_parses_and_typos_are_named() {
        let text = include_str!("../../config/worker.toml");
        let c = Config::from_toml(text).unwrap();
        assert_eq!(c.admit_grace, Duration::from_secs(5));
        let err = Config::from_toml(&text.replace("drain_timeout_secs", "drain_timout_secs"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("drain_timout_secs"), "{err}");
        let err = Config::from_toml(&text.replace("127.0.0.1:9202", "nowhere"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.proxy_listen"), "{err}");
        assert_eq!(c.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.hello_timeout, Duration::from_secs(5));
        assert_eq!(c.handshake_limits.total, 512);
        let err = Config::from_toml(&text.replace("max_handshakes = 512", "max_handshakes = 0"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("worker.max_handshakes"), "{err}");
    }

    #[test]
    fn a_duration_too_long_for_the_clock_is_refused_by_name() {
        let text = include_str!("../../config/worker.toml");
        let err =
            Config::from_toml(&text.replace("live_grace_secs = 60", "live_grace_secs = 1e300"))
                .unwrap_err()
                .to_string();
        assert!(
            err.contains("worker.live_grace_secs") && err.contains("too long"),
            "{err}"
        );
    }
}
