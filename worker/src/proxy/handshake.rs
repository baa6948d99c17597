//! The client's side of the proxy wire after TLS: the hello it sends (read with a deadline),
//! and the reply it gets (accepted with a connection id, or refused with a code and a reason).

use std::time::Duration;

use portcullis_proto::proxy::{self, ClientHello, RefusalCode, WorkerReply};
use portcullis_proto::text;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

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
pub(super) enum NoHello {
    /// The client closed before sending a byte: a spare connection it no longer needs, or a
    /// port probe. Nothing to answer.
    Closed,
    /// Anything else, answered with a `bad_handshake` refusal.
    Bad(String),
}

pub(super) async fn read_hello(
    tls: &mut TlsStream<TcpStream>,
    limit: Duration,
) -> Result<ClientHello, NoHello> {
    let read = async {
        let len = tls.read_u32().await.map_err(|e| match e.kind() {
            std::io::ErrorKind::UnexpectedEof => NoHello::Closed,
            _ => NoHello::Bad(e.to_string()),
        })?;
        let len = proxy::check_len(len).map_err(|e| NoHello::Bad(e.to_string()))?;
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

pub(super) async fn reply(tls: &mut TlsStream<TcpStream>, answer: &WorkerReply) {
    if let Ok(frame) = proxy::encode_frame(answer) {
        let _ = tls.write_all(&frame).await;
        let _ = tls.flush().await;
    }
}

/// Logs the refusal, sends it and closes the connection.
pub(super) async fn refuse(mut tls: TlsStream<TcpStream>, refusal: Refusal) {
    let Refusal { code, reason } = refusal;
    // The reason may quote the client's own bytes (a serde error naming an unknown field).
    tracing::info!(?code, reason = %text::escaped(&reason), "connection refused");
    reply(&mut tls, &WorkerReply::Refused { code, reason }).await;
    let _ = tls.shutdown().await;
}
