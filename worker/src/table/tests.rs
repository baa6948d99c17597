use portcullis_proto::clock::ManualClock;

use super::*;

const EXP: u64 = 1_000;

/// A table on a hand-advanced clock, and that clock.
fn on_manual_clock() -> (Table, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::at_unix(EXP));
    (Table::new(clock.clone()), clock)
}

#[test]
fn admission_counts_and_ends() {
    let t = Table::default();
    assert_eq!(t.admit("s", 2, EXP), Admission::First);
    assert_eq!(t.admit("s", 2, EXP), Admission::Local);
    assert_eq!(t.admit("s", 2, EXP), Admission::LimitReached);
    assert_eq!(t.admit("u", 0, EXP), Admission::First);
    let ending = t.ending("s");
    t.end("s", EndReason::Canceled);
    assert!(ending.cancel.is_cancelled());
    assert_eq!(ending.reason(), EndReason::Canceled);
    assert_eq!(t.admit("s", 0, EXP), Admission::Ended(EndReason::Canceled));
    assert_eq!(t.live(), vec!["u".to_string()]);
    assert!(!t.fresh(Duration::from_secs(5)));
    t.heard(vec![]);
    assert!(t.fresh(Duration::from_secs(5)));
}

#[test]
fn expired_sessions_end_with_reason_expired_and_are_forgotten() {
    let t = Table::default();
    assert_eq!(t.admit("a", 0, 100), Admission::First);
    assert_eq!(t.admit("b", 0, 200), Admission::First);
    let a = t.ending("a");
    assert_eq!(t.expire(99), Some(100));
    assert_eq!(t.len(), 2);
    assert_eq!(t.expire(100), Some(200));
    assert!(a.cancel.is_cancelled());
    assert_eq!(a.reason(), EndReason::Expired);
    assert_eq!(t.len(), 1);
    assert_eq!(t.live(), vec!["b".to_string()]);
    assert_eq!(t.expire(500), None);
    assert!(t.is_empty());
}

#[test]
fn a_later_grant_of_the_same_session_moves_its_deadline() {
    let t = Table::default();
    assert_eq!(t.admit("s", 0, 100), Admission::First);
    assert_eq!(t.admit("s", 0, 300), Admission::Local);
    // The first deadline comes up stale and is skipped.
    assert_eq!(t.expire(150), Some(300));
    assert_eq!(t.len(), 1);
    assert!(!t.ending("s").cancel.is_cancelled());
    assert_eq!(t.expire(300), None);
    assert!(t.is_empty());
}

#[test]
fn no_controller_heard_for_the_admit_grace_admits_nothing_new_and_the_live_grace_isolates() {
    let (t, clock) = on_manual_clock();
    let (admit, live) = (Duration::from_secs(5), Duration::from_secs(60));
    assert!(!t.fresh(admit), "fresh before any controller was heard");
    assert!(
        !t.isolate_if_stale(live),
        "isolated before any controller was heard"
    );
    t.heard(vec![]);
    clock.advance(admit - Duration::from_millis(1));
    assert!(t.fresh(admit));
    clock.advance(Duration::from_millis(1));
    assert!(!t.fresh(admit));
    let isolated = t.isolation_token();
    clock.advance(live - admit - Duration::from_millis(1));
    assert!(!t.isolate_if_stale(live));
    clock.advance(Duration::from_millis(1));
    assert!(t.isolate_if_stale(live));
    assert!(isolated.is_cancelled());
    assert!(
        !t.isolate_if_stale(live),
        "isolated once, not at every check"
    );
    // A controller answers again: fresh, and a new isolation token for new connections.
    t.heard(vec![]);
    assert!(t.fresh(admit));
    assert!(!t.isolation_token().is_cancelled());
}

#[test]
fn a_session_ended_before_any_grant_is_remembered_then_forgotten() {
    let (t, clock) = on_manual_clock();
    t.end("gone", EndReason::Canceled);
    assert_eq!(t.end_reason("gone"), Some(EndReason::Canceled));
    let now = clock.unix_secs();
    assert!(t.expire(now).is_some());
    assert_eq!(t.len(), 1);
    assert_eq!(t.expire(now + ENDED_RETENTION_SECS + 1), None);
    assert!(t.is_empty());
}

/// An admitted session that ends is forgotten a minute later, although its grant is good
/// for hours: churn of ended sessions does not grow the table (nor the worker's memory).
#[test]
fn an_ended_session_is_forgotten_a_minute_after_it_ended_not_at_its_grants_expiry() {
    let (t, clock) = on_manual_clock();
    let now = clock.unix_secs();
    let eight_hours = now + 8 * 3600;
    assert_eq!(t.admit("s", 0, eight_hours), Admission::First);
    t.end("s", EndReason::Canceled);
    // Refused with its reason while remembered; a refused grant does not move the deadline.
    assert_eq!(
        t.admit("s", 0, eight_hours),
        Admission::Ended(EndReason::Canceled)
    );
    t.expire(now + ENDED_RETENTION_SECS - 1);
    assert_eq!(t.len(), 1);
    t.expire(now + ENDED_RETENTION_SECS);
    assert!(t.is_empty(), "still held after its retention");
    // A grant that expires sooner than the retention is not kept longer.
    assert_eq!(t.admit("short", 0, now + 5), Admission::First);
    t.end("short", EndReason::Closed);
    t.expire(now + 5);
    assert!(t.is_empty());
}

#[test]
fn the_table_stays_bounded_under_many_short_sessions() {
    let t = Table::default();
    for n in 0..10_000u64 {
        let id = format!("s{n}");
        t.admit(&id, 0, 10 + n % 50);
        if n % 3 == 0 {
            t.end(&id, EndReason::Closed);
        }
    }
    assert_eq!(t.len(), 10_000);
    t.expire(60);
    assert!(t.is_empty());
    assert_eq!(t.with(|i| i.deadlines.len()), 0);
}

#[tokio::test]
async fn the_expiry_task_ends_a_session_when_its_grant_expires() {
    // On the system's clock: the task sleeps on tokio's timers until the deadline is due.
    let t = Arc::new(Table::default());
    let stop = CancellationToken::new();
    let task = tokio::spawn({
        let (t, stop) = (t.clone(), stop.clone());
        async move { t.run_expiry(stop).await }
    });
    // Queued after the task went to sleep on an empty queue: the task must wake for it.
    tokio::task::yield_now().await;
    let exp = SystemClock.unix_secs() + 1;
    assert_eq!(t.admit("s", 0, exp), Admission::First);
    let ending = t.ending("s");
    tokio::time::timeout(Duration::from_secs(5), ending.ended())
        .await
        .expect("the session ended within its second");
    assert_eq!(ending.reason(), EndReason::Expired);
    assert!(SystemClock.unix_secs() >= exp);
    assert!(t.is_empty());
    stop.cancel();
    task.await.unwrap();
}
