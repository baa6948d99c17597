//! The worker's side of the link protocol, apart from the socket: the hello and what its
//! answer means, then, once linked, the requests the worker sends (numbered odd from 3; the
//! hello is 1) with what each awaits, and what every frame from the controller does to the
//! worker's state (sessions, grant keys, spool, certificate). At most one `events` frame and
//! one certificate renewal are in flight. [`super::drive`] reads and writes the frames.

use std::collections::HashMap;
use std::time::Duration;

use portcullis_proto::link::{self, Frame, Hello, Request, Response};
use tokio::sync::oneshot;

use crate::Shared;

/// The hello's request id; the requests after it take the odd ids from 3.
const HELLO_ID: u64 = 1;

/// The frame that opens a link: who this worker is and which sessions it holds open.
pub(super) fn hello(shared: &Shared) -> Frame {
    let hello = Hello {
        protocol_version: portcullis_proto::PROTOCOL_VERSION,
        worker_id: shared.identity.worker_id.clone(),
        proxy_addr: shared.proxy_addr.clone(),
        live_sessions: shared.table.live(),
    };
    Frame::Request {
        id: HELLO_ID,
        body: Request::Hello(hello),
    }
}

/// The controller's answer to the hello: applies the sync it carries and returns the
/// heartbeat interval the controller asks for, or why the link cannot go on.
pub(super) fn hello_answered(shared: &Shared, answer: Frame) -> Result<Duration, String> {
    match answer {
        Frame::Response {
            body: Response::Sync(sync),
            ..
        } => {
            let every = Duration::from_millis(sync.heartbeat_ms.clamp(100, 60_000));
            apply_sync(shared, sync);
            Ok(every)
        }
        Frame::Response {
            body: Response::Error { message },
            ..
        } => Err(format!("hello refused: {message}")),
        _ => Err("unexpected answer to hello".into()),
    }
}

/// What a request the worker sent awaits.
enum Pending {
    External(oneshot::Sender<Response>),
    Heartbeat,
    Events,
    Renewal,
}

/// A linked peer: the worker's requests in flight on one link.
pub(super) struct Peer {
    pending: HashMap<u64, Pending>,
    next_id: u64,
    events_in_flight: bool,
    renewal_in_flight: bool,
}

impl Peer {
    pub(super) fn new() -> Peer {
        Peer {
            pending: HashMap::new(),
            next_id: HELLO_ID + 2,
            events_in_flight: false,
            renewal_in_flight: false,
        }
    }

    fn request(&mut self, awaits: Pending, body: Request) -> Frame {
        let id = self.next_id;
        self.next_id += 2;
        self.pending.insert(id, awaits);
        Frame::Request { id, body }
    }

    /// At a heartbeat, before the heartbeat itself: a certificate renewal when one is due
    /// and none is in flight.
    pub(super) fn renewal(&mut self, shared: &Shared) -> Option<Frame> {
        if !self.renewal_in_flight && shared.certs.renewal_due(shared.clock.unix_secs()) {
            self.renewal_in_flight = true;
            Some(self.request(Pending::Renewal, Request::RenewCertificate))
        } else {
            None
        }
    }

    /// The heartbeat: the sessions this worker holds open (the answer is the reconcile).
    pub(super) fn heartbeat(&mut self, shared: &Shared) -> Frame {
        self.request(
            Pending::Heartbeat,
            Request::Heartbeat {
                live_sessions: shared.table.live(),
            },
        )
    }

    /// Whether spooled events wait and none are in flight.
    pub(super) fn events_due(&self, shared: &Shared) -> bool {
        !self.events_in_flight && !shared.spool.is_empty()
    }

    /// The next spooled events, up to 500.
    pub(super) fn events(&mut self, shared: &Shared) -> Frame {
        self.events_in_flight = true;
        self.request(
            Pending::Events,
            Request::Events {
                events: shared.spool.pending(500),
            },
        )
    }

    /// A request from another task (see [`super::LinkClient::request`]); its answer goes to
    /// `reply`.
    pub(super) fn external(&mut self, body: Request, reply: oneshot::Sender<Response>) -> Frame {
        self.request(Pending::External(reply), body)
    }

    /// Applies a frame from the controller; returns the answer to send, if it asked something.
    pub(super) fn receive(&mut self, shared: &Shared, frame: Frame) -> Option<Frame> {
        match frame {
            Frame::Response { id, body } => {
                self.answered(shared, id, body);
                None
            }
            Frame::Request { id, body } => Some(Frame::Response {
                id,
                body: serve(shared, body),
            }),
        }
    }

    fn answered(&mut self, shared: &Shared, id: u64, body: Response) {
        match (self.pending.remove(&id), body) {
            (Some(Pending::Heartbeat), Response::Sync(sync)) => apply_sync(shared, sync),
            (Some(Pending::Heartbeat), other) => tracing::warn!(?other, "heartbeat refused"),
            (Some(Pending::Events), Response::EventsAck { event_ids }) => {
                shared.spool.ack(&event_ids);
                self.events_in_flight = false;
            }
            (Some(Pending::Events), _) => self.events_in_flight = false,
            (
                Some(Pending::Renewal),
                Response::Certificate {
                    cert_pem,
                    expires_at,
                },
            ) => {
                match shared
                    .certs
                    .replace(cert_pem, expires_at, shared.clock.unix_secs())
                {
                    Ok(()) => tracing::info!(expires_at, "certificate renewed"),
                    Err(err) => {
                        tracing::warn!(error = %err, "could not install the renewed certificate")
                    }
                }
                self.renewal_in_flight = false;
            }
            (Some(Pending::Renewal), other) => {
                tracing::warn!(
                    ?other,
                    "certificate renewal refused; retrying at the next heartbeat"
                );
                self.renewal_in_flight = false;
            }
            (Some(Pending::External(reply)), body) => {
                let _ = reply.send(body);
            }
            (None, _) => {}
        }
    }
}

/// The answer to a controller's request: workers obey session ends and answer pings.
fn serve(shared: &Shared, body: Request) -> Response {
    match body {
        Request::EndSession(end) => {
            shared.table.end(&end.session_id, end.reason);
            Response::Ok
        }
        Request::Ping => Response::Ok,
        _ => Response::Error {
            message: "workers do not serve this request".into(),
        },
    }
}

fn apply_sync(shared: &Shared, sync: link::Sync) {
    shared.table.heard(sync.grant_keys);
    for end in sync.ended {
        shared.table.end(&end.session_id, end.reason);
    }
}
