//! `[recordings]`: where session recordings are stored, how large one may grow, when their
//! heads are sealed into the audit chain, and how long they are kept.

use std::time::Duration;

use serde::Deserialize;

use super::error::ConfigError;
use super::values::{at_least_one, positive_duration, DurationValue};
use crate::secret::SecretString;

/// The validated `[recordings]` section.
#[derive(Debug, Clone)]
pub struct RecordingsConfig {
    /// The recordings store; none: beside the main store (`<name>-recordings.db` on SQLite,
    /// the same PostgreSQL database with a pool of its own).
    pub store_url: Option<SecretString>,
    pub max_connections: u32,
    /// The most body bytes one recording may hold; a chunk beyond is refused.
    pub max_bytes_per_recording: u64,
    /// A growing recording's head is sealed every this many chunks...
    pub checkpoint_chunks: u64,
    /// ...or this long after its last seal, whichever comes first.
    pub checkpoint_interval: Duration,
    /// Recordings of ended sessions older than this are deleted; none: kept forever.
    pub retention: Option<Duration>,
    /// The oldest recordings of ended sessions are deleted while all of them hold more body
    /// bytes than this; none: no limit.
    pub max_total_bytes: Option<u64>,
    /// How often the retention and the backstop seal run.
    pub sweep_interval: Duration,
}

impl Default for RecordingsConfig {
    fn default() -> Self {
        RecordingsConfig {
            store_url: None,
            max_connections: 4,
            max_bytes_per_recording: 8 << 30,
            checkpoint_chunks: 64,
            checkpoint_interval: Duration::from_secs(300),
            retention: None,
            max_total_bytes: None,
            sweep_interval: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRecordings {
    store_url: Option<String>,
    max_connections: Option<u32>,
    max_bytes_per_recording: Option<u64>,
    checkpoint_chunks: Option<u64>,
    checkpoint_interval: Option<DurationValue>,
    retention: Option<DurationValue>,
    max_total_bytes: Option<u64>,
    sweep_interval: Option<DurationValue>,
}

impl RawRecordings {
    /// `PORTCULLIS_RECORDINGS_URL` overrides `recordings.store_url`.
    pub(super) fn validate(
        self,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<RecordingsConfig, ConfigError> {
        let defaults = RecordingsConfig::default();
        let store_url = env("PORTCULLIS_RECORDINGS_URL").or(self.store_url);
        if let Some(url) = &store_url {
            if !(url.starts_with("sqlite:")
                || url.starts_with("postgres://")
                || url.starts_with("postgresql://"))
            {
                return Err(ConfigError::Invalid {
                    key: "recordings.store_url",
                    message: "must start with sqlite: or postgres://; leave it out to keep \
                              recordings beside the main store"
                        .into(),
                });
            }
        }
        let retention = match &self.retention {
            None => None,
            Some(_) => Some(positive_duration(
                &self.retention,
                "recordings.retention",
                Duration::ZERO,
            )?),
        };
        Ok(RecordingsConfig {
            store_url: store_url.map(SecretString::from),
            max_connections: at_least_one(
                self.max_connections.unwrap_or(defaults.max_connections),
                "recordings.max_connections",
            )?,
            max_bytes_per_recording: at_least_one(
                self.max_bytes_per_recording
                    .unwrap_or(defaults.max_bytes_per_recording),
                "recordings.max_bytes_per_recording",
            )?,
            checkpoint_chunks: at_least_one(
                self.checkpoint_chunks.unwrap_or(defaults.checkpoint_chunks),
                "recordings.checkpoint_chunks",
            )?,
            checkpoint_interval: positive_duration(
                &self.checkpoint_interval,
                "recordings.checkpoint_interval",
                defaults.checkpoint_interval,
            )?,
            retention,
            max_total_bytes: self
                .max_total_bytes
                .map(|n| at_least_one(n, "recordings.max_total_bytes"))
                .transpose()?,
            sweep_interval: positive_duration(
                &self.sweep_interval,
                "recordings.sweep_interval",
                defaults.sweep_interval,
            )?,
        })
    }
}
