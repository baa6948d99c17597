//! Accepting connections so that strangers cannot exhaust the worker: a failing `accept` is
//! handled by the listeners' shared policy ([`portcullis_net::accept`]: a connection's own
//! failure is logged and the next accepted at once, running out of descriptors or memory
//! backs off), and connections that have not authenticated yet (TLS handshake, proxy hello)
//! are capped, globally and per source address, by a [`Gate`]. The time such a connection may
//! take is bounded by its listener (`handshake_timeout`, `hello_timeout`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use portcullis_net::accept::{Acceptor, LogLimit};
use portcullis_proto::handshakes::Handshakes;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// A TCP listener accepting through the shared accept policy.
pub struct Listener {
    inner: TcpListener,
    acceptor: Acceptor,
}

impl Listener {
    /// `what` names the listener in log lines (`proxy`, `cluster`).
    pub fn new(inner: TcpListener, what: &'static str) -> Listener {
        Listener {
            inner,
            acceptor: Acceptor::new(what),
        }
    }

    /// The next connection, or None once `shutdown` is cancelled. Failures are not returned
    /// (see [`portcullis_net::accept`]). Cancel-safe.
    pub async fn accept(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Option<(TcpStream, SocketAddr)> {
        let inner = &self.inner;
        self.acceptor.next_until(|| inner.accept(), shutdown).await
    }
}

/// Limits on connections that have not authenticated yet.
pub(crate) use portcullis_proto::handshakes::Limits as GateLimits;

struct GateState {
    handshakes: Handshakes,
    log: LogLimit,
}

/// Admits connections into their unauthenticated phase up to [`GateLimits`] (the count is
/// [`portcullis_proto::handshakes`]; this adds the lock, the release on drop and the log).
pub(crate) struct Gate {
    what: &'static str,
    state: Arc<Mutex<GateState>>,
}

/// A place in the gate, given back when dropped (the connection authenticated or closed).
pub(crate) struct Pass {
    source: IpAddr,
    state: Arc<Mutex<GateState>>,
}

fn lock(state: &Mutex<GateState>) -> MutexGuard<'_, GateState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Drop for Pass {
    fn drop(&mut self) {
        lock(&self.state).handshakes.leave(self.source);
    }
}

impl Gate {
    pub(crate) fn new(limits: GateLimits, what: &'static str) -> Gate {
        Gate {
            what,
            state: Arc::new(Mutex::new(GateState {
                handshakes: Handshakes::new(limits),
                log: LogLimit::default(),
            })),
        }
    }

    /// A place for a connection from `source`, or None when the gate is full (the caller
    /// closes the connection at once).
    pub(crate) fn enter(&self, source: IpAddr) -> Option<Pass> {
        let source = source.to_canonical();
        let mut s = lock(&self.state);
        if s.handshakes.enter(source).is_err() {
            let limits = s.handshakes.limits();
            if let Some(suppressed) = s.log.due(Instant::now()) {
                tracing::warn!(listener = self.what, client.addr = %source, refused.suppressed = suppressed,
                    limit.total = limits.total, limit.per_source = limits.per_source,
                    "too many connections in their handshake; closing new ones");
            }
            return None;
        }
        Some(Pass {
            source,
            state: self.state.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_caps_per_source_and_in_total_and_frees_on_drop() {
        let gate = Gate::new(
            GateLimits {
                total: 3,
                per_source: 2,
            },
            "test",
        );
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let c: IpAddr = "10.0.0.3".parse().unwrap();
        let a1 = gate.enter(a).unwrap();
        let _a2 = gate.enter(a).unwrap();
        assert!(gate.enter(a).is_none(), "per-source cap");
        let _b1 = gate.enter(b).unwrap();
        assert!(gate.enter(c).is_none(), "total cap");
        drop(a1);
        assert!(gate.enter(c).is_some());
        // An IPv4 client on a dual-stack socket counts as its IPv4 address.
        let mapped: IpAddr = "::ffff:10.0.0.2".parse().unwrap();
        assert_eq!(mapped.to_canonical(), b);
    }
}
