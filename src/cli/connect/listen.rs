//! Local listeners (`--listen-port`, `--listen-unix`, `--socket`, and the one behind
//! `--exec`): every local connection becomes a connection of the same session. For a
//! Proxmox API session a TCP listener serves HTTPS: each connection's TLS is terminated here
//! (`crate::cli::local_tls`) and the plain HTTP goes through the brokered connection.
//!
//! A loopback port is open to every local user of the machine; on a shared jump host use
//! `--listen-unix`, whose socket is 0600 from the moment anyone can reach it: it is bound
//! inside a fresh 0700 directory, chmod-ed 0600, and only then hard-linked to its final
//! path (which also refuses to replace an existing file).

use std::future::Future;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use portcullis_net::accept::Acceptor;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::UnixListener;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tracing::Instrument as _;

use super::listen_addr::{GuardedListener, ListenOn};
use super::source::{RunJoin, Source};
use super::spare::{Dialling, Spare};
use super::tunnel::{Refused, SessionTicket, WorkerConnection};
use crate::cli::output;

/// A bound local listener.
pub(super) enum LocalListener {
    /// On 127.0.0.1 by default; on `--listen-addr` with its `--allow` list.
    Tcp(GuardedListener),
    /// A TCP listener whose connections speak TLS to this process.
    Https(GuardedListener, TlsAcceptor),
    Unix(UnixListener, UnixSocketFile),
}

impl std::fmt::Debug for LocalListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Tcp(listener) => f.debug_tuple("Tcp").field(listener).finish(),
            Self::Https(listener, _) => f.debug_tuple("Https").field(listener).finish(),
            Self::Unix(listener, file) => {
                f.debug_tuple("Unix").field(listener).field(file).finish()
            }
        }
    }
}

/// How long a local client may take over its TLS handshake.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

impl LocalListener {
    /// Binds 127.0.0.1:`port` (0 picks a free port).
    pub(super) async fn tcp(port: u16) -> anyhow::Result<Self> {
        Self::tcp_on(ListenOn::loopback(), port).await
    }

    /// Binds `on`:`port` (see [`super::listen_addr`]).
    pub(super) async fn tcp_on(on: ListenOn, port: u16) -> anyhow::Result<Self> {
        Ok(Self::Tcp(GuardedListener::bind(on, port).await?))
    }

    /// The TCP listener's address, for a TCP listener.
    pub(super) fn local_addr(&self) -> Option<std::net::SocketAddr> {
        match self {
            Self::Tcp(listener) | Self::Https(listener, _) => listener.local_addr().ok(),
            Self::Unix(..) => None,
        }
    }

    /// Creates a 0600 Unix socket at `path` (see the module notes).
    pub(super) fn unix(path: &Path) -> anyhow::Result<Self> {
        let (listener, file) = bind_private_unix(path)?;
        Ok(Self::Unix(listener, file))
    }

    /// The TCP port, for a TCP listener.
    pub(super) fn port(&self) -> Option<u16> {
        match self {
            Self::Tcp(listener) | Self::Https(listener, _) => {
                listener.local_addr().ok().map(|a| a.port())
            }
            Self::Unix(..) => None,
        }
    }

    /// The same TCP listener, its connections now TLS terminated with `acceptor`.
    pub(super) fn with_tls(self, acceptor: TlsAcceptor) -> anyhow::Result<Self> {
        match self {
            Self::Tcp(listener) | Self::Https(listener, _) => Ok(Self::Https(listener, acceptor)),
            Self::Unix(..) => bail!("internal: a unix socket is not served with TLS"),
        }
    }
}

/// Why a listener stopped serving.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Stop {
    /// The caller's stop future finished (a signal), with its description.
    Requested(String),
    /// The session reached its expiry.
    Expired,
    /// The worker refused a connection in a way that ends the session.
    SessionEnded(String),
}

/// Serves connections until `stop` finishes, the session expires, or the worker (or the
/// run, for a run's session) says the session is over. Connections already open keep
/// running in their own tasks.
///
/// `announce` prints a line on stderr per connection opened and closed; errors are always
/// printed.
pub(super) async fn serve<F>(
    listener: LocalListener,
    source: Source,
    stop: F,
    announce: bool,
) -> Stop
where
    F: Future<Output = String>,
{
    let (ended_tx, mut ended_rx) = mpsc::channel::<String>(1);
    let expiry = tokio::time::sleep(until_unix(source.expires_at()));
    tokio::pin!(stop, expiry);
    let mut spare: Option<Spare> = None;
    let mut accepting = Acceptor::new("local");
    let opening = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    loop {
        let spare_expires = spare.as_ref().map(Spare::expires);
        let accepted = tokio::select! {
            why = &mut stop => return Stop::Requested(why),
            () = &mut expiry => return Stop::Expired,
            Some(why) = ended_rx.recv() => return Stop::SessionEnded(why),
            () = sleep_until(spare_expires) => {
                spare = None;
                continue;
            }
            // Failures are logged (on stderr) and waited out by the shared policy.
            accepted = accepting.next(|| accept(&listener)) => accepted,
        };
        let (stream, peer) = accepted;
        let span = tracing::info_span!("connection", client.addr = %peer);
        let accepted = Accepted {
            stream,
            tls: listener.tls(),
        };
        let ticket = match &source {
            Source::Ticket(ticket) => ticket,
            Source::Run(run) => {
                let task = run_carry(accepted, peer, run.clone(), ended_tx.clone(), announce);
                tokio::spawn(task.instrument(span));
                continue;
            }
        };
        // A connection that finds no place to open waits for one in its task. No spare is
        // dialled then: in a burst each spare would hold one of the worker's handshake places
        // while it waited its turn.
        let place = opening.clone().try_acquire_owned().ok();
        let burst = place.is_none();
        let warm = spare.take().and_then(Spare::claim);
        let task = carry(
            accepted,
            peer,
            ticket.clone(),
            warm,
            (place, opening.clone()),
            ended_tx.clone(),
            announce,
        );
        tokio::spawn(task.instrument(span));
        spare = (!burst).then(|| Spare::start(ticket.clone()));
    }
}

/// A local connection, type-erased so TCP and Unix streams share one path.
trait LocalStream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> LocalStream for T {}

/// An accepted local connection, with the TLS to terminate on it first, if any.
struct Accepted {
    stream: Box<dyn LocalStream>,
    tls: Option<TlsAcceptor>,
}

impl LocalListener {
    fn tls(&self) -> Option<TlsAcceptor> {
        match self {
            Self::Https(_, acceptor) => Some(acceptor.clone()),
            Self::Tcp(_) | Self::Unix(..) => None,
        }
    }
}

impl Accepted {
    /// The stream to carry: the plain bytes, after the TLS handshake when there is TLS.
    async fn plain(self) -> anyhow::Result<Box<dyn LocalStream>> {
        let Some(acceptor) = self.tls else {
            return Ok(self.stream);
        };
        let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(self.stream));
        match handshake.await {
            Ok(Ok(tls)) => Ok(Box::new(tls)),
            Ok(Err(err)) => Err(err).context("the local TLS handshake failed"),
            Err(_) => bail!("the local TLS handshake took too long"),
        }
    }
}

async fn accept(listener: &LocalListener) -> std::io::Result<(Box<dyn LocalStream>, String)> {
    match listener {
        LocalListener::Tcp(listener) | LocalListener::Https(listener, _) => {
            let (stream, peer) = listener.accept().await?;
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream), peer.to_string()))
        }
        LocalListener::Unix(listener, file) => {
            let (stream, _) = listener.accept().await?;
            Ok((Box::new(stream), file.path.display().to_string()))
        }
    }
}

/// Sleeps until `at`, or forever without one.
async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Opens a connection of the session, on the spare stream when there is one. A spare that
/// failed, or that the worker has meanwhile closed, fails before anything was admitted: dial
/// afresh then.
async fn open<L: AsyncRead + Unpin>(
    ticket: &SessionTicket,
    spare: Option<Dialling>,
    local: &mut L,
    early: &mut Vec<u8>,
) -> anyhow::Result<WorkerConnection> {
    let warm = match spare {
        Some(dialling) => dialling.await.ok().and_then(Result::ok),
        None => None,
    };
    if let Some(tls) = warm {
        // The first bytes read for the spare are sent again on the fresh connection.
        match ticket.handshake(tls, local, early).await {
            Err(err) if err.downcast_ref::<Refused>().is_none() => {
                tracing::debug!(error = %err, "the spare connection failed; dialling afresh");
            }
            answer => return answer,
        }
    }
    ticket.open_with(local, early).await
}

/// How many of a listener's connections may be opening at once (TCP, TLS and the hello, until
/// the worker's reply); the rest wait their turn. A worker closes connections beyond its cap
/// of handshakes in progress from one address (`max_handshakes_per_source`, 64 by default):
/// a burst of local connections must not meet it.
const OPENING_AT_ONCE: usize = 16;

async fn carry(
    accepted: Accepted,
    peer: String,
    ticket: Arc<SessionTicket>,
    warm: Option<Dialling>,
    (place, opening): (Option<OwnedSemaphorePermit>, Arc<Semaphore>),
    ended: mpsc::Sender<String>,
    announce: bool,
) {
    // A client that fails its TLS handshake gets no connection of the session.
    let stream = match accepted.plain().await {
        Ok(stream) => stream,
        Err(err) => {
            eprintln!("connection from {peer}: {err:#}");
            return;
        }
    };
    let (mut read, write) = tokio::io::split(stream);
    let mut early = Vec::new();
    // The semaphore is never closed: a place always comes.
    let permit = match place {
        Some(place) => Some(place),
        None => opening.acquire_owned().await.ok(),
    };
    let opened = open(&ticket, warm, &mut read, &mut early).await;
    drop((permit, early));
    let connection = match opened {
        Ok(connection) => connection,
        Err(err) => {
            eprintln!("connection from {peer}: {err:#}");
            if let Some(refused) = err.downcast_ref::<Refused>() {
                if refused.ends_session() {
                    let _ = ended.try_send(refused.to_string());
                }
            }
            return; // Dropping the stream closes the local side.
        }
    };
    let id = connection.id.clone();
    tracing::debug!(connection.id = %id, "connection accepted by the worker");
    if announce {
        eprintln!("Connection {id} from {peer} opened.");
    }
    match connection.splice(read, write).await {
        Ok(transfer) if announce => eprintln!(
            "Connection {id} closed: {} up, {} down.",
            output::bytes(transfer.up),
            output::bytes(transfer.down)
        ),
        Ok(_) => {}
        Err(err) => eprintln!("Connection {id} ended: {err:#}"),
    }
}

/// [`carry`] for a run's session: the connection is a `join` on the run socket.
async fn run_carry(
    accepted: Accepted,
    peer: String,
    run: Arc<RunJoin>,
    ended: mpsc::Sender<String>,
    announce: bool,
) {
    let mut stream = match accepted.plain().await {
        Ok(stream) => stream,
        Err(err) => {
            eprintln!("connection from {peer}: {err:#}");
            return;
        }
    };
    let mut connection = match run.join().await {
        Ok(connection) => connection,
        Err(failed) => {
            eprintln!("connection from {peer}: {:#}", failed.error);
            if failed.run_ended {
                let _ = ended.try_send("the `portcullis run` it belongs to has ended".to_owned());
            }
            return;
        }
    };
    let id = &run.about.session_id;
    if announce {
        eprintln!("Connection of session {id} from {peer} opened (through the run).");
    }
    match tokio::io::copy_bidirectional(&mut stream, &mut connection).await {
        Ok((up, down)) if announce => eprintln!(
            "Connection of session {id} from {peer} closed: {} up, {} down.",
            output::bytes(up),
            output::bytes(down)
        ),
        Ok(_) => {}
        Err(err) => eprintln!("Connection of session {id} from {peer} ended: {err:#}"),
    }
}

/// Time from now until a unix-seconds instant (zero if it has passed).
pub(super) fn until_unix(at: u64) -> Duration {
    /// Far enough to mean "never" without overflowing a clock.
    const NEVER: Duration = Duration::from_secs(100 * 365 * 24 * 3600);
    match UNIX_EPOCH.checked_add(Duration::from_secs(at)) {
        Some(at) => at
            .duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(NEVER),
        None => NEVER,
    }
}

/// The socket file at its public path; removed when dropped, if it is still ours.
#[derive(Debug)]
pub(super) struct UnixSocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl UnixSocketFile {
    pub(super) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for UnixSocketFile {
    fn drop(&mut self) {
        if let Ok(meta) = std::fs::symlink_metadata(&self.path) {
            if meta.dev() == self.dev && meta.ino() == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

fn bind_private_unix(path: &Path) -> anyhow::Result<(UnixListener, UnixSocketFile)> {
    if std::fs::symlink_metadata(path).is_ok() {
        bail!(
            "{} already exists; remove it or choose another path for --listen-unix",
            path.display()
        );
    }
    let parent = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let private = parent.join(format!(".pc-{}", random_hex(6)?));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&private)
        .with_context(|| format!("cannot create a private directory in {}", parent.display()))?;
    let inner = private.join("s");
    let result = (|| {
        let listener = UnixListener::bind(&inner)
            .with_context(|| format!("cannot create a Unix socket in {}", parent.display()))?;
        std::fs::set_permissions(&inner, std::fs::Permissions::from_mode(0o600))
            .context("cannot make the Unix socket 0600")?;
        // A hard link publishes the socket atomically and never replaces an existing file.
        std::fs::hard_link(&inner, path)
            .with_context(|| format!("cannot create the Unix socket {}", path.display()))?;
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("cannot inspect {}", path.display()))?;
        anyhow::Ok((listener, meta))
    })();
    let _ = std::fs::remove_file(&inner);
    let _ = std::fs::remove_dir(&private);
    let (listener, meta) = result?;
    Ok((
        listener,
        UnixSocketFile {
            path: path.to_path_buf(),
            dev: meta.dev(),
            ino: meta.ino(),
        },
    ))
}

fn random_hex(bytes: usize) -> anyhow::Result<String> {
    let mut buf = vec![0u8; bytes];
    portcullis_crypto::random::fill(&mut buf)?;
    Ok(hex::encode(buf))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unix_socket_is_0600_and_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.sock");
        let listener = LocalListener::unix(&path).unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        // Only the socket is left in the directory: no private directory lingers.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        // It is the listener's socket: a client reaches it.
        let client = tokio::net::UnixStream::connect(&path);
        let LocalListener::Unix(inner, _) = &listener else {
            panic!("not unix")
        };
        let (accepted, connected) = tokio::join!(inner.accept(), client);
        accepted.unwrap();
        connected.unwrap();
        // A second listener on the same path is refused rather than replacing it.
        assert!(LocalListener::unix(&path).is_err());
        drop(listener);
        assert!(
            std::fs::symlink_metadata(&path).is_err(),
            "socket removed at exit"
        );
    }

    #[tokio::test]
    async fn tcp_listener_binds_loopback() {
        let listener = LocalListener::tcp(0).await.unwrap();
        assert_ne!(listener.port(), Some(0));
        let LocalListener::Tcp(inner) = &listener else {
            panic!("not tcp")
        };
        assert!(inner.local_addr().unwrap().ip().is_loopback());
    }

    #[test]
    fn until_past_is_zero() {
        assert_eq!(until_unix(0), Duration::ZERO);
        assert!(until_unix(u64::MAX) > Duration::from_secs(3600));
    }

    /// On a Proxmox API session's port this process terminates the client's TLS (a leaf of
    /// the local CA) and the worker receives the plain bytes; its answer goes back in TLS.
    #[tokio::test]
    async fn https_is_terminated_here_and_plain_bytes_reach_the_worker() {
        use crate::cli::connect::tunnel::tests::{mock_worker, ticket, Behaviour};
        use rustls_pki_types::pem::PemObject as _;
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

        let (addr, fingerprint) = mock_worker(Behaviour::ReverseAfterEof).await;
        let config = tempfile::tempdir().unwrap();
        let ca = crate::cli::local_tls::LocalCa::load_or_create(config.path()).unwrap();
        let acceptor = ca.acceptor(Duration::from_secs(600)).unwrap();
        let listener = LocalListener::tcp(0)
            .await
            .unwrap()
            .with_tls(acceptor)
            .unwrap();
        let port = listener.port().unwrap();
        let ticket = Arc::new(ticket(addr, fingerprint));
        let source = Source::Ticket(ticket);
        tokio::spawn(serve(listener, source, std::future::pending(), false));

        let request = b"GET /api2/json/version HTTP/1.1\r\nHost: localhost\r\n\r\n";
        // Bounded: a listener that passed the client's TLS through would leave it waiting.
        let answer = tokio::time::timeout(Duration::from_secs(30), async {
            let mut roots = rustls::RootCertStore::empty();
            let ca_der =
                rustls_pki_types::CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
            roots.add(ca_der).unwrap();
            let client = portcullis_crypto::tls::https_client_config(
                roots,
                portcullis_crypto::tls::ClientAuth::None,
            )
            .unwrap();
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
                .connect(
                    rustls_pki_types::ServerName::try_from("localhost").unwrap(),
                    tcp,
                )
                .await
                .unwrap();
            tls.write_all(request).await.unwrap();
            tls.shutdown().await.unwrap();
            let mut answer = Vec::new();
            tls.read_to_end(&mut answer).await.unwrap();
            answer
        })
        .await
        .expect("the HTTPS exchange finished");
        let mut expected = request.to_vec();
        expected.reverse();
        expected.extend_from_slice(b"<end>");
        assert_eq!(answer, expected, "the worker saw the request in plain text");

        // A client that does not speak TLS gets nothing of the session.
        let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        plain.write_all(request).await.unwrap();
        let mut reply = Vec::new();
        let _ = plain.read_to_end(&mut reply).await;
        assert!(!reply.windows(5).any(|w| w == b"<end>"));
    }
}
