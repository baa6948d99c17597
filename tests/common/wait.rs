//! Waiting for a condition, the one way the tests wait: poll it under a deadline, never sleep
//! for a guessed time. A daemon on another machine's load takes as long as it takes; a test
//! that polls passes as soon as the condition holds and fails with what it waited for.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often a condition is polled: short next to every deadline the tests set, long enough
/// that a poll (an HTTP request, a process) does not load the machine.
const INTERVAL: Duration = Duration::from_millis(50);

/// Polls `attempt` until it gives a value, and returns it. `Err` carries what was seen
/// instead (a session's state, a process's output), quoted when the deadline passes.
///
/// # Panics
///
/// When `limit` passes first, naming `what` and the last thing seen.
pub(crate) fn poll<T, E: Display>(
    what: &str,
    limit: Duration,
    attempt: impl FnMut() -> Result<T, E>,
) -> T {
    match poll_within(limit, attempt) {
        Ok(value) => value,
        Err(seen) => panic!("timed out after {limit:?} waiting for {what}; last seen: {seen}"),
    }
}

/// [`poll`] for a caller that has something to do when `limit` passes (kill a process that
/// would not stop, start a peer again): the last `Err` is returned instead of a panic.
pub(crate) fn poll_within<T, E>(
    limit: Duration,
    mut attempt: impl FnMut() -> Result<T, E>,
) -> Result<T, E> {
    let start = Instant::now();
    loop {
        match attempt() {
            Ok(value) => return Ok(value),
            Err(seen) if start.elapsed() >= limit => return Err(seen),
            // The poll interval between two looks at the condition, under the deadline above.
            Err(_) => std::thread::sleep(INTERVAL),
        }
    }
}

/// Polls `condition` until it holds; returns how long that took.
///
/// # Panics
///
/// When `limit` passes first, naming `what`.
pub(crate) fn wait_for(
    what: &str,
    limit: Duration,
    mut condition: impl FnMut() -> bool,
) -> Duration {
    let start = Instant::now();
    poll(what, limit, || {
        if condition() {
            Ok(())
        } else {
            Err("not yet")
        }
    });
    start.elapsed()
}
