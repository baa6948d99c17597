//! The client's side of the proxy wire after TLS: the hello it sends (read with a deadline),
//! and the reply it gets (accepted with a connection id, or refused with a code and a reason).

use std::time::Duration;

use super::ClientStream;
use portcullis_proto::proxy::{self, ClientHello, RefusalCode, WorkerReply};
use portcullis_proto::text;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

/// A refusal to send the client: the machine-readable code and the reason for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Refusal {
    pub(super) code: RefusalCode,
    pub(super) reason: String,
}

impl Refusal {
    pub(super) fn new(code: RefusalCode, reason: impl Into<String>) -> Refusal {
        Refusal {
            code,
            reason: reason.into(),
        }
    }
}

/// Why no hello was read.
#[derive(Debug)]
pub(super) enum NoHello {
    /// The client went away before sending a byte (closed, or reset because it never read
    /// what TLS sent it): a spare connection it no longer needs, or a port probe. Nothing to
    /// answer and nothing wrong.
    Closed,
    /// Anything else, answered with a `bad_handshake` refusal.
    Bad(String),
}

pub(super) async fn read_hello<S: AsyncRead + Unpin>(
    tls: &mut S,
    limit: Duration,
) -> Result<ClientHello, NoHello> {
    let read = async {
        let mut len = [0u8; 4];
        let first = tls.read(&mut len[..1]).await.map_err(|e| gone_or_bad(&e))?;
        if first == 0 {
            return Err(NoHello::Closed);
        }
        // From the first byte on, the client has started a hello: cutting it short is bad.
        tls.read_exact(&mut len[1..])
            .await
            .map_err(|e| NoHello::Bad(e.to_string()))?;
        let len =
            proxy::check_len(u32::from_be_bytes(len)).map_err(|e| NoHello::Bad(e.to_string()))?;
        let mut buf = vec![0u8; len];
        tls.read_exact(&mut buf)
            .await
            .map_err(|e| NoHello::Bad(e.to_string()))?;
        proxy::decode_frame::<ClientHello>(&buf).map_err(|e| NoHello::Bad(e.to_string()))
    };
    tokio::time::timeout(limit, read)
        .await
        .map_err(|_| NoHello::Bad(format!("no hello within {limit:?}")))?
}

/// A read error before the hello's first byte: the client closing (with or without TLS's
/// close_notify) or resetting the connection is the client going away; anything else is bad.
fn gone_or_bad(err: &std::io::Error) -> NoHello {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::UnexpectedEof
        | ErrorKind::ConnectionReset
        | ErrorKind::ConnectionAborted
        | ErrorKind::BrokenPipe => NoHello::Closed,
        _ => NoHello::Bad(err.to_string()),
    }
}

pub(super) async fn reply(tls: &mut ClientStream, answer: &WorkerReply) {
    if let Ok(frame) = proxy::encode_frame(answer) {
        let _ = tls.write_all(&frame).await;
        let _ = tls.flush().await;
    }
}

/// Logs the refusal, sends it and closes the connection.
pub(super) async fn refuse(mut tls: ClientStream, refusal: Refusal) {
    let Refusal { code, reason } = refusal;
    // The reason may quote the client's own bytes (a serde error naming an unknown field).
    tracing::info!(?code, reason = %text::escaped(&reason), "connection refused");
    reply(&mut tls, &WorkerReply::Refused { code, reason }).await;
    let _ = tls.shutdown().await;
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
