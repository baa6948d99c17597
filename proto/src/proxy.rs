//! The proxy handshake: after TLS, the client sends one [`ClientHello`] frame, the worker
//! answers with one [`WorkerReply`] frame, and on `accepted` the stream carries raw bytes.
//!
//! A frame is a 4-byte big-endian length followed by that many bytes of JSON. A refused
//! connection always gets a reply with a reason before the worker closes it: never a hang.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Largest handshake frame (a grant is well under 4 KiB).
pub const MAX_HANDSHAKE_LEN: usize = 16 * 1024;

/// The ALPN protocol id of the proxy listener.
pub const ALPN: &[u8] = b"portcullis/1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientHello {
    pub protocol_version: u32,
    /// The compact-JWS grant from authorize-session.
    pub grant: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum WorkerReply {
    Accepted { connection_id: String },
    Refused { code: RefusalCode, reason: String },
}

/// Machine-readable refusal codes; the reason text is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    BadHandshake,
    /// The hello names a protocol version this worker does not speak.
    UnsupportedVersion,
    InvalidGrant,
    ExpiredGrant,
    WrongWorker,
    WrongSource,
    WrongClientKey,
    SessionEnded,
    ConnectionLimit,
    ControllerUnreachable,
    Draining,
    TargetUnreachable,
}

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("handshake frame of {0} bytes exceeds the limit of {MAX_HANDSHAKE_LEN}")]
    TooLarge(usize),
    #[error("malformed handshake frame: {0}")]
    Malformed(#[from] serde_json::Error),
}

/// Serialises a handshake frame with its length prefix.
pub fn encode_frame<T: Serialize>(value: &T) -> Result<Vec<u8>, FrameError> {
    let body = serde_json::to_vec(value)?;
    if body.len() > MAX_HANDSHAKE_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    let len = u32::try_from(body.len()).map_err(|_| FrameError::TooLarge(body.len()))?;
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Checks a frame length read from the wire before any buffer is allocated for it.
pub fn check_len(len: u32) -> Result<usize, FrameError> {
    let len = len as usize;
    if len > MAX_HANDSHAKE_LEN {
        return Err(FrameError::TooLarge(len));
    }
    Ok(len)
}

/// Decodes a handshake frame's body (the bytes after the length prefix): a [`ClientHello`]
/// on the worker, a [`WorkerReply`] on the client.
pub fn decode_frame<T: DeserializeOwned>(body: &[u8]) -> Result<T, FrameError> {
    if body.len() > MAX_HANDSHAKE_LEN {
        return Err(FrameError::TooLarge(body.len()));
    }
    Ok(serde_json::from_slice(body)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_encoding_is_stable() {
        let reply = WorkerReply::Refused {
            code: RefusalCode::ConnectionLimit,
            reason: "limit".into(),
        };
        let frame = encode_frame(&reply).unwrap();
        let len = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(len as usize, frame.len() - 4);
        let text = std::str::from_utf8(&frame[4..]).unwrap();
        assert_eq!(
            text,
            r#"{"status":"refused","code":"connection_limit","reason":"limit"}"#
        );
        assert!(check_len(1 << 30).is_err());
    }
}
