//! The waits between attempts to reach a peer that did not answer: a worker redialling its
//! controller, a controller redialling a worker, the controller retrying a Vault revocation or
//! its PostgreSQL listener. Exponential, so a peer that is down is not hammered; jittered, so
//! the peers that lost the same controller (or Vault) at the same moment do not come back in
//! step; capped, so a peer that returns is found again soon.
//!
//! The schedule is `backon`'s exponential back-off. Its jitter adds up to the current delay
//! again, so the delay before jitter is capped at half the maximum: every wait of
//! [`schedule`]`(min, max)` lies in `[min, max]`, the first in `[min, 2 min)`.

use std::time::Duration;

use backon::{BackoffBuilder as _, ExponentialBuilder};

#[cfg(test)]
mod tests;

/// The waits before each next attempt, without end: from `min` (first wait below `2 min`),
/// doubling, jittered, never above `max` (nor below `min`).
pub fn schedule(min: Duration, max: Duration) -> impl Iterator<Item = Duration> + Send {
    let max = max.max(min);
    ExponentialBuilder::new()
        .with_min_delay(min)
        .with_max_delay((max / 2).max(min))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
        .map(move |wait| wait.clamp(min, max))
}

/// The wait before attempt `attempt + 1` when only the number of failed attempts is kept
/// (in a database row, say): the `attempt`th wait of [`schedule`].
pub fn nth_wait(attempt: usize, min: Duration, max: Duration) -> Duration {
    schedule(min, max)
        .nth(attempt.min(64))
        .unwrap_or(max.max(min))
}
