//! The worker's live state: accepted grant keys, when a controller was last heard, and each
//! session's connection count and end signal.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use portcullis_proto::grant::GrantKey;
use tokio_util::sync::CancellationToken;

#[derive(Default)]
struct SessionEntry {
    admitted: u32,
    ended: Option<String>,
    cancel: CancellationToken,
}

#[derive(Default)]
struct Inner {
    keys: Vec<GrantKey>,
    last_heard: Option<Instant>,
    sessions: HashMap<String, SessionEntry>,
    /// Cancelled when no controller has been heard for the live grace: every connection
    /// open at that moment ends. Replaced by a fresh token once a controller answers.
    isolated: CancellationToken,
}

/// What the admission of a new connection found.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// The first connection of this session on this worker: ask the controller.
    First,
    /// A later connection, admitted locally.
    Local,
    Ended(String),
    LimitReached,
}

#[derive(Default)]
pub struct Table {
    inner: Mutex<Inner>,
}

impl Table {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    pub fn keys(&self) -> Vec<GrantKey> {
        self.with(|i| i.keys.clone())
    }

    pub fn heard(&self, keys: Vec<GrantKey>) {
        self.with(|i| {
            i.keys = keys;
            i.last_heard = Some(Instant::now());
            if i.isolated.is_cancelled() {
                i.isolated = CancellationToken::new();
            }
        });
    }

    /// The token that fires when the worker has been cut off for too long.
    pub fn isolation_token(&self) -> CancellationToken {
        self.with(|i| i.isolated.clone())
    }

    /// Ends every live connection if no controller was heard within `grace`; true if it did.
    pub fn isolate_if_stale(&self, grace: Duration) -> bool {
        self.with(|i| {
            let stale = i.last_heard.is_some_and(|t| t.elapsed() >= grace);
            if stale && !i.isolated.is_cancelled() {
                i.isolated.cancel();
                return true;
            }
            false
        })
    }

    pub fn fresh(&self, grace: Duration) -> bool {
        self.with(|i| i.last_heard.is_some_and(|t| t.elapsed() < grace))
    }

    /// Counts a connection against the session's limit (0 = unlimited).
    pub fn admit(&self, session_id: &str, limit: u32) -> Admission {
        self.with(|i| {
            let entry = i.sessions.entry(session_id.to_owned()).or_default();
            if let Some(reason) = &entry.ended {
                return Admission::Ended(reason.clone());
            }
            if limit > 0 && entry.admitted >= limit {
                return Admission::LimitReached;
            }
            entry.admitted += 1;
            if entry.admitted == 1 {
                Admission::First
            } else {
                Admission::Local
            }
        })
    }

    /// Undoes an admission the controller refused or that failed before it began.
    pub fn unadmit(&self, session_id: &str) {
        self.with(|i| {
            if let Some(e) = i.sessions.get_mut(session_id) {
                e.admitted = e.admitted.saturating_sub(1);
            }
        });
    }

    pub fn cancel_token(&self, session_id: &str) -> CancellationToken {
        self.with(|i| {
            i.sessions
                .entry(session_id.to_owned())
                .or_default()
                .cancel
                .clone()
        })
    }

    /// Ends a session: its live connections close, later ones are refused.
    pub fn end(&self, session_id: &str, reason: &str) {
        self.with(|i| {
            let entry = i.sessions.entry(session_id.to_owned()).or_default();
            if entry.ended.is_none() {
                entry.ended = Some(reason.to_owned());
            }
            entry.cancel.cancel();
        });
    }

    pub fn end_reason(&self, session_id: &str) -> Option<String> {
        self.with(|i| i.sessions.get(session_id).and_then(|e| e.ended.clone()))
    }

    /// Sessions this worker holds that have not ended.
    pub fn live(&self) -> Vec<String> {
        self.with(|i| {
            i.sessions
                .iter()
                .filter(|(_, e)| e.ended.is_none())
                .map(|(k, _)| k.clone())
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admission_counts_and_ends() {
        let t = Table::default();
        assert_eq!(t.admit("s", 2), Admission::First);
        assert_eq!(t.admit("s", 2), Admission::Local);
        assert_eq!(t.admit("s", 2), Admission::LimitReached);
        assert_eq!(t.admit("u", 0), Admission::First);
        let token = t.cancel_token("s");
        t.end("s", "canceled");
        assert!(token.is_cancelled());
        assert_eq!(t.admit("s", 0), Admission::Ended("canceled".into()));
        assert_eq!(t.live(), vec!["u".to_string()]);
        assert!(!t.fresh(Duration::from_secs(5)));
        t.heard(vec![]);
        assert!(t.fresh(Duration::from_secs(5)));
    }
}
