use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use portcullis_proto::clock::{Clock as _, ManualClock};

use super::*;

const PARAMS: BackoffParams = BackoffParams {
    window: Duration::from_secs(3600),
    user_free_failures: 3,
    network_free_failures: 10,
    base_delay: Duration::from_secs(2),
    max_delay: Duration::from_secs(60),
};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

fn net(text: &str) -> IpNet {
    text.parse().unwrap()
}

#[test]
fn networks_are_the_24_or_the_64() {
    assert_eq!(source_network(ip("192.0.2.77")), net("192.0.2.0/24"));
    assert_eq!(
        source_network(ip("2001:db8:1:2:3:4:5:6")),
        net("2001:db8:1:2::/64")
    );
    assert_eq!(source_network(ip("::ffff:192.0.2.9")), net("192.0.2.0/24"));
}

#[test]
fn free_failures_then_exponential_delays_capped() {
    let clock = ManualClock::at_unix(1_000_000);
    let mut backoff = Backoff::new(PARAMS);
    let from = ip("192.0.2.1");
    let mut waits = Vec::new();
    for _ in 0..11 {
        let now = clock.unix_secs();
        match backoff.check("alice", from, now) {
            Admission::Allow => waits.push(0),
            Admission::WaitUntil { until, by } => {
                assert_eq!(by, Counted::User);
                waits.push(until - now);
                clock.advance(Duration::from_secs(until - now));
                assert_eq!(
                    backoff.check("alice", from, clock.unix_secs()),
                    Admission::Allow
                );
            }
        }
        backoff.record_failure("alice", from, clock.unix_secs());
    }
    // Three failures cost nothing (the fourth attempt is checked at once); each further one
    // makes the next attempt wait 2, 4, 8, 16, 32 s, then the 60 s cap.
    assert_eq!(waits, [0, 0, 0, 0, 2, 4, 8, 16, 32, 60, 60]);
}

#[test]
fn a_wait_is_never_longer_than_the_cap() {
    let clock = ManualClock::at_unix(5_000);
    let mut backoff = Backoff::new(PARAMS);
    let from = ip("192.0.2.1");
    for _ in 0..200 {
        backoff.record_failure("alice", from, clock.unix_secs());
    }
    let now = clock.unix_secs();
    let Admission::WaitUntil { until, .. } = backoff.check("alice", from, now) else {
        panic!("after 200 failures the attempt waits");
    };
    assert!(until - now <= PARAMS.max_delay.as_secs());
    clock.advance(PARAMS.max_delay);
    assert_eq!(
        backoff.check("alice", from, clock.unix_secs()),
        Admission::Allow,
        "no lockout: once the cap has passed, an attempt is checked again"
    );
}

#[test]
fn failures_older_than_the_window_are_forgotten() {
    let clock = ManualClock::at_unix(10_000);
    let mut backoff = Backoff::new(PARAMS);
    let from = ip("192.0.2.1");
    for _ in 0..6 {
        backoff.record_failure("alice", from, clock.unix_secs());
    }
    clock.advance(PARAMS.window);
    backoff.record_failure("alice", from, clock.unix_secs());
    // Only the last failure is in the window: within the free failures, no delay.
    assert_eq!(
        backoff.check("alice", from, clock.unix_secs()),
        Admission::Allow
    );
}

#[test]
fn a_success_clears_the_users_failures_but_not_the_networks() {
    let clock = ManualClock::at_unix(10_000);
    let mut backoff = Backoff::new(PARAMS);
    let from = ip("192.0.2.1");
    for _ in 0..12 {
        backoff.record_failure("alice", from, clock.unix_secs());
    }
    backoff.record_success("alice");
    // The network (12 failures, 10 free) still waits; the user's count is gone.
    let now = clock.unix_secs();
    assert!(matches!(
        backoff.check("alice", from, now),
        Admission::WaitUntil {
            by: Counted::Network,
            ..
        }
    ));
    assert_eq!(
        backoff.check("alice", ip("198.51.100.1"), now),
        Admission::Allow
    );
}

#[test]
fn a_network_guessing_many_users_waits_and_other_networks_do_not() {
    let clock = ManualClock::at_unix(10_000);
    let mut backoff = Backoff::new(PARAMS);
    for n in 0..11 {
        // One failure per user, from addresses all over the same /24.
        backoff.record_failure(
            &format!("user{n}"),
            ip(&format!("192.0.2.{n}")),
            clock.unix_secs(),
        );
    }
    let now = clock.unix_secs();
    assert_eq!(
        backoff.check("carol", ip("192.0.2.200"), now),
        Admission::WaitUntil {
            until: now + 2,
            by: Counted::Network
        }
    );
    assert_eq!(
        backoff.check("carol", ip("192.0.3.1"), now),
        Admission::Allow
    );
}

#[test]
fn the_longer_of_the_user_and_network_waits_applies() {
    let clock = ManualClock::at_unix(10_000);
    let mut backoff = Backoff::new(PARAMS);
    let from = ip("192.0.2.1");
    for _ in 0..11 {
        backoff.record_failure("alice", from, clock.unix_secs());
    }
    // User: 8 over free -> 60 s (capped); network: 1 over free -> 2 s.
    let now = clock.unix_secs();
    assert_eq!(
        backoff.check("alice", from, now),
        Admission::WaitUntil {
            until: now + 60,
            by: Counted::User
        }
    );
}

#[test]
fn prune_forgets_expired_keys() {
    let clock = ManualClock::at_unix(10_000);
    let mut backoff = Backoff::new(PARAMS);
    backoff.record_failure("alice", ip("192.0.2.1"), clock.unix_secs());
    clock.advance(Duration::from_secs(60));
    backoff.record_failure("bob", ip("2001:db8::1"), clock.unix_secs());
    assert_eq!(backoff.tracked(), 4);
    clock.advance(PARAMS.window - Duration::from_secs(30));
    backoff.prune(clock.unix_secs());
    assert_eq!(
        backoff.tracked(),
        2,
        "alice's user and network expired, bob's did not"
    );
    clock.advance(Duration::from_secs(60));
    backoff.prune(clock.unix_secs());
    assert_eq!(backoff.tracked(), 0);
}

#[test]
fn summaries_count_per_user_network_and_window() {
    let a = source_network(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
    let b = source_network(ip("2001:db8::1"));
    let failure = |user: &str, network: IpNet, at: u64| Failure {
        user: user.into(),
        network,
        at,
    };
    let failures = [
        failure("bob", a, 620),
        failure("alice", a, 601),
        failure("alice", a, 650),
        failure("alice", b, 700),
        failure("alice", a, 1_200),
    ];
    let summaries = summarise(&failures, Duration::from_secs(600));
    let shown: Vec<(u64, u64, &str, IpNet, u64)> = summaries
        .iter()
        .map(|s| (s.start, s.end, s.user.as_str(), s.network, s.count))
        .collect();
    assert_eq!(
        shown,
        [
            (600, 1_200, "alice", a, 2),
            (600, 1_200, "alice", b, 1),
            (600, 1_200, "bob", a, 1),
            (1_200, 1_800, "alice", a, 1),
        ]
    );
    assert!(summarise(&[], Duration::from_secs(600)).is_empty());
    // A zero window is one second, not a division by zero.
    assert_eq!(summarise(&failures[..1], Duration::ZERO)[0].start, 620);
}
