//! How many connections are still in their handshake (TLS, then the first frame or hello),
//! counted in total and per source address, and whether one more may start. A stranger may
//! open connections and never finish them; each listener that accepts strangers holds at most
//! [`Limits::total`] of these, and [`Limits::per_source`] from one address, and closes new ones
//! beyond at once. The count is given back when the connection authenticates or closes.
//!
//! Pure: no lock, no clock, no I/O. The controller's cluster listener and the worker's
//! listeners each keep one [`Handshakes`] behind their own lock and release guard.

use std::collections::HashMap;
use std::net::IpAddr;

/// Caps on connections that have not authenticated yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// From all sources together.
    pub total: usize,
    /// From one source address (an IPv4 client on a dual-stack socket counts as its IPv4
    /// address).
    pub per_source: usize,
}

/// Why a connection may not start its handshake now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Full {
    /// [`Limits::total`] connections are in their handshake.
    Total,
    /// [`Limits::per_source`] connections from this address are in their handshake.
    Source,
}

/// The connections in their handshake, by source address.
#[derive(Debug, Clone)]
pub struct Handshakes {
    limits: Limits,
    total: usize,
    by_source: HashMap<IpAddr, usize>,
}

impl Handshakes {
    pub fn new(limits: Limits) -> Handshakes {
        Handshakes {
            limits,
            total: 0,
            by_source: HashMap::new(),
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Counts a connection from `source` into its handshake, or says which cap is full (the
    /// count is then unchanged). Every `Ok` must be matched by one [`Handshakes::leave`] with
    /// the same address.
    pub fn enter(&mut self, source: IpAddr) -> Result<(), Full> {
        let source = source.to_canonical();
        if self.total >= self.limits.total {
            return Err(Full::Total);
        }
        if self.from_source(source) >= self.limits.per_source {
            return Err(Full::Source);
        }
        *self.by_source.entry(source).or_insert(0) += 1;
        self.total += 1;
        Ok(())
    }

    /// A connection from `source` authenticated or closed. Leaving more often than entering
    /// changes nothing.
    pub fn leave(&mut self, source: IpAddr) {
        let source = source.to_canonical();
        let Some(n) = self.by_source.get_mut(&source) else {
            return;
        };
        *n = n.saturating_sub(1);
        if *n == 0 {
            self.by_source.remove(&source);
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Connections in their handshake, all sources together.
    pub fn total(&self) -> usize {
        self.total
    }

    /// Connections in their handshake from `source`.
    pub fn from_source(&self, source: IpAddr) -> usize {
        self.by_source
            .get(&source.to_canonical())
            .copied()
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn handshakes(total: usize, per_source: usize) -> Handshakes {
        Handshakes::new(Limits { total, per_source })
    }

    #[test]
    fn a_source_at_its_cap_is_refused_while_others_enter() {
        let mut h = handshakes(10, 2);
        assert_eq!(h.enter(ip("10.0.0.1")), Ok(()));
        assert_eq!(h.enter(ip("10.0.0.1")), Ok(()));
        assert_eq!(h.enter(ip("10.0.0.1")), Err(Full::Source));
        assert_eq!(h.enter(ip("10.0.0.2")), Ok(()));
        assert_eq!((h.total(), h.from_source(ip("10.0.0.1"))), (3, 2));
    }

    #[test]
    fn the_total_cap_holds_across_sources() {
        let mut h = handshakes(2, 2);
        h.enter(ip("10.0.0.1")).unwrap();
        h.enter(ip("10.0.0.2")).unwrap();
        assert_eq!(h.enter(ip("10.0.0.3")), Err(Full::Total));
        // A refusal counts nothing: no empty entry is left behind for the refused source.
        assert_eq!(h.from_source(ip("10.0.0.3")), 0);
        h.leave(ip("10.0.0.2"));
        assert_eq!(h.enter(ip("10.0.0.3")), Ok(()));
    }

    #[test]
    fn leaving_frees_the_place_and_forgets_an_empty_source() {
        let mut h = handshakes(4, 1);
        h.enter(ip("10.0.0.1")).unwrap();
        h.leave(ip("10.0.0.1"));
        assert_eq!((h.total(), h.by_source.len()), (0, 0));
        // Leaving more often than entering, or for a source never seen, changes nothing.
        h.leave(ip("10.0.0.1"));
        h.leave(ip("10.0.0.9"));
        h.enter(ip("10.0.0.2")).unwrap();
        assert_eq!(h.total(), 1);
        assert_eq!(h.enter(ip("10.0.0.1")), Ok(()));
    }

    #[test]
    fn an_ipv4_client_on_a_dual_stack_socket_counts_as_its_ipv4_address() {
        let mut h = handshakes(4, 1);
        h.enter(ip("::ffff:10.0.0.1")).unwrap();
        assert_eq!(h.enter(ip("10.0.0.1")), Err(Full::Source));
        h.leave(ip("10.0.0.1"));
        assert_eq!(h.from_source(ip("::ffff:10.0.0.1")), 0);
    }
}
