//! `[auth.local]`: local users (passwords, TOTP), their groups, and the rules of their logins.
//! Parsed like the rest of the controller config: a raw struct that refuses unknown keys by
//! name, validated into [`LocalAuthConfig`], part of `[auth]` (`config/auth.rs`).
//!
//! ```toml
//! [auth.local]
//! enabled = true                       # the default; false: no local or service login
//! allowed_groups = ["ops", "admins"]   # the groups `users add` may grant over the API
//! allow_password_only = false          # true: TOTP is optional (not recommended)
//! min_password_length = 12
//! bootstrap_lifetime = "24h"
//! service_token_lifetime = "1h"        # the longest life of a service account's API token
//!
//! [auth.local.argon2]                  # OWASP's recommendation by default
//! m_cost_kib = 19456
//! t_cost = 2
//! p_cost = 1
//!
//! [auth.local.backoff]
//! window = "1h"
//! user_free_failures = 3
//! network_free_failures = 20
//! base_delay = "1s"
//! max_delay = "5m"
//! ```

use std::collections::BTreeSet;
use std::time::Duration;

use serde::Deserialize;

use super::backoff::BackoffParams;
use super::password::{Argon2Params, DEFAULT_MIN_PASSWORD_CHARS, MAX_PASSWORD_BYTES};
use crate::config::error::ConfigError;
use crate::config::values::{positive_duration, DurationValue};

/// The bootstrap credential's default and longest lifetime.
const BOOTSTRAP_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// A service account's token's default and longest lifetime.
const SERVICE_TOKEN_LIFETIME: Duration = Duration::from_secs(3600);
const MAX_SERVICE_TOKEN_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// The least memory argon2 may use: OWASP's weakest recommended setting is 7 MiB × 5 passes.
const MIN_M_COST_KIB: u32 = 7 * 1024;
/// The least memory × passes: OWASP's recommended settings all cost at least 35 MiB-passes.
const MIN_COST_KIB_PASSES: u64 = 35 * 1024;
/// The most memory one hash may take (every concurrent login takes it).
const MAX_M_COST_KIB: u32 = 1024 * 1024;
/// The longest `max_delay`: a back-off, never a lockout.
const MAX_BACKOFF_DELAY: Duration = Duration::from_secs(3600);

/// The validated `[auth.local]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LocalAuthConfig {
    pub(crate) enabled: bool,
    /// The groups a user admin may grant over the API (the offline commands are not limited).
    pub(crate) allowed_groups: BTreeSet<String>,
    /// Whether a password alone logs in (then with `amr = ["pwd"]`); TOTP is mandatory
    /// otherwise.
    pub(crate) allow_password_only: bool,
    /// The fewest characters of a new password.
    pub(crate) min_password_length: usize,
    pub(crate) argon2: Argon2Params,
    pub(crate) backoff: BackoffParams,
    /// How long the bootstrap credential `controller init` prints is valid.
    pub(crate) bootstrap_lifetime: Duration,
    /// The longest life of an API token a service account obtains with its key.
    pub(crate) service_token_lifetime: Duration,
}

impl Default for LocalAuthConfig {
    /// An empty section's values.
    fn default() -> Self {
        LocalAuthConfig {
            enabled: true,
            allowed_groups: BTreeSet::new(),
            allow_password_only: false,
            min_password_length: DEFAULT_MIN_PASSWORD_CHARS,
            argon2: Argon2Params::default(),
            backoff: BackoffParams::default(),
            bootstrap_lifetime: BOOTSTRAP_LIFETIME,
            service_token_lifetime: SERVICE_TOKEN_LIFETIME,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawLocal {
    enabled: Option<bool>,
    allowed_groups: Option<Vec<String>>,
    allow_password_only: Option<bool>,
    min_password_length: Option<usize>,
    bootstrap_lifetime: Option<DurationValue>,
    service_token_lifetime: Option<DurationValue>,
    #[serde(default)]
    argon2: RawArgon2,
    #[serde(default)]
    backoff: RawBackoff,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawArgon2 {
    m_cost_kib: Option<u32>,
    t_cost: Option<u32>,
    p_cost: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackoff {
    window: Option<DurationValue>,
    user_free_failures: Option<u32>,
    network_free_failures: Option<u32>,
    base_delay: Option<DurationValue>,
    max_delay: Option<DurationValue>,
}

fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

impl RawLocal {
    pub(crate) fn validate(self) -> Result<LocalAuthConfig, ConfigError> {
        let bootstrap_lifetime = positive_duration(
            &self.bootstrap_lifetime,
            "auth.local.bootstrap_lifetime",
            BOOTSTRAP_LIFETIME,
        )?;
        if bootstrap_lifetime > BOOTSTRAP_LIFETIME {
            return Err(invalid(
                "auth.local.bootstrap_lifetime",
                "must be at most 24h: the bootstrap credential is for the first minutes of \
                 an installation; run `controller init` again for a new one",
            ));
        }
        let service_token_lifetime = positive_duration(
            &self.service_token_lifetime,
            "auth.local.service_token_lifetime",
            SERVICE_TOKEN_LIFETIME,
        )?;
        if service_token_lifetime > MAX_SERVICE_TOKEN_LIFETIME {
            return Err(invalid(
                "auth.local.service_token_lifetime",
                "must be at most 24h: a pipeline exchanges its key for a new token each run",
            ));
        }
        Ok(LocalAuthConfig {
            enabled: self.enabled.unwrap_or(true),
            allowed_groups: groups(self.allowed_groups.unwrap_or_default())?,
            allow_password_only: self.allow_password_only.unwrap_or(false),
            min_password_length: min_password_length(self.min_password_length)?,
            argon2: self.argon2.validate()?,
            backoff: self.backoff.validate()?,
            bootstrap_lifetime,
            service_token_lifetime,
        })
    }
}

fn groups(names: Vec<String>) -> Result<BTreeSet<String>, ConfigError> {
    const KEY: &str = "auth.local.allowed_groups";
    let mut set = BTreeSet::new();
    for name in names {
        if name.trim().is_empty() || name.trim() != name || name.chars().any(char::is_control) {
            return Err(invalid(
                KEY,
                format!("{name:?} is not a group name (empty, or with surrounding spaces)"),
            ));
        }
        if !set.insert(name.clone()) {
            return Err(invalid(KEY, format!("{name:?} is listed twice")));
        }
    }
    Ok(set)
}

fn min_password_length(value: Option<usize>) -> Result<usize, ConfigError> {
    let length = value.unwrap_or(DEFAULT_MIN_PASSWORD_CHARS);
    if !(8..=MAX_PASSWORD_BYTES / 4).contains(&length) {
        return Err(invalid(
            "auth.local.min_password_length",
            format!(
                "{length} is out of range: write 8 (NIST's minimum) to {}",
                MAX_PASSWORD_BYTES / 4
            ),
        ));
    }
    Ok(length)
}

impl RawArgon2 {
    fn validate(self) -> Result<Argon2Params, ConfigError> {
        let defaults = Argon2Params::default();
        let params = Argon2Params {
            m_cost_kib: self.m_cost_kib.unwrap_or(defaults.m_cost_kib),
            t_cost: self.t_cost.unwrap_or(defaults.t_cost),
            p_cost: self.p_cost.unwrap_or(defaults.p_cost),
        };
        if !(MIN_M_COST_KIB..=MAX_M_COST_KIB).contains(&params.m_cost_kib) {
            return Err(invalid(
                "auth.local.argon2.m_cost_kib",
                format!(
                    "{} KiB is out of range: write {MIN_M_COST_KIB} (7 MiB) to {MAX_M_COST_KIB} \
                     (1 GiB); the default is 19456 (19 MiB)",
                    params.m_cost_kib
                ),
            ));
        }
        if params.t_cost == 0 || params.t_cost > 64 {
            return Err(invalid(
                "auth.local.argon2.t_cost",
                "must be 1 to 64; the default is 2",
            ));
        }
        if u64::from(params.m_cost_kib) * u64::from(params.t_cost) < MIN_COST_KIB_PASSES {
            return Err(invalid(
                "auth.local.argon2.t_cost",
                format!(
                    "{} passes over {} KiB is weaker than OWASP's recommendations (at least \
                     19 MiB × 2, 12 MiB × 3 or 7 MiB × 5): raise t_cost or m_cost_kib",
                    params.t_cost, params.m_cost_kib
                ),
            ));
        }
        if params.p_cost == 0 || params.p_cost > 16 {
            return Err(invalid(
                "auth.local.argon2.p_cost",
                "must be 1 to 16; the default is 1",
            ));
        }
        params
            .to_params()
            .map_err(|e| invalid("auth.local.argon2", e.to_string()))?;
        Ok(params)
    }
}

impl RawBackoff {
    fn validate(self) -> Result<BackoffParams, ConfigError> {
        let defaults = BackoffParams::default();
        let params = BackoffParams {
            window: positive_duration(&self.window, "auth.local.backoff.window", defaults.window)?,
            user_free_failures: self
                .user_free_failures
                .unwrap_or(defaults.user_free_failures),
            network_free_failures: self
                .network_free_failures
                .unwrap_or(defaults.network_free_failures),
            base_delay: positive_duration(
                &self.base_delay,
                "auth.local.backoff.base_delay",
                defaults.base_delay,
            )?,
            max_delay: positive_duration(
                &self.max_delay,
                "auth.local.backoff.max_delay",
                defaults.max_delay,
            )?,
        };
        if params.base_delay < Duration::from_secs(1) {
            return Err(invalid(
                "auth.local.backoff.base_delay",
                "must be at least 1s (delays are counted in whole seconds)",
            ));
        }
        if params.max_delay < params.base_delay || params.max_delay > MAX_BACKOFF_DELAY {
            return Err(invalid(
                "auth.local.backoff.max_delay",
                "must be from base_delay to 1h: the back-off slows guessing, it never locks \
                 an account out",
            ));
        }
        if params.window < params.max_delay {
            return Err(invalid(
                "auth.local.backoff.window",
                "must be at least max_delay, or failures are forgotten before the delay \
                 they caused has passed",
            ));
        }
        for (key, value) in [
            (
                "auth.local.backoff.user_free_failures",
                params.user_free_failures,
            ),
            (
                "auth.local.backoff.network_free_failures",
                params.network_free_failures,
            ),
        ] {
            if value > 1000 {
                return Err(invalid(key, "must be at most 1000"));
            }
        }
        Ok(params)
    }
}

#[cfg(test)]
mod tests;
