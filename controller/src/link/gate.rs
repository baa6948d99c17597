//! What a connection to the cluster listener may hold before it authenticates, and the gate
//! that holds it to that. Anyone who can route to `cluster.listen` may connect; until a link
//! is authenticated (its worker's hello accepted, or its join answered) it costs a descriptor
//! and a task and proves nothing. So such a connection has `handshake_timeout` to finish TLS
//! and then `first_frame_timeout` to send its first frame, and at most `max_handshakes` of
//! them (`max_handshakes_per_source` from one address) are held at once: a new one beyond is
//! closed at once. An authenticated link holds no place: a worker's own link never counts
//! against its address.
//!
//! The counting is [`portcullis_proto::handshakes`] (pure, shared with the worker); this
//! module only keeps it behind a lock and gives a place back when its [`Place`] is dropped.

use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use portcullis_proto::handshakes::{Full, Handshakes, Limits};

/// The `[cluster]` keys that bound unauthenticated connections, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HandshakeLimits {
    /// From the TCP accept to the end of the TLS handshake (`cluster.handshake_timeout`).
    pub handshake_timeout: Duration,
    /// From the end of the TLS handshake to the first frame (`cluster.first_frame_timeout`).
    pub first_frame_timeout: Duration,
    /// `cluster.max_handshakes` and `cluster.max_handshakes_per_source`.
    pub places: Limits,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        HandshakeLimits {
            handshake_timeout: Duration::from_secs(10),
            first_frame_timeout: Duration::from_secs(10),
            places: Limits {
                total: 512,
                per_source: 64,
            },
        }
    }
}

/// The connections of one listener in their handshake.
#[derive(Clone)]
pub(crate) struct Gate {
    handshakes: Arc<Mutex<Handshakes>>,
}

/// One connection's place in the [`Gate`], given back when dropped.
pub(crate) struct Place {
    source: IpAddr,
    handshakes: Arc<Mutex<Handshakes>>,
}

fn lock(handshakes: &Mutex<Handshakes>) -> MutexGuard<'_, Handshakes> {
    // The count stays consistent even if a holder panicked: every change is one statement.
    handshakes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Gate {
    pub(crate) fn new(limits: Limits) -> Gate {
        Gate {
            handshakes: Arc::new(Mutex::new(Handshakes::new(limits))),
        }
    }

    /// A place for a connection from `source`, or which cap is full (the caller closes the
    /// connection at once).
    pub(crate) fn enter(&self, source: IpAddr) -> Result<Place, Full> {
        lock(&self.handshakes).enter(source)?;
        Ok(Place {
            source,
            handshakes: self.handshakes.clone(),
        })
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        lock(&self.handshakes).leave(self.source);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_dropped_place_is_given_back() {
        let gate = Gate::new(Limits {
            total: 2,
            per_source: 1,
        });
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let place = gate.enter(a).unwrap();
        assert_eq!(gate.enter(a).err(), Some(Full::Source));
        drop(place);
        assert!(gate.enter(a).is_ok());
    }
}
