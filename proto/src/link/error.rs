//! Why a link, or one request on it, failed: one error for both ends, whether the cause is the
//! peer's frames, the clock, the transport or the hello.

use std::time::Duration;

use super::MAX_FRAME_LEN;

/// What went wrong on the cluster link. Each message says what failed and what to do; the
/// variants that close the link say so.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    // Frames.
    /// A frame larger than [`MAX_FRAME_LEN`], received or about to be sent.
    #[error("a link frame of {len} bytes is over the {MAX_FRAME_LEN}-byte limit; the link is closed (a frame that large is never sent by a well-behaved peer)")]
    FrameTooLarge { len: usize },
    /// A frame that does not decode: malformed JSON, an unknown message kind or end reason.
    #[error("malformed link frame ({reason}); the link is closed: both ends must speak the same protocol version, so upgrade the older one")]
    Malformed { reason: String },
    /// A frame this side could not encode (never expected: every wire type serialises).
    #[error("could not encode a link frame ({reason}); this is a bug: report it")]
    Encode { reason: String },

    // Request ids.
    /// An answer to an id this side never used.
    #[error("the peer answered request {id}, which this side never sent; the link is closed")]
    UnknownReply { id: u64 },
    /// A second answer to an id already answered.
    #[error("the peer answered request {id} a second time; the link is closed")]
    DuplicateReply { id: u64 },
    /// A request numbered with this side's parity: the peer plays the wrong role.
    #[error("the peer numbered a request {id}, an id of this side's; the link is closed (is the peer a controller talking to a controller, or a worker to a worker?)")]
    RequestIdOfOurs { id: u64 },

    // Time.
    /// The peer did not answer a request before its deadline.
    #[error(
        "the peer did not answer within {after:?}; it may be overloaded or the link stalled: retry"
    )]
    TimedOut { after: Duration },
    /// Nothing came from the peer for longer than the link tolerates.
    #[error("nothing heard from the peer for {after:?}; the link is closed (the peer is down or the network is partitioned; it is redialled)")]
    Silent { after: Duration },

    // The link's life.
    /// The link closed while a request waited for its answer.
    #[error("the link closed before the answer came; retry once a link is up again")]
    Closed,
    /// The peer closed the connection.
    #[error("the peer closed the link")]
    PeerClosed,
    /// A newer link from the same peer took this one's place, or the peer was deleted.
    #[error("a newer link from the same peer replaced this one, or the peer was deleted")]
    Replaced,
    /// No link is up to send a request on.
    #[error("no controller link is up; check that a controller is reachable (the worker keeps redialling)")]
    NoLink,
    /// The peer answered a request with an error.
    #[error("the peer refused: {message}")]
    Refused { message: String },

    // The hello (the worker's first request, whichever side dialled).
    /// The first frame did not come in time.
    #[error("nothing came within {after:?} of the link opening; the link is closed")]
    NoFirstFrame { after: Duration },
    /// The first frame was not a request, or not the one the link starts with.
    #[error("the link must start with {expected}; the link is closed")]
    UnexpectedFirstFrame { expected: &'static str },
    /// The controller refused the worker's hello (an unknown or deleted worker, a key that is
    /// not the worker's, another protocol version); `message` is the controller's answer.
    #[error("the controller refused the hello: {message}")]
    HelloRefused { message: String },

    // Transport.
    /// Connecting to the peer's address did not finish in time.
    #[error("connecting to {addr} timed out; check the address and the network")]
    ConnectTimedOut { addr: String },
    /// Connecting to the peer's address failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    /// The TLS handshake did not finish in time.
    #[error("the link's TLS handshake timed out after {after:?}")]
    TlsTimedOut { after: Duration },
    /// The TLS handshake failed (a certificate refused, a protocol mismatch).
    #[error("the link's TLS handshake failed: {source}; check that both ends trust the same controller CA")]
    Tls { source: std::io::Error },
    /// The link's TLS could not be set up from this side's identity.
    #[error("cannot set up the link's TLS: {reason}; check this side's identity files")]
    TlsSetUp { reason: String },
    /// The peer's certificate, which the TLS layer accepted, could not be read.
    #[error("the peer presented no usable certificate")]
    NoPeerCertificate,
    /// Reading or writing the connection failed.
    #[error("the link's connection failed: {source}")]
    Transport { source: std::io::Error },
}

impl LinkError {
    /// A read or write of the framed stream that failed (the codec's own refusal of a frame
    /// over [`MAX_FRAME_LEN`] included).
    pub fn transport(source: std::io::Error) -> LinkError {
        LinkError::Transport { source }
    }
}
