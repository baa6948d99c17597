//! The SSH gateway: in gateway mode (the verified grant carries `gw` claims) the worker
//! terminates the user's SSH connection inside the brokered TLS connection and logs into the
//! target itself, so the user never holds a credential for the target, and every channel is
//! checked against the session's rights.
//!
//! The path of one connection: the proxy admits it and dials the target as for any session
//! ([`crate::proxy`]), checks that the gateway has a host certificate ([`host_key`]), replies
//! `Accepted`, and hands over. Then, at once, the target's SSH greeting and host key check
//! run ([`upstream`], with the session's login from the controller) while the user's client
//! greets the gateway ([`config`] has the hardened settings); the user logs in with the
//! session's key as one of its logins ([`auth`]), the gateway logs into the target as the
//! same login, and each channel and request is decided ([`server`]) and carried
//! ([`channel`], [`forward`]; the channels the target opens towards the user, only where
//! asked for and granted: [`reverse`]). It all ends with the connection, or with the session
//! (cancel, expiry, logout, policy change), as a relayed connection does.
//!
//! Invariants: the gateway's host key and each session's key exist only in the worker's
//! memory; the worker dials only the grant's endpoint and endpoints the controller vetted,
//! never a name and never its own host for a user; nothing reaches the target that
//! `decide_channel` did not allow; every refusal is recorded.

mod auth;
mod channel;
mod config;
mod forward;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
mod host_key;
mod record;
mod reverse;
mod server;
// The tracker's contract names its methods for the side the bytes come from.
#[allow(clippy::wrong_self_convention)]
mod sftp;
#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;
mod upstream;
mod verify;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use portcullis_proto::gateway::ChannelRefusal;
use portcullis_proto::grant::GatewayClaims;
use portcullis_proto::link::{ConnectionEvent, ConnectionEventKind, EndReason};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use self::auth::Allowed;
pub(crate) use self::auth::BadGrantKey;
use self::host_key::HostKey;
pub(crate) use self::host_key::NoHostCertificate;
#[cfg(any(test, fuzzing))]
pub(crate) use self::sftp::fuzz_streams as fuzz_sftp;
use self::upstream::{Logins, Upstream};
use crate::{Shared, WorkerError};

/// The gateway's state for the whole worker.
pub struct Gateway {
    host: HostKey,
    logins: Logins,
}

impl Gateway {
    /// Makes the host key (in memory only).
    pub fn new() -> Result<Gateway, WorkerError> {
        Ok(Gateway {
            host: HostKey::new().map_err(|e| WorkerError::Identity(e.to_string()))?,
            logins: Logins::default(),
        })
    }

    /// How many sessions hold a login (a key and certificate for their target) now.
    pub fn sessions_with_login(&self) -> usize {
        self.logins.len()
    }
}

/// A gateway connection, admitted and ready to be accepted: what the proxy checks before
/// it replies `Accepted`.
pub(crate) struct Ready {
    config: Arc<russh::server::Config>,
    allowed: Allowed,
}

/// Why an admitted gateway connection cannot be served.
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotReady {
    #[error(transparent)]
    HostCertificate(#[from] NoHostCertificate),
    #[error(transparent)]
    GrantKey(#[from] BadGrantKey),
}

/// Checks that a gateway connection can be served: the gateway has a host certificate (asked
/// for now if needed) and the grant's key parses.
pub(crate) async fn prepare(shared: &Shared, gw: &GatewayClaims) -> Result<Ready, NotReady> {
    let allowed = Allowed::from_claims(gw)?;
    let config = shared
        .gateway
        .host
        .server_config(&shared.link, shared.clock.unix_secs())
        .await?;
    Ok(Ready { config, allowed })
}

/// The admitted connection, as the gateway needs it.
pub(crate) struct Connection {
    pub(crate) session_id: String,
    pub(crate) connection_id: String,
    /// The grant as the client sent it (the controller verifies it again to mint the login).
    pub(crate) grant: String,
    pub(crate) gw: GatewayClaims,
    pub(crate) peer: SocketAddr,
    /// The target's address, as dialled.
    pub(crate) target: SocketAddr,
}

/// What a gateway connection carried (the user's side, SSH framing included), and why it
/// closed.
#[derive(Debug)]
pub(crate) struct Served {
    pub(crate) up: u64,
    pub(crate) down: u64,
    pub(crate) why: EndReason,
}

/// What a connection's handler and its channel tasks share.
pub(super) struct Context {
    shared: Arc<Shared>,
    session_id: String,
    connection_id: String,
    peer: SocketAddr,
    /// Cancelled when the connection ends: every channel task stops.
    stop: CancellationToken,
    open_channels: Arc<AtomicUsize>,
    refusals: AtomicU32,
    /// The target's connection once logged in, so that the end can close it.
    upstream: OnceLock<Arc<Upstream>>,
    /// The user's connection, for the channels the target opens towards the user.
    user: OnceLock<russh::server::Handle>,
    /// The login the user chose, once logged in.
    login: OnceLock<String>,
    /// The session's channel rights.
    rights: portcullis_policy::SshRights,
    /// What the user asked the target to open channels back for.
    asked: reverse::Asked,
    /// The connection's recording, when the grant asks for one.
    recording: Option<Arc<record::Recording>>,
    /// The channel tasks, waited for (briefly) before the recording ends.
    tasks: TaskTracker,
}

impl Context {
    /// A new channel's part of the recording, if the connection is recorded.
    fn record_channel(&self, opened: record::Opened) -> Option<Arc<record::ChannelRec>> {
        self.recording.as_ref().map(|r| r.channel(opened))
    }

    /// Whether the connection's channels were closed because its recording cannot be
    /// written: no new channel opens.
    fn closed_for_recording(&self) -> bool {
        self.recording.as_ref().is_some_and(|r| r.closed())
    }

    /// Records a refused channel or request (for the audit log) and logs it.
    async fn refused(&self, channel: &str, destination: Option<String>, login: &str, rule: String) {
        tracing::info!(
            channel,
            destination = destination.as_deref().unwrap_or(""),
            login,
            rule = %rule,
            "gateway channel refused"
        );
        let n = self.refusals.fetch_add(1, Ordering::Relaxed);
        let event = ConnectionEvent {
            event_id: format!("{}:channel-refused-{n}", self.connection_id),
            session_id: self.session_id.clone(),
            connection_id: self.connection_id.clone(),
            at: self.shared.clock.unix_secs(),
            kind: ConnectionEventKind::ChannelRefused(ChannelRefusal {
                channel: channel.to_owned(),
                destination,
                login: login.to_owned(),
                rule,
            }),
        };
        self.shared.spool.record(event).await;
    }
}

/// How long a client that is being disconnected may take to read the goodbye.
const GOODBYE: Duration = Duration::from_secs(2);

/// Serves one gateway connection over the client's TLS stream, with `target` dialled, until
/// it closes or its session ends.
pub(crate) async fn serve<S>(
    shared: &Arc<Shared>,
    client: S,
    target: TcpStream,
    ready: Ready,
    conn: Connection,
) -> Served
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let counted = Arc::new(Bytes::default());
    let stream = CountingStream {
        inner: client,
        counted: counted.clone(),
    };
    let recording = conn.gw.rec.map(|policy| {
        let ids = record::Ids {
            session_id: conn.session_id.clone(),
            connection_id: conn.connection_id.clone(),
        };
        record::Recording::start(shared, ids, policy, record::Limits::from_config(shared))
    });
    let ctx = Arc::new(Context {
        shared: shared.clone(),
        session_id: conn.session_id.clone(),
        connection_id: conn.connection_id.clone(),
        peer: conn.peer,
        stop: CancellationToken::new(),
        open_channels: Arc::new(AtomicUsize::new(0)),
        refusals: AtomicU32::new(0),
        upstream: OnceLock::new(),
        user: OnceLock::new(),
        login: OnceLock::new(),
        rights: conn.gw.rights,
        asked: reverse::Asked::default(),
        recording,
        tasks: TaskTracker::new(),
    });
    let served = serve_connection(shared, stream, target, ready, conn, &ctx, &counted).await;
    // The channels end with the connection; their last events are recorded, then the final
    // chunk.
    ctx.stop.cancel();
    ctx.tasks.close();
    let _ = tokio::time::timeout(GOODBYE, ctx.tasks.wait()).await;
    if let Some(recording) = &ctx.recording {
        recording.finish().await;
    }
    served
}

/// [`serve`] once the connection's context is made.
async fn serve_connection<S>(
    shared: &Arc<Shared>,
    stream: CountingStream<S>,
    target: TcpStream,
    ready: Ready,
    conn: Connection,
    ctx: &Arc<Context>,
    counted: &Bytes,
) -> Served
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // The target's greeting and host key check, while the user's client greets the gateway.
    let greeting = {
        let (shared, ctx) = (shared.clone(), ctx.clone());
        let (sid, grant, address) = (
            conn.session_id.clone(),
            conn.grant.clone(),
            conn.target.ip().to_string(),
        );
        tokio::spawn(
            async move {
                let login = upstream::login(&shared, &sid, &grant, &address).await?;
                let now = shared.clock.unix_secs();
                let handle = upstream::greet(target, &login, now, ctx).await?;
                Ok((handle, login))
            }
            .in_current_span(),
        )
    };
    let (authenticated, logged_in) = tokio::sync::oneshot::channel();
    let handler = server::UserSide::new(
        ctx.clone(),
        ready.allowed,
        conn.gw.rights,
        greeting,
        authenticated,
    );
    let ending = shared.table.ending(&conn.session_id);
    let isolated = shared.table.isolation_token();
    let served = |why| Served {
        up: counted.up.load(Ordering::Relaxed),
        down: counted.down.load(Ordering::Relaxed),
        why,
    };
    let started = tokio::time::timeout(
        config::LOGIN_GRACE,
        russh::server::run_stream(ready.config, stream, handler),
    );
    let session = tokio::select! {
        started = started => match started {
            Ok(Ok(session)) => session,
            Ok(Err(e)) => {
                tracing::info!(error = %e, "the client did not greet the SSH gateway");
                return served(EndReason::Closed);
            }
            Err(_) => return served(EndReason::Closed),
        },
        _ = ending.ended() => return served(ending.reason()),
    };
    let handle = session.handle();
    let _ = ctx.user.set(handle.clone());
    let mut session = std::pin::pin!(session);
    let login_grace = async {
        if let Ok(Ok(())) = tokio::time::timeout(config::LOGIN_GRACE, logged_in).await {
            std::future::pending::<()>().await
        }
    };
    let ended = tokio::select! {
        result = &mut session => {
            if let Err(e) = result {
                tracing::debug!(error = %e, "the gateway connection ended with an error");
            }
            None
        }
        _ = login_grace => Some(("no login within the grace".to_owned(), EndReason::Closed)),
        _ = ending.ended() => Some((format!("the session ended ({})", ending.reason()), ending.reason())),
        _ = shared.hard_stop.cancelled() => Some(("the worker is shutting down".to_owned(), EndReason::Shutdown)),
        _ = isolated.cancelled() => Some(("the worker lost its controller".to_owned(), EndReason::ControllerUnreachable)),
    };
    ctx.stop.cancel();
    let why = match ended {
        None => EndReason::Closed,
        Some((text, why)) => {
            let text = format!("portcullis gateway: {text}");
            let _ = handle
                .disconnect(russh::Disconnect::ByApplication, text, "en".into())
                .await;
            let _ = tokio::time::timeout(GOODBYE, &mut session).await;
            why
        }
    };
    if let Some(upstream) = ctx.upstream.get() {
        let _ = upstream
            .disconnect(russh::Disconnect::ByApplication, "the session ended", "en")
            .await;
    }
    served(why)
}

#[derive(Default)]
struct Bytes {
    up: AtomicU64,
    down: AtomicU64,
}

/// The client's stream, counting the bytes read (up) and written (down).
struct CountingStream<S> {
    inner: S,
    counted: Arc<Bytes>,
}

impl<S: AsyncRead + Unpin> AsyncRead for CountingStream<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len().saturating_sub(before);
        self.counted.up.fetch_add(n as u64, Ordering::Relaxed);
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for CountingStream<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &polled {
            self.counted.down.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

fn rand_bytes() -> [u8; 12] {
    match portcullis_crypto::random::bytes() {
        Ok(b) => b,
        Err(_) => std::process::abort(),
    }
}
