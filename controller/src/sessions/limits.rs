//! Per-user limits on sessions (`[sessions.per_user]`): how many live sessions one user may
//! hold, and how many authorize-session requests one user may make per minute. The count of
//! live sessions is read from the store, so every controller sees the same; the request rate
//! is counted here, by each controller in memory, so that authorize-session (over a
//! thousand a second) does not pay a store write for it.

use std::collections::HashMap;
use std::sync::Mutex;

/// What [`AuthorizeRate::hit`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RateCheck {
    Within,
    /// Over the limit for this minute: `first` for the first refusal of the minute (the one
    /// that is audited), and the seconds until the next minute begins.
    Exceeded {
        first: bool,
        retry_after: u64,
    },
}

/// Fixed one-minute windows of authorize-session requests per user.
#[derive(Debug)]
pub(crate) struct AuthorizeRate {
    per_minute: u32,
    /// The current minute (unix seconds / 60) and each user's count in it; a new minute
    /// starts every count over, so the map holds only this minute's users.
    window: Mutex<(u64, HashMap<String, u32>)>,
}

impl AuthorizeRate {
    /// `per_minute` 0: no limit.
    pub(crate) fn new(per_minute: u32) -> AuthorizeRate {
        AuthorizeRate {
            per_minute,
            window: Mutex::new((0, HashMap::new())),
        }
    }

    /// Counts one request of `user` at `now` (unix seconds).
    pub(crate) fn hit(&self, user: &str, now: u64) -> RateCheck {
        if self.per_minute == 0 {
            return RateCheck::Within;
        }
        let minute = now / 60;
        let mut window = self
            .window
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if window.0 != minute {
            *window = (minute, HashMap::new());
        }
        let count = window.1.entry(user.to_owned()).or_insert(0);
        *count = count.saturating_add(1);
        if *count <= self.per_minute {
            RateCheck::Within
        } else {
            RateCheck::Exceeded {
                first: *count == self.per_minute + 1,
                retry_after: 60 - now % 60,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_gets_the_limit_per_minute_and_the_first_refusal_is_marked() {
        let rate = AuthorizeRate::new(2);
        let t = 6_000; // the start of a minute
        assert_eq!(rate.hit("u_a", t), RateCheck::Within);
        assert_eq!(rate.hit("u_a", t + 1), RateCheck::Within);
        assert_eq!(
            rate.hit("u_a", t + 20),
            RateCheck::Exceeded {
                first: true,
                retry_after: 40
            }
        );
        assert_eq!(
            rate.hit("u_a", t + 59),
            RateCheck::Exceeded {
                first: false,
                retry_after: 1
            }
        );
        // Another user is counted apart; the next minute starts over.
        assert_eq!(rate.hit("u_b", t + 59), RateCheck::Within);
        assert_eq!(rate.hit("u_a", t + 60), RateCheck::Within);
    }

    #[test]
    fn zero_means_no_limit() {
        let rate = AuthorizeRate::new(0);
        for _ in 0..10_000 {
            assert_eq!(rate.hit("u_a", 1), RateCheck::Within);
        }
    }
}
