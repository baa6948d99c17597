//! Failures of unauthenticated callers (a missing, malformed or unknown bearer token, a wrong
//! join token, a rate-limited login), summed per source address and event type into one
//! audit event per window.
//!
//! Why: each such failure used to append its own signed, chained and shipped event, so
//! anyone able to reach the port could grow the log, and slow every audited action behind the
//! chain's head lock, at the rate they could send requests. Every denial stays visible (the
//! event carries the count, the first and last time and the reasons seen), but an attacker
//! now buys at most one event per address, type and window.
//!
//! The summing ([`Aggregator`]) is pure, with the clock passed in. [`Denials`] shares it
//! between the request handlers, which only note failures (no I/O on the failing path), and
//! [`run`], which writes each window that ended through one audited transaction,
//! and everything still open when the controller stops. A window that cannot be written is
//! kept and written at the next attempt.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use portcullis_audit::event::{FailureSummary, LoginFailure};

use super::{Actor, AuditEvent, Event};
use crate::clock::SharedClock;
use crate::state::AppState;
use crate::store::StoreError;

/// Source addresses tracked in one window; failures from further addresses are summed under
/// one entry without an address, so memory stays bounded whatever the number of sources.
pub(crate) const MAX_SOURCES: usize = 10_000;

/// Summaries kept for another attempt while the store cannot take them; past this (a long
/// outage under attack) the oldest are dropped with an error in the controller's log.
pub(crate) const MAX_UNWRITTEN: usize = 100_000;

/// The event types that sum the failures of callers who proved nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum FailureKind {
    TokenRejected,
    WorkerJoinFailed,
    LoginFailed,
}

/// One failed attempt by an unauthenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The event type the summary is recorded as (`token_rejected`, `login_failed`,
    /// `worker_join_failed`).
    pub kind: FailureKind,
    pub source: IpAddr,
    /// Why it failed, from a fixed set of phrases (the key of `details.reasons`).
    pub reason: &'static str,
    /// A name the caller claimed (a worker name, a user name): kept as a sample, never as
    /// the actor.
    pub attempted_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    kind: FailureKind,
    /// None: the sum of the sources beyond [`MAX_SOURCES`].
    source: Option<IpAddr>,
}

/// A window that ended: what one audit event records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Summary {
    pub kind: FailureKind,
    pub source: Option<IpAddr>,
    pub count: u64,
    pub first: SystemTime,
    pub last: SystemTime,
    /// The first failure's reason.
    pub sample_reason: &'static str,
    pub reasons: BTreeMap<&'static str, u64>,
    pub attempted_name: Option<String>,
    pub window: Duration,
}

#[derive(Debug, Clone)]
struct Window {
    count: u64,
    first: SystemTime,
    last: SystemTime,
    sample_reason: &'static str,
    reasons: BTreeMap<&'static str, u64>,
    attempted_name: Option<String>,
}

/// Open windows by source and type. A window opens at its first failure and ends `window`
/// later; failures meanwhile only count.
#[derive(Debug)]
pub(crate) struct Aggregator {
    window: Duration,
    open: HashMap<Key, Window>,
}

impl Aggregator {
    pub(crate) fn new(window: Duration) -> Aggregator {
        Aggregator {
            window,
            open: HashMap::new(),
        }
    }

    /// Counts `failure`, seen at `now`; true if it opened a window.
    pub(crate) fn observe(&mut self, failure: Failure, now: SystemTime) -> bool {
        let mut key = Key {
            kind: failure.kind,
            source: Some(failure.source),
        };
        if !self.open.contains_key(&key) && self.open.len() >= MAX_SOURCES {
            key.source = None;
        }
        let opened = !self.open.contains_key(&key);
        let window = self.open.entry(key).or_insert_with(|| Window {
            count: 0,
            first: now,
            last: now,
            sample_reason: failure.reason,
            reasons: BTreeMap::new(),
            attempted_name: None,
        });
        window.count += 1;
        window.last = window.last.max(now);
        *window.reasons.entry(failure.reason).or_default() += 1;
        if window.attempted_name.is_none() {
            window.attempted_name = failure.attempted_name;
        }
        opened
    }

    /// Removes and returns the windows that ended by `now`, oldest first.
    pub(crate) fn due(&mut self, now: SystemTime) -> Vec<Summary> {
        let window = self.window;
        let ended: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, w)| w.first + window <= now)
            .map(|(k, _)| *k)
            .collect();
        self.take(ended)
    }

    /// Removes and returns every open window (at shutdown), oldest first.
    pub(crate) fn drain(&mut self) -> Vec<Summary> {
        let all: Vec<Key> = self.open.keys().copied().collect();
        self.take(all)
    }

    /// When the oldest open window ends.
    pub(crate) fn next_due(&self) -> Option<SystemTime> {
        self.open.values().map(|w| w.first + self.window).min()
    }

    fn take(&mut self, keys: Vec<Key>) -> Vec<Summary> {
        let mut out: Vec<Summary> = keys
            .into_iter()
            .filter_map(|key| {
                let w = self.open.remove(&key)?;
                Some(Summary {
                    kind: key.kind,
                    source: key.source,
                    count: w.count,
                    first: w.first,
                    last: w.last,
                    sample_reason: w.sample_reason,
                    reasons: w.reasons,
                    attempted_name: w.attempted_name,
                    window: self.window,
                })
            })
            .collect();
        out.sort_by_key(|s| (s.first, s.kind, s.source));
        out
    }
}

impl Summary {
    /// The audit event for this window (schema in docs/audit.md, "Unauthenticated failures").
    pub(crate) fn event(&self) -> AuditEvent {
        let time = |t: SystemTime| humantime::format_rfc3339_millis(t).to_string();
        let details = FailureSummary {
            count: self.count,
            first_at: time(self.first),
            last_at: time(self.last),
            window_secs: self.window.as_secs_f64(),
            reasons: self
                .reasons
                .iter()
                .map(|(reason, n)| ((*reason).to_owned(), *n))
                .collect(),
            attempted_name: self.attempted_name.clone(),
            sources: self
                .source
                .is_none()
                .then(|| "beyond the tracked limit; see the controller's log".to_owned()),
        };
        let reason = self.sample_reason.to_owned();
        let event = match self.kind {
            FailureKind::TokenRejected => Event::TokenRejected { reason, details },
            FailureKind::WorkerJoinFailed => Event::WorkerJoinFailed { reason, details },
            FailureKind::LoginFailed => Event::LoginFailed {
                reason,
                details: LoginFailure::Summary(details),
            },
        };
        let source = self.source.map_or_else(|| "*".into(), |ip| ip.to_string());
        AuditEvent::new(Actor::anonymous(&source), event)
    }
}

/// The aggregator shared by the handlers that note failures and the task that writes them.
#[derive(Clone)]
pub(crate) struct Denials {
    inner: Arc<Mutex<Aggregator>>,
    /// Wakes [`run`] when a window opens, so it sleeps until that window's end.
    opened: Arc<tokio::sync::Notify>,
    /// When failures are seen.
    clock: SharedClock,
}

impl Denials {
    pub(crate) fn new(window: Duration, clock: SharedClock) -> Denials {
        Denials {
            inner: Arc::new(Mutex::new(Aggregator::new(window))),
            opened: Arc::new(tokio::sync::Notify::new()),
            clock,
        }
    }

    /// Counts a failure; it reaches the audit log when its window ends.
    pub(crate) fn note(&self, failure: Failure) {
        let opened = self.lock().observe(failure, self.clock.now());
        if opened {
            self.opened.notify_one();
        }
    }

    /// Every open window's summary, taken (tests: what `run` would write).
    #[cfg(test)]
    pub(crate) fn drain(&self) -> Vec<Summary> {
        self.lock().drain()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        // Counts only: a panic elsewhere cannot leave the map half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Writes every window as it ends until `stop`, then everything still open.
pub(crate) async fn run(state: AppState, stop: CancellationToken) {
    let mut unwritten: Vec<Summary> = Vec::new();
    loop {
        let next = state.denials.lock().next_due();
        // Until the oldest window ends; with none open, until one opens (or a retry is due).
        let wait = match next {
            Some(due) => due
                .duration_since(state.clock.now())
                .unwrap_or(Duration::ZERO),
            None if unwritten.is_empty() => Duration::from_secs(3600),
            None => Duration::from_secs(1),
        };
        let stopping = tokio::select! {
            _ = stop.cancelled() => true,
            _ = state.denials.opened.notified() => continue,
            _ = tokio::time::sleep(wait.min(Duration::from_secs(3600))) => false,
        };
        let mut ready = if stopping {
            state.denials.lock().drain()
        } else {
            state.denials.lock().due(state.clock.now())
        };
        if !unwritten.is_empty() {
            unwritten.append(&mut ready);
            ready = std::mem::take(&mut unwritten);
        }
        if !ready.is_empty() {
            if let Err(err) = write(&state, &ready).await {
                tracing::warn!(
                    error = %err,
                    windows = ready.len(),
                    "could not write the summary of unauthenticated failures; retrying"
                );
                unwritten = ready;
                if unwritten.len() > MAX_UNWRITTEN {
                    let dropped = unwritten.len() - MAX_UNWRITTEN;
                    let lost: u64 = unwritten[..dropped].iter().map(|s| s.count).sum();
                    unwritten.drain(..dropped);
                    tracing::error!(
                        windows = dropped,
                        failures = lost,
                        "dropped summaries of unauthenticated failures the store could not take"
                    );
                }
            }
        }
        if stopping {
            return;
        }
    }
}

async fn write(state: &AppState, summaries: &[Summary]) -> Result<(), StoreError> {
    let mut tx = state.begin_audited().await?;
    for summary in summaries {
        tx.record(summary.event());
    }
    tx.commit_recorded().await?;
    Ok(())
}

#[cfg(test)]
#[path = "denials_tests.rs"]
mod tests;
