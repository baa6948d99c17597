use super::*;

const LOST_AFTER: i64 = 30;

#[test]
fn a_worker_silent_longer_than_lost_after_while_the_store_was_up_is_lost() {
    let up = Some(1_000);
    assert!(!is_lost(Some(2_000), up, 2_030, LOST_AFTER));
    assert!(is_lost(Some(2_000), up, 2_031, LOST_AFTER));
    // Never linked: nothing of it to lose.
    assert!(!is_lost(None, up, 9_000, LOST_AFTER));
}

#[test]
fn a_controller_just_started_or_back_at_its_store_declares_nobody_lost_for_lost_after() {
    // Every controller was down 40 s: the worker's last-seen time is 40 s old when the first
    // one starts at 2_040. It has until 2_070 to link again.
    let seen = Some(2_000);
    assert!(!is_lost(seen, Some(2_040), 2_041, LOST_AFTER));
    assert!(!is_lost(seen, Some(2_040), 2_070, LOST_AFTER));
    assert!(is_lost(seen, Some(2_040), 2_071, LOST_AFTER));
    // While the store cannot be reached, nobody is lost.
    assert!(!is_lost(seen, None, 9_000, LOST_AFTER));
}

#[test]
fn the_watch_restarts_its_count_when_the_store_comes_back() {
    let watch = StoreWatch::new(100);
    assert_eq!(watch.up_since(), Some(100));
    watch.reached(150);
    assert_eq!(
        watch.up_since(),
        Some(100),
        "an unbroken run keeps its start"
    );
    watch.failed(&StoreError::Query("syntax".into()));
    assert_eq!(
        watch.up_since(),
        Some(100),
        "a failing query is not an outage"
    );
    watch.failed(&StoreError::Unavailable("connection refused".into()));
    assert_eq!(watch.up_since(), None);
    watch.reached(200);
    assert_eq!(watch.up_since(), Some(200));
}

#[test]
fn workers_list_says_what_became_of_a_worker() {
    let worker = |last_seen_at, draining_since, stopped_at, state: &str| WorkerRecord {
        id: "w_1".into(),
        name: "w1".into(),
        proxy_addr: "127.0.0.1:1".into(),
        key_fingerprint: "ab".repeat(32),
        state: state.into(),
        created_at: 100,
        last_seen_at,
        cert_expires_at: 0,
        draining_since,
        stopped_at,
    };
    let now = 1_000;
    let listed = |w: &WorkerRecord| listed_state(w, now, LOST_AFTER);
    assert_eq!(listed(&worker(Some(990), None, None, "active")), "active");
    assert_eq!(
        listed(&worker(Some(990), Some(980), None, "active")),
        "draining"
    );
    // Not heard for lost_after: never `active` any more.
    assert_eq!(listed(&worker(Some(900), None, None, "active")), "lost");
    assert_eq!(
        listed(&worker(Some(900), Some(890), None, "active")),
        "lost"
    );
    assert_eq!(listed(&worker(None, None, None, "active")), "lost");
    assert_eq!(
        listed(&worker(Some(990), Some(980), Some(990), "active")),
        "stopped"
    );
    assert_eq!(listed(&worker(Some(990), None, None, "deleted")), "deleted");
}

#[test]
fn a_new_session_goes_only_to_a_worker_heard_within_three_heartbeats_and_not_lost() {
    // Heartbeats every second: three of them plus 2 s.
    assert_eq!(placeable_since(100, 1, 30), 95);
    // Sub-second heartbeats count as one second.
    assert_eq!(placeable_since(100, 0, 30), 95);
    assert_eq!(placeable_since(100, 10, 60), 68);
    // A `lost_after` shorter than that window wins: a worker listed lost gets no session.
    assert_eq!(placeable_since(100, 1, 3), 97);
    let worker = |last_seen_at| WorkerRecord {
        id: "w_1".into(),
        name: "w1".into(),
        proxy_addr: "127.0.0.1:1".into(),
        key_fingerprint: "ab".repeat(32),
        state: "active".into(),
        created_at: 0,
        last_seen_at: Some(last_seen_at),
        cert_expires_at: 0,
        draining_since: None,
        stopped_at: None,
    };
    let since = placeable_since(100, 1, 3);
    assert_eq!(listed_state(&worker(since), 100, 3), "active");
    assert_eq!(listed_state(&worker(since - 1), 100, 3), "lost");
}

#[test]
fn after_a_start_a_worker_gets_its_longest_redial_wait_twice_even_with_a_short_lost_after() {
    // lost_after 3 s (as in the tests), every controller down for 5 s: the worker waits up
    // to 5 s between dialling rounds, so the restarted controller gives it 10 s.
    let seen = Some(2_000);
    let up = Some(2_005);
    assert!(!is_lost(seen, up, 2_009, 3));
    assert!(!is_lost(seen, up, 2_015, 3));
    assert!(is_lost(seen, up, 2_016, 3));
    // Long after the start, lost_after alone counts.
    assert!(is_lost(Some(3_000), up, 3_004, 3));
}
