use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use super::*;

fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn ip(last: u8) -> IpAddr {
    IpAddr::from([192, 0, 2, last])
}

fn garbage_token(source: IpAddr) -> Failure {
    Failure {
        kind: FailureKind::TokenRejected,
        source,
        reason: "unknown, expired or revoked token",
        attempted_name: None,
    }
}

#[test]
fn a_burst_from_one_address_is_one_summary_with_its_count() {
    let mut a = Aggregator::new(Duration::from_secs(10));
    for i in 0..300 {
        a.observe(garbage_token(ip(1)), at(0) + Duration::from_millis(i));
    }
    assert!(a.due(at(9)).is_empty(), "the window is still open");
    let out = a.due(at(10));
    assert_eq!(out.len(), 1);
    let s = &out[0];
    assert_eq!(
        (s.kind, s.source, s.count),
        (FailureKind::TokenRejected, Some(ip(1)), 300)
    );
    assert_eq!(
        (s.first, s.last),
        (at(0), at(0) + Duration::from_millis(299))
    );
    assert_eq!(s.reasons.values().sum::<u64>(), 300);
    assert!(a.due(at(100)).is_empty() && a.next_due().is_none());
}

#[test]
fn addresses_and_types_are_summed_apart_and_reasons_are_counted() {
    let mut a = Aggregator::new(Duration::from_secs(10));
    a.observe(garbage_token(ip(1)), at(0));
    a.observe(
        Failure {
            reason: "no Authorization header",
            ..garbage_token(ip(1))
        },
        at(1),
    );
    a.observe(garbage_token(ip(2)), at(2));
    a.observe(
        Failure {
            kind: FailureKind::WorkerJoinFailed,
            source: ip(1),
            reason: "unknown, used or expired join token",
            attempted_name: Some("web-1".into()),
        },
        at(3),
    );
    assert_eq!(a.next_due(), Some(at(10)));
    let first = a.due(at(10));
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].count, 2);
    assert_eq!(first[0].sample_reason, "unknown, expired or revoked token");
    assert_eq!(first[0].reasons.get("no Authorization header"), Some(&1));
    let rest = a.due(at(13));
    assert_eq!(rest.len(), 2);
    assert_eq!(rest[0].source, Some(ip(2)));
    assert_eq!(rest[1].kind, FailureKind::WorkerJoinFailed);
    assert_eq!(rest[1].attempted_name.as_deref(), Some("web-1"));
}

#[test]
fn a_failure_after_a_window_ended_opens_a_new_one() {
    let mut a = Aggregator::new(Duration::from_secs(10));
    a.observe(garbage_token(ip(1)), at(0));
    assert_eq!(a.due(at(10)).len(), 1);
    a.observe(garbage_token(ip(1)), at(11));
    assert_eq!(a.next_due(), Some(at(21)));
}

#[test]
fn drain_returns_every_open_window() {
    let mut a = Aggregator::new(Duration::from_secs(60));
    a.observe(garbage_token(ip(1)), at(0));
    a.observe(garbage_token(ip(2)), at(1));
    let out = a.drain();
    assert_eq!(out.iter().map(|s| s.count).sum::<u64>(), 2);
    assert!(a.next_due().is_none());
}

#[test]
fn sources_beyond_the_limit_are_summed_without_an_address() {
    let mut a = Aggregator::new(Duration::from_secs(10));
    for i in 0..MAX_SOURCES as u32 + 5 {
        a.observe(
            garbage_token(IpAddr::from((0x0a00_0000 + i).to_be_bytes())),
            at(0),
        );
    }
    let out = a.drain();
    assert_eq!(out.len(), MAX_SOURCES + 1);
    let rest = out.iter().find(|s| s.source.is_none()).unwrap();
    assert_eq!(rest.count, 5);
}

#[test]
fn the_event_names_the_source_and_never_makes_the_name_an_actor() {
    let s = Summary {
        kind: FailureKind::WorkerJoinFailed,
        source: Some(ip(7)),
        count: 3,
        first: at(0),
        last: at(2),
        sample_reason: "rate limited",
        reasons: [("rate limited", 3)].into_iter().collect(),
        attempted_name: Some("db-1".into()),
        window: Duration::from_secs(10),
    };
    let e = s.event();
    assert_eq!(e.kind(), portcullis_audit::Kind::WorkerJoinFailed);
    assert_eq!(e.actor.source.as_deref(), Some("192.0.2.7"));
    assert_eq!(e.actor.username, None);
    let body = e.body("e_1", 1, "t", crate::audit::chain::GENESIS);
    assert_eq!(body["decision"], "deny");
    assert_eq!(body["reason"], "rate limited");
    let details = &body["details"];
    assert_eq!(details["count"], 3);
    assert_eq!(details["attempted_name"], "db-1");
    assert_eq!(details["reasons"]["rate limited"], 3);
    assert_eq!(details["first_at"], "2027-01-15T08:00:00.000Z");
}
