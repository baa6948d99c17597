//! The run's keepalives: when the next one is due, and what an answer means. The controller
//! calls a run lost after three missed intervals, so a failed keepalive is retried after a
//! third of one, and an answer that the request is over stops the command.

use std::time::Duration;

/// The longest interval `--keepalive` takes (`StartRun.keepalive_secs`): a killed run must end
/// within minutes, not hours.
pub(crate) const MAX_KEEPALIVE_SECS: u64 = 300;

/// The wait before the next keepalive, after `failed` failures in a row.
pub(crate) fn next_delay(interval_secs: u64, failed: u32) -> Duration {
    if failed == 0 {
        Duration::from_secs(interval_secs)
    } else {
        Duration::from_secs((interval_secs / 3).max(1))
    }
}

/// What one keepalive's outcome means for the run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Answered: go on.
    Alive,
    /// No answer (the controller is unreachable, or failed): try again soon.
    Retry,
    /// The controller says the request is over (revoked, expired, unknown) or no longer
    /// takes our token: stop the command.
    Over(String),
}

/// The verdict for an answer with HTTP `status` (`None`: no answer at all).
pub(crate) fn verdict(status: Option<u16>, message: &str) -> Verdict {
    match status {
        None => Verdict::Retry,
        Some(s) if (200..300).contains(&s) => Verdict::Alive,
        Some(401 | 403 | 404 | 409 | 410) => Verdict::Over(message.to_owned()),
        Some(_) => Verdict::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missed_keepalive_is_retried_well_before_the_run_is_lost() {
        assert_eq!(next_delay(30, 0), Duration::from_secs(30));
        assert_eq!(next_delay(30, 1), Duration::from_secs(10));
        assert_eq!(next_delay(30, 5), Duration::from_secs(10));
        assert_eq!(next_delay(2, 1), Duration::from_secs(1));
        // Three intervals without an answer lose the run: the retries fit well inside.
        let retries: Duration = (1..=6).map(|n| next_delay(30, n)).sum();
        assert!(Duration::from_secs(30) + retries <= Duration::from_secs(3 * 30));
    }

    #[test]
    fn answers_that_end_the_run() {
        assert_eq!(verdict(Some(200), ""), Verdict::Alive);
        assert_eq!(verdict(Some(204), ""), Verdict::Alive);
        assert_eq!(verdict(None, "timeout"), Verdict::Retry);
        assert_eq!(verdict(Some(503), "busy"), Verdict::Retry);
        assert_eq!(
            verdict(Some(409), "request ar_1 was revoked"),
            Verdict::Over("request ar_1 was revoked".into())
        );
        assert!(matches!(verdict(Some(401), "x"), Verdict::Over(_)));
        assert!(matches!(verdict(Some(404), "x"), Verdict::Over(_)));
    }
}
