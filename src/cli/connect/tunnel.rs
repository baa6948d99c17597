//! One connection of a session: TCP to the worker, pinned TLS 1.3, the proxy handshake,
//! then bytes spliced both ways with half-close.

use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

/// The most of the local side's first bytes sent with the hello (one TLS record).
const EARLY_MAX: usize = 16 * 1024;

use anyhow::{anyhow, Context as _};
use portcullis_net::copy::copy;
use portcullis_net::read_ahead::ReadAhead;
use portcullis_proto::proxy::{self, RefusalCode, WorkerReply};
use portcullis_proto::PROTOCOL_VERSION;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A connection to a worker: TLS over the socket read in large chunks ([`ReadAhead`]), boxed:
/// the stream is over a kilobyte, and a connection's task would otherwise keep a copy of it
/// at every await it passed through (memory per idle connection).
pub(crate) type WorkerStream = Box<TlsStream<ReadAhead<TcpStream>>>;

use super::tls::{server_name, ClientIdentity};
use crate::cli::exit::Unreachable;

const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
const TLS_TIMEOUT: Duration = Duration::from_secs(10);
/// The worker may ask the controller before admitting a session's first connection.
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// An authorised session, ready to open connections through its worker.
pub(super) struct SessionTicket {
    pub session_id: String,
    /// The target as the user named it.
    pub target: String,
    pub worker_addr: String,
    /// Unix seconds.
    pub expires_at: u64,
    grant: String,
    tls: Arc<rustls::ClientConfig>,
}

impl fmt::Debug for SessionTicket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionTicket")
            .field("session_id", &self.session_id)
            .field("target", &self.target)
            .field("worker_addr", &self.worker_addr)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the controller (or a hand-off file) says about a session.
#[derive(Clone)]
pub(super) struct TicketParts {
    pub session_id: String,
    pub target: String,
    pub worker_addr: String,
    pub worker_key_fingerprint: String,
    pub grant: String,
    pub expires_at: u64,
}

impl SessionTicket {
    pub(super) fn new(parts: TicketParts, identity: &ClientIdentity) -> anyhow::Result<Self> {
        let tls = identity
            .client_config(&parts.worker_key_fingerprint)
            .context("the controller's answer names an unusable worker key")?;
        Ok(Self {
            session_id: parts.session_id,
            target: parts.target,
            worker_addr: parts.worker_addr,
            expires_at: parts.expires_at,
            grant: parts.grant,
            tls,
        })
    }

    /// Opens one connection: dial, pinned TLS, hello, reply. A refusal is a [`Refused`]
    /// error (downcast it to tell the codes apart).
    pub(super) async fn open(&self) -> anyhow::Result<WorkerConnection> {
        let tls = self.dial().await?;
        self.handshake(tls, &mut tokio::io::empty(), &mut Vec::new())
            .await
    }

    /// [`open`](Self::open) for a local stream whose first bytes go with the hello: see
    /// [`handshake`](Self::handshake).
    pub(super) async fn open_with<L: AsyncRead + Unpin>(
        &self,
        local: &mut L,
        early: &mut Vec<u8>,
    ) -> anyhow::Result<WorkerConnection> {
        let tls = self.dial().await?;
        self.handshake(tls, local, early).await
    }

    /// The first half of [`open`](Self::open): TCP and pinned TLS to the worker, nothing
    /// sent yet. The worker waits 5 s for the hello that [`handshake`](Self::handshake)
    /// sends, so a stream made ahead of need must be used well within that.
    ///
    /// A worker closes connections beyond its cap of handshakes in progress from one address
    /// (`max_handshakes_per_source`): a burst of connections from this host (a listener's,
    /// or many `connect` processes at once) can meet it. Nothing has been sent then, so a
    /// handshake the worker closed is tried again, after a jittered wait, up to
    /// [`DIAL_ATTEMPTS`] times; any other failure (a key that is not the pinned one, say) is
    /// final at once.
    pub(super) async fn dial(&self) -> anyhow::Result<WorkerStream> {
        let mut waits = portcullis_net::retry::schedule(RETRY_MIN, RETRY_MAX);
        let mut attempt = 1;
        loop {
            match self.dial_once().await {
                Err(Dial::Closed(err)) if attempt < DIAL_ATTEMPTS => {
                    tracing::debug!(error = %err, attempt, "the worker closed the TLS handshake; trying again");
                    attempt += 1;
                    tokio::time::sleep(waits.next().unwrap_or(RETRY_MAX)).await;
                }
                Err(Dial::Closed(err)) => {
                    let addr = &self.worker_addr;
                    return Err(anyhow!(
                        "TLS with the worker at {addr} failed: it closed the connection during \
                         the handshake {DIAL_ATTEMPTS} times ({}); too many connections from \
                         this address may be in their handshake at once (the worker's \
                         max_handshakes_per_source): open fewer at a time, or ask the operator \
                         to raise it",
                        tls_failure(&err)
                    ));
                }
                Err(Dial::Failed(err)) => return Err(err),
                Ok(tls) => return Ok(tls),
            }
        }
    }

    async fn dial_once(&self) -> Result<WorkerStream, Dial> {
        let addr = &self.worker_addr;
        let tcp = tokio::time::timeout(DIAL_TIMEOUT, TcpStream::connect(addr))
            .await
            .map_err(|_| Unreachable(format!("cannot reach the worker at {addr}: timed out")))?
            .map_err(|err| Unreachable(format!("cannot reach the worker at {addr}: {err}")))?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(self.tls.clone());
        let tls = tokio::time::timeout(
            TLS_TIMEOUT,
            connector.connect(server_name()?, ReadAhead::new(tcp)),
        )
        .await
        .map_err(|_| anyhow!("TLS with the worker at {addr} timed out"))?
        .map_err(|err| {
            if closed_by_peer(&err) {
                Dial::Closed(err)
            } else {
                Dial::Failed(anyhow!(
                    "TLS with the worker at {addr} failed: {}",
                    tls_failure(&err)
                ))
            }
        })?;
        // What scripts/bench reports as the suite of its rows.
        if let Some(suite) = tls.get_ref().1.negotiated_cipher_suite() {
            tracing::debug!(tls.suite = ?suite.suite(), "TLS with the worker");
        }
        Ok(Box::new(tls))
    }

    /// The second half of [`open`](Self::open): the hello with the grant, and the worker's
    /// reply.
    ///
    /// The local side's first bytes go with the hello, saving a round trip for a client that
    /// speaks first: `early` (bytes read from `local` for an earlier attempt that failed
    /// before any reply) is sent right after the hello; when it is empty, one read of
    /// `local` that completes while the reply is awaited is sent at once and kept in
    /// `early`. The worker holds whatever follows the hello until it accepts, and a refused
    /// connection never reaches the target, so this changes nothing on the wire a worker
    /// of any version reads. Their count belongs to the connection's `up` total.
    pub(super) async fn handshake<L: AsyncRead + Unpin>(
        &self,
        tls: WorkerStream,
        local: &mut L,
        early: &mut Vec<u8>,
    ) -> anyhow::Result<WorkerConnection> {
        let addr = &self.worker_addr;
        let mut hello = proxy::encode_frame(&proxy::ClientHello {
            protocol_version: PROTOCOL_VERSION,
            grant: self.grant.clone(),
        })
        .context("cannot encode the proxy handshake")?;
        hello.extend_from_slice(early);
        let (mut rd, mut wr) = tokio::io::split(tls);
        let reply = tokio::time::timeout(REPLY_TIMEOUT, async {
            wr.write_all(&hello).await?;
            wr.flush().await?;
            let mut reply = std::pin::pin!(read_reply(&mut rd));
            if !early.is_empty() {
                return reply.await;
            }
            let mut first = vec![0u8; EARLY_MAX];
            tokio::select! {
                biased;
                answer = &mut reply => answer,
                // A failed or empty read is the splice's to see again.
                Ok(n @ 1..) = local.read(&mut first) => {
                    early.extend_from_slice(&first[..n]);
                    wr.write_all(early).await?;
                    wr.flush().await?;
                    reply.await
                }
            }
        })
        .await
        .map_err(|_| anyhow!("the worker at {addr} did not answer the handshake in time"))?
        .with_context(|| format!("the handshake with the worker at {addr} failed"))?;
        match reply {
            WorkerReply::Accepted { connection_id } => Ok(WorkerConnection {
                id: connection_id,
                stream: rd.unsplit(wr),
                early: early.len() as u64,
            }),
            WorkerReply::Refused { code, reason } => Err(Refused { code, reason }.into()),
        }
    }
}

/// How many times [`SessionTicket::dial`] tries a handshake the worker closed.
const DIAL_ATTEMPTS: usize = 6;
/// The waits between those attempts: from 20 ms, doubling, jittered, at most 400 ms.
const RETRY_MIN: Duration = Duration::from_millis(20);
const RETRY_MAX: Duration = Duration::from_millis(400);

/// Why one attempt at TCP and TLS to the worker failed.
enum Dial {
    /// The worker closed the connection during the TLS handshake: worth another attempt.
    Closed(std::io::Error),
    Failed(anyhow::Error),
}

impl<E: Into<anyhow::Error>> From<E> for Dial {
    fn from(err: E) -> Self {
        Self::Failed(err.into())
    }
}

/// Whether a failed TLS handshake is the worker closing the connection (a reset, or the end
/// of the stream), rather than TLS refusing something.
fn closed_by_peer(err: &std::io::Error) -> bool {
    use std::io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset, UnexpectedEof};
    matches!(
        err.kind(),
        ConnectionReset | ConnectionAborted | UnexpectedEof | BrokenPipe
    )
}

/// The reason a TLS handshake failed, in words (rustls shows a pin mismatch as Debug).
fn tls_failure(err: &std::io::Error) -> String {
    let pinned = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                Some(other.0.to_string())
            }
            _ => None,
        });
    pinned.unwrap_or_else(|| err.to_string())
}

async fn read_reply<S: AsyncRead + Unpin>(stream: &mut S) -> anyhow::Result<WorkerReply> {
    let mut len = [0u8; 4];
    stream
        .read_exact(&mut len)
        .await
        .context("the worker closed the connection without a reply")?;
    let len = proxy::check_len(u32::from_be_bytes(len))?;
    let mut body = vec![0u8; len];
    stream
        .read_exact(&mut body)
        .await
        .context("the worker's reply was cut off")?;
    proxy::decode_frame(&body).context("the worker's reply is not a proxy handshake reply")
}

/// The worker refused a connection; `reason` is its text for people.
#[derive(Debug, Clone)]
pub(crate) struct Refused {
    pub code: RefusalCode,
    pub reason: String,
}

impl Refused {
    /// Whether every later connection of the session would be refused the same way.
    pub(crate) fn ends_session(&self) -> bool {
        matches!(
            self.code,
            RefusalCode::SessionEnded
                | RefusalCode::UnsupportedVersion
                | RefusalCode::ExpiredGrant
                | RefusalCode::InvalidGrant
                | RefusalCode::WrongWorker
                | RefusalCode::WrongSource
                | RefusalCode::WrongClientKey
        )
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = serde_json::to_value(self.code)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("{:?}", self.code));
        let reason = if self.reason.trim().is_empty() {
            describe(self.code)
        } else {
            self.reason.trim()
        };
        write!(f, "worker refused the connection: {reason} ({code})")
    }
}

impl std::error::Error for Refused {}

/// Words for a refusal that came without a reason.
fn describe(code: RefusalCode) -> &'static str {
    match code {
        RefusalCode::BadHandshake => "bad handshake",
        RefusalCode::UnsupportedVersion => "the worker speaks another protocol version",
        RefusalCode::InvalidGrant => "the grant is not valid",
        RefusalCode::ExpiredGrant => "the session's grant has expired",
        RefusalCode::WrongWorker => "the grant is for another worker",
        RefusalCode::WrongSource => "the grant is for another source address",
        RefusalCode::WrongClientKey => "the TLS client key is not the session's key",
        RefusalCode::SessionEnded => "the session has ended",
        RefusalCode::ConnectionLimit => "connection limit reached",
        RefusalCode::ControllerUnreachable => "the worker cannot reach a controller",
        RefusalCode::Draining => "the worker is shutting down",
        RefusalCode::TargetUnreachable => "the worker cannot reach the target",
    }
}

/// An accepted connection to the target through the worker.
pub(super) struct WorkerConnection {
    pub id: String,
    stream: WorkerStream,
    /// The local side's first bytes, sent with the hello.
    early: u64,
}

/// Bytes carried by a finished connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Transfer {
    /// Local side to target.
    pub up: u64,
    /// Target to local side.
    pub down: u64,
}

impl WorkerConnection {
    /// The stream to the target through the worker, for a caller that speaks a protocol
    /// over it (`connect http`) rather than splicing bytes.
    pub(super) fn into_stream(self) -> WorkerStream {
        self.stream
    }

    /// Carries bytes both ways until both directions have ended.
    ///
    /// Half-close: EOF from the local side shuts down the TLS write side (close_notify, then
    /// a TCP FIN), and the target's reply keeps flowing until the worker ends it; EOF from the
    /// worker (close_notify) shuts down the local write side the same way. An error in either
    /// direction ends both. A worker that vanishes without close_notify is an error: the
    /// data may have been cut short.
    pub(super) async fn splice<R, W>(
        self,
        local_read: R,
        local_write: W,
    ) -> anyhow::Result<Transfer>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut transfer = splice(self.stream, local_read, local_write).await?;
        transfer.up += self.early;
        Ok(transfer)
    }
}

/// [`WorkerConnection::splice`] on any stream to the worker (or to the `portcullis run`
/// process that relays one).
pub(super) async fn splice<S, R, W>(
    stream: S,
    local_read: R,
    local_write: W,
) -> anyhow::Result<Transfer>
where
    S: AsyncRead + AsyncWrite,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut remote_read, mut remote_write) = tokio::io::split(stream);
    let mut local_read = local_read;
    let mut local_write = local_write;
    // Buffers held only while bytes are in them, growing to 64 KiB with the traffic (fewer,
    // fuller TLS records): an idle connection costs none.
    let (sent, received) = (AtomicU64::new(0), AtomicU64::new(0));
    let up = async {
        let n = copy(&mut local_read, &mut remote_write, &sent)
            .await
            .context("sending to the worker failed")?;
        remote_write
            .shutdown()
            .await
            .context("closing the way to the worker failed")?;
        anyhow::Ok(n)
    };
    let down = async {
        let n = copy(&mut remote_read, &mut local_write, &received)
            .await
            .map_err(|err| {
                if err.kind() == std::io::ErrorKind::UnexpectedEof {
                    anyhow!(
                        "the worker cut the connection without closing it cleanly (the \
                         session was cancelled or expired, or the worker stopped); data \
                         may be missing"
                    )
                } else {
                    anyhow::Error::new(err).context("receiving from the worker failed")
                }
            })?;
        local_write
            .shutdown()
            .await
            .context("closing the local side failed")?;
        anyhow::Ok(n)
    };
    let (up, down) = tokio::try_join!(up, down)?;
    Ok(Transfer { up, down })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
pub(super) mod tests;
