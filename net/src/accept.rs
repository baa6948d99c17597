//! How every listener of Portcullis (the controller's API and cluster link, the worker's proxy
//! and cluster listeners, the CLI's local listener and its echo target) treats a failing
//! `accept`, so that none of them spins, stops, or hides the reason.
//!
//! A failure is one of three kinds ([`classify`]):
//! - [`Failure::Connection`]: the connection died before it was accepted (the client reset
//!   or aborted it, a firewall refused it, the network under it went away). It costs the
//!   listener nothing: the failure is logged and the next `accept` follows at once.
//! - [`Failure::Descriptors`] and [`Failure::Memory`]: the process or the system is out of
//!   file descriptors (EMFILE, ENFILE) or of buffer memory (ENOBUFS, ENOMEM). Accepting again
//!   at once would fail again, in a busy loop: the listener waits ([`backoff`]: 5 ms after the
//!   first failure in a row, doubling up to one second, from the start again after the next
//!   success). Out of descriptors, a listener that holds idle connections may also close one
//!   to make room ([`Acceptor::on_descriptors_exhausted`]).
//! - [`Failure::Listener`]: anything else (the listening socket itself is broken). Waited out
//!   like a resource failure, so a listener that cannot recover still does not spin.
//!
//! Every failure is logged, at most once per [`LOG_EVERY`] with the number not logged since
//! ([`LogLimit`]), so a flood of failures is one line every ten seconds.
//!
//! The decisions ([`classify`], [`backoff`], [`Policy`], [`LogLimit`]) are pure and take the
//! time as a value; [`Acceptor`] is the thin async driver that runs them around the caller's
//! own `accept` (a TCP or Unix listener: the socket stays the caller's) and its timer.

use std::future::Future;
use std::io;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

#[cfg(test)]
mod tests;

/// At most one log line per this interval for a failing accept (or a full gate, which uses
/// the same [`LogLimit`]).
pub const LOG_EVERY: Duration = Duration::from_secs(10);

/// The wait after the first failure in a row that is not the connection's own.
pub const FIRST_BACKOFF: Duration = Duration::from_millis(5);

/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// What a failed `accept` says about the listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The connection failed before it was accepted; the listener is fine.
    Connection,
    /// Out of file descriptors (EMFILE, ENFILE).
    Descriptors,
    /// Out of memory or socket buffers (ENOMEM, ENOBUFS).
    Memory,
    /// Any other failure of the listening socket.
    Listener,
}

impl Failure {
    /// Whether the next attempt waits (see the module documentation).
    pub fn backs_off(self) -> bool {
        self != Failure::Connection
    }
}

/// The kind of an `accept` error (accept(2): the errors of the connection are those Linux
/// passes on from the network, to be treated like EAGAIN).
pub fn classify(err: &io::Error) -> Failure {
    use rustix::io::Errno;
    let Some(code) = err.raw_os_error() else {
        return Failure::Listener;
    };
    let is = |errno: Errno| code == errno.raw_os_error();
    if [Errno::MFILE, Errno::NFILE].into_iter().any(is) {
        Failure::Descriptors
    } else if [Errno::NOBUFS, Errno::NOMEM].into_iter().any(is) {
        Failure::Memory
    } else if [
        Errno::CONNABORTED,
        Errno::CONNRESET,
        Errno::CONNREFUSED,
        Errno::PROTO,
        Errno::PERM,
        Errno::NOPROTOOPT,
        Errno::HOSTDOWN,
        Errno::HOSTUNREACH,
        Errno::NETDOWN,
        Errno::NETUNREACH,
        Errno::OPNOTSUPP,
        Errno::TIMEDOUT,
        Errno::INTR,
        Errno::AGAIN,
    ]
    .into_iter()
    .any(is)
    {
        Failure::Connection
    } else {
        Failure::Listener
    }
}

/// The wait before the next attempt after `in_a_row` failures that back off (1 or more):
/// [`FIRST_BACKOFF`], doubling, at most [`MAX_BACKOFF`].
pub fn backoff(in_a_row: u32) -> Duration {
    let doublings = in_a_row.saturating_sub(1).min(16);
    FIRST_BACKOFF
        .saturating_mul(1 << doublings)
        .min(MAX_BACKOFF)
}

/// Counts what happened since the last log line, and says when the next may be written.
#[derive(Debug, Default)]
pub struct LogLimit {
    last: Option<Instant>,
    suppressed: u64,
}

impl LogLimit {
    /// How many events were not logged since the last line, when one may be written now;
    /// None otherwise (this event is counted instead).
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now.duration_since(t) < LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// What to do about one failed `accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reaction {
    pub failure: Failure,
    /// Wait this long before the next attempt (None: at once).
    pub wait: Option<Duration>,
    /// Log the failure, with the number of failures not logged since the last line.
    pub log: Option<u64>,
}

/// The accept policy of one listener: its failures in a row and its log limit.
#[derive(Debug, Default)]
pub struct Policy {
    in_a_row: u32,
    log: LogLimit,
}

impl Policy {
    /// A connection was accepted: the next failure waits [`FIRST_BACKOFF`] again.
    pub fn succeeded(&mut self) {
        self.in_a_row = 0;
    }

    /// Decides about a failed `accept` of kind `failure` at `now`.
    pub fn failed(&mut self, failure: Failure, now: Instant) -> Reaction {
        let wait = failure.backs_off().then(|| {
            self.in_a_row = self.in_a_row.saturating_add(1);
            backoff(self.in_a_row)
        });
        Reaction {
            failure,
            wait,
            log: self.log.due(now),
        }
    }
}

/// Runs a listener's [`Policy`] around its `accept`.
pub struct Acceptor {
    /// Names the listener in log lines, which begin "`what` accept failed" (`API`, `link`,
    /// `proxy`, `cluster`, `local`...).
    what: &'static str,
    policy: Policy,
    on_descriptors_exhausted: Option<Box<dyn FnMut() + Send>>,
}

impl Acceptor {
    pub fn new(what: &'static str) -> Acceptor {
        Acceptor {
            what,
            policy: Policy::default(),
            on_descriptors_exhausted: None,
        }
    }

    /// Called after each failure for want of descriptors, before the wait: a listener that
    /// holds idle connections closes one, so that the next attempt can succeed.
    pub fn on_descriptors_exhausted(mut self, free_one: impl FnMut() + Send + 'static) -> Self {
        self.on_descriptors_exhausted = Some(Box::new(free_one));
        self
    }

    /// The next accepted connection; failures are handled by the policy, never returned.
    /// Cancel-safe (nothing is lost when the future is dropped, also during a wait), so it may
    /// be raced against other events in `select!`; see [`Acceptor::next_until`] for the usual
    /// case.
    pub async fn next<T, F, Fut>(&mut self, mut accept: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = io::Result<T>>,
    {
        loop {
            let err = match accept().await {
                Ok(accepted) => {
                    self.policy.succeeded();
                    return accepted;
                }
                Err(err) => err,
            };
            let reaction = self.policy.failed(classify(&err), Instant::now());
            if let Some(unlogged) = reaction.log {
                match reaction.failure {
                    Failure::Connection => tracing::info!(
                        listener = self.what, error = %err, failures.unlogged = unlogged,
                        "{} accept failed: the connection failed before it was accepted; accepting the next",
                        self.what
                    ),
                    Failure::Descriptors => tracing::warn!(
                        listener = self.what, error = %err, failures.unlogged = unlogged,
                        backoff = ?reaction.wait,
                        "{} accept failed: out of file descriptors; backing off (raise the descriptor limit, `ulimit -n` or LimitNOFILE=, or lower the connection caps)",
                        self.what
                    ),
                    Failure::Memory => tracing::warn!(
                        listener = self.what, error = %err, failures.unlogged = unlogged,
                        backoff = ?reaction.wait,
                        "{} accept failed: out of memory or socket buffers; backing off",
                        self.what
                    ),
                    Failure::Listener => tracing::warn!(
                        listener = self.what, error = %err, failures.unlogged = unlogged,
                        backoff = ?reaction.wait,
                        "{} accept failed; backing off",
                        self.what
                    ),
                }
            }
            if reaction.failure == Failure::Descriptors {
                if let Some(free_one) = self.on_descriptors_exhausted.as_mut() {
                    free_one();
                }
            }
            if let Some(wait) = reaction.wait {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// [`Acceptor::next`], or None as soon as `shutdown` is cancelled (also during a wait).
    pub async fn next_until<T, F, Fut>(
        &mut self,
        accept: F,
        shutdown: &CancellationToken,
    ) -> Option<T>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = io::Result<T>>,
    {
        tokio::select! {
            _ = shutdown.cancelled() => None,
            accepted = self.next(accept) => Some(accepted),
        }
    }
}
