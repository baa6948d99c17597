//! The worker's part of the link protocol, apart from the socket and the request ids (the
//! [`Peer`] keeps those): the hello and what its answer means, the requests the worker sends
//! once linked, and what every answer and every request of the controller's does to the
//! worker's state (sessions, grant keys, spool, certificate). At most one `events` frame, one
//! `recording_chunks` frame and one certificate renewal are in flight. [`super::drive`] reads and writes the frames.

use std::time::Duration;

use portcullis_proto::link::{self, Hello, LinkError, Peer, Request, Response, WorkerPhase};
use tokio::sync::oneshot;

use crate::Shared;

/// Where the answer to another task's request goes (see [`super::LinkClient::request`]).
pub(super) type Reply = oneshot::Sender<Result<Response, LinkError>>;

/// What a request the worker sent awaits.
pub(super) enum Awaits {
    Hello,
    External(Reply),
    Heartbeat,
    Events,
    /// The events sent while shutting down; [`super::drive`] waits for their acknowledgement.
    Flush,
    Renewal,
    /// The last heartbeat, telling the controller this worker stops; waited for on shutdown.
    Stopped,
    /// Recording chunks from the spool.
    Chunks,
}

/// How long the controller may take to store a batch of chunks; after it they are sent
/// again.
pub(super) const CHUNKS_TIMEOUT: Duration = Duration::from_secs(30);

/// The request that opens a link: who this worker is and which sessions it holds open.
pub(super) fn hello(shared: &Shared) -> Request {
    Request::Hello(Hello {
        protocol_version: portcullis_proto::PROTOCOL_VERSION,
        worker_id: shared.identity.worker_id.clone(),
        proxy_addr: shared.proxy_addr.clone(),
        live_sessions: shared.table.live(),
        phase: phase(shared),
    })
}

/// What this worker is doing, as its hello and heartbeats tell the controllers.
pub(super) fn phase(shared: &Shared) -> WorkerPhase {
    if shared.draining.is_cancelled() {
        WorkerPhase::Draining
    } else {
        WorkerPhase::Serving
    }
}

/// The controller's answer to the hello: applies the sync it carries and returns the
/// heartbeat interval the controller asks for, or why the link cannot go on.
pub(super) fn hello_answered(shared: &Shared, answer: Response) -> Result<Duration, LinkError> {
    match answer {
        Response::Sync(sync) => {
            let every = Duration::from_millis(sync.heartbeat_ms.clamp(100, 60_000));
            apply_sync(shared, sync);
            Ok(every)
        }
        Response::Error { message, trouble } => {
            if let Some(trouble) = trouble {
                shared.table.troubled(trouble);
            }
            Err(LinkError::HelloRefused { message })
        }
        _ => Err(LinkError::UnexpectedFirstFrame {
            expected: "a sync answering the hello",
        }),
    }
}

/// Whether a certificate renewal is due (checked at each heartbeat) and none is in flight.
pub(super) fn renewal_due(shared: &Shared, peer: &Peer<Awaits>) -> bool {
    !peer.awaits_any(|a| matches!(a, Awaits::Renewal))
        && shared.certs.renewal_due(shared.clock.unix_secs())
}

/// The heartbeat: the sessions this worker holds open (the answer is the reconcile) and
/// whether it is draining.
pub(super) fn heartbeat(shared: &Shared) -> Request {
    Request::Heartbeat {
        live_sessions: shared.table.live(),
        phase: phase(shared),
    }
}

/// The last heartbeat of a worker about to exit: its sessions end with reason `shutdown`.
pub(super) fn stopped(shared: &Shared) -> Request {
    Request::Heartbeat {
        live_sessions: shared.table.live(),
        phase: WorkerPhase::Stopped,
    }
}

/// Whether spooled events wait and none are in flight.
pub(super) fn events_due(shared: &Shared, peer: &Peer<Awaits>) -> bool {
    !peer.awaits_any(|a| matches!(a, Awaits::Events)) && !shared.spool.is_empty()
}

/// The next spooled events, up to 500.
pub(super) fn events(shared: &Shared) -> Request {
    Request::Events {
        events: shared.spool.pending(500),
    }
}

/// Whether recording chunks may go now: none are in flight and nothing else waits to be
/// sent (`queued`: requests of the worker's other tasks), so that chunks never delay an
/// admission or a heartbeat by more than the one frame already on its way.
pub(super) fn chunks_may_go(peer: &Peer<Awaits>, queued: bool) -> bool {
    !queued && !peer.awaits_any(|a| matches!(a, Awaits::Chunks))
}

/// The next spooled chunks, if any can be read.
pub(super) fn chunks(shared: &Shared) -> Option<Request> {
    let chunks = shared.chunks.batch();
    (!chunks.is_empty()).then_some(Request::RecordingChunks { chunks })
}

/// Applies the controller's answer to a request of the worker's.
pub(super) fn answered(shared: &Shared, awaits: Awaits, body: Response) {
    match (awaits, body) {
        // The hello is answered before the link runs (see `super::drive`).
        (Awaits::Hello, _) => {}
        (Awaits::Heartbeat, Response::Sync(sync)) => apply_sync(shared, sync),
        (
            Awaits::Heartbeat,
            Response::Error {
                message,
                trouble: Some(trouble),
            },
        ) => {
            shared.table.troubled(trouble);
            tracing::warn!(%trouble, message = %portcullis_proto::text::escaped(&message), "heartbeat refused: no new connections are admitted until the controller recovers");
        }
        (Awaits::Heartbeat, other) => tracing::warn!(?other, "heartbeat refused"),
        (Awaits::Events | Awaits::Flush, Response::EventsAck { event_ids }) => {
            shared.spool.ack(&event_ids)
        }
        (Awaits::Events | Awaits::Flush, _) => {}
        (Awaits::Stopped, _) => {}
        (Awaits::Chunks, Response::ChunksStored { acks }) => shared.chunks.acknowledged(acks),
        (Awaits::Chunks, Response::Error { message, .. }) => shared.chunks.not_stored(&message),
        (Awaits::Chunks, other) => shared
            .chunks
            .not_stored(&format!("unexpected answer {other:?}")),
        (
            Awaits::Renewal,
            Response::Certificate {
                cert_pem,
                expires_at,
            },
        ) => match shared
            .certs
            .replace(cert_pem, expires_at, shared.clock.unix_secs())
        {
            Ok(()) => tracing::info!(expires_at, "certificate renewed"),
            Err(err) => {
                tracing::warn!(error = %err, "could not install the renewed certificate")
            }
        },
        (Awaits::Renewal, other) => {
            tracing::warn!(
                ?other,
                "certificate renewal refused; retrying at the next heartbeat"
            );
        }
        (Awaits::External(reply), body) => {
            let _ = reply.send(Ok(body));
        }
    }
}

/// A request of the worker's that will have no answer (it timed out, or the link closed):
/// another task waiting for it hears why; the worker's own are sent again on a later link.
pub(super) fn failed(awaits: Awaits, error: LinkError) {
    if let Awaits::External(reply) = awaits {
        let _ = reply.send(Err(error));
    }
}

/// The answer to a controller's request: workers obey session ends and answer pings.
pub(super) fn serve(shared: &Shared, body: Request) -> Response {
    match body {
        Request::EndSession(end) => {
            shared.table.end(&end.session_id, end.reason);
            Response::Ok
        }
        Request::Ping => Response::Ok,
        _ => Response::error("workers do not serve this request"),
    }
}

pub(super) fn apply_sync(shared: &Shared, sync: link::Sync) {
    shared.table.heard(sync.grant_keys);
    if let Some(bundle) = sync.tls_ca {
        match shared
            .certs
            .apply_ca_bundle(&bundle, shared.clock.unix_secs())
        {
            Ok(true) => tracing::info!("the controllers' TLS CA bundle changed; saved to ca.pem"),
            Ok(false) => {}
            Err(err) => {
                tracing::warn!(error = %err, "cannot take the controllers' TLS CA bundle; keeping the CAs trusted now")
            }
        }
    }
    for end in sync.ended {
        shared.table.end(&end.session_id, end.reason);
    }
}
