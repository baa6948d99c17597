//! Whether `ssh-prepare` may hand the cached session to one more ssh connection: a pure
//! decision over what is on disk and what the controller says about the session.
//!
//! Every ssh invocation runs `ssh-prepare` once (while ssh reads its configuration) and then
//! opens at most one connection through the session. So each reuse is a hand-off that will
//! most likely become a connection within seconds: hand-offs of the last [`IN_FLIGHT_SECS`]
//! count against the session's connection limit until the controller's count has caught up.

use serde::{Deserialize, Serialize};

/// How long a hand-off counts as a connection about to be opened.
pub(super) const IN_FLIGHT_SECS: u64 = 15;
/// A session or certificate with less left than this is not handed out.
pub(super) const MIN_LIFE_SECS: u64 = 60;

/// What `ssh-prepare` keeps beside the session file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct HandOffs {
    pub session_id: String,
    /// The session's connection limit (0: none).
    pub connection_limit: u32,
    /// Whether a certificate belongs to the session (files of older versions: it does).
    #[serde(default)]
    pub ssh_mode: portcullis_policy::SshMode,
    /// Unix seconds of each hand-off.
    pub at: Vec<u64>,
}

impl HandOffs {
    /// Hand-offs still in flight at `now`.
    fn in_flight(&self, now: u64) -> u32 {
        let recent = self
            .at
            .iter()
            .filter(|&&t| t + IN_FLIGHT_SECS > now)
            .count();
        u32::try_from(recent).unwrap_or(u32::MAX)
    }

    /// Records a hand-off at `now`, forgetting those no longer in flight.
    pub(super) fn record(&mut self, now: u64) {
        self.at.retain(|&t| t + IN_FLIGHT_SECS > now);
        self.at.push(now);
    }
}

/// The cached session as `ssh-prepare` finds it.
#[derive(Debug, Clone)]
pub(super) struct Cached {
    pub session_expires_at: u64,
    /// None in gateway mode: no certificate is issued to the client.
    pub certificate_valid_before: Option<u64>,
    pub hand_offs: HandOffs,
}

/// The controller's word on the cached session, when it could be asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Controller<'a> {
    /// The session's state and how many connections it has had.
    Says { state: &'a str, connections: u32 },
    /// The controller did not answer: the grant stays good until it expires, and the worker
    /// still refuses an ended session, so the local checks decide.
    Unreachable,
}

/// Why a fresh session is needed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Fresh {
    NearExpiry,
    Ended(String),
    NearLimit { used: u32, limit: u32 },
}

impl std::fmt::Display for Fresh {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fresh::NearExpiry => write!(
                f,
                "the cached session or its certificate expires within a minute"
            ),
            Fresh::Ended(state) => write!(f, "the cached session has ended ({state})"),
            Fresh::NearLimit { used, limit } => write!(
                f,
                "the cached session has used {used} of its {limit} connections"
            ),
        }
    }
}

/// `Ok(())` when the cached session may take one more connection at `now`.
pub(super) fn decide(cached: &Cached, controller: Controller<'_>, now: u64) -> Result<(), Fresh> {
    let horizon = now + MIN_LIFE_SECS;
    let certificate_expiring = cached
        .certificate_valid_before
        .is_some_and(|valid_before| valid_before <= horizon);
    if cached.session_expires_at <= horizon || certificate_expiring {
        return Err(Fresh::NearExpiry);
    }
    let in_flight = cached.hand_offs.in_flight(now);
    let used = match controller {
        Controller::Says { state, connections } => {
            if !matches!(state, "pending" | "active") {
                return Err(Fresh::Ended(state.to_owned()));
            }
            // Hand-offs already counted by the controller are not counted twice: the larger
            // of the two is a safe bound.
            connections.max(in_flight)
        }
        Controller::Unreachable => in_flight,
    };
    let limit = cached.hand_offs.connection_limit;
    if limit > 0 && used.saturating_add(1) > limit {
        return Err(Fresh::NearLimit { used, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_000_000;

    fn cached(limit: u32, at: &[u64]) -> Cached {
        Cached {
            session_expires_at: NOW + 3600,
            certificate_valid_before: Some(NOW + 300),
            hand_offs: HandOffs {
                session_id: "s_1".into(),
                connection_limit: limit,
                ssh_mode: portcullis_policy::SshMode::Certificate,
                at: at.to_vec(),
            },
        }
    }

    fn says(state: &str, connections: u32) -> Controller<'_> {
        Controller::Says { state, connections }
    }

    #[test]
    fn a_live_session_with_room_is_reused() {
        assert_eq!(decide(&cached(0, &[]), says("active", 40), NOW), Ok(()));
        assert_eq!(decide(&cached(4, &[]), says("pending", 0), NOW), Ok(()));
        assert_eq!(
            decide(&cached(4, &[NOW - 1, NOW - 2]), says("active", 3), NOW),
            Ok(())
        );
    }

    #[test]
    fn an_ended_session_is_not() {
        assert_eq!(
            decide(&cached(0, &[]), says("terminated", 0), NOW),
            Err(Fresh::Ended("terminated".into()))
        );
    }

    #[test]
    fn the_limit_counts_the_controller_and_the_hand_offs_in_flight() {
        // The controller has seen all four.
        assert_eq!(
            decide(&cached(4, &[]), says("active", 4), NOW),
            Err(Fresh::NearLimit { used: 4, limit: 4 })
        );
        // Four handed out in the last seconds, not yet seen by the controller.
        let recent = [NOW, NOW - 1, NOW - 5, NOW - 14];
        assert_eq!(
            decide(&cached(4, &recent), says("active", 1), NOW),
            Err(Fresh::NearLimit { used: 4, limit: 4 })
        );
        // Older hand-offs are in the controller's count or were never used.
        let old = [NOW - IN_FLIGHT_SECS, NOW - 100, NOW - 200, NOW - 300];
        assert_eq!(decide(&cached(4, &old), says("active", 1), NOW), Ok(()));
        // Without the controller, the hand-offs in flight decide.
        assert_eq!(
            decide(&cached(2, &[NOW, NOW]), Controller::Unreachable, NOW),
            Err(Fresh::NearLimit { used: 2, limit: 2 })
        );
        assert_eq!(
            decide(&cached(2, &[NOW]), Controller::Unreachable, NOW),
            Ok(())
        );
    }

    #[test]
    fn near_expiry_is_refreshed() {
        let mut c = cached(0, &[]);
        c.certificate_valid_before = Some(NOW + MIN_LIFE_SECS);
        assert_eq!(decide(&c, says("active", 0), NOW), Err(Fresh::NearExpiry));
        // A gateway session has no certificate: the session's own expiry decides.
        let mut c = cached(0, &[]);
        c.certificate_valid_before = None;
        assert_eq!(decide(&c, says("active", 0), NOW), Ok(()));
        let mut c = cached(0, &[]);
        c.session_expires_at = NOW + 10;
        assert_eq!(
            decide(&c, Controller::Unreachable, NOW),
            Err(Fresh::NearExpiry)
        );
    }

    #[test]
    fn recording_forgets_hand_offs_no_longer_in_flight() {
        let mut h = cached(0, &[NOW - 100, NOW - 3]).hand_offs;
        h.record(NOW);
        assert_eq!(h.at, vec![NOW - 3, NOW]);
    }
}
