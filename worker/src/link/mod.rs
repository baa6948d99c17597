//! The worker's end of the cluster link: dial a controller (trying each configured address),
//! say hello, heartbeat, send spooled events and admission requests, and obey session ends.
//!
//! [`client`] holds the live links and sends other tasks' requests on them; [`dial`] keeps a
//! link this worker dials up, failing over between controllers (`inbound` serves the links
//! controllers dial); [`protocol`] decides what to send and what each frame received does;
//! [`drive`] runs a link over a stream: a [`Peer`] of the worker's role numbers the requests
//! and keeps their deadlines and the heartbeat, and `drive` does the socket reads and writes
//! and sleeps until the peer's next deadline. Recording chunks are the lowest priority: a
//! batch goes only when no other request waits to be sent and none is in flight.

mod client;
mod dial;
mod keys;
mod protocol;
mod redial;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_proto::link::{
    self, silence_limit, Incoming, LinkError, Peer, Request, Response, Role, Unsent,
};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use self::client::Outgoing;
pub use self::client::{LinkClient, Registration};
pub use self::dial::run;
pub use self::keys::learn_grant_key;
use self::protocol::Awaits;
use crate::Shared;

/// How long the link waits for the hello's answer.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// Until the hello's answer names the heartbeat interval, a controller silent this long is
/// taken for gone; after it, [`silence_limit`] of the interval.
const SILENCE: Duration = Duration::from_secs(10);
/// How often spooled events are looked for.
const EVENTS_EVERY: Duration = Duration::from_millis(100);
/// How long a link this side ends may take to say goodbye (TLS close_notify).
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a shutdown waits for the controller to acknowledge the last events.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);

/// Any byte stream a link runs over: TLS the worker dialled, or TLS a controller dialled.
pub trait LinkIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> LinkIo for T {}

/// Runs the link protocol (hello, heartbeats, events, requests both ways) over a stream,
/// whichever side dialled. The caller has authenticated the controller; `controller` names
/// it (a newer link with the same name replaces this one), `addr` is for the log. When the
/// link ends, every request still waiting on it fails with [`LinkError::Closed`].
pub async fn drive<S: LinkIo>(
    shared: &Arc<Shared>,
    io: S,
    controller: &str,
    addr: &str,
    shutdown: &CancellationToken,
) -> Result<(), LinkError> {
    let mut link = Link {
        shared,
        stream: Framed::new(io, link::codec()),
        peer: Peer::new(Role::Worker, SILENCE, Instant::now()),
    };
    let result = link.run(controller, addr, shutdown).await;
    for (awaits, error) in link.peer.close() {
        protocol::failed(awaits, error);
    }
    if matches!(result, Ok(()) | Err(LinkError::Replaced)) {
        // A link this side ends on purpose ends with TLS's close_notify, so the other side
        // reads a clean end rather than a truncated stream.
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, link.stream.get_mut().shutdown()).await;
    }
    result
}

/// One link's stream and peer.
struct Link<'a, S> {
    shared: &'a Shared,
    stream: Framed<S, LengthDelimitedCodec>,
    peer: Peer<Awaits>,
}

impl<S: LinkIo> Link<'_, S> {
    async fn run(
        &mut self,
        controller: &str,
        addr: &str,
        shutdown: &CancellationToken,
    ) -> Result<(), LinkError> {
        let heartbeat = self.say_hello().await?;
        self.peer.heartbeat_every(heartbeat, Instant::now());
        // The controller pings and answers every interval: silence beyond a couple of them
        // is a hung or vanished controller, noticed within the admission grace.
        self.peer.silent_after(silence_limit(heartbeat));
        // A worker already draining said so in its hello.
        let mut told_draining = self.shared.draining.is_cancelled();
        tracing::info!(controller.addr = %addr, "linked to controller");
        let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
        let registration = self.shared.link.register(controller, tx);
        let mut events = tokio::time::interval(EVENTS_EVERY);
        loop {
            let wake = tokio::time::Instant::from_std(self.peer.next_deadline());
            tokio::select! {
                _ = shutdown.cancelled() => {
                    self.flush_events().await;
                    self.say_stopped().await;
                    return Ok(());
                }
                _ = self.shared.draining.cancelled(), if !told_draining => {
                    // Tell the controller at once, so that it gives this worker no new session.
                    told_draining = true;
                    self.ask(protocol::heartbeat(self.shared), Awaits::Heartbeat, None).await?;
                }
                _ = registration.replaced.cancelled() => return Err(LinkError::Replaced),
                _ = tokio::time::sleep_until(wake) => {
                    let due = self.peer.poll_timers(Instant::now())?;
                    for (awaits, error) in due.expired {
                        protocol::failed(awaits, error);
                    }
                    if due.heartbeat {
                        if protocol::renewal_due(self.shared, &self.peer) {
                            self.ask(Request::RenewCertificate, Awaits::Renewal, None).await?;
                        }
                        self.ask(protocol::heartbeat(self.shared), Awaits::Heartbeat, None).await?;
                    }
                }
                _ = events.tick(), if protocol::events_due(self.shared, &self.peer) => {
                    self.ask(protocol::events(self.shared), Awaits::Events, None).await?;
                }
                _ = self.shared.chunks.ready(), if protocol::chunks_may_go(&self.peer, !rx.is_empty()) => {
                    self.send_chunks(&rx).await?;
                }
                outgoing = rx.recv() => {
                    // The sender lives in the registration, which only this function drops.
                    let Some(Outgoing { body, reply, timeout }) = outgoing else {
                        return Err(LinkError::Replaced);
                    };
                    self.ask(body, Awaits::External(reply), Some(timeout)).await?;
                }
                frame = self.stream.next() => {
                    let frame = frame.ok_or(LinkError::PeerClosed)?.map_err(LinkError::transport)?;
                    match self.peer.receive(&frame, Instant::now())? {
                        Incoming::Request { id, body } => {
                            let answer = self.peer.answer(id, protocol::serve(self.shared, body))?;
                            self.send(answer).await?;
                        }
                        Incoming::Answer { awaits, body } => protocol::answered(self.shared, awaits, body),
                        Incoming::Late { id } => tracing::debug!(request.id = id, "an answer came after its request timed out"),
                    }
                }
            }
        }
    }

    /// Sends a batch of recording chunks, unless another task's request is waiting (it may
    /// have come since the branch was chosen): chunks go only when nothing else does.
    async fn send_chunks(&mut self, rx: &mpsc::Receiver<Outgoing>) -> Result<(), LinkError> {
        if !protocol::chunks_may_go(&self.peer, !rx.is_empty()) {
            return Ok(());
        }
        match protocol::chunks(self.shared) {
            Some(request) => {
                self.ask(request, Awaits::Chunks, Some(protocol::CHUNKS_TIMEOUT))
                    .await
            }
            None => Ok(()),
        }
    }

    /// Sends the hello and waits for its answer (the first frame); returns the heartbeat
    /// interval.
    async fn say_hello(&mut self) -> Result<Duration, LinkError> {
        let hello = protocol::hello(self.shared);
        self.ask(hello, Awaits::Hello, None).await?;
        let first = tokio::time::timeout(HELLO_TIMEOUT, self.stream.next())
            .await
            .map_err(|_| LinkError::NoFirstFrame {
                after: HELLO_TIMEOUT,
            })?
            .ok_or(LinkError::PeerClosed)?
            .map_err(LinkError::transport)?;
        match self.peer.receive(&first, Instant::now())? {
            Incoming::Answer {
                awaits: Awaits::Hello,
                body,
            } => protocol::hello_answered(self.shared, body),
            _ => Err(LinkError::UnexpectedFirstFrame {
                expected: "the answer to the hello",
            }),
        }
    }

    /// Sends a request; one another task asked for that cannot be sent fails alone, one of
    /// the worker's own ends the link.
    async fn ask(
        &mut self,
        body: Request,
        awaits: Awaits,
        timeout: Option<Duration>,
    ) -> Result<(), LinkError> {
        match self.peer.request(body, awaits, timeout, Instant::now()) {
            Ok(frame) => self.send(frame).await,
            Err(Unsent {
                awaits: Awaits::External(reply),
                error,
            }) => {
                let _ = reply.send(Err(error));
                Ok(())
            }
            Err(Unsent { error, .. }) => Err(error),
        }
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), LinkError> {
        self.stream.send(frame).await.map_err(LinkError::transport)
    }

    /// On shutdown, after the last events: tell the controller this worker stops, so that its
    /// sessions end with reason `shutdown` now rather than as lost later; waits a little for
    /// the answer (best effort: without it they end as `worker_lost`).
    async fn say_stopped(&mut self) {
        self.ask_on_shutdown(protocol::stopped(self.shared), Awaits::Stopped)
            .await;
    }

    /// Best effort on shutdown: send what is spooled and wait a little for the
    /// acknowledgement (unacknowledged events stay on disk).
    async fn flush_events(&mut self) {
        if self.shared.spool.is_empty() {
            return;
        }
        if let Some(body) = self
            .ask_on_shutdown(protocol::events(self.shared), Awaits::Flush)
            .await
        {
            protocol::answered(self.shared, Awaits::Flush, body);
        }
    }

    /// Sends `body` and waits up to [`FLUSH_TIMEOUT`] for its answer, dropping whatever else
    /// arrives meanwhile (the link is closing); `None` when it could not be sent or no answer
    /// came in time.
    async fn ask_on_shutdown(&mut self, body: Request, awaits: Awaits) -> Option<Response> {
        let wanted = std::mem::discriminant(&awaits);
        self.ask(body, awaits, None).await.ok()?;
        let deadline = tokio::time::sleep(FLUSH_TIMEOUT);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                _ = &mut deadline => return None,
                frame = self.stream.next() => {
                    let Some(Ok(frame)) = frame else { return None };
                    if let Ok(Incoming::Answer { awaits, body }) =
                        self.peer.receive(&frame, Instant::now())
                    {
                        if std::mem::discriminant(&awaits) == wanted {
                            return Some(body);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
