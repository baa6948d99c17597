//! The rate limit on fetching the provider's keys again when an ID token names a key id the
//! cached JWKS lacks (a key rotation, or a forgery): at most once per [`MIN_INTERVAL`], so
//! forged key ids cannot make the controller hammer the provider. Pure: the caller passes the
//! time, read from the controller's clock.

use std::time::{Duration, Instant};

/// An unknown key id fetches the JWKS again at most this often.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(10);

/// When the keys were last fetched again for an unknown key id.
#[derive(Debug, Default)]
pub(crate) struct RefreshLimit {
    last: Option<Instant>,
}

impl RefreshLimit {
    /// Whether the keys may be fetched again at `now`; if so, `now` becomes the last time.
    pub(crate) fn allow(&mut self, now: Instant) -> bool {
        if self
            .last
            .is_some_and(|at| now.duration_since(at) < MIN_INTERVAL)
        {
            return false;
        }
        self.last = Some(now);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_proto::clock::{Clock as _, ManualClock};

    #[test]
    fn unknown_key_ids_fetch_the_keys_again_at_most_once_per_interval() {
        let clock = ManualClock::at_unix(1_000);
        let mut limit = RefreshLimit::default();
        assert!(
            limit.allow(clock.instant()),
            "the first unknown key id fetches"
        );
        assert!(
            !limit.allow(clock.instant()),
            "a second one at once does not"
        );
        clock.advance(MIN_INTERVAL - Duration::from_millis(1));
        assert!(
            !limit.allow(clock.instant()),
            "nor one just inside the interval"
        );
        clock.advance(Duration::from_millis(1));
        assert!(
            limit.allow(clock.instant()),
            "one a full interval later does"
        );
        // A refused attempt does not push the window on: the next is counted from the fetch.
        clock.advance(MIN_INTERVAL / 2);
        assert!(!limit.allow(clock.instant()));
        clock.advance(MIN_INTERVAL / 2);
        assert!(limit.allow(clock.instant()));
    }
}
