//! Where time comes from. Code that needs the time takes a [`Clock`] (or the time itself, as
//! a value, as `portcullis_policy::evaluate` does) instead of reading the system's clocks, so
//! that a test sets and advances a [`ManualClock`] instead of sleeping through a grace period
//! or a rate limit.
//!
//! Two readings, for two uses: [`Clock::now`] is wall-clock time (timestamps, and expiries
//! other machines compare with theirs: grants, tokens, certificates); [`Clock::instant`] is
//! monotonic (rate limits, grace windows, cache ages), which a change of the wall clock must
//! neither stretch nor cut short.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A source of time; [`SystemClock`] in the daemons, [`ManualClock`] in tests.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Wall-clock time.
    fn now(&self) -> SystemTime;

    /// Monotonic time: never goes back.
    fn instant(&self) -> Instant;

    /// Wall-clock time in whole seconds since the unix epoch, the unit of the wire and the
    /// store.
    fn unix_secs(&self) -> u64 {
        unix_secs(self.now())
    }
}

/// Whole seconds since the unix epoch (0 for a time before it).
pub fn unix_secs(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The system's clocks.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn instant(&self) -> Instant {
        Instant::now()
    }
}

/// A clock that moves only when told to ([`ManualClock::advance`]): both readings move
/// together, by exactly the amount given.
#[derive(Debug)]
pub struct ManualClock {
    wall: SystemTime,
    monotonic: Instant,
    advanced: Mutex<Duration>,
}

impl ManualClock {
    /// A clock that reads `unix_secs` seconds after the epoch until it is advanced.
    pub fn at_unix(unix_secs: u64) -> ManualClock {
        ManualClock {
            wall: UNIX_EPOCH + Duration::from_secs(unix_secs),
            monotonic: Instant::now(),
            advanced: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves both readings forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut advanced = self.advanced.lock().unwrap_or_else(PoisonError::into_inner);
        *advanced += by;
    }

    fn advanced(&self) -> Duration {
        *self.advanced.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        self.wall + self.advanced()
    }

    fn instant(&self) -> Instant {
        self.monotonic + self.advanced()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_only_when_advanced_and_both_readings_together() {
        let clock = ManualClock::at_unix(1_000);
        let (wall, mono) = (clock.now(), clock.instant());
        assert_eq!(clock.unix_secs(), 1_000);
        assert_eq!((clock.now(), clock.instant()), (wall, mono));
        clock.advance(Duration::from_millis(1_500));
        assert_eq!(clock.unix_secs(), 1_001);
        assert_eq!(clock.instant() - mono, Duration::from_millis(1_500));
        assert_eq!(
            clock.now().duration_since(wall).ok(),
            Some(Duration::from_millis(1_500))
        );
    }

    #[test]
    fn a_time_before_the_epoch_reads_as_zero() {
        assert_eq!(unix_secs(UNIX_EPOCH - Duration::from_secs(5)), 0);
        assert!(SystemClock.unix_secs() > 1_600_000_000);
    }
}
