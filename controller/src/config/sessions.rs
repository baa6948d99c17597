//! `[sessions]`: how long sessions last and wait, how often they are swept, and what one user
//! may hold (`[sessions.per_user]`).

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::values::{positive_duration, DurationValue};

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

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSessions {
    default_max_duration: Option<DurationValue>,
    pending_timeout: Option<DurationValue>,
    idle_timeout: Option<DurationValue>,
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

/// The validated `[sessions]` section.
pub(super) struct Sessions {
    pub default_max: Duration,
    pub pending_timeout: Duration,
    pub idle_timeout: Duration,
    pub sweep_interval: Duration,
    pub per_user: PerUserLimits,
}

impl RawSessions {
    pub(super) fn validate(self) -> Result<Sessions, ConfigError> {
        let defaults = PerUserLimits::default();
        Ok(Sessions {
            default_max: positive_duration(
                &self.default_max_duration,
                "sessions.default_max_duration",
                Duration::from_secs(8 * 3600),
            )?,
            pending_timeout: positive_duration(
                &self.pending_timeout,
                "sessions.pending_timeout",
                Duration::from_secs(300),
            )?,
            idle_timeout: positive_duration(
                &self.idle_timeout,
                "sessions.idle_timeout",
                Duration::from_secs(15 * 60),
            )?,
            sweep_interval: positive_duration(
                &self.sweep_interval,
                "sessions.sweep_interval",
                Duration::from_secs(5),
            )?,
            per_user: PerUserLimits {
                max_live: self.per_user.max_live.unwrap_or(defaults.max_live),
                authorize_per_minute: self
                    .per_user
                    .authorize_per_minute
                    .unwrap_or(defaults.authorize_per_minute),
            },
        })
    }
}
