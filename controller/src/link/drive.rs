//! Runs the controller's end of one link over an established stream: the first request
//! (`hello`, or `join` on a link without a worker certificate), then the worker's requests
//! served side by side and this controller's requests (from the [`registry`](super::registry))
//! sent and matched to their answers. A [`Peer`] of the controller's role numbers the
//! requests, keeps their deadlines and notices a silent worker; this module does the reads,
//! the writes and the sleeps.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_proto::link::{self, Incoming, LinkError, Peer, Request, Response, Role, Unsent};
use portcullis_proto::text;
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};
use tokio_util::sync::CancellationToken;

use super::registry::{Outgoing, Reply};
use super::{gate, handler};
use crate::state::AppState;

/// Requests of one worker served at the same time; beyond this the link stops reading.
const MAX_SERVING: usize = 64;

/// Any byte stream a link runs over: TLS accepted from a worker, or TLS dialled to one.
pub(crate) trait LinkIo:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> LinkIo for T {}

/// Runs the link protocol over an established stream with the worker at `peer`.
/// `peer_spki` is the worker's key when its certificate chains to the CA; without one, the
/// link may only enrol. `place`, the link's place in the listener's [`gate`], is given back
/// as soon as the link is authenticated (hello accepted) or has had its answer (join). When
/// the link ends, every request this controller still waits for fails with
/// [`LinkError::Closed`].
pub(crate) async fn drive<S: LinkIo>(
    io: S,
    peer: IpAddr,
    peer_spki: Option<Vec<u8>>,
    place: Option<gate::Place>,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), LinkError> {
    // A silent worker is dropped: it heartbeats every interval.
    let silence = state.config.heartbeat_interval * 5 + Duration::from_secs(2);
    let mut link = Link {
        stream: Framed::new(io, link::codec()),
        peer: Peer::new(Role::Controller, silence, Instant::now()),
    };
    let result = link.run(peer, peer_spki, place, &state, &shutdown).await;
    for (reply, error) in link.peer.close() {
        let _ = reply.send(Err(error));
    }
    if matches!(result, Ok(()) | Err(LinkError::Replaced)) {
        // A link this side ends on purpose ends with TLS's close_notify, so the other side
        // reads a clean end rather than a truncated stream.
        let _ = tokio::time::timeout(GOODBYE_TIMEOUT, link.stream.get_mut().shutdown()).await;
    }
    result
}

/// How long a link this side ends may take to say goodbye (TLS close_notify).
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(1);

/// One link's stream and peer.
struct Link<S> {
    stream: Framed<S, LengthDelimitedCodec>,
    peer: Peer<Reply>,
}

impl<S: LinkIo> Link<S> {
    async fn run(
        &mut self,
        peer: IpAddr,
        peer_spki: Option<Vec<u8>>,
        place: Option<gate::Place>,
        state: &AppState,
        shutdown: &CancellationToken,
    ) -> Result<(), LinkError> {
        let (id, request) = self.first_request(state).await?;
        let Some(spki) = peer_spki else {
            // No client certificate: the only thing such a link may do is enrol.
            let response = match request {
                Request::Join(join) => {
                    crate::enrolment::join(state, join, peer.to_canonical()).await
                }
                _ => Response::error(
                    "present a worker certificate, or enrol with a join token first",
                ),
            };
            drop(place);
            return self.answer(id, response).await;
        };
        let Request::Hello(hello) = request else {
            let refusal = Response::error("the first request must be hello");
            self.answer(id, refusal).await?;
            return Err(LinkError::UnexpectedFirstFrame { expected: "hello" });
        };
        let worker_id = hello.worker_id.clone();
        tracing::Span::current().record("worker.id", worker_id.as_str());
        let answer = handler::hello(state, &spki, &hello).await;
        let refused = match &answer {
            Response::Sync(_) => None,
            Response::Error { message, .. } => Some(message.clone()),
            _ => Some("the controller's answer was not a sync".to_owned()),
        };
        self.answer(id, answer).await?;
        if let Some(message) = refused {
            return Err(LinkError::HelloRefused { message });
        }
        drop(place);
        tracing::info!(proxy.addr = %text::escaped(&hello.proxy_addr), "worker linked");
        // A ping every heartbeat interval, answered by the worker's link task alone: the
        // worker hears this controller even while a heartbeat's answer waits on the store,
        // and notices a hung controller by their absence (see `link::silence_limit`).
        self.peer
            .heartbeat_every(state.config.heartbeat_interval, Instant::now());
        let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
        let handle = state.links.insert(&worker_id, tx, &spki);
        let result = self
            .serve(
                state,
                &worker_id,
                &hello.proxy_addr,
                &mut rx,
                &handle.closed,
                shutdown,
            )
            .await;
        state.links.remove(&worker_id, handle.generation);
        result
    }

    /// The link's first frame, which must be a request, within the configured time.
    async fn first_request(&mut self, state: &AppState) -> Result<(u64, Request), LinkError> {
        let after = state.config.cluster_handshakes.first_frame_timeout;
        let first = tokio::time::timeout(after, self.stream.next())
            .await
            .map_err(|_| LinkError::NoFirstFrame { after })?
            .ok_or(LinkError::PeerClosed)?
            .map_err(LinkError::transport)?;
        match self.peer.receive(&first, Instant::now())? {
            Incoming::Request { id, body } => Ok((id, body)),
            _ => Err(LinkError::UnexpectedFirstFrame {
                expected: "a request",
            }),
        }
    }

    /// Serves the worker's requests side by side (a first connection's admission does not
    /// wait behind a frame of connection events being committed) and sends this
    /// controller's, until the link ends.
    async fn serve(
        &mut self,
        state: &AppState,
        worker_id: &str,
        proxy_addr: &str,
        rx: &mut mpsc::Receiver<Outgoing>,
        closed: &CancellationToken,
        shutdown: &CancellationToken,
    ) -> Result<(), LinkError> {
        let mut serving = FuturesUnordered::new();
        loop {
            let reading = serving.len() < MAX_SERVING;
            if !reading {
                self.peer.not_reading(Instant::now());
            }
            let wake = tokio::time::Instant::from_std(self.peer.next_deadline());
            tokio::select! {
                _ = shutdown.cancelled() => return Ok(()),
                _ = closed.cancelled() => return Err(LinkError::Replaced),
                outgoing = rx.recv() => {
                    let Some(Outgoing { body, reply, timeout }) = outgoing else { return Ok(()) };
                    match self.peer.request(body, reply, Some(timeout), Instant::now()) {
                        Ok(frame) => self.send(frame).await?,
                        Err(Unsent { awaits, error }) => {
                            let _ = awaits.send(Err(error));
                        }
                    }
                }
                Some((id, answer)) = serving.next(), if !serving.is_empty() => {
                    self.answer(id, answer).await?;
                }
                _ = tokio::time::sleep_until(wake) => {
                    if !reading {
                        self.peer.not_reading(Instant::now());
                    }
                    let due = self.peer.poll_timers(Instant::now())?;
                    for (reply, error) in due.expired {
                        let _ = reply.send(Err(error));
                    }
                    if due.heartbeat {
                        // Nobody waits for a ping's answer: any frame is proof of life.
                        let (reply, _) = tokio::sync::oneshot::channel();
                        let timeout = state.config.heartbeat_interval;
                        match self.peer.request(Request::Ping, reply, Some(timeout), Instant::now()) {
                            Ok(frame) => self.send(frame).await?,
                            Err(Unsent { error, .. }) => return Err(error),
                        }
                    }
                }
                frame = self.stream.next(), if reading => {
                    let Some(frame) = frame else { return Ok(()) };
                    let frame = frame.map_err(LinkError::transport)?;
                    match self.peer.receive(&frame, Instant::now())? {
                        Incoming::Request { id, body } => serving.push(async move {
                            (id, handler::handle(state, worker_id, proxy_addr, body).await)
                        }),
                        Incoming::Answer { awaits, body } => {
                            let _ = awaits.send(Ok(body));
                        }
                        Incoming::Late { id } => tracing::debug!(request.id = id, "an answer came after its request timed out"),
                    }
                }
            }
        }
    }

    async fn answer(&mut self, id: u64, body: Response) -> Result<(), LinkError> {
        let frame = self.peer.answer(id, body)?;
        self.send(frame).await
    }

    async fn send(&mut self, frame: Bytes) -> Result<(), LinkError> {
        self.stream.send(frame).await.map_err(LinkError::transport)
    }
}
