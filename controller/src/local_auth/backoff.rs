//! The brute-force rule of local logins: failures are counted per user and per source
//! network (the /24 of an IPv4 address, the /64 of an IPv6 one) in a sliding window; past a
//! number of free failures, each further attempt must wait an exponentially growing delay
//! after the last failure, capped at `max_delay`. There is no lockout: the longest wait is
//! `max_delay`, and failures older than `window` are forgotten.
//!
//! What the caller does (the login endpoint, `api/local_login`): [`Backoff::check`] before checking
//! any credential (a refused attempt checks nothing and is not counted, so waiting is the
//! only way on); [`Backoff::record_failure`] after a wrong password or code, for unknown user
//! names too (so the back-off does not reveal which names exist); [`Backoff::record_success`]
//! after a login, which clears the user's failures but not the network's (one account the
//! attacker holds must not reset the count of a network guessing at others);
//! [`Backoff::prune`] now and then, which bounds memory to the failures of one window.
//!
//! With attempts spaced by the delay, the count in the window settles where the delay is
//! about `window / count`; with the defaults (1 h, 3 free, 1 s doubling to 5 min) that is
//! about twelve guesses per hour per user, and twenty-odd per hour per network before its
//! delays start.
//!
//! [`summarise`] turns failures into one audit event per user, network and window, so that
//! a spray of guesses does not become a flood of events.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

/// Failure times kept per key: beyond this the oldest are dropped (the delay is long capped
/// by then).
const MAX_KEPT: usize = 64;

/// The rule's parameters (`[auth.local.backoff]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BackoffParams {
    /// Failures older than this are forgotten.
    pub(crate) window: Duration,
    /// Failures of one user within the window before any delay.
    pub(crate) user_free_failures: u32,
    /// Failures from one network within the window before any delay (higher: many users can
    /// share an office's or a carrier's addresses).
    pub(crate) network_free_failures: u32,
    /// The first delay; each further failure doubles it.
    pub(crate) base_delay: Duration,
    /// The longest delay.
    pub(crate) max_delay: Duration,
}

impl Default for BackoffParams {
    fn default() -> Self {
        BackoffParams {
            window: Duration::from_secs(3600),
            user_free_failures: 3,
            network_free_failures: 20,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
        }
    }
}

/// The answer to an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Check the credentials.
    Allow,
    /// Refuse without checking anything; the attempt may be made again from `until` (Unix
    /// seconds). `by` says whose failures set the delay.
    WaitUntil { until: u64, by: Counted },
}

/// Whose failures a delay comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Counted {
    User,
    Network,
}

/// The source network an address is counted in: its /24 (IPv4, IPv4-mapped IPv6 too) or
/// its /64 (IPv6).
pub(crate) fn source_network(addr: IpAddr) -> IpNet {
    let addr = match addr {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(addr, IpAddr::V4),
        v4 => v4,
    };
    let prefix = if addr.is_ipv4() { 24 } else { 64 };
    IpNet::new(addr, prefix).map_or(IpNet::from(addr), |net| net.trunc())
}

/// The failure counts: per user name and per source network.
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    params: BackoffParams,
    users: HashMap<String, Failures>,
    networks: HashMap<IpNet, Failures>,
}

/// The times of one key's failures within the window, oldest first.
#[derive(Debug, Default)]
struct Failures(VecDeque<u64>);

impl Failures {
    /// Forgets the failures at or before `now - window`.
    fn expire(&mut self, now: u64, window: u64) {
        while self
            .0
            .front()
            .is_some_and(|&at| at.saturating_add(window) <= now)
        {
            self.0.pop_front();
        }
    }

    fn push(&mut self, now: u64) {
        if self.0.len() == MAX_KEPT {
            self.0.pop_front();
        }
        self.0.push_back(now);
    }

    /// When the next attempt may be made, if later than `now`.
    fn wait_until(&self, now: u64, window: u64, free: u32, params: &BackoffParams) -> Option<u64> {
        let recent = self
            .0
            .iter()
            .filter(|&&at| at.saturating_add(window) > now)
            .count();
        let last = *self.0.back()?;
        let until = last.saturating_add(delay_secs(recent, free, params));
        (until > now).then_some(until)
    }
}

/// The delay after `failures` failures: none up to `free`, then `base`, doubling, capped.
fn delay_secs(failures: usize, free: u32, params: &BackoffParams) -> u64 {
    let Some(over) = failures.checked_sub(free as usize).filter(|&n| n > 0) else {
        return 0;
    };
    let doublings = u32::try_from(over - 1).unwrap_or(u32::MAX).min(63);
    let base = params.base_delay.as_secs().max(1);
    base.saturating_mul(1u64 << doublings)
        .min(params.max_delay.as_secs())
}

impl Backoff {
    pub(crate) fn new(params: BackoffParams) -> Backoff {
        Backoff {
            params,
            ..Backoff::default()
        }
    }

    /// Whether an attempt for `user` from `addr` at `now` may be checked.
    pub(crate) fn check(&self, user: &str, addr: IpAddr, now: u64) -> Admission {
        let window = self.params.window.as_secs();
        let user_wait = self
            .users
            .get(user)
            .and_then(|f| f.wait_until(now, window, self.params.user_free_failures, &self.params));
        let network_wait = self.networks.get(&source_network(addr)).and_then(|f| {
            f.wait_until(now, window, self.params.network_free_failures, &self.params)
        });
        match (user_wait, network_wait) {
            (None, None) => Admission::Allow,
            (Some(until), None) => Admission::WaitUntil {
                until,
                by: Counted::User,
            },
            (None, Some(until)) => Admission::WaitUntil {
                until,
                by: Counted::Network,
            },
            (Some(user), Some(network)) if user >= network => Admission::WaitUntil {
                until: user,
                by: Counted::User,
            },
            (Some(_), Some(network)) => Admission::WaitUntil {
                until: network,
                by: Counted::Network,
            },
        }
    }

    /// Counts a failed attempt (wrong password, wrong code, unknown user).
    pub(crate) fn record_failure(&mut self, user: &str, addr: IpAddr, now: u64) {
        let window = self.params.window.as_secs();
        let failures = self.users.entry(user.to_owned()).or_default();
        failures.expire(now, window);
        failures.push(now);
        let failures = self.networks.entry(source_network(addr)).or_default();
        failures.expire(now, window);
        failures.push(now);
    }

    /// A login succeeded: the user's failures are cleared (the network's are not).
    pub(crate) fn record_success(&mut self, user: &str) {
        self.users.remove(user);
    }

    /// Forgets expired failures and the keys left with none.
    pub(crate) fn prune(&mut self, now: u64) {
        let window = self.params.window.as_secs();
        self.users.retain(|_, f| {
            f.expire(now, window);
            !f.0.is_empty()
        });
        self.networks.retain(|_, f| {
            f.expire(now, window);
            !f.0.is_empty()
        });
    }

    /// How many keys (users and networks) are tracked: what [`Backoff::prune`] bounds.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.users.len() + self.networks.len()
    }
}

// The login endpoint sums its failures through `audit::denials` (`login_failed` per address
// and window), which the other unauthenticated failures share; this per-user-and-network
// summary is kept for the tests of the rule and a later per-user event.
/// One failed attempt, as the login endpoint saw it.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub(crate) user: String,
    pub(crate) network: IpNet,
    pub(crate) at: u64,
}

/// The failures of one user from one network within one window: one audit event.
#[cfg_attr(not(test), allow(dead_code))]
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FailureSummary {
    /// The window, `[start, end)` in Unix seconds, aligned to multiples of its length.
    pub(crate) start: u64,
    pub(crate) end: u64,
    pub(crate) user: String,
    pub(crate) network: IpNet,
    pub(crate) count: u64,
}

/// Groups `failures` by window of `window` (aligned to multiples of it), user and network,
/// ordered by window, then user, then network.
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) fn summarise(failures: &[Failure], window: Duration) -> Vec<FailureSummary> {
    let len = window.as_secs().max(1);
    let mut counts: BTreeMap<(u64, &str, IpNet), u64> = BTreeMap::new();
    for failure in failures {
        let start = failure.at - failure.at % len;
        *counts
            .entry((start, failure.user.as_str(), failure.network))
            .or_default() += 1;
    }
    counts
        .into_iter()
        .map(|((start, user, network), count)| FailureSummary {
            start,
            end: start.saturating_add(len),
            user: user.to_owned(),
            network,
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests;
