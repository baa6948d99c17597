//! `[console]`: the web console's session timeouts (docs/console.md).

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::values::{positive_duration, DurationValue};

/// The validated `[console]` section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsoleConfig {
    /// A console session with no request for this long is over.
    pub idle_timeout: Duration,
    /// A console session is over this long after its login, whatever its activity.
    pub absolute_timeout: Duration,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            idle_timeout: Duration::from_secs(30 * 60),
            absolute_timeout: Duration::from_secs(12 * 3600),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    idle_timeout: Option<DurationValue>,
    absolute_timeout: Option<DurationValue>,
}

impl RawConsole {
    pub(super) fn validate(self) -> Result<ConsoleConfig, ConfigError> {
        let defaults = ConsoleConfig::default();
        let idle_timeout = positive_duration(
            &self.idle_timeout,
            "console.idle_timeout",
            defaults.idle_timeout,
        )?;
        let absolute_timeout = positive_duration(
            &self.absolute_timeout,
            "console.absolute_timeout",
            defaults.absolute_timeout,
        )?;
        if idle_timeout > absolute_timeout {
            return Err(ConfigError::Invalid {
                key: "console.idle_timeout",
                message: "must not be longer than console.absolute_timeout".into(),
            });
        }
        Ok(ConsoleConfig {
            idle_timeout,
            absolute_timeout,
        })
    }
}
