//! Worker configuration: TOML parsed into a raw struct that denies unknown keys, then
//! validated into [`Config`] before any port is bound.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use portcullis_net::proxy_header::TrustedProxies;
use portcullis_proto::duration::DurationValue;
use serde::Deserialize;
use toml::Spanned;

use self::size::SizeValue;
use crate::accept::GateLimits;
use crate::SecretString;

mod size;

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
    /// Load balancers in front of the proxy port whose PROXY protocol header names the
    /// client; a connection from one must start with a header (`cluster_listen` reads none).
    pub trusted_proxies: TrustedProxies,
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
    /// Refusals the worker decides are summed per session and code over this window into
    /// one `connection_refused` audit event (`refusals`).
    pub refusal_window: Duration,
    /// How much of the gateway's session recordings the worker writes and keeps.
    pub recording: RecordingLimits,
    /// The ops listener (`[ops]`): metrics, health and readiness over plain HTTP.
    pub ops: portcullis_net::ops::OpsListen,
}

/// Where the worker's ops listener listens when `[ops] listen` is absent.
pub(crate) const DEFAULT_OPS_LISTEN: SocketAddr =
    SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9291);

/// The `[recording]` section: caps on what recordings take on the worker's disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordingLimits {
    /// The most canonical chunk bytes one recording (one gateway connection) may have;
    /// reaching it is a recording failure (`size_cap`).
    pub max_bytes: u64,
    /// The most chunk bytes waiting in the spool for the controller, all recordings
    /// together; beyond it a recording fails (`spool_full`).
    pub spool_max_bytes: u64,
}

impl Default for RecordingLimits {
    fn default() -> Self {
        RecordingLimits {
            max_bytes: 1 << 30,
            spool_max_bytes: 2 << 30,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("worker config: {0}")]
    Parse(String),
    #[error("worker config key `{key}`: {message}")]
    Invalid { key: &'static str, message: String },
    #[error("worker config line {line}, key `{key}`: {message}")]
    InvalidAt {
        line: usize,
        key: &'static str,
        message: String,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    worker: RawWorker,
    #[serde(default)]
    recording: RawRecording,
    #[serde(default)]
    ops: RawOps,
}

/// `[ops]`: the ops listener's address (`""` turns it off) or `enabled = false`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOps {
    listen: Option<String>,
    enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRecording {
    max_bytes: Option<Spanned<SizeValue>>,
    spool_max_bytes: Option<Spanned<SizeValue>>,
}

impl RawRecording {
    fn read(&self, text: &str) -> Result<RecordingLimits, ConfigError> {
        let defaults = RecordingLimits::default();
        let size = |value: &Option<Spanned<SizeValue>>, key: &'static str, default: u64| {
            let Some(value) = value else {
                return Ok(default);
            };
            let at = |message: String| ConfigError::InvalidAt {
                line: line_of(text, value.span().start),
                key,
                message,
            };
            match value.get_ref().bytes() {
                Ok(0) => Err(at("must be greater than zero".into())),
                Ok(n) => Ok(n),
                Err(e) => Err(at(e.to_string())),
            }
        };
        Ok(RecordingLimits {
            max_bytes: size(&self.max_bytes, "recording.max_bytes", defaults.max_bytes)?,
            spool_max_bytes: size(
                &self.spool_max_bytes,
                "recording.spool_max_bytes",
                defaults.spool_max_bytes,
            )?,
        })
    }
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
    #[serde(default)]
    trusted_proxies: Vec<String>,
    join_token_file: Option<PathBuf>,
    admit_grace: Option<Spanned<DurationValue>>,
    live_grace: Option<Spanned<DurationValue>>,
    drain_timeout: Option<Spanned<DurationValue>>,
    handshake_timeout: Option<Spanned<DurationValue>>,
    hello_timeout: Option<Spanned<DurationValue>>,
    refusal_window: Option<Spanned<DurationValue>>,
    // The older spelling of the durations above: a number of seconds only.
    admit_grace_secs: Option<Spanned<f64>>,
    live_grace_secs: Option<Spanned<f64>>,
    drain_timeout_secs: Option<Spanned<f64>>,
    handshake_timeout_secs: Option<Spanned<f64>>,
    hello_timeout_secs: Option<Spanned<f64>>,
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

/// A duration written as `key` (seconds or words, as in the controller's config) or, the
/// older spelling, `secs_key` (a number of seconds); at most one of the two.
struct DurationKey<'a> {
    key: &'static str,
    value: &'a Option<Spanned<DurationValue>>,
    secs_key: &'static str,
    secs: &'a Option<Spanned<f64>>,
}

impl DurationKey<'_> {
    /// The duration given, or `default`; never zero. Errors name the key and its line in `text`.
    fn read(&self, text: &str, default: Duration) -> Result<Duration, ConfigError> {
        let (key, value, span) = match (self.value, self.secs) {
            (None, None) => return Ok(default),
            (Some(v), None) => (self.key, v.get_ref().clone(), v.span()),
            (None, Some(s)) => (
                self.secs_key,
                DurationValue::Seconds(*s.get_ref()),
                s.span(),
            ),
            (Some(_), Some(s)) => {
                return Err(ConfigError::InvalidAt {
                    line: line_of(text, s.span().start),
                    key: self.secs_key,
                    message: format!("`{}` is set too; keep one of the two", self.key),
                })
            }
        };
        let at = |message: String| ConfigError::InvalidAt {
            line: line_of(text, span.start),
            key,
            message,
        };
        match value.to_duration() {
            Ok(d) if d.is_zero() => Err(at("must be greater than zero".into())),
            Ok(d) => Ok(d),
            Err(e) => Err(at(e.to_string())),
        }
    }
}

/// The line (from 1) of the byte at `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    let before = text.as_bytes().get(..offset).unwrap_or(text.as_bytes());
    before.iter().filter(|&&b| b == b'\n').count() + 1
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
            trusted_proxies: TrustedProxies::default(),
            join_token: None,
            admit_grace: Duration::from_secs(5),
            live_grace: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            hello_timeout: Duration::from_secs(5),
            refusal_window: Duration::from_secs(10),
            recording: RecordingLimits::default(),
            ops: portcullis_net::ops::OpsListen::Default(DEFAULT_OPS_LISTEN),
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
        let listen_text = w.proxy_listen.as_deref().unwrap_or("127.0.0.1:9202");
        let proxy_listen = listen_text.parse().map_err(|_| ConfigError::Invalid {
            key: "worker.proxy_listen",
            message: format!("{listen_text:?} is not IP:PORT"),
        })?;
        let egress_addr = match &w.egress_addr {
            Some(text) => Some(text.parse().map_err(|_| ConfigError::Invalid {
                key: "worker.egress_addr",
                message: format!("{text:?} is not an IP address"),
            })?),
            None => None,
        };
        let trusted_proxies =
            TrustedProxies::parse(&w.trusted_proxies).map_err(|e| ConfigError::Invalid {
                key: "worker.trusted_proxies",
                message: e.to_string(),
            })?;
        let join_token = match &w.join_token_file {
            Some(path) => Some(SecretString::from(
                read(path)
                    .map_err(|e| ConfigError::Invalid {
                        key: "worker.join_token_file",
                        message: format!("cannot read {}: {e}", path.display()),
                    })?
                    .trim()
                    .to_owned(),
            )),
            None => env("PORTCULLIS_JOIN_TOKEN").map(SecretString::from),
        };
        let mut config = Config::new(&w.name, w.state_dir.clone(), Vec::new(), proxy_listen);
        w.read_limits(text, &mut config)?;
        let recording = raw.recording.read(text)?;
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
            recording,
            ops,
            controllers: w.controllers,
            cluster_listen,
            proxy_public_addr: w.proxy_public_addr,
            egress_addr,
            trusted_proxies,
            join_token,
            ..config
        })
    }
}

impl RawWorker {
    /// Reads the timeouts and caps into `config`, whose values are the defaults.
    fn read_limits(&self, text: &str, config: &mut Config) -> Result<(), ConfigError> {
        config.admit_grace = DurationKey {
            key: "worker.admit_grace",
            value: &self.admit_grace,
            secs_key: "worker.admit_grace_secs",
            secs: &self.admit_grace_secs,
        }
        .read(text, config.admit_grace)?;
        config.live_grace = DurationKey {
            key: "worker.live_grace",
            value: &self.live_grace,
            secs_key: "worker.live_grace_secs",
            secs: &self.live_grace_secs,
        }
        .read(text, config.live_grace)?;
        config.drain_timeout = DurationKey {
            key: "worker.drain_timeout",
            value: &self.drain_timeout,
            secs_key: "worker.drain_timeout_secs",
            secs: &self.drain_timeout_secs,
        }
        .read(text, config.drain_timeout)?;
        config.handshake_timeout = DurationKey {
            key: "worker.handshake_timeout",
            value: &self.handshake_timeout,
            secs_key: "worker.handshake_timeout_secs",
            secs: &self.handshake_timeout_secs,
        }
        .read(text, config.handshake_timeout)?;
        config.hello_timeout = DurationKey {
            key: "worker.hello_timeout",
            value: &self.hello_timeout,
            secs_key: "worker.hello_timeout_secs",
            secs: &self.hello_timeout_secs,
        }
        .read(text, config.hello_timeout)?;
        config.refusal_window = DurationKey {
            key: "worker.refusal_window",
            value: &self.refusal_window,
            // A new key: it has no seconds-only spelling.
            secs_key: "worker.refusal_window",
            secs: &None,
        }
        .read(text, config.refusal_window)?;
        let defaults = config.handshake_limits;
        config.handshake_limits = GateLimits {
            total: count(self.max_handshakes, "worker.max_handshakes", defaults.total)?,
            per_source: count(
                self.max_handshakes_per_source,
                "worker.max_handshakes_per_source",
                defaults.per_source,
            )?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests;
