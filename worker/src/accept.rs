//! Accepting connections so that strangers cannot exhaust the worker: a failing `accept`
//! (out of descriptors: EMFILE, ENFILE) backs off instead of spinning and is logged at most
//! once per [`LOG_EVERY`], and connections that have not authenticated yet (TLS handshake,
//! proxy hello) are capped, globally and per source address, by a [`Gate`]. The time such a
//! connection may take is bounded by its listener (`handshake_timeout`, `hello_timeout`).

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use portcullis_proto::handshakes::Handshakes;
use tokio::net::{TcpListener, TcpStream};

/// At most one log line per this interval for a failing accept or a full gate.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

const FIRST_BACKOFF: Duration = Duration::from_millis(5);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Counts what happened since the last log line, and says when the next may be written.
#[derive(Default)]
struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Returns how many events were suppressed since the last line when one may be written
    /// now, None otherwise.
    fn due(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// A listener whose accept loop backs off on errors.
pub struct Listener {
    inner: TcpListener,
    /// Names the listener in log lines (`proxy`, `cluster`).
    what: &'static str,
    backoff: Duration,
    log: RateLimitedLog,
}

impl Listener {
    pub fn new(inner: TcpListener, what: &'static str) -> Listener {
        Listener {
            inner,
            what,
            backoff: FIRST_BACKOFF,
            log: RateLimitedLog::default(),
        }
    }

    /// The next connection. Errors are not returned: every one of them (descriptors
    /// exhausted, a connection reset before it was accepted) is waited out with a growing
    /// back-off, reset by the next success.
    pub async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        loop {
            match self.inner.accept().await {
                Ok(pair) => {
                    self.backoff = FIRST_BACKOFF;
                    return pair;
                }
                Err(err) => {
                    if let Some(suppressed) = self.log.due(Instant::now()) {
                        tracing::warn!(listener = self.what, error = %err, failures.suppressed = suppressed, backoff = ?self.backoff,
                            "accept failed; backing off (raise the descriptor limit if this is EMFILE/ENFILE)");
                    }
                    tokio::time::sleep(self.backoff).await;
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

/// Limits on connections that have not authenticated yet.
pub(crate) use portcullis_proto::handshakes::Limits as GateLimits;

struct GateState {
    handshakes: Handshakes,
    log: RateLimitedLog,
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
                log: RateLimitedLog::default(),
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

    #[test]
    fn the_log_speaks_once_per_interval_and_counts_the_rest() {
        let mut log = RateLimitedLog::default();
        let t0 = Instant::now();
        assert_eq!(log.due(t0), Some(0));
        assert_eq!(log.due(t0 + Duration::from_millis(50)), None);
        assert_eq!(log.due(t0 + Duration::from_secs(1)), None);
        assert_eq!(log.due(t0 + LOG_EVERY), Some(2));
    }
}
