#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rustix::io::Errno;

use super::*;

fn os(errno: Errno) -> io::Error {
    io::Error::from_raw_os_error(errno.raw_os_error())
}

#[test]
fn errors_of_the_connection_are_told_from_those_of_the_listener() {
    for errno in [
        Errno::CONNABORTED,
        Errno::CONNRESET,
        Errno::PROTO,
        Errno::PERM,
        Errno::NETUNREACH,
        Errno::TIMEDOUT,
        Errno::INTR,
    ] {
        assert_eq!(classify(&os(errno)), Failure::Connection, "{errno:?}");
    }
    assert_eq!(classify(&os(Errno::MFILE)), Failure::Descriptors);
    assert_eq!(classify(&os(Errno::NFILE)), Failure::Descriptors);
    assert_eq!(classify(&os(Errno::NOBUFS)), Failure::Memory);
    assert_eq!(classify(&os(Errno::NOMEM)), Failure::Memory);
    assert_eq!(classify(&os(Errno::BADF)), Failure::Listener);
    assert_eq!(classify(&os(Errno::INVAL)), Failure::Listener);
    // No OS error at all: the listener's.
    assert_eq!(classify(&io::Error::other("odd")), Failure::Listener);
}

#[test]
fn the_backoff_starts_small_doubles_and_is_capped() {
    assert_eq!(backoff(1), Duration::from_millis(5));
    assert_eq!(backoff(2), Duration::from_millis(10));
    assert_eq!(backoff(3), Duration::from_millis(20));
    assert_eq!(backoff(8), Duration::from_millis(640));
    assert_eq!(backoff(9), MAX_BACKOFF);
    assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    // Never zero, never longer than the cap, never shorter than the one before.
    let schedule: Vec<_> = (1..40).map(backoff).collect();
    assert!(schedule.windows(2).all(|w| w[0] <= w[1]));
    assert!(schedule
        .iter()
        .all(|d| (FIRST_BACKOFF..=MAX_BACKOFF).contains(d)));
}

#[test]
fn failures_of_a_connection_never_wait_and_resource_failures_do() {
    let mut policy = Policy::default();
    let now = Instant::now();
    for _ in 0..100 {
        assert_eq!(policy.failed(Failure::Connection, now).wait, None);
    }
    // The connection failures did not count towards the resource back-off.
    assert_eq!(
        policy.failed(Failure::Descriptors, now).wait,
        Some(FIRST_BACKOFF)
    );
    assert_eq!(
        policy.failed(Failure::Memory, now).wait,
        Some(FIRST_BACKOFF * 2)
    );
    assert_eq!(
        policy.failed(Failure::Listener, now).wait,
        Some(FIRST_BACKOFF * 4)
    );
    for _ in 0..20 {
        policy.failed(Failure::Descriptors, now);
    }
    assert_eq!(
        policy.failed(Failure::Descriptors, now).wait,
        Some(MAX_BACKOFF)
    );
    policy.succeeded();
    assert_eq!(
        policy.failed(Failure::Descriptors, now).wait,
        Some(FIRST_BACKOFF)
    );
}

#[test]
fn failures_are_logged_once_per_interval_with_the_count_not_logged() {
    let mut policy = Policy::default();
    let t0 = Instant::now();
    assert_eq!(policy.failed(Failure::Descriptors, t0).log, Some(0));
    for i in 1..200 {
        let at = t0 + Duration::from_millis(i * 5);
        assert_eq!(policy.failed(Failure::Connection, at).log, None);
    }
    assert_eq!(
        policy.failed(Failure::Memory, t0 + LOG_EVERY).log,
        Some(199)
    );
    assert_eq!(policy.failed(Failure::Memory, t0 + LOG_EVERY).log, None);
}

/// An `accept` that plays a script: errors first, then connections.
fn scripted(script: Vec<io::Result<u32>>) -> impl FnMut() -> std::future::Ready<io::Result<u32>> {
    let mut script: VecDeque<_> = script.into();
    move || std::future::ready(script.pop_front().unwrap_or(Ok(0)))
}

#[tokio::test]
async fn the_driver_survives_failures_and_frees_a_descriptor_when_they_run_out() {
    let freed = Arc::new(AtomicUsize::new(0));
    let counter = freed.clone();
    let mut acceptor = Acceptor::new("test").on_descriptors_exhausted(move || {
        counter.fetch_add(1, Ordering::SeqCst);
    });
    let started = Instant::now();
    let accepted = acceptor
        .next(scripted(vec![
            Err(os(Errno::CONNABORTED)),
            Err(os(Errno::MFILE)),
            Err(os(Errno::CONNRESET)),
            Err(os(Errno::NFILE)),
            Err(os(Errno::NOBUFS)),
            Ok(7),
        ]))
        .await;
    assert_eq!(accepted, 7);
    assert_eq!(freed.load(Ordering::SeqCst), 2, "once per EMFILE/ENFILE");
    // Three resource failures in a row: 5 + 10 + 20 ms waited.
    assert!(started.elapsed() >= Duration::from_millis(35));
    // The success reset the back-off: the next failure waits the first step again.
    assert_eq!(
        acceptor.policy.failed(Failure::Memory, Instant::now()).wait,
        Some(FIRST_BACKOFF)
    );
}

#[tokio::test]
async fn shutdown_ends_the_wait_between_failures() {
    let mut acceptor = Acceptor::new("test");
    // A listener that fails for good: the driver would wait (up to a second each) forever.
    let failing = || std::future::ready(Err::<u32, _>(os(Errno::MFILE)));
    let shutdown = CancellationToken::new();
    let cancel = shutdown.clone();
    tokio::spawn(async move {
        // Cancels while the driver is (most likely) in a back-off wait; cancelling before it
        // got there would end the loop too, so the assertions below hold either way.
        tokio::time::sleep(Duration::from_millis(50)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        acceptor.next_until(failing, &shutdown),
    )
    .await
    .expect("next_until returns once shutdown is cancelled");
    assert_eq!(result, None);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_real_listener_accepts_through_the_driver() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let client = tokio::spawn(tokio::net::TcpStream::connect(addr));
    let mut acceptor = Acceptor::new("test");
    let shutdown = CancellationToken::new();
    let (_stream, peer) = acceptor
        .next_until(|| listener.accept(), &shutdown)
        .await
        .unwrap();
    let client = client.await.unwrap().unwrap();
    assert_eq!(peer, client.local_addr().unwrap());
}
