//! The `[api.connections]` section of the controller config: how long a client of the HTTPS
//! API may hold a connection without using it, and how many connections it may hold.
//!
//! ```toml
//! [api.connections]
//! handshake_timeout = "10s"     # TCP accept to finished TLS handshake
//! header_timeout = "10s"        # a request's head, in full
//! idle_timeout = "60s"          # no request in flight (HTTP/1 keep-alive, HTTP/2, none yet)
//! body_timeout = "30s"          # a request's whole body, from its head
//! max = 1000                    # connections at once, all clients
//! max_per_address = 32          # connections at once from one client address
//! ```
//!
//! Keep `max` under the process's descriptor limit (`ulimit -n`) less what the store pool,
//! the cluster link and the workers' links need: the listener refuses nothing by itself
//! before the kernel does.

use std::time::Duration;

use serde::Deserialize;

use crate::config::error::ConfigError;
use crate::config::values::{duration, positive, DurationValue};

/// The validated `[api.connections]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// From the TCP accept to the end of the TLS handshake.
    pub handshake_timeout: Duration,
    /// A request's head must be complete within this long (HTTP/1; hyper starts the timer when
    /// it begins to wait for the head).
    pub header_timeout: Duration,
    /// A connection with no request in flight (before its first request, between keep-alive
    /// requests, an HTTP/2 connection without streams) is closed after this long.
    pub idle_timeout: Duration,
    /// A request's body must have arrived in full this long after its head.
    pub body_timeout: Duration,
    /// Connections open at once, all clients together.
    pub max: usize,
    /// Connections open at once from one client address.
    pub max_per_address: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            handshake_timeout: Duration::from_secs(10),
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(30),
            max: 1000,
            max_per_address: 32,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConnectionLimits {
    handshake_timeout: Option<DurationValue>,
    header_timeout: Option<DurationValue>,
    idle_timeout: Option<DurationValue>,
    body_timeout: Option<DurationValue>,
    max: Option<usize>,
    max_per_address: Option<usize>,
}

impl RawConnectionLimits {
    pub(crate) fn validate(&self) -> Result<ConnectionLimits, ConfigError> {
        let d = ConnectionLimits::default();
        let timeout = |value: &Option<DurationValue>, key: &'static str, default: Duration| {
            positive(duration(value, key, default)?, key)
        };
        let limits = ConnectionLimits {
            handshake_timeout: timeout(
                &self.handshake_timeout,
                "api.connections.handshake_timeout",
                d.handshake_timeout,
            )?,
            header_timeout: timeout(
                &self.header_timeout,
                "api.connections.header_timeout",
                d.header_timeout,
            )?,
            idle_timeout: timeout(
                &self.idle_timeout,
                "api.connections.idle_timeout",
                d.idle_timeout,
            )?,
            body_timeout: timeout(
                &self.body_timeout,
                "api.connections.body_timeout",
                d.body_timeout,
            )?,
            max: self.max.unwrap_or(d.max),
            max_per_address: self.max_per_address.unwrap_or(d.max_per_address),
        };
        if limits.max == 0 {
            return Err(ConfigError::Invalid {
                key: "api.connections.max",
                message: "must be at least 1".into(),
            });
        }
        if !(1..=limits.max).contains(&limits.max_per_address) {
            return Err(ConfigError::Invalid {
                key: "api.connections.max_per_address",
                message: format!("must be between 1 and api.connections.max ({})", limits.max),
            });
        }
        Ok(limits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ConnectionLimits, ConfigError> {
        toml::from_str::<RawConnectionLimits>(text)
            .map_err(|e| ConfigError::Parse {
                path: "test".into(),
                message: e.to_string(),
            })?
            .validate()
    }

    #[test]
    fn defaults_apply_when_the_section_is_empty() {
        assert_eq!(parse("").unwrap(), ConnectionLimits::default());
    }

    #[test]
    fn values_are_read_in_seconds_or_words() {
        let l = parse("idle_timeout = \"2s\"\nbody_timeout = 0.5\nmax = 10\nmax_per_address = 3")
            .unwrap();
        assert_eq!(l.idle_timeout, Duration::from_secs(2));
        assert_eq!(l.body_timeout, Duration::from_millis(500));
        assert_eq!((l.max, l.max_per_address), (10, 3));
    }

    #[test]
    fn nonsense_is_refused_by_key() {
        for (text, key) in [
            ("idle_timeout = 0", "api.connections.idle_timeout"),
            ("max = 0", "api.connections.max"),
            (
                "max = 4\nmax_per_address = 5",
                "api.connections.max_per_address",
            ),
            ("max_per_address = 0", "api.connections.max_per_address"),
        ] {
            match parse(text) {
                Err(ConfigError::Invalid { key: k, .. }) => assert_eq!(k, key, "{text}"),
                other => panic!("{text}: {other:?}"),
            }
        }
        assert!(matches!(
            parse("idel_timeout = 1"),
            Err(ConfigError::Parse { .. })
        ));
    }
}
