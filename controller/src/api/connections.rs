//! The API's open connections and the decision whether one more may open. Pure: the listener
//! ([`super::listener`]) holds a [`Table`] under a lock, passes the clock in and acts on the
//! [`Admission`].
//!
//! Why evict rather than refuse at the global cap: a client that opens connections and sends
//! nothing would otherwise lock every other client out until its connections time out. A
//! connection that is idle (no request in flight) can be closed at no loss to anyone, so at
//! the cap a newcomer takes the place of an idle connection of the address that holds the
//! most; a legitimate client holding one connection is the last to lose it. Only when every
//! connection is busy is the newcomer turned away. The per-address cap keeps one address from
//! holding the whole table in the first place.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

use super::limits::ConnectionLimits;

/// One connection's number in the table, unique for the listener's life.
pub(crate) type ConnId = u64;

/// What to do with a newly accepted connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Accept,
    /// Accept after closing this idle connection (the table is full).
    AcceptEvicting(ConnId),
    /// The address already holds `max_per_address` connections.
    RefuseAddressFull,
    /// The table is full and every connection in it has a request in flight.
    RefuseFull,
}

/// Open connections with what each is doing; `H` is whatever the listener needs to close one.
#[derive(Debug)]
pub(crate) struct Table<H> {
    next_id: ConnId,
    open: HashMap<ConnId, Entry<H>>,
    per_address: HashMap<IpAddr, usize>,
}

#[derive(Debug)]
struct Entry<H> {
    addr: IpAddr,
    in_flight: usize,
    /// Since when no request is in flight (the accept, or the end of the last request).
    idle_since: Instant,
    handle: H,
}

impl<H> Default for Table<H> {
    fn default() -> Self {
        Table {
            next_id: 0,
            open: HashMap::new(),
            per_address: HashMap::new(),
        }
    }
}

impl<H> Table<H> {
    /// Whether a connection from `addr` may open now.
    pub(crate) fn admit(&self, addr: IpAddr, limits: &ConnectionLimits) -> Admission {
        if self.per_address.get(&addr).copied().unwrap_or(0) >= limits.max_per_address {
            return Admission::RefuseAddressFull;
        }
        if self.open.len() < limits.max {
            return Admission::Accept;
        }
        match self.eviction_candidate() {
            Some(id) => Admission::AcceptEvicting(id),
            None => Admission::RefuseFull,
        }
    }

    /// The idle connection to close when room is needed: of the address holding the most
    /// connections, the one idle the longest.
    pub(crate) fn eviction_candidate(&self) -> Option<ConnId> {
        self.open
            .iter()
            .filter(|(_, e)| e.in_flight == 0)
            .max_by(|(ia, a), (ib, b)| {
                let held = |e: &Entry<H>| self.per_address.get(&e.addr).copied().unwrap_or(0);
                held(a)
                    .cmp(&held(b))
                    .then(b.idle_since.cmp(&a.idle_since))
                    .then(ib.cmp(ia))
            })
            .map(|(id, _)| *id)
    }

    /// Counts a connection from `addr` as open (idle until its first request).
    pub(crate) fn insert(&mut self, addr: IpAddr, now: Instant, handle: H) -> ConnId {
        let id = self.next_id;
        self.next_id += 1;
        self.open.insert(
            id,
            Entry {
                addr,
                in_flight: 0,
                idle_since: now,
                handle,
            },
        );
        *self.per_address.entry(addr).or_default() += 1;
        id
    }

    /// Forgets a closed connection; returns its handle if it was still counted.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<H> {
        let entry = self.open.remove(&id)?;
        if let Some(count) = self.per_address.get_mut(&entry.addr) {
            *count -= 1;
            if *count == 0 {
                self.per_address.remove(&entry.addr);
            }
        }
        Some(entry.handle)
    }

    /// A request on `id` began.
    pub(crate) fn request_started(&mut self, id: ConnId) {
        if let Some(e) = self.open.get_mut(&id) {
            e.in_flight += 1;
        }
    }

    /// A request on `id` ended (its response was written, or it was abandoned).
    pub(crate) fn request_ended(&mut self, id: ConnId, now: Instant) {
        if let Some(e) = self.open.get_mut(&id) {
            e.in_flight = e.in_flight.saturating_sub(1);
            if e.in_flight == 0 {
                e.idle_since = now;
            }
        }
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.open.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn limits(max: usize, max_per_address: usize) -> ConnectionLimits {
        ConnectionLimits {
            max,
            max_per_address,
            ..ConnectionLimits::default()
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn an_address_at_its_cap_is_refused_while_others_are_accepted() {
        let l = limits(10, 2);
        let now = Instant::now();
        let mut t = Table::default();
        t.insert(ip(1), now, ());
        assert_eq!(t.admit(ip(1), &l), Admission::Accept);
        t.insert(ip(1), now, ());
        assert_eq!(t.admit(ip(1), &l), Admission::RefuseAddressFull);
        assert_eq!(t.admit(ip(2), &l), Admission::Accept);
    }

    #[test]
    fn a_full_table_evicts_an_idle_connection_of_the_biggest_holder() {
        let l = limits(4, 3);
        let t0 = Instant::now();
        let mut t = Table::default();
        let legit = t.insert(ip(9), t0, ());
        let a1 = t.insert(ip(1), t0 + Duration::from_secs(1), ());
        let a2 = t.insert(ip(1), t0 + Duration::from_secs(2), ());
        let _a3 = t.insert(ip(1), t0 + Duration::from_secs(3), ());
        // The legitimate connection is the oldest idle one, but its address holds only one.
        assert_eq!(t.admit(ip(7), &l), Admission::AcceptEvicting(a1));
        t.request_started(a1);
        assert_eq!(t.admit(ip(7), &l), Admission::AcceptEvicting(a2));
        t.remove(a2);
        assert_eq!(t.admit(ip(7), &l), Admission::Accept);
        let _ = legit;
    }

    #[test]
    fn a_full_table_of_busy_connections_refuses() {
        let l = limits(2, 2);
        let now = Instant::now();
        let mut t = Table::default();
        let a = t.insert(ip(1), now, ());
        let b = t.insert(ip(2), now, ());
        t.request_started(a);
        t.request_started(b);
        assert_eq!(t.admit(ip(3), &l), Admission::RefuseFull);
        t.request_ended(b, now);
        assert_eq!(t.admit(ip(3), &l), Admission::AcceptEvicting(b));
    }

    #[test]
    fn removal_frees_the_address_slot() {
        let l = limits(10, 1);
        let mut t = Table::default();
        let a = t.insert(ip(1), Instant::now(), ());
        assert_eq!(t.admit(ip(1), &l), Admission::RefuseAddressFull);
        assert_eq!(t.remove(a), Some(()));
        assert_eq!(t.remove(a), None);
        assert_eq!(t.admit(ip(1), &l), Admission::Accept);
        assert!(t.is_empty());
    }
}
