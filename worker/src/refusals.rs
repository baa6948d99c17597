//! Connections the worker refused by itself, summed per session and refusal code over a
//! window, then spooled like connection events for the controller's audit log
//! (`connection_refused`).
//!
//! Why: a refusal the worker decides (the session ended, no controller heard recently, a grant
//! that does not verify, a garbled handshake) used to reach only the worker's log, so the
//! audit log could not say who was refused. Anyone who can reach the proxy port can be
//! refused as often as they can connect, so each refusal is not an event of its own: one
//! event per (session, code) and window carries the count, the first and last time, the first
//! client address and, for a session's refusals, the first refusal's sentence. Refusals before
//! a grant verified name no session (a session id from an unverified grant is anyone's
//! claim) and are summed per code alone; past [`MAX_SESSIONS`] sessions in a window, further
//! ones are summed there too. Refusals the controller decided (its answer to a session's
//! first connection) are audited by the controller and not noted here.
//!
//! The summing ([`Aggregator`]) is pure, the time passed in; [`Refusals`] shares it between
//! the connections, which only note (no I/O), and [`run`], which spools each window that
//! ended, and everything still open when the worker stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use portcullis_proto::link::{ConnectionEvent, RefusalSummary};
use portcullis_proto::proxy::RefusalCode;
use tokio_util::sync::CancellationToken;

use crate::Shared;

/// Sessions tracked in one window; refusals of further sessions are summed without one.
pub const MAX_SESSIONS: usize = 10_000;

/// How often [`run`] looks for windows that ended.
const TICK: Duration = Duration::from_millis(250);

/// One refusal, as a connection's task notes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// The session of the verified grant; `None` before a grant verified.
    pub session_id: Option<String>,
    pub code: RefusalCode,
    /// The client's address.
    pub client_addr: String,
    /// The refusal's sentence (kept only for a session's refusals).
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    session_id: Option<String>,
    code: RefusalCode,
}

#[derive(Debug, Clone)]
struct Window {
    count: u64,
    first: SystemTime,
    last: SystemTime,
    client_addr: String,
    message: Option<String>,
}

/// Open windows by session and code. A window opens at its first refusal and ends `window`
/// later; refusals meanwhile only count.
#[derive(Debug)]
pub struct Aggregator {
    window: Duration,
    open: HashMap<Key, Window>,
}

impl Aggregator {
    pub fn new(window: Duration) -> Aggregator {
        Aggregator {
            window,
            open: HashMap::new(),
        }
    }

    /// Counts `refused`, seen at `now`.
    pub fn note(&mut self, refused: Refused, now: SystemTime) {
        let mut key = Key {
            session_id: refused.session_id,
            code: refused.code,
        };
        if key.session_id.is_some()
            && !self.open.contains_key(&key)
            && self.sessions() >= MAX_SESSIONS
        {
            key.session_id = None;
        }
        let message = key.session_id.is_some().then_some(refused.message);
        let window = self.open.entry(key).or_insert_with(|| Window {
            count: 0,
            first: now,
            last: now,
            client_addr: refused.client_addr,
            message,
        });
        window.count += 1;
        window.last = window.last.max(now);
    }

    /// Removes the windows that ended by `now` and returns their summaries, oldest first;
    /// `ids` names each.
    pub fn due(&mut self, now: SystemTime, ids: impl FnMut() -> String) -> Vec<RefusalSummary> {
        let window = self.window;
        let ended: Vec<Key> = self
            .open
            .iter()
            .filter(|(_, w)| w.first + window <= now)
            .map(|(k, _)| k.clone())
            .collect();
        self.take(ended, ids)
    }

    /// Removes every open window (at shutdown) and returns their summaries, oldest first.
    pub fn drain(&mut self, ids: impl FnMut() -> String) -> Vec<RefusalSummary> {
        let all: Vec<Key> = self.open.keys().cloned().collect();
        self.take(all, ids)
    }

    fn sessions(&self) -> usize {
        self.open.keys().filter(|k| k.session_id.is_some()).count()
    }

    fn take(&mut self, keys: Vec<Key>, mut ids: impl FnMut() -> String) -> Vec<RefusalSummary> {
        let mut ended: Vec<(Key, Window)> = keys
            .into_iter()
            .filter_map(|key| self.open.remove(&key).map(|w| (key, w)))
            .collect();
        ended.sort_by(|(ka, a), (kb, b)| {
            (a.first, &ka.session_id, ka.code).cmp(&(b.first, &kb.session_id, kb.code))
        });
        ended
            .into_iter()
            .map(|(key, w)| RefusalSummary {
                summary_id: ids(),
                session_id: key.session_id,
                code: key.code,
                count: w.count,
                first_at_ms: unix_ms(w.first),
                last_at_ms: unix_ms(w.last),
                client_addr: w.client_addr,
                message: w.message,
            })
            .collect()
    }
}

fn unix_ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The aggregator the connections note refusals in.
#[derive(Clone)]
pub struct Refusals {
    inner: Arc<Mutex<Aggregator>>,
}

impl Refusals {
    pub fn new(window: Duration) -> Refusals {
        Refusals {
            inner: Arc::new(Mutex::new(Aggregator::new(window))),
        }
    }

    /// Counts a refusal; it reaches the spool when its window ends.
    pub fn note(&self, refused: Refused, now: SystemTime) {
        self.lock().note(refused, now);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Aggregator> {
        // Counts only: a panic elsewhere cannot leave the map half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Spools every open window (at shutdown).
    pub async fn spool_all(&self, shared: &Shared) {
        let summaries = self.lock().drain(summary_id);
        spool(shared, summaries).await;
    }
}

/// Spools each window as it ends, until `stop`.
pub async fn run(shared: Arc<Shared>, stop: CancellationToken) {
    let mut tick = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let summaries = shared.refusals.lock().due(shared.clock.now(), summary_id);
        spool(&shared, summaries).await;
    }
}

async fn spool(shared: &Shared, summaries: Vec<RefusalSummary>) {
    for summary in summaries {
        shared.spool.record(ConnectionEvent::refused(summary)).await;
    }
}

fn summary_id() -> String {
    let b: [u8; 12] = match portcullis_crypto::random::bytes() {
        Ok(b) => b,
        Err(_) => std::process::abort(),
    };
    format!("r_{}", hex::encode(b))
}

#[cfg(test)]
#[path = "refusals_tests.rs"]
mod tests;
