//! When the worker dials its next controller: a pure schedule over the outcome of each attempt.
//!
//! - A link that was up (the controller answered the hello) and dropped: the next controller
//!   is tried at once, and the back-off starts again from its first step. A failover after a
//!   controller restart then costs one connect, however many failovers came before.
//! - An attempt that failed: the other known controllers are tried at once; only when every
//!   one of them failed in a row does the worker wait, jittered and doubling from 200 ms up
//!   to 5 s ([`portcullis_net::retry::schedule`]), before the next round.

use std::time::Duration;

/// The waits between rounds: from 200 ms, doubling and jittered, at most 5 s.
pub(super) const FIRST_RETRY: Duration = Duration::from_millis(200);
pub(super) const MAX_RETRY: Duration = Duration::from_secs(5);

/// How the last attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// The link was up (hello answered) and then dropped.
    Dropped,
    /// No link came up: connect, TLS or hello failed.
    Failed,
}

/// The schedule of one dialling loop over `controllers` addresses.
pub(super) struct Redial {
    controllers: usize,
    failed_in_a_row: usize,
    waits: Box<dyn Iterator<Item = Duration> + Send>,
}

impl Redial {
    pub(super) fn new(controllers: usize) -> Self {
        Redial {
            controllers: controllers.max(1),
            failed_in_a_row: 0,
            waits: fresh_waits(),
        }
    }

    /// How long to wait before dialling the next controller after `outcome`.
    pub(super) fn next_wait(&mut self, outcome: Outcome) -> Duration {
        match outcome {
            Outcome::Dropped => {
                self.failed_in_a_row = 0;
                self.waits = fresh_waits();
                Duration::ZERO
            }
            Outcome::Failed => {
                self.failed_in_a_row += 1;
                if !self.failed_in_a_row.is_multiple_of(self.controllers) {
                    // Another controller has not been tried in this round yet.
                    return Duration::ZERO;
                }
                self.waits.next().unwrap_or(MAX_RETRY)
            }
        }
    }
}

fn fresh_waits() -> Box<dyn Iterator<Item = Duration> + Send> {
    Box::new(portcullis_net::retry::schedule(FIRST_RETRY, MAX_RETRY))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_first_step(wait: Duration) -> bool {
        (FIRST_RETRY..2 * FIRST_RETRY).contains(&wait)
    }

    #[test]
    fn with_one_controller_failures_back_off_up_to_the_cap() {
        let mut r = Redial::new(1);
        let waits: Vec<Duration> = (0..12).map(|_| r.next_wait(Outcome::Failed)).collect();
        assert!(in_first_step(waits[0]), "{waits:?}");
        assert!(
            waits.iter().all(|w| (FIRST_RETRY..=MAX_RETRY).contains(w)),
            "{waits:?}"
        );
        assert!(waits[11] >= MAX_RETRY / 2, "it grew: {waits:?}");
    }

    #[test]
    fn a_link_that_was_up_resets_the_back_off() {
        let mut r = Redial::new(1);
        for _ in 0..12 {
            r.next_wait(Outcome::Failed);
        }
        // The link came up and dropped (a controller restart): redial at once, and if that
        // fails, wait only the first step again.
        assert_eq!(r.next_wait(Outcome::Dropped), Duration::ZERO);
        let wait = r.next_wait(Outcome::Failed);
        assert!(in_first_step(wait), "{wait:?}");
    }

    #[test]
    fn the_other_controllers_are_tried_at_once() {
        let mut r = Redial::new(3);
        assert_eq!(r.next_wait(Outcome::Dropped), Duration::ZERO);
        // Two more controllers to try before the round is over.
        assert_eq!(r.next_wait(Outcome::Failed), Duration::ZERO);
        assert_eq!(r.next_wait(Outcome::Failed), Duration::ZERO);
        assert!(in_first_step(r.next_wait(Outcome::Failed)));
        // The next round: again at once until all three failed, then a longer wait.
        assert_eq!(r.next_wait(Outcome::Failed), Duration::ZERO);
        assert_eq!(r.next_wait(Outcome::Failed), Duration::ZERO);
        let second = r.next_wait(Outcome::Failed);
        assert!((FIRST_RETRY..=MAX_RETRY).contains(&second), "{second:?}");
    }

    #[test]
    fn many_failovers_never_accumulate_into_long_waits() {
        let mut r = Redial::new(2);
        for _ in 0..50 {
            // A controller restart: the link drops, the other controller answers.
            assert_eq!(r.next_wait(Outcome::Dropped), Duration::ZERO);
        }
        assert_eq!(r.next_wait(Outcome::Failed), Duration::ZERO);
        assert!(in_first_step(r.next_wait(Outcome::Failed)));
    }
}
