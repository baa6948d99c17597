//! One end of the cluster link without its socket: the request multiplexing both the
//! controller and the worker drive from their I/O loops.
//!
//! A [`Peer`] numbers this side's requests, remembers what each awaits until its answer, its
//! deadline or the link's end, matches answers to requests, keeps the heartbeat schedule and
//! notices a silent peer. It turns requests and answers into encoded frames and received
//! frames into [`Incoming`] ones; it never reads a clock (every call that depends on time takes
//! `now`) and owns no socket, task or channel, so a driver does the reads, writes and sleeps
//! ([`Peer::next_deadline`] says until when it may sleep) and a test does none.
//!
//! Ids: the worker numbers its requests odd (its hello is 1), the controller even (from 2),
//! whichever side dialled; so an id names its request in both directions. An answer to an id
//! this side never used, or a second answer to one, is a protocol error that closes the link;
//! an answer that comes after its request timed out is [`Incoming::Late`] and harmless.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{decode, encode, Frame, LinkError, Request, Response, MAX_FRAME_LEN};

/// Which end of the link a peer is; it decides the parity of the ids the peer numbers its
/// requests with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Numbers its requests odd, from 1 (the hello).
    Worker,
    /// Numbers its requests even, from 2.
    Controller,
}

impl Role {
    fn first_id(self) -> u64 {
        match self {
            Role::Worker => 1,
            Role::Controller => 2,
        }
    }

    /// Whether `id` is one this role numbers its requests with.
    pub fn numbers(self, id: u64) -> bool {
        id % 2 == self.first_id() % 2
    }
}

/// How long a worker hears nothing from a controller before it takes the link for dead:
/// two of the controller's heartbeat intervals and half a second. A controller pings every
/// interval and answers every heartbeat, so a live one is never silent that long; with the
/// default one-second interval a hung controller is noticed within 2.5 s, in time to fail
/// over before a worker's 5 s admission grace runs out. It grows with the interval, so a long
/// interval never makes a live link look silent.
pub fn silence_limit(heartbeat: Duration) -> Duration {
    heartbeat
        .saturating_mul(2)
        .saturating_add(Duration::from_millis(500))
}

/// How many timed-out ids a peer remembers so that their late answers are told apart from
/// answers to ids never used; beyond this the oldest is forgotten.
const LATE_IDS_KEPT: usize = 1024;

/// A frame received, as the peer classified it.
#[derive(Debug)]
pub enum Incoming<T> {
    /// The other side asks something; answer it with [`Peer::answer`] and the same `id`.
    Request { id: u64, body: Request },
    /// The answer to one of this side's requests, with what that request awaited.
    Answer { awaits: T, body: Response },
    /// The answer to a request that had already timed out: nobody waits for it any more.
    Late { id: u64 },
}

/// A request the peer did not send, given back with why.
#[derive(Debug)]
pub struct Unsent<T> {
    pub awaits: T,
    pub error: LinkError,
}

/// What the clock brought at [`Peer::poll_timers`].
#[derive(Debug)]
pub struct Due<T> {
    /// Requests whose deadline passed, each with its [`LinkError::TimedOut`].
    pub expired: Vec<(T, LinkError)>,
    /// Whether a heartbeat is due now (at most once per interval).
    pub heartbeat: bool,
}

struct Pending<T> {
    awaits: T,
    deadline: Option<(Instant, Duration)>,
}

/// One end of a link: this side's requests in flight and the link's timers. `T` is what a
/// request awaits (a reply channel, or a tag the driver acts on when the answer comes).
pub struct Peer<T> {
    role: Role,
    next_id: u64,
    pending: HashMap<u64, Pending<T>>,
    late: VecDeque<u64>,
    silence_limit: Duration,
    last_heard: Instant,
    heartbeat: Option<(Duration, Instant)>,
    closed: bool,
}

impl<T> Peer<T> {
    /// A peer for `role` on a link that opened at `now`; it is [`LinkError::Silent`] once
    /// nothing has come for `silence_limit`.
    pub fn new(role: Role, silence_limit: Duration, now: Instant) -> Peer<T> {
        Peer {
            role,
            next_id: role.first_id(),
            pending: HashMap::new(),
            late: VecDeque::new(),
            silence_limit,
            last_heard: now,
            heartbeat: None,
            closed: false,
        }
    }

    /// Numbers a request, remembers what it `awaits` (until its answer, or `timeout` after
    /// `now` when given) and returns the encoded frame to send.
    pub fn request(
        &mut self,
        body: Request,
        awaits: T,
        timeout: Option<Duration>,
        now: Instant,
    ) -> Result<Bytes, Unsent<T>> {
        if self.closed {
            return Err(Unsent {
                awaits,
                error: LinkError::Closed,
            });
        }
        let id = self.next_id;
        let bytes = match encode_checked(&Frame::Request { id, body }) {
            Ok(bytes) => bytes,
            Err(error) => return Err(Unsent { awaits, error }),
        };
        // Wrapping keeps the parity (never reached: 2^63 requests on one link).
        self.next_id = self.next_id.wrapping_add(2);
        let deadline = timeout.and_then(|after| Some((now.checked_add(after)?, after)));
        self.pending.insert(id, Pending { awaits, deadline });
        Ok(bytes)
    }

    /// The encoded answer to the other side's request `id`.
    pub fn answer(&self, id: u64, body: Response) -> Result<Bytes, LinkError> {
        encode_checked(&Frame::Response { id, body })
    }

    /// Classifies a frame received at `now`. An error is a protocol violation: the driver
    /// closes the link (and [`close`](Self::close)s the peer).
    pub fn receive(&mut self, frame: &[u8], now: Instant) -> Result<Incoming<T>, LinkError> {
        if frame.len() > MAX_FRAME_LEN {
            return Err(LinkError::FrameTooLarge { len: frame.len() });
        }
        let frame = decode(frame).map_err(|e| LinkError::Malformed {
            reason: e.to_string(),
        })?;
        self.last_heard = now;
        match frame {
            Frame::Request { id, .. } if self.role.numbers(id) => {
                Err(LinkError::RequestIdOfOurs { id })
            }
            Frame::Request { id, body } => Ok(Incoming::Request { id, body }),
            Frame::Response { id, body } => {
                if let Some(pending) = self.pending.remove(&id) {
                    return Ok(Incoming::Answer {
                        awaits: pending.awaits,
                        body,
                    });
                }
                if let Some(at) = self.late.iter().position(|late| *late == id) {
                    self.late.remove(at);
                    return Ok(Incoming::Late { id });
                }
                if self.role.numbers(id) && (self.role.first_id()..self.next_id).contains(&id) {
                    Err(LinkError::DuplicateReply { id })
                } else {
                    Err(LinkError::UnknownReply { id })
                }
            }
        }
    }

    /// From now on the peer is [`LinkError::Silent`] once nothing has come for `limit` (a
    /// worker learns the controller's heartbeat interval only from the hello's answer).
    pub fn silent_after(&mut self, limit: Duration) {
        self.silence_limit = limit;
    }

    /// Sends a heartbeat every `every` from `now` on (the first is due at once).
    pub fn heartbeat_every(&mut self, every: Duration, now: Instant) {
        self.heartbeat = Some((every, now));
    }

    /// What the clock brings at `now`: the requests that timed out (forgotten, their late
    /// answers then [`Incoming::Late`]) and whether a heartbeat is due; or
    /// [`LinkError::Silent`] when nothing came from the peer for too long.
    pub fn poll_timers(&mut self, now: Instant) -> Result<Due<T>, LinkError> {
        if now.saturating_duration_since(self.last_heard) >= self.silence_limit {
            return Err(LinkError::Silent {
                after: self.silence_limit,
            });
        }
        let timed_out: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, p)| p.deadline.is_some_and(|(at, _)| at <= now))
            .map(|(id, _)| *id)
            .collect();
        let mut expired = Vec::with_capacity(timed_out.len());
        for id in timed_out {
            if let Some(pending) = self.pending.remove(&id) {
                let after = pending.deadline.map_or(Duration::ZERO, |(_, after)| after);
                expired.push((pending.awaits, LinkError::TimedOut { after }));
                if self.late.len() == LATE_IDS_KEPT {
                    self.late.pop_front();
                }
                self.late.push_back(id);
            }
        }
        let heartbeat = match &mut self.heartbeat {
            Some((every, next)) if *next <= now => {
                *next += *every;
                if *next <= now {
                    // Fell behind (a stalled driver): the next one an interval from now.
                    *next = now + *every;
                }
                true
            }
            _ => false,
        };
        Ok(Due { expired, heartbeat })
    }

    /// The earliest time [`poll_timers`](Self::poll_timers) has something to do: a request's
    /// deadline, the next heartbeat or the silence limit.
    pub fn next_deadline(&self) -> Instant {
        let silent_at = self.last_heard + self.silence_limit;
        self.pending
            .values()
            .filter_map(|p| p.deadline.map(|(at, _)| at))
            .chain(self.heartbeat.map(|(_, next)| next))
            .fold(silent_at, Instant::min)
    }

    /// The driver is not reading (it holds as many of the peer's requests as it serves at
    /// once): the time until it reads again is not the peer's silence.
    pub fn not_reading(&mut self, now: Instant) {
        self.last_heard = now;
    }

    /// Whether any request in flight awaits something `matching`.
    pub fn awaits_any(&self, matching: impl Fn(&T) -> bool) -> bool {
        self.pending.values().any(|p| matching(&p.awaits))
    }

    /// How many of this side's requests wait for an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len()
    }

    /// Ends the link: every request in flight fails with [`LinkError::Closed`], and later
    /// requests are refused with it.
    pub fn close(&mut self) -> Vec<(T, LinkError)> {
        self.closed = true;
        let mut ids: Vec<u64> = self.pending.keys().copied().collect();
        ids.sort_unstable();
        ids.into_iter()
            .filter_map(|id| self.pending.remove(&id))
            .map(|p| (p.awaits, LinkError::Closed))
            .collect()
    }
}

fn encode_checked(frame: &Frame) -> Result<Bytes, LinkError> {
    let bytes = encode(frame).map_err(|e| LinkError::Encode {
        reason: e.to_string(),
    })?;
    if bytes.len() > MAX_FRAME_LEN {
        return Err(LinkError::FrameTooLarge { len: bytes.len() });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
