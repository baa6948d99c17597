//! The worker's end of the cluster link: dial a controller (trying each configured address),
//! say hello, heartbeat, send spooled events and admission requests, and obey session ends.
//!
//! [`client`] holds the live links and sends other tasks' requests on them; [`dial`] keeps a
//! link this worker dials up, failing over between controllers (`inbound` serves the links
//! controllers dial); [`peer`] decides what to send and what each frame received does;
//! [`drive`] runs a peer over a stream, doing the socket reads and writes and the timers.

mod client;
mod dial;
mod peer;

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_proto::link::{self, Frame, Request, Response};
use tokio::sync::mpsc;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;

use self::client::Outgoing;
pub use self::client::{LinkClient, Registration};
pub use self::dial::run;
use self::peer::Peer;
use crate::Shared;

/// Any byte stream a link runs over: TLS the worker dialled, or TLS a controller dialled.
pub trait LinkIo: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> LinkIo for T {}

type Stream<S> = Framed<S, tokio_util::codec::LengthDelimitedCodec>;

async fn send<S: LinkIo>(stream: &mut Stream<S>, frame: &Frame) -> Result<(), String> {
    stream
        .send(link::encode(frame).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())
}

/// Runs the link protocol (hello, heartbeats, events, requests both ways) over a stream,
/// whichever side dialled. The caller has authenticated the controller; `controller` names
/// it (a newer link with the same name replaces this one), `addr` is for the log.
pub async fn drive<S: LinkIo>(
    shared: &Arc<Shared>,
    io: S,
    controller: &str,
    addr: &str,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut stream = Framed::new(io, link::codec());
    let mut heartbeat = tokio::time::interval(say_hello(shared, &mut stream).await?);
    tracing::info!(controller.addr = %addr, "linked to controller");
    let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
    let registration = shared.link.register(controller, tx);
    let mut peer = Peer::new();
    let mut flush = tokio::time::interval(Duration::from_millis(100));
    let silence = Duration::from_secs(10);
    let mut last_frame = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => {
                flush_events(shared, &mut stream).await;
                return Ok(());
            }
            _ = registration.replaced.cancelled() => {
                return Err("a newer link from the same controller replaced this one".into());
            }
            _ = heartbeat.tick() => {
                if last_frame.elapsed() > silence {
                    return Err("the controller went silent".into());
                }
                if let Some(renewal) = peer.renewal(shared) {
                    send(&mut stream, &renewal).await?;
                }
                send(&mut stream, &peer.heartbeat(shared)).await?;
            }
            _ = flush.tick(), if peer.events_due(shared) => {
                send(&mut stream, &peer.events(shared)).await?;
            }
            outgoing = rx.recv() => {
                let Some(Outgoing { body, reply }) = outgoing else { return Err("link sender dropped".into()) };
                send(&mut stream, &peer.external(body, reply)).await?;
            }
            frame = stream.next() => {
                let bytes = frame.ok_or("the controller closed the link")?.map_err(|e| e.to_string())?;
                last_frame = tokio::time::Instant::now();
                let frame = link::decode(&bytes).map_err(|e| format!("malformed frame: {e}"))?;
                if let Some(answer) = peer.receive(shared, frame) {
                    send(&mut stream, &answer).await?;
                }
            }
        }
    }
}

/// Sends the hello and waits up to 10 s for its answer; returns the heartbeat interval.
async fn say_hello<S: LinkIo>(shared: &Shared, stream: &mut Stream<S>) -> Result<Duration, String> {
    send(stream, &peer::hello(shared)).await?;
    let first = tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .map_err(|_| "no answer to hello".to_string())?
        .ok_or("closed after hello")?
        .map_err(|e| e.to_string())?;
    peer::hello_answered(shared, link::decode(&first).map_err(|e| e.to_string())?)
}

/// Best effort on shutdown: send what is spooled (it stays on disk if unacknowledged).
async fn flush_events<S: LinkIo>(shared: &Shared, stream: &mut Stream<S>) {
    if shared.spool.is_empty() {
        return;
    }
    let events = shared.spool.pending(500);
    if send(
        stream,
        &Frame::Request {
            id: u64::MAX,
            body: Request::Events { events },
        },
    )
    .await
    .is_err()
    {
        return;
    }
    let deadline = tokio::time::sleep(Duration::from_secs(2));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            _ = &mut deadline => return,
            frame = stream.next() => {
                let Some(Ok(bytes)) = frame else { return };
                if let Ok(Frame::Response { id: u64::MAX, body: Response::EventsAck { event_ids } }) = link::decode(&bytes) {
                    shared.spool.ack(&event_ids);
                    return;
                }
            }
        }
    }
}
