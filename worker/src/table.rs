//! The worker's live state: accepted grant keys, when a controller was last heard, and each
//! session's connection count and end signal.
//!
//! The session table is a cache, and it is pruned: every entry has a deadline (the latest
//! expiry of the grants admitted for it; for an ended session, a minute after it ended, or
//! its grants' expiry if sooner), and one queue of deadlines, driven by a single task
//! ([`Table::run_expiry`]), ends the sessions whose grants expired (their connections close
//! with reason `expired`) and forgets them. Forgetting is safe: a forgotten session's grants
//! have expired, or it has ended, and a session's first connection on this worker is
//! admitted only by a controller, which refuses a session that has ended.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use portcullis_proto::clock::{Clock, SystemClock};
use portcullis_proto::grant::GrantKey;
use portcullis_proto::link::{EndReason, Trouble};
use tokio_util::sync::CancellationToken;

/// How long an ended session is remembered: one never admitted here, and one admitted here
/// whose grants have not expired yet. After that a connection with its grant is asked of a
/// controller again (a first connection), which refuses it: the table stays as large as a
/// minute of ended sessions, not as the grants' lifetime (8 hours by default) of them.
const ENDED_RETENTION_SECS: u64 = 60;

/// How a session's connections learn that it ended, and why.
#[derive(Debug, Default)]
pub struct Ending {
    cancel: CancellationToken,
    reason: OnceLock<EndReason>,
}

impl Ending {
    /// Resolves when the session has ended.
    pub async fn ended(&self) {
        self.cancel.cancelled().await
    }

    /// Why the session ended (once it has).
    pub fn reason(&self) -> EndReason {
        self.reason.get().copied().unwrap_or(EndReason::Canceled)
    }

    fn end(&self, why: EndReason) {
        let _ = self.reason.set(why);
        self.cancel.cancel();
    }

    fn is_ended(&self) -> bool {
        self.reason.get().is_some()
    }
}

struct SessionEntry {
    admitted: u32,
    /// Unix seconds after which the entry is dropped.
    deadline: u64,
    ending: Arc<Ending>,
}

#[derive(Default)]
struct Inner {
    keys: Vec<GrantKey>,
    last_heard: Option<Instant>,
    /// When a controller last answered without vouching for the sessions, and why.
    trouble: Option<(Instant, Trouble)>,
    sessions: HashMap<String, SessionEntry>,
    /// (deadline, session id): the timer queue. An item whose deadline is no longer its
    /// entry's is stale and skipped when it comes up.
    deadlines: BTreeSet<(u64, String)>,
    /// Cancelled when no controller has been heard for the live grace: every connection
    /// open at that moment ends. Replaced by a fresh token once a controller answers.
    isolated: CancellationToken,
}

impl Inner {
    /// Brings a session's deadline forward to `deadline` (never later than it was).
    fn forget_by(&mut self, session_id: &str, deadline: u64) {
        if let Some(entry) = self.sessions.get_mut(session_id) {
            if deadline < entry.deadline {
                entry.deadline = deadline;
                // The old (deadline, id) pair stays queued; `expire` skips a pair whose
                // deadline is no longer its session's.
                self.deadlines.insert((deadline, session_id.to_owned()));
            }
        }
    }

    fn entry(&mut self, session_id: &str, deadline: u64) -> &mut SessionEntry {
        let entry = self
            .sessions
            .entry(session_id.to_owned())
            .or_insert_with(|| SessionEntry {
                admitted: 0,
                deadline: 0,
                ending: Arc::default(),
            });
        if deadline > entry.deadline {
            entry.deadline = deadline;
            self.deadlines.insert((deadline, session_id.to_owned()));
        }
        entry
    }
}

/// Whether a controller last heard at `last_heard` (`None`: never) was heard less than `grace`
/// before `now`.
pub fn heard_within(last_heard: Option<Instant>, grace: Duration, now: Instant) -> bool {
    last_heard.is_some_and(|t| now.duration_since(t) < grace)
}

/// What the admission of a new connection found.
#[derive(Debug, PartialEq, Eq)]
pub enum Admission {
    /// The first connection of this session on this worker: ask the controller.
    First,
    /// A later connection, admitted locally.
    Local,
    Ended(EndReason),
    LimitReached,
}

pub struct Table {
    inner: Mutex<Inner>,
    /// Woken when a deadline earlier than every other is queued.
    earlier: tokio::sync::Notify,
    /// Grant expiries (wall clock) and the graces since a controller was heard (monotonic).
    clock: Arc<dyn Clock>,
}

impl Default for Table {
    fn default() -> Table {
        Table::new(Arc::new(SystemClock))
    }
}

impl Table {
    pub fn new(clock: Arc<dyn Clock>) -> Table {
        Table {
            inner: Mutex::default(),
            earlier: tokio::sync::Notify::new(),
            clock,
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut guard = match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// Runs `f`, and wakes the expiry task if it queued a new earliest deadline.
    fn with_deadlines<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let (value, earlier) = self.with(|i| {
            let before = i.deadlines.first().map(|(d, _)| *d);
            let value = f(i);
            let after = i.deadlines.first().map(|(d, _)| *d);
            (
                value,
                after.is_some() && (before.is_none() || after < before),
            )
        });
        if earlier {
            self.earlier.notify_one();
        }
        value
    }

    pub fn keys(&self) -> Vec<GrantKey> {
        self.with(|i| i.keys.clone())
    }

    /// Whether a grant key with id `kid` is among those heard (no copy of the list).
    pub fn knows_key(&self, kid: &str) -> bool {
        self.with(|i| i.keys.iter().any(|k| k.kid == kid))
    }

    pub fn heard(&self, keys: Vec<GrantKey>) {
        let now = self.clock.instant();
        self.with(|i| {
            i.keys = keys;
            i.last_heard = Some(now);
            if i.isolated.is_cancelled() {
                i.isolated = CancellationToken::new();
            }
        });
    }

    /// A controller answered but could not serve (its store is unreachable): remembered, so
    /// that a refusal says what is wrong rather than that no controller was heard.
    pub fn troubled(&self, trouble: Trouble) {
        let now = self.clock.instant();
        self.with(|i| i.trouble = Some((now, trouble)));
    }

    /// When a controller last answered with a trouble, and which; `None` if none ever did.
    pub fn trouble(&self) -> Option<(Instant, Trouble)> {
        self.with(|i| i.trouble)
    }

    /// The token that fires when the worker has been cut off for too long.
    pub fn isolation_token(&self) -> CancellationToken {
        self.with(|i| i.isolated.clone())
    }

    /// Ends every live connection if no controller was heard within `grace`; true if it did.
    pub fn isolate_if_stale(&self, grace: Duration) -> bool {
        let now = self.clock.instant();
        self.with(|i| {
            let stale = i.last_heard.is_some_and(|t| now.duration_since(t) >= grace);
            if stale && !i.isolated.is_cancelled() {
                i.isolated.cancel();
                return true;
            }
            false
        })
    }

    pub fn fresh(&self, grace: Duration) -> bool {
        heard_within(self.last_heard(), grace, self.clock.instant())
    }

    /// When a controller was last heard (the table's monotonic clock); `None` if never.
    pub fn last_heard(&self) -> Option<Instant> {
        self.with(|i| i.last_heard)
    }

    /// Counts a connection against the session's limit (0 = unlimited); `expires_at` is the
    /// grant's expiry (unix seconds), when the session's connections end.
    pub fn admit(&self, session_id: &str, limit: u32, expires_at: u64) -> Admission {
        self.with_deadlines(|i| {
            // An ended session is refused without moving its deadline: it is forgotten
            // `ENDED_RETENTION_SECS` after it ended, whatever grants still come.
            let ended = i
                .sessions
                .get(session_id)
                .and_then(|e| e.ending.reason.get());
            if let Some(&reason) = ended {
                return Admission::Ended(reason);
            }
            let entry = i.entry(session_id, expires_at);
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

    /// The end signal of an admitted session. A session no longer in the table was
    /// forgotten when its grants expired: its signal has already fired, with `expired`.
    pub fn ending(&self, session_id: &str) -> Arc<Ending> {
        self.with(|i| {
            i.sessions
                .get(session_id)
                .map(|e| e.ending.clone())
                .unwrap_or_else(|| {
                    let ending = Ending::default();
                    ending.end(EndReason::Expired);
                    Arc::new(ending)
                })
        })
    }

    /// Ends a session: its live connections close, later ones are refused.
    pub fn end(&self, session_id: &str, reason: EndReason) {
        let retain = self.clock.unix_secs() + ENDED_RETENTION_SECS;
        self.with_deadlines(|i| {
            // Remembered for a while (an admitted one no longer than its grants' expiry).
            let known = i.sessions.contains_key(session_id);
            if known {
                i.forget_by(session_id, retain);
            }
            i.entry(session_id, if known { 0 } else { retain })
                .ending
                .end(reason);
        });
    }

    pub fn end_reason(&self, session_id: &str) -> Option<EndReason> {
        self.with(|i| {
            i.sessions
                .get(session_id)
                .and_then(|e| e.ending.reason.get().copied())
        })
    }

    /// Sessions this worker holds that have not ended.
    pub fn live(&self) -> Vec<String> {
        self.with(|i| {
            i.sessions
                .iter()
                .filter(|(_, e)| !e.ending.is_ended())
                .map(|(k, _)| k.clone())
                .collect()
        })
    }

    /// How many sessions the table holds, ended or not.
    pub fn len(&self) -> usize {
        self.with(|i| i.sessions.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends (reason `expired`) and forgets every session whose deadline is at or before
    /// `now` (unix seconds); returns the next deadline still queued.
    pub fn expire(&self, now: u64) -> Option<u64> {
        self.with(|i| {
            while let Some((deadline, id)) = i.deadlines.first().cloned() {
                if deadline > now {
                    return Some(deadline);
                }
                i.deadlines.pop_first();
                if i.sessions.get(&id).is_some_and(|e| e.deadline == deadline) {
                    if let Some(entry) = i.sessions.remove(&id) {
                        entry.ending.end(EndReason::Expired);
                    }
                }
            }
            None
        })
    }

    /// The single expiry task: sleeps until the earliest deadline (or until an earlier one
    /// is queued) and expires what is due, until `stop`.
    pub async fn run_expiry(&self, stop: CancellationToken) {
        loop {
            let next = self.expire(self.clock.unix_secs());
            let wait = match next {
                Some(at) => Duration::from_secs(at.saturating_sub(self.clock.unix_secs())),
                None => Duration::from_secs(3600),
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.earlier.notified() => {}
                // Grants are refused from their expiry second on (grant::verify), and their
                // connections end within that second.
                _ = tokio::time::sleep(wait.max(Duration::from_millis(200))) => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
