//! The API's TLS listener: every connection is counted, timed and closed when it stops being
//! used, so no client can hold the listener's descriptors.
//!
//! A connection lives through these limits ([`ConnectionLimits`], `[api.connections]`):
//! the TLS handshake must finish within `handshake_timeout`; a request's head within
//! `header_timeout` of the server starting to wait for it (hyper's HTTP/1 timer; a connection
//! that sends nothing at all is also idle, below); its body within `body_timeout`
//! of its head ([`DeadlineBody`]; past that the request fails and the connection closes); and
//! a connection with no request in flight, whether before its first request or between
//! keep-alive requests, is closed after `idle_timeout`. "In flight" lasts until the response's
//! last byte is handed to TLS, so a slow download is not idle. The API speaks HTTP/1.1 only
//! (ALPN offers nothing else, and the CLI needs nothing else), so there is no HTTP/2 state to
//! hold.
//!
//! Admission is decided by [`super::connections::Table`]: a per-address cap, and a global
//! cap at which an idle connection is closed to make room. Accept errors follow the listeners'
//! shared policy ([`portcullis_net::accept`]); when descriptors run out, the longest-idle
//! connection is also closed to free one.
//!
//! Behind a load balancer (`[api] trusted_proxies`), a connection from a trusted proxy must
//! open with a PROXY protocol header, read within `handshake_timeout` before the TLS
//! handshake ([`portcullis_net::proxy_header`]); the client it names is the address every
//! handler sees ([`PeerAddr`]: source zones, the login back-off, the audit's `source`).
//! The per-address cap does not apply to a trusted proxy's own address (all its clients
//! share it); the global cap does.

use std::convert::Infallible;
use std::future::Future as _;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;
use tracing::Instrument as _;

use portcullis_net::accept::Acceptor;
use portcullis_net::proxy_header::{self, Source, TrustedProxies};

use super::connections::{Admission, ConnId, Table};
use super::extract::PeerAddr;
use super::limits::ConnectionLimits;

/// How long a connection asked to close (shutdown, eviction, a body past its deadline) may
/// take to finish the response it is writing.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `router` over TLS on `listener` until `shutdown`; one span per connection and per
/// request with the client's address.
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    limits: ConnectionLimits,
    trusted_proxies: TrustedProxies,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    // A trusted proxy's connections carry many clients: only the global cap counts them.
    let proxied_limits = ConnectionLimits {
        max_per_address: limits.max,
        ..limits.clone()
    };
    let trusted_proxies = Arc::new(trusted_proxies);
    let limits = Arc::new(limits);
    let table: Shared = Arc::new(Mutex::new(Table::default()));
    let mut accepting = Acceptor::new("API").on_descriptors_exhausted({
        let table = table.clone();
        // Free one descriptor for the next accept: an idle connection.
        move || {
            let mut t = lock(&table);
            if let Some(victim) = t.eviction_candidate() {
                evict(&mut t, victim);
            }
        }
    });
    loop {
        let Some((tcp, peer)) = accepting.next_until(|| listener.accept(), &shutdown).await else {
            return;
        };
        // An IPv4 client on a dual-stack listener appears as ::ffff:a.b.c.d; zones, grants
        // and the per-address cap use the plain address.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let close = CancellationToken::new();
        let proxied = trusted_proxies.trusts(peer.ip());
        let id = {
            let mut t = lock(&table);
            let caps = if proxied { &proxied_limits } else { &limits };
            match t.admit(peer.ip(), caps) {
                Admission::Accept => {}
                Admission::AcceptEvicting(victim) => evict(&mut t, victim),
                Admission::RefuseAddressFull | Admission::RefuseFull => {
                    tracing::debug!(client.addr = %peer, "API connection refused: at the cap");
                    drop(tcp);
                    continue;
                }
            }
            t.insert(peer.ip(), Instant::now(), close.clone())
        };
        // Answers go out as soon as they are written: with Nagle, a response's second TLS
        // record waits for the client's delayed ACK (40 ms on Linux).
        let _ = tcp.set_nodelay(true);
        let conn = Connection {
            id,
            peer,
            table: table.clone(),
            close,
            limits: limits.clone(),
        };
        let span = tracing::debug_span!("api_connection", client.addr = %peer);
        tokio::spawn(
            conn.run(
                acceptor.clone(),
                tcp,
                trusted_proxies.clone(),
                router.clone(),
                shutdown.clone(),
            )
            .instrument(span),
        );
    }
}

type Shared = Arc<Mutex<Table<CancellationToken>>>;

fn lock(table: &Shared) -> std::sync::MutexGuard<'_, Table<CancellationToken>> {
    // The table holds counts only; a panic elsewhere cannot leave it half-updated.
    table
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Closes connection `id` and stops counting it at once, so the next admission does not
/// pick it again while it winds down.
fn evict(table: &mut Table<CancellationToken>, id: ConnId) {
    if let Some(close) = table.remove(id) {
        close.cancel();
    }
}

/// One accepted connection, counted in the table until it is dropped.
struct Connection {
    id: ConnId,
    peer: SocketAddr,
    table: Shared,
    /// Cancelled to close the connection: eviction, descriptor shortage, a late body.
    close: CancellationToken,
    limits: Arc<ConnectionLimits>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        lock(&self.table).remove(self.id);
    }
}

impl Connection {
    async fn run(
        self,
        acceptor: TlsAcceptor,
        mut tcp: tokio::net::TcpStream,
        trusted_proxies: Arc<TrustedProxies>,
        router: Router,
        shutdown: CancellationToken,
    ) {
        let source = tokio::select! {
            _ = self.close.cancelled() => return,
            _ = shutdown.cancelled() => return,
            source = proxy_header::read_source(&trusted_proxies, &mut tcp, self.peer, self.limits.handshake_timeout) => {
                match source {
                    Ok(source) => source,
                    Err(err) => {
                        tracing::warn!(client.via = %self.peer, error = %err, "API connection from a trusted proxy refused");
                        return;
                    }
                }
            }
        };
        if let Some(via) = source.via {
            tracing::debug!(client.addr = %source.client, client.via = %via, "PROXY protocol header read");
        }
        let tls = tokio::select! {
            _ = self.close.cancelled() => return,
            _ = shutdown.cancelled() => return,
            tls = tokio::time::timeout(self.limits.handshake_timeout, acceptor.accept(tcp)) => {
                match tls {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(err)) => {
                        tracing::debug!(error = %portcullis_proto::text::escaped(&err), "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!("TLS handshake timed out");
                        return;
                    }
                }
            }
        };
        let (busy_tx, mut busy) = watch::channel(0usize);
        let busy_tx = Arc::new(busy_tx);
        let service = {
            let Source { client: peer, via } = source;
            let table = self.table.clone();
            let close = self.close.clone();
            let id = self.id;
            let body_timeout = self.limits.body_timeout;
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                let guard = InFlight::start(id, table.clone(), busy_tx.clone());
                let router = router.clone();
                let close = close.clone();
                let span = tracing::info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    client.addr = %peer,
                    client.via = via.map(tracing::field::display),
                );
                async move {
                    let (mut parts, body) = req.into_parts();
                    parts.extensions.insert(PeerAddr(peer));
                    let body = DeadlineBody::new(body, body_timeout, close);
                    let request = hyper::Request::from_parts(parts, axum::body::Body::new(body));
                    let response = match router.oneshot(request).await {
                        Ok(response) => response,
                        Err(never) => match never {},
                    };
                    Ok::<_, Infallible>(response.map(|body| {
                        axum::body::Body::new(GuardedBody {
                            inner: body,
                            _guard: guard,
                        })
                    }))
                }
                .instrument(span)
            })
        };
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(TokioTimer::new())
            .header_read_timeout(self.limits.header_timeout);
        let conn = http.serve_connection(TokioIo::new(tls), service);
        tokio::pin!(conn);
        let why = tokio::select! {
            _ = conn.as_mut() => return,
            _ = shutdown.cancelled() => "shutdown",
            _ = self.close.cancelled() => "closed by the listener",
            _ = idle_for(&mut busy, self.limits.idle_timeout) => "idle",
        };
        tracing::debug!(reason = why, "closing API connection");
        conn.as_mut().graceful_shutdown();
        let _ = tokio::time::timeout(DRAIN, conn).await;
    }
}

/// Returns once no request has been in flight for `idle` without a break.
async fn idle_for(busy: &mut watch::Receiver<usize>, idle: Duration) {
    loop {
        let in_flight = *busy.borrow_and_update();
        let changed = if in_flight == 0 {
            match tokio::time::timeout(idle, busy.changed()).await {
                Err(_) => return,
                Ok(changed) => changed,
            }
        } else {
            busy.changed().await
        };
        if changed.is_err() {
            // The service is gone, so is the connection: nothing more to time.
            std::future::pending::<()>().await;
        }
    }
}

/// Counts one request as in flight from its head to the end of its response (or until it is
/// abandoned), in the table and for the connection's idle timer.
struct InFlight {
    id: ConnId,
    table: Shared,
    busy: Arc<watch::Sender<usize>>,
}

impl InFlight {
    fn start(id: ConnId, table: Shared, busy: Arc<watch::Sender<usize>>) -> InFlight {
        lock(&table).request_started(id);
        busy.send_modify(|n| *n += 1);
        InFlight { id, table, busy }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.table).request_ended(self.id, Instant::now());
        self.busy.send_modify(|n| *n = n.saturating_sub(1));
    }
}

/// A response body that keeps its request counted as in flight until it is written or
/// dropped.
struct GuardedBody {
    inner: axum::body::Body,
    _guard: InFlight,
}

impl hyper::body::Body for GuardedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body that must arrive in full before a deadline: a body trickled a byte at a
/// time fails (the handler answers 4xx) and its connection is asked to close.
struct DeadlineBody {
    inner: Incoming,
    deadline: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
    close: CancellationToken,
}

/// The request body did not arrive within `api.connections.body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?} (api.connections.body_timeout)")]
pub(crate) struct BodyTimedOut(Duration);

impl DeadlineBody {
    fn new(inner: Incoming, limit: Duration, close: CancellationToken) -> DeadlineBody {
        DeadlineBody {
            inner,
            deadline: Box::pin(tokio::time::sleep(limit)),
            limit,
            close,
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = axum::body::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        if self.deadline.as_mut().poll(cx).is_ready() {
            self.close.cancel();
            return Poll::Ready(Some(Err(Box::new(BodyTimedOut(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
