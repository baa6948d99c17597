//! Value parsers every section of the controller config shares: durations, socket addresses,
//! counts, IP addresses and CIDRs, `HOST:PORT`, Vault path segments. Each takes the key it
//! reads, so its error names it.
//!
//! Depends on nothing in the crate but [`ConfigError`]; the sections (`config/*`,
//! `api/limits`, `audit/config`, `oidc/config`, `vault/config`) depend on it, never the other
//! way round. The duration syntax is the worker's too: both parse it with
//! [`portcullis_proto::duration`].

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

pub(crate) use portcullis_proto::duration::DurationValue;

use super::error::ConfigError;

/// The duration at `key`, or `default` when the key is absent; zero is allowed.
pub(crate) fn duration(
    value: &Option<DurationValue>,
    key: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    value.as_ref().map_or(Ok(default), |v| {
        v.to_duration().map_err(|e| ConfigError::Invalid {
            key,
            message: e.to_string(),
        })
    })
}

/// `d`, unless it is zero.
pub(crate) fn positive(d: Duration, key: &'static str) -> Result<Duration, ConfigError> {
    if d.is_zero() {
        return Err(ConfigError::Invalid {
            key,
            message: "must be greater than zero".into(),
        });
    }
    Ok(d)
}

/// The duration at `key` (or `default`), greater than zero: what every timeout and interval is.
pub(crate) fn positive_duration(
    value: &Option<DurationValue>,
    key: &'static str,
    default: Duration,
) -> Result<Duration, ConfigError> {
    positive(duration(value, key, default)?, key)
}

/// A count that must be at least one (a pool size, a cap).
pub(crate) fn at_least_one<T: Copy + PartialOrd + From<u8>>(
    n: T,
    key: &'static str,
) -> Result<T, ConfigError> {
    if n < T::from(1) {
        return Err(ConfigError::Invalid {
            key,
            message: "must be at least 1".into(),
        });
    }
    Ok(n)
}

/// The `IP:PORT` at `key`, or `default` when the key is absent.
pub(crate) fn socket(
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

/// An IP address or a CIDR (`ADDR/LEN`), as `ssh.source_addresses` lists them.
pub(crate) fn ip_or_cidr(text: &str, key: &'static str) -> Result<(), ConfigError> {
    if text.parse::<IpAddr>().is_ok() || is_cidr(text) {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        message: format!("{text:?} is not an IP address or CIDR"),
    })
}

/// A minimal CIDR check: an address, `/`, and a prefix length the address family allows.
fn is_cidr(text: &str) -> bool {
    let Some((addr, len)) = text.split_once('/') else {
        return false;
    };
    let (Ok(addr), Ok(len)) = (addr.parse::<IpAddr>(), len.parse::<u8>()) else {
        return false;
    };
    len <= if addr.is_ipv4() { 32 } else { 128 }
}

/// `HOST:PORT` with a host and a port from 1 to 65535 (the host is resolved when dialled).
pub(crate) fn host_port(text: &str, key: &'static str) -> Result<(), ConfigError> {
    let ok = text
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if ok {
        return Ok(());
    }
    Err(ConfigError::Invalid {
        key,
        message: format!("{text:?} is not HOST:PORT"),
    })
}

/// A Vault path segment (mount, role): letters, digits, `-`, `_`, `.`, and `/` inside mounts
/// when `slash`; never `..`, never a leading or trailing `/`.
pub(crate) fn vault_segment(
    value: &str,
    key: &'static str,
    slash: bool,
) -> Result<String, ConfigError> {
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

#[cfg(test)]
mod tests;
