//! The proxy listener: TLS with a per-session client key, the grant handshake, admission,
//! the dial to the vetted endpoint, and the byte relay with half-close.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::grant::{self, GrantError};
use portcullis_proto::link::{AdmitFirst, ConnectionEvent, EndReason, Request, Response};
use portcullis_proto::proxy::{self, ClientHello, RefusalCode, WorkerReply};
use portcullis_proto::text;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::table::Admission;
use crate::{accept, Shared};

/// Accepts connections until `stop`; each runs in its own task tracked by `tasks`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tasks: tokio_util::task::TaskTracker,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(shared.proxy_tls.clone());
    let mut listener = accept::Listener::new(listener, "proxy");
    let gate = accept::Gate::new(shared.config.handshake_limits, "proxy");
    let handshake_timeout = shared.config.handshake_timeout;
    loop {
        let (tcp, peer) = tokio::select! {
            _ = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        // Until its hello is read, a connection holds a place in the gate.
        let Some(pass) = gate.enter(peer.ip()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // An IPv4 client on a dual-stack listener appears as ::ffff:a.b.c.d; grants carry the
        // plain address.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let span = tracing::info_span!("connection", client.addr = %peer, session.id = tracing::field::Empty, connection.id = tracing::field::Empty);
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tasks.spawn(
            async move {
                match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => handle(tls, peer, shared, pass).await,
                    Ok(Err(err)) => {
                        tracing::info!(error = %text::escaped(&err), "TLS handshake refused")
                    }
                    Err(_) => tracing::info!("TLS handshake timed out"),
                }
            }
            .instrument(span),
        );
    }
}

async fn reply(tls: &mut TlsStream<TcpStream>, answer: &WorkerReply) {
    if let Ok(frame) = proxy::encode_frame(answer) {
        let _ = tls.write_all(&frame).await;
        let _ = tls.flush().await;
    }
}

async fn refuse(mut tls: TlsStream<TcpStream>, code: RefusalCode, reason: impl Into<String>) {
    let reason = reason.into();
    // The reason may quote the client's own bytes (a serde error naming an unknown field).
    tracing::info!(?code, reason = %text::escaped(&reason), "connection refused");
    reply(&mut tls, &WorkerReply::Refused { code, reason }).await;
    let _ = tls.shutdown().await;
}

/// Why no hello was read.
enum NoHello {
    /// The client closed before sending a byte: a spare connection it no longer needs, or a
    /// port probe. Nothing to answer.
    Closed,
    /// Anything else, answered with a `bad_handshake` refusal.
    Bad(String),
}

async fn read_hello(
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

async fn handle(
    mut tls: TlsStream<TcpStream>,
    peer: SocketAddr,
    shared: Arc<Shared>,
    pass: accept::Pass,
) {
    let hello = read_hello(&mut tls, shared.config.hello_timeout).await;
    drop(pass);
    let hello = match hello {
        Ok(h) => h,
        Err(NoHello::Closed) => {
            tracing::debug!("client closed before the hello");
            return;
        }
        Err(NoHello::Bad(e)) => return refuse(tls, RefusalCode::BadHandshake, e).await,
    };
    if hello.protocol_version != portcullis_proto::PROTOCOL_VERSION {
        return refuse(
            tls,
            RefusalCode::UnsupportedVersion,
            format!(
                "protocol version {} is not supported; this worker speaks version {}: use a client of the same release",
                hello.protocol_version,
                portcullis_proto::PROTOCOL_VERSION
            ),
        )
        .await;
    }
    if shared.draining.is_cancelled() {
        return refuse(
            tls,
            RefusalCode::Draining,
            "the worker is shutting down; retry to reach another worker",
        )
        .await;
    }
    let claims = match grant::verify(
        &hello.grant,
        &shared.table.keys(),
        &shared.identity.worker_id,
        shared.clock.unix_secs(),
    ) {
        Ok(c) => c,
        Err(GrantError::Expired) => {
            return refuse(tls, RefusalCode::ExpiredGrant, "the grant has expired").await
        }
        Err(GrantError::WrongAudience) => {
            return refuse(
                tls,
                RefusalCode::WrongWorker,
                "the grant is for another worker",
            )
            .await
        }
        Err(e) => return refuse(tls, RefusalCode::InvalidGrant, e.to_string()).await,
    };
    let span = tracing::Span::current();
    span.record("session.id", claims.sid.as_str());
    if claims.src != peer.ip().to_string() {
        return refuse(
            tls,
            RefusalCode::WrongSource,
            format!("the grant is for source {}, not {}", claims.src, peer.ip()),
        )
        .await;
    }
    let client_key = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .and_then(|c| {
            webpki::EndEntityCert::try_from(c).ok().map(|e| {
                portcullis_proto::keys::spki_fingerprint(e.subject_public_key_info().as_ref())
            })
        });
    if client_key.as_deref() != Some(claims.ckh.as_str()) {
        return refuse(
            tls,
            RefusalCode::WrongClientKey,
            "the TLS client key is not the one the grant names",
        )
        .await;
    }
    if let Some(why) = shared.table.end_reason(&claims.sid) {
        return refuse(
            tls,
            RefusalCode::SessionEnded,
            format!("the session has ended ({why})"),
        )
        .await;
    }
    if !shared.table.fresh(shared.config.admit_grace) {
        return refuse(
            tls,
            RefusalCode::ControllerUnreachable,
            "no controller has been heard recently; no new connections are admitted",
        )
        .await;
    }
    let endpoint: SocketAddr = match claims.dst.parse() {
        Ok(a) => a,
        Err(_) => {
            return refuse(
                tls,
                RefusalCode::InvalidGrant,
                "the grant's endpoint is not IP:PORT",
            )
            .await
        }
    };
    let connection_id = format!("c_{}", hex::encode(rand_bytes()));
    span.record("connection.id", connection_id.as_str());
    let admission = shared.table.admit(&claims.sid, claims.lim, claims.exp);
    let first = matches!(admission, Admission::First);
    match admission {
        Admission::Ended(why) => {
            return refuse(
                tls,
                RefusalCode::SessionEnded,
                format!("the session has ended ({why})"),
            )
            .await
        }
        Admission::LimitReached => {
            return refuse(
                tls,
                RefusalCode::ConnectionLimit,
                "the session's connection limit is reached",
            )
            .await
        }
        Admission::Local | Admission::First => {}
    }
    // The target is dialled while the controller is asked to admit a session's first
    // connection: the two round trips overlap. A refused connection drops the dialled
    // stream unused (the target sees a connect and a close, never a byte).
    let mut dialing = std::pin::pin!(dial(endpoint, shared.config.egress_addr));
    let opened = ConnectionEvent::opened(
        &claims.sid,
        &connection_id,
        shared.clock.unix_secs(),
        &peer.ip().to_string(),
        &claims.dst,
    );
    let dialed = if first {
        let admit = AdmitFirst {
            session_id: claims.sid.clone(),
            connection_id: connection_id.clone(),
            client_addr: peer.ip().to_string(),
        };
        let mut asking = std::pin::pin!(ask_controller(&shared, admit));
        let mut dialed = None;
        // A refusal is sent at once, without waiting for the dial.
        let answer = loop {
            tokio::select! {
                answer = &mut asking => break answer,
                result = &mut dialing, if dialed.is_none() => dialed = Some(result),
            }
        };
        if let Err((code, reason)) = answer {
            shared.table.unadmit(&claims.sid);
            return refuse(tls, code, reason).await;
        }
        let dialed = match dialed {
            Some(result) => result,
            None => dialing.await,
        };
        // The controller recorded this connection when it admitted it.
        shared.spool.add_recorded_elsewhere(opened);
        dialed
    } else {
        // Admitted here: the event goes to disk while the target is dialled.
        let (dialed, ()) = tokio::join!(dialing, shared.spool.record(opened));
        dialed
    };
    let closed = |up, down, why: EndReason| {
        ConnectionEvent::closed(
            &claims.sid,
            &connection_id,
            shared.clock.unix_secs(),
            up,
            down,
            why,
        )
    };
    // The opened event is on disk before a byte flows (or the connection is refused).
    let target = match dialed {
        Ok(t) => t,
        Err(e) => {
            shared
                .spool
                .record(closed(0, 0, EndReason::TargetUnreachable))
                .await;
            return refuse(
                tls,
                RefusalCode::TargetUnreachable,
                format!("cannot reach {endpoint}: {e}"),
            )
            .await;
        }
    };
    reply(
        &mut tls,
        &WorkerReply::Accepted {
            connection_id: connection_id.clone(),
        },
    )
    .await;
    tracing::info!(endpoint = %endpoint, "connection accepted");
    // The session ends (reason `expired` when its grant expires) through the table.
    let ending = shared.table.ending(&claims.sid);
    let isolated = shared.table.isolation_token();
    let up = AtomicU64::new(0);
    let down = AtomicU64::new(0);
    let why = tokio::select! {
        _ = relay(tls, target, &up, &down) => EndReason::Closed,
        _ = ending.ended() => ending.reason(),
        _ = shared.hard_stop.cancelled() => EndReason::Shutdown,
        _ = isolated.cancelled() => EndReason::ControllerUnreachable,
    };
    let (up, down) = (up.load(Ordering::Relaxed), down.load(Ordering::Relaxed));
    tracing::info!(bytes.up = up, bytes.down = down, reason = %why, "connection closed");
    shared.spool.record(closed(up, down, why)).await;
}

/// Asks the controller to admit a session's first connection (it records the session as
/// active); the refusal to send the client otherwise.
async fn ask_controller(shared: &Shared, admit: AdmitFirst) -> Result<(), (RefusalCode, String)> {
    match shared
        .link
        .request(Request::AdmitFirst(admit), Duration::from_secs(5))
        .await
    {
        Ok(Response::Admitted) => Ok(()),
        Ok(Response::Refused { reason }) => Err((RefusalCode::SessionEnded, reason)),
        Ok(other) => Err((
            RefusalCode::ControllerUnreachable,
            format!("unexpected controller answer: {other:?}"),
        )),
        Err(e) => Err((RefusalCode::ControllerUnreachable, e)),
    }
}

fn rand_bytes() -> [u8; 12] {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 12];
    if ring::rand::SystemRandom::new().fill(&mut b).is_err() {
        std::process::abort();
    }
    b
}

async fn dial(
    endpoint: SocketAddr,
    egress: Option<std::net::IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = if endpoint.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = egress {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    let stream = tokio::time::timeout(Duration::from_secs(10), socket.connect(endpoint))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    Ok(stream)
}

/// Copies both ways until both directions are done; an EOF on one side becomes a shutdown of
/// the other side's write half, and the other direction keeps flowing.
async fn relay(client: TlsStream<TcpStream>, target: TcpStream, up: &AtomicU64, down: &AtomicU64) {
    let (mut client_r, mut client_w) = tokio::io::split(client);
    let (mut target_r, mut target_w) = target.into_split();
    let a = pump(&mut client_r, &mut target_w, up);
    let b = pump(&mut target_r, &mut client_w, down);
    tokio::join!(a, b);
}

async fn pump<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    r: &mut R,
    w: &mut W,
    counter: &AtomicU64,
) {
    // Buffers grow with the traffic: an idle connection holds a small one per direction, a
    // busy one grows to MAX_BUF (memory per idle connection matters at 10,000 connections).
    const FIRST_BUF: usize = 512;
    const MAX_BUF: usize = 64 * 1024;
    let mut buf = bytes::BytesMut::with_capacity(FIRST_BUF);
    loop {
        match r.read_buf(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if w.write_all(&buf[..]).await.is_err() {
                    break;
                }
                counter.fetch_add(n as u64, Ordering::Relaxed);
                let full = buf.len() == buf.capacity();
                let capacity = buf.capacity();
                buf.clear();
                if full && capacity < MAX_BUF {
                    buf.reserve((capacity * 4).min(MAX_BUF));
                }
            }
        }
    }
    let _ = w.shutdown().await;
}
