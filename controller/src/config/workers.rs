//! `[workers]`: how the controller hears from workers (heartbeats, when one counts as lost)
//! and how workers join (join tokens, certificate lifetime, join rate limit).

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::values::{positive_duration, DurationValue};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawWorkers {
    heartbeat_interval: Option<DurationValue>,
    lost_after: Option<DurationValue>,
    join_token_ttl: Option<DurationValue>,
    cert_lifetime: Option<DurationValue>,
    join_rate_limit_per_minute: Option<u32>,
}

/// The validated `[workers]` section.
pub(super) struct Workers {
    pub heartbeat_interval: Duration,
    pub lost_after: Duration,
    pub join_token_ttl: Duration,
    pub cert_lifetime: Duration,
    pub join_rate_limit: u32,
}

impl RawWorkers {
    pub(super) fn validate(self) -> Result<Workers, ConfigError> {
        Ok(Workers {
            heartbeat_interval: positive_duration(
                &self.heartbeat_interval,
                "workers.heartbeat_interval",
                Duration::from_secs(1),
            )?,
            lost_after: positive_duration(
                &self.lost_after,
                "workers.lost_after",
                Duration::from_secs(30),
            )?,
            join_token_ttl: positive_duration(
                &self.join_token_ttl,
                "workers.join_token_ttl",
                Duration::from_secs(3600),
            )?,
            cert_lifetime: positive_duration(
                &self.cert_lifetime,
                "workers.cert_lifetime",
                Duration::from_secs(24 * 3600),
            )?,
            join_rate_limit: self.join_rate_limit_per_minute.unwrap_or(10),
        })
    }
}
