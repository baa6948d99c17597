//! The worker's Prometheus metrics, served by the ops listener (`/metrics`, docs/deploy.md
//! "Monitoring"), and its readiness.
//!
//! Counters and histograms are atomics bumped where connections are admitted and closed;
//! the link gauge is read when scraped ([`Probe::metrics`]). Labels take a few fixed values
//! only: never a user, session, target or grant id.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::Shared;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    /// `up` (client to target) or `down` (target to client).
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    /// `admitted` or `refused`.
    outcome: &'static str,
}

/// The worker's metrics; one per process, in [`Shared`].
pub struct Metrics {
    registry: Registry,
    connections_open: Gauge,
    connections: Counter,
    bytes: Family<DirectionLabels, Counter<u64, AtomicU64>>,
    admissions: Family<OutcomeLabels, Counter>,
    admission_seconds: Histogram,
    linked_controllers: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut m = Metrics {
            registry: Registry::with_prefix("portcullis_worker"),
            connections_open: Gauge::default(),
            connections: Counter::default(),
            bytes: Family::default(),
            admissions: Family::default(),
            // 1 ms to about 16 s.
            admission_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            linked_controllers: Gauge::default(),
        };
        m.registry.register(
            "connections_open",
            "Connections relayed now",
            m.connections_open.clone(),
        );
        m.registry.register(
            "connections",
            "Connections admitted and opened to their target",
            m.connections.clone(),
        );
        m.registry.register(
            "bytes",
            "Bytes relayed by closed connections, by direction (up: client to target)",
            m.bytes.clone(),
        );
        m.registry.register(
            "admissions",
            "Connections admitted or refused",
            m.admissions.clone(),
        );
        m.registry.register(
            "admission_duration_seconds",
            "Time from a connection's hello to its admission or refusal (the controller's answer and the target's dial included)",
            m.admission_seconds.clone(),
        );
        m.registry.register(
            "linked_controllers",
            "Controllers with a live cluster link to this worker",
            m.linked_controllers.clone(),
        );
        for direction in ["up", "down"] {
            m.bytes
                .get_or_create(&DirectionLabels { direction })
                .inc_by(0);
        }
        for outcome in ["admitted", "refused"] {
            m.admissions
                .get_or_create(&OutcomeLabels { outcome })
                .inc_by(0);
        }
        m
    }

    /// A connection was admitted or refused `took` after its hello.
    pub(crate) fn admission(&self, admitted: bool, took: Duration) {
        let outcome = if admitted { "admitted" } else { "refused" };
        self.admissions
            .get_or_create(&OutcomeLabels { outcome })
            .inc();
        self.admission_seconds.observe(took.as_secs_f64());
    }

    /// A connection opened to its target; it counts as open until the guard is dropped.
    pub(crate) fn opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.inc();
        self.connections_open.inc();
        OpenConnection {
            metrics: self.clone(),
        }
    }

    /// A connection closed after relaying `up` and `down` bytes.
    pub(crate) fn relayed(&self, up: u64, down: u64) {
        self.bytes
            .get_or_create(&DirectionLabels { direction: "up" })
            .inc_by(up);
        self.bytes
            .get_or_create(&DirectionLabels { direction: "down" })
            .inc_by(down);
    }

    fn encode(&self, linked_controllers: usize) -> String {
        self.linked_controllers
            .set(i64::try_from(linked_controllers).unwrap_or(i64::MAX));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Counts a connection as open while it lives.
pub(crate) struct OpenConnection {
    metrics: Arc<Metrics>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.metrics.connections_open.dec();
    }
}

/// Why the worker is not ready to admit connections.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("no controller is linked: check the controllers and the network between them")]
    Unlinked,
}

/// Ready when a controller is linked and has been heard within the admission grace (pure:
/// the caller reads both).
pub(crate) fn readiness(linked_controllers: usize, heard_lately: bool) -> Result<(), NotReady> {
    if linked_controllers > 0 && heard_lately {
        Ok(())
    } else {
        Err(NotReady::Unlinked)
    }
}

/// What the ops listener asks the worker: its metrics and its readiness.
#[derive(Clone)]
pub struct Probe {
    shared: Arc<Shared>,
}

impl Probe {
    pub(crate) fn new(shared: Arc<Shared>) -> Probe {
        Probe { shared }
    }

    /// The Prometheus text exposition (OpenMetrics 1.0 text).
    pub fn metrics(&self) -> String {
        self.shared.metrics.encode(self.shared.link.linked())
    }

    /// Ready when linked to a controller.
    pub fn ready(&self) -> Result<(), NotReady> {
        let shared = &self.shared;
        readiness(
            shared.link.linked(),
            shared.table.fresh(shared.config.admit_grace),
        )
    }
}

#[cfg(test)]
mod tests;
