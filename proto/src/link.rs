//! The cluster link: one mutually authenticated TLS connection between a worker and a
//! controller, carrying length-delimited JSON frames in which either side may send requests.
//!
//! Every request carries an id chosen by its sender; the answer carries the same id. The
//! worker numbers its requests odd and the controller even, whichever side dialled, so a
//! frame is never ambiguous. A frame that does not decode (an unknown message kind, an
//! unknown end reason, malformed JSON) closes the link: both sides speak the same
//! `PROTOCOL_VERSION`, which a new message kind or reason raises.
//!
//! [`Peer`] is one end of the link without its socket (ids, requests in flight, deadlines,
//! heartbeats); both the controller and the worker drive one. [`LinkError`] is every way the
//! link or a request on it fails.

use serde::{Deserialize, Serialize};

use crate::grant::GrantKey;

mod error;
mod peer;
mod reason;
pub use error::LinkError;
pub use peer::{silence_limit, Due, Incoming, Peer, Role, Unsent};
pub use reason::{EndReason, UnknownEndReason};

/// The ALPN protocol id of the cluster link.
pub const ALPN: &[u8] = b"portcullis-link/1";

/// The DNS name in every controller's link certificate; workers verify it, whatever address
/// they dialled.
pub const CONTROLLER_SERVER_NAME: &str = "portcullis-controller";

/// The largest frame either side accepts (1 MiB); a larger one closes the link.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Builds the length-delimited codec both sides use (4-byte big-endian length prefix).
pub fn codec() -> tokio_util::codec::LengthDelimitedCodec {
    tokio_util::codec::LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME_LEN)
        .length_field_length(4)
        .new_codec()
}

/// One frame on the link.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
pub enum Frame {
    Request { id: u64, body: Request },
    Response { id: u64, body: Response },
}

/// What either side may ask of the other.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Request {
    /// Worker → controller, first frame: who the worker is and what it carries now.
    Hello(Hello),
    /// Worker → controller, every heartbeat interval (and at once when it starts draining or
    /// stops): the sessions it holds open, and what the worker is doing.
    Heartbeat {
        live_sessions: Vec<String>,
        #[serde(default, skip_serializing_if = "WorkerPhase::is_serving")]
        phase: WorkerPhase,
    },
    /// Worker → controller: admit the first connection this worker sees for a session.
    AdmitFirst(AdmitFirst),
    /// Worker → controller: spooled connection events, applied idempotently.
    Events { events: Vec<ConnectionEvent> },
    /// Worker → controller: a fresh certificate for the worker's (unchanged) key.
    RenewCertificate,
    /// Controller → worker: end a session's connections now.
    EndSession(SessionEnd),
    /// Controller → worker: liveness probe.
    Ping,
    /// Worker → controller on a link without a client certificate: enrol with a join token.
    /// This is the only request such a link may send.
    Join(crate::api::JoinRequest),
    /// Worker → controller: certify the SSH gateway's host key (answered with
    /// [`Response::SshCertificate`], a host certificate of the `ssh-host-ca` key for
    /// [`crate::gateway::HOST_ALIAS`]).
    GatewayHostCertificate { public_key: String },
    /// Worker → controller: certify the key the worker made, in memory, for a gateway
    /// session's login to its target ([`Response::GatewayCredential`]).
    GatewayCredential(crate::gateway::CredentialRequest),
    /// Worker → controller: a gateway session asks for a `direct-tcpip` channel to a
    /// destination other than the target's loopback ([`Response::ForwardVetted`] or
    /// [`Response::Refused`]).
    VetForward(crate::gateway::VetForward),
    /// Worker → controller: spooled recording chunks, in seq order per recording
    /// ([`Response::ChunksStored`]). Sent only when nothing else waits to go out, a few at a
    /// time, so that admissions and heartbeats are never queued behind them.
    RecordingChunks {
        chunks: Vec<crate::recording::SpooledChunk>,
    },
    /// Worker → controller: the Proxmox API token of an injecting session
    /// ([`Response::PveCredential`] or [`Response::Error`]); asked once per session.
    PveCredential(crate::pve::CredentialRequest),
}

/// What a request is answered with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Response {
    /// To [`Request::Hello`] and [`Request::Heartbeat`].
    Sync(Sync),
    /// To [`Request::AdmitFirst`].
    Admitted,
    /// To [`Request::AdmitFirst`]: the connection must be refused. `reason` is a sentence for
    /// the client (it may name the session's [`EndReason`]), not one of a fixed set.
    Refused { reason: String },
    /// To [`Request::Events`]: these event ids are durable and may be dropped from the spool.
    EventsAck { event_ids: Vec<String> },
    /// To [`Request::RenewCertificate`].
    Certificate { cert_pem: String, expires_at: u64 },
    /// To [`Request::Join`].
    Joined(crate::api::JoinResponse),
    /// To [`Request::GatewayHostCertificate`]: an OpenSSH host certificate.
    SshCertificate {
        certificate: String,
        valid_before: u64,
    },
    /// To [`Request::GatewayCredential`].
    GatewayCredential(crate::gateway::Credential),
    /// To [`Request::VetForward`]: the one address the worker may dial, under a session of
    /// its own.
    ForwardVetted(crate::gateway::VettedForward),
    /// To [`Request::PveCredential`]: the token and how to reach Proxmox.
    PveCredential(crate::pve::Credential),
    /// To [`Request::RecordingChunks`]: one acknowledgement per chunk sent.
    ChunksStored {
        acks: Vec<crate::recording::ChunkAck>,
    },
    /// To anything that needs no data back.
    Ok,
    /// The request failed; `message` says why, and `trouble`, when given, what keeps the
    /// controller from serving any request of the kind (a worker words its refusals with it).
    Error {
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        trouble: Option<Trouble>,
    },
}

impl Response {
    /// An error answer with no trouble named.
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error {
            message: message.into(),
            trouble: None,
        }
    }
}

/// What a worker is doing, as its hello and heartbeats tell the controllers. Absent on the
/// wire means [`WorkerPhase::Serving`], which is all a worker of an earlier release ever is,
/// and a controller of an earlier release ignores the field: the link stays compatible both
/// ways.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkerPhase {
    /// Admitting new connections.
    #[default]
    Serving,
    /// Shutting down: no new connections, live ones kept up to the drain timeout. A
    /// controller gives it no new session.
    Draining,
    /// Drained and about to exit: its sessions end with reason `shutdown`.
    Stopped,
}

impl WorkerPhase {
    /// Whether this is the default phase (left out on the wire).
    pub fn is_serving(&self) -> bool {
        *self == WorkerPhase::Serving
    }
}

/// Why a controller that answers cannot serve a request now, named so that a worker can say
/// what is wrong instead of only that no controller vouched for its sessions recently.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum Trouble {
    /// The controller is up but cannot reach its store (PostgreSQL down or unreachable).
    #[error("the controller is up but cannot reach its database")]
    StoreUnreachable,
}

/// The first frame a worker sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub protocol_version: u32,
    pub worker_id: String,
    /// The address clients dial for this worker's proxy listener.
    pub proxy_addr: String,
    pub live_sessions: Vec<String>,
    /// What the worker is doing (a worker that re-links while draining says so).
    #[serde(default, skip_serializing_if = "WorkerPhase::is_serving")]
    pub phase: WorkerPhase,
}

/// The controller's view that a worker keeps in step with: keys and ended sessions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sync {
    /// Grant-verification keys currently accepted (active and previous).
    pub grant_keys: Vec<GrantKey>,
    /// Sessions among the worker's live ones that have ended, with the reason.
    pub ended: Vec<SessionEnd>,
    /// How often the worker should send a heartbeat, in milliseconds.
    pub heartbeat_ms: u64,
    /// The id of the controller that answered (for logs).
    pub controller_id: String,
    /// The TLS CA bundle (PEM certificates, the signing CA first): every CA the worker is to
    /// trust for the controllers' link certificates. It changes during a CA rotation; the
    /// worker saves it and, when its own certificate is not from the signing CA, renews at
    /// once. Absent from a controller of an earlier release: the worker keeps what it has.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<String>,
}

/// A request to admit a session's first connection on this worker.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdmitFirst {
    pub session_id: String,
    pub connection_id: String,
    pub client_addr: String,
}

/// A session that must end, and why. A frame whose reason this side does not know does not
/// decode (see [`EndReason`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionEnd {
    pub session_id: String,
    pub reason: EndReason,
}

/// A connection's life as the worker reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectionEvent {
    /// Unique per event: `<connection id>:opened` or `<connection id>:closed`.
    pub event_id: String,
    pub session_id: String,
    pub connection_id: String,
    pub at: u64,
    #[serde(flatten)]
    pub kind: ConnectionEventKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConnectionEventKind {
    Opened {
        client_addr: String,
        endpoint: String,
    },
    Closed {
        bytes_up: u64,
        bytes_down: u64,
        reason: EndReason,
    },
    /// The connections the worker refused by itself for one session (the event's
    /// `session_id`; empty for refusals before a grant verified) and one code, summed over a
    /// window. `connection_id` is empty; times are unix milliseconds.
    Refused {
        code: crate::proxy::RefusalCode,
        count: u64,
        first_at_ms: u64,
        last_at_ms: u64,
        /// The first refused client's address.
        client_addr: String,
        /// The first refusal's sentence, only for a session's refusals (the worker's own
        /// words on a verified grant); refusals without a session carry only their code.
        message: Option<String>,
    },
    /// A gateway session's channel or request that its rights refused (or that the
    /// controller, asked to vet a forward, refused): one event per refusal.
    ChannelRefused(crate::gateway::ChannelRefusal),
    /// A gateway connection's recording could not be written (size cap, spool full, the
    /// store refusing a chunk), and what the gateway did about it.
    RecordingFailed(crate::recording::RecordingFailure),
    /// One request through an injecting Proxmox API session's proxy (its method, redacted
    /// path, status and bytes; never a body or header). `event_id` is
    /// `<connection id>:req:<n>`, n counting from 1 per connection.
    ApiRequest(crate::pve::ApiRequest),
}

impl ConnectionEvent {
    pub fn opened(
        session_id: &str,
        connection_id: &str,
        at: u64,
        client: &str,
        endpoint: &str,
    ) -> Self {
        Self {
            event_id: format!("{connection_id}:opened"),
            session_id: session_id.to_owned(),
            connection_id: connection_id.to_owned(),
            at,
            kind: ConnectionEventKind::Opened {
                client_addr: client.to_owned(),
                endpoint: endpoint.to_owned(),
            },
        }
    }

    pub fn closed(
        session_id: &str,
        connection_id: &str,
        at: u64,
        bytes_up: u64,
        bytes_down: u64,
        reason: EndReason,
    ) -> Self {
        Self {
            event_id: format!("{connection_id}:closed"),
            session_id: session_id.to_owned(),
            connection_id: connection_id.to_owned(),
            at,
            kind: ConnectionEventKind::Closed {
                bytes_up,
                bytes_down,
                reason,
            },
        }
    }
}

/// The refusals of one window, as [`ConnectionEventKind::Refused`] describes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalSummary {
    /// Unique per summary (the event id is `<summary_id>:refused`).
    pub summary_id: String,
    pub session_id: Option<String>,
    pub code: crate::proxy::RefusalCode,
    pub count: u64,
    pub first_at_ms: u64,
    pub last_at_ms: u64,
    pub client_addr: String,
    pub message: Option<String>,
}

impl ConnectionEvent {
    pub fn refused(summary: RefusalSummary) -> Self {
        Self {
            event_id: format!("{}:refused", summary.summary_id),
            session_id: summary.session_id.unwrap_or_default(),
            connection_id: String::new(),
            at: summary.last_at_ms / 1000,
            kind: ConnectionEventKind::Refused {
                code: summary.code,
                count: summary.count,
                first_at_ms: summary.first_at_ms,
                last_at_ms: summary.last_at_ms,
                client_addr: summary.client_addr,
                message: summary.message,
            },
        }
    }
}

/// Encodes a frame as JSON bytes.
pub fn encode(frame: &Frame) -> Result<bytes::Bytes, serde_json::Error> {
    serde_json::to_vec(frame).map(bytes::Bytes::from)
}

/// Decodes a frame; an unknown or malformed frame is an error, never a panic.
pub fn decode(bytes: &[u8]) -> Result<Frame, serde_json::Error> {
    serde_json::from_slice(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_an_error() {
        let frame = Frame::Request {
            id: 7,
            body: Request::Events {
                events: vec![ConnectionEvent::closed(
                    "s",
                    "c",
                    1,
                    10,
                    20,
                    EndReason::Closed,
                )],
            },
        };
        let bytes = encode(&frame).unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.contains(r#""event":"closed""#), "{text}");
        match decode(&bytes).unwrap() {
            Frame::Request {
                id: 7,
                body: Request::Events { events },
            } => {
                assert_eq!(events[0].event_id, "c:closed")
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(decode(b"{\"frame\":\"request\",\"id\":1,\"body\":{\"type\":\"nope\"}}").is_err());
        assert!(decode(b"\xff\x00").is_err());
    }

    #[test]
    fn reasons_keep_their_wire_text_and_an_unknown_one_does_not_decode() {
        let end = Frame::Request {
            id: 2,
            body: Request::EndSession(SessionEnd {
                session_id: "s_1".into(),
                reason: EndReason::Canceled,
            }),
        };
        let wire = br#"{"frame":"request","id":2,"body":{"type":"end_session","session_id":"s_1","reason":"canceled"}}"#;
        assert_eq!(&encode(&end).unwrap()[..], &wire[..]);
        assert!(matches!(
            decode(wire).unwrap(),
            Frame::Request {
                body: Request::EndSession(SessionEnd {
                    reason: EndReason::Canceled,
                    ..
                }),
                ..
            }
        ));
        let closed = Frame::Request {
            id: 3,
            body: Request::Events {
                events: vec![ConnectionEvent::closed(
                    "s",
                    "c",
                    1,
                    10,
                    20,
                    EndReason::ControllerUnreachable,
                )],
            },
        };
        let text = String::from_utf8(encode(&closed).unwrap().to_vec()).unwrap();
        assert!(
            text.contains(r#""reason":"controller_unreachable""#),
            "{text}"
        );
        // Fail closed: a reason this side does not know makes the frame malformed.
        let unknown = String::from_utf8(wire.to_vec())
            .unwrap()
            .replace("canceled", "gone_fishing");
        let err = decode(unknown.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("gone_fishing"), "{err}");
        let unknown = text.replace("controller_unreachable", "gone_fishing");
        assert!(decode(unknown.as_bytes()).is_err());
    }

    #[test]
    fn the_phase_and_the_trouble_are_optional_so_older_peers_still_understand_each_other() {
        // A heartbeat of an earlier release (no phase) is a serving worker's.
        let old = br#"{"frame":"request","id":3,"body":{"type":"heartbeat","live_sessions":[]}}"#;
        assert!(matches!(
            decode(old).unwrap(),
            Frame::Request {
                body: Request::Heartbeat {
                    phase: WorkerPhase::Serving,
                    ..
                },
                ..
            }
        ));
        // A serving worker's heartbeat is written as before; a draining one says so.
        let serving = Frame::Request {
            id: 3,
            body: Request::Heartbeat {
                live_sessions: vec![],
                phase: WorkerPhase::Serving,
            },
        };
        assert_eq!(&encode(&serving).unwrap()[..], &old[..]);
        let draining = Frame::Request {
            id: 5,
            body: Request::Heartbeat {
                live_sessions: vec![],
                phase: WorkerPhase::Draining,
            },
        };
        let text = String::from_utf8(encode(&draining).unwrap().to_vec()).unwrap();
        assert!(text.contains(r#""phase":"draining""#), "{text}");
        // An error without trouble is written as before, and one with it decodes.
        let plain = Frame::Response {
            id: 3,
            body: Response::error("no"),
        };
        let plain_text = String::from_utf8(encode(&plain).unwrap().to_vec()).unwrap();
        assert_eq!(
            plain_text,
            r#"{"frame":"response","id":3,"body":{"type":"error","message":"no"}}"#
        );
        let troubled = br#"{"frame":"response","id":3,"body":{"type":"error","message":"no","trouble":"store_unreachable"}}"#;
        assert!(matches!(
            decode(troubled).unwrap(),
            Frame::Response {
                body: Response::Error {
                    trouble: Some(Trouble::StoreUnreachable),
                    ..
                },
                ..
            }
        ));
    }
}
