//! `[cluster]`: the cluster link's listener, the workers this controller dials, and the caps
//! on link connections that have not authenticated yet.

use std::net::SocketAddr;

use serde::Deserialize;

use super::error::ConfigError;
use super::values::{at_least_one, host_port, positive_duration, socket, DurationValue};
use crate::link::gate::HandshakeLimits;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    listen: Option<String>,
    dial_workers: Option<Vec<String>>,
    handshake_timeout: Option<DurationValue>,
    first_frame_timeout: Option<DurationValue>,
    max_handshakes: Option<usize>,
    max_handshakes_per_source: Option<usize>,
}

/// The validated `[cluster]` section.
pub(super) struct Cluster {
    pub listen: SocketAddr,
    pub handshakes: HandshakeLimits,
    pub dial_workers: Vec<String>,
}

impl RawCluster {
    pub(super) fn validate(self) -> Result<Cluster, ConfigError> {
        let listen = socket(&self.listen, "cluster.listen", "127.0.0.1:9201")?;
        let handshakes = self.handshake_limits()?;
        let dial_workers = self.dial_workers.unwrap_or_default();
        for addr in &dial_workers {
            host_port(addr, "cluster.dial_workers")?;
        }
        Ok(Cluster {
            listen,
            handshakes,
            dial_workers,
        })
    }

    fn handshake_limits(&self) -> Result<HandshakeLimits, ConfigError> {
        let d = HandshakeLimits::default();
        let total = at_least_one(
            self.max_handshakes.unwrap_or(d.places.total),
            "cluster.max_handshakes",
        )?;
        let per_source = self
            .max_handshakes_per_source
            .unwrap_or(d.places.per_source);
        if !(1..=total).contains(&per_source) {
            return Err(ConfigError::Invalid {
                key: "cluster.max_handshakes_per_source",
                message: format!("must be between 1 and cluster.max_handshakes ({total})"),
            });
        }
        Ok(HandshakeLimits {
            handshake_timeout: positive_duration(
                &self.handshake_timeout,
                "cluster.handshake_timeout",
                d.handshake_timeout,
            )?,
            first_frame_timeout: positive_duration(
                &self.first_frame_timeout,
                "cluster.first_frame_timeout",
                d.first_frame_timeout,
            )?,
            places: portcullis_proto::handshakes::Limits { total, per_source },
        })
    }
}
