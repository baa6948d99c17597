//! Durations as the controller's and the worker's config files write them: a number of
//! seconds (`30`, `0.5`) or words (`"90s"`, `"5m"`, `"8h"`, `"1h 30m"`, `"1500ms"`, the
//! syntax of `humantime`).
//!
//! Both configs read every duration through [`DurationValue`], so they take the same syntax and
//! refuse the same values with the same words. Pure: no I/O, no clock. The caller names the key
//! and decides whether zero is allowed; a value too large for [`Duration`] (`1e300`) is an
//! error here, never a panic.

use std::time::Duration;

use serde::Deserialize;

/// A duration as written in a config file, before it is checked.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(untagged)]
pub enum DurationValue {
    /// A number of seconds, whole or fractional.
    Seconds(f64),
    /// Words, such as `"90s"` or `"8h"`.
    Text(String),
}

/// Why a [`DurationValue`] is not a duration. The messages say what to write instead.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DurationError {
    /// A number of seconds beyond what [`Duration`] holds.
    #[error("{0} seconds is too long; write e.g. \"8h\" or \"30d\"")]
    TooLong(f64),
    /// A negative number of seconds, or not a number at all (`nan`, `inf`).
    #[error("{0} is not a non-negative number of seconds")]
    NotSeconds(f64),
    /// Text that is not a duration (or one too long to hold).
    #[error("{text:?} is not a duration ({reason}); write e.g. 30, 0.5, \"90s\" or \"8h\"")]
    NotDuration { text: String, reason: String },
}

impl DurationValue {
    /// The duration written; zero is a duration (callers that need more refuse it).
    pub fn to_duration(&self) -> Result<Duration, DurationError> {
        match self {
            DurationValue::Seconds(s) if s.is_finite() && *s >= 0.0 => {
                // `try_from`: a number too large for a Duration (1e300) is refused, not a panic.
                Duration::try_from_secs_f64(*s).map_err(|_| DurationError::TooLong(*s))
            }
            DurationValue::Seconds(s) => Err(DurationError::NotSeconds(*s)),
            DurationValue::Text(t) => {
                humantime::parse_duration(t).map_err(|e| DurationError::NotDuration {
                    text: t.clone(),
                    reason: e.to_string(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests;
