//! The proxy listener and the path of one connection through it: TLS with a per-session
//! client key, the hello ([`handshake`]), admission ([`admission`]), the dial to the vetted
//! endpoint overlapped with the controller's answer for a session's first connection, and the
//! byte relay with half-close ([`relay`]), or the SSH gateway, or, for an injecting Proxmox API
//! session (a grant with `pve`), the worker's HTTP proxy ([`crate::pve`]); the connection's
//! opened and closed events go to the spool.
//!
//! Behind a load balancer (`[worker] trusted_proxies`), a connection from a trusted proxy
//! must open with a PROXY protocol header, read within `handshake_timeout` before the TLS
//! handshake ([`portcullis_net::proxy_header`]); the client it names is the address the
//! admission checks, the refusals and the connection events see. A trusted proxy's
//! connections wait in a gate of their own whose per-source cap is its total (all of the
//! proxy's clients share its address).

mod admission;
mod handshake;
mod relay;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_net::proxy_header::{self, Source};
use portcullis_net::read_ahead::ReadAhead;
use portcullis_proto::link::{AdmitFirst, ConnectionEvent, EndReason};
use portcullis_proto::proxy::{RefusalCode, WorkerReply};
use portcullis_proto::text;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_rustls::server::TlsStream;

/// A client's connection: TLS over the socket read in large chunks ([`ReadAhead`]), boxed:
/// the stream is over a kilobyte, and a connection's task would otherwise keep a copy of it
/// at every await it passed through (memory per idle connection matters at 10,000
/// connections).
pub(crate) type ClientStream = Box<TlsStream<ReadAhead<TcpStream>>>;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use self::admission::Admitted;
use self::handshake::{read_hello, refuse, reply, NoHello, Refusal};
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
    let limits = shared.config.handshake_limits;
    let proxied_gate = accept::Gate::new(
        accept::GateLimits {
            per_source: limits.total,
            ..limits
        },
        "proxy (through trusted proxies)",
    );
    let handshake_timeout = shared.config.handshake_timeout;
    loop {
        let Some((tcp, peer)) = listener.accept(&stop).await else {
            return;
        };
        // Until its hello is read, a connection holds a place in the gate.
        let proxied = shared.config.trusted_proxies.trusts(peer.ip());
        let Some(pass) = (if proxied { &proxied_gate } else { &gate }).enter(peer.ip()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        // An IPv4 client on a dual-stack listener appears as ::ffff:a.b.c.d; grants carry the
        // plain address.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let span = tracing::info_span!(
            "connection",
            client.addr = tracing::field::Empty,
            client.via = tracing::field::Empty,
            session.id = tracing::field::Empty,
            connection.id = tracing::field::Empty
        );
        let (acceptor, shared) = (acceptor.clone(), shared.clone());
        tasks.spawn(
            async move {
                let mut tcp = tcp;
                let trusted = &shared.config.trusted_proxies;
                let source = proxy_header::read_source(trusted, &mut tcp, peer, handshake_timeout).await;
                let Source { client, via } = match source {
                    Ok(source) => source,
                    Err(e) => {
                        tracing::warn!(client.via = %peer, error = %e, "connection from a trusted proxy refused");
                        return;
                    }
                };
                let span = tracing::Span::current();
                span.record("client.addr", tracing::field::display(client));
                if let Some(via) = via {
                    span.record("client.via", tracing::field::display(via));
                }
                let accepted = tokio::time::timeout(handshake_timeout, acceptor.accept(ReadAhead::new(tcp)))
                    .await
                    .map(|accepted| accepted.map(Box::new));
                match accepted {
                    Ok(Ok(tls)) => handle(tls, client, shared, pass).await,
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

/// One connection after its TLS handshake: reads the hello, admits the connection, opens the
/// target, accepts, relays until the connection or its session ends, and records the close.
async fn handle(mut tls: ClientStream, peer: SocketAddr, shared: Arc<Shared>, pass: accept::Pass) {
    let hello = read_hello(&mut tls, shared.config.hello_timeout).await;
    drop(pass);
    let hello = match hello {
        Ok(h) => h,
        Err(NoHello::Closed) => {
            tracing::debug!(
                "the client went away before its hello (a spare it no longer needs, or a probe)"
            );
            return;
        }
        Err(NoHello::Bad(e)) => {
            let refusal = Refusal::new(RefusalCode::BadHandshake, e);
            note_refused(&shared, peer, None, &refusal);
            return refuse(tls, refusal).await;
        }
    };
    let admitting = std::time::Instant::now();
    crate::link::learn_grant_key(&shared, &hello.grant).await;
    let admitted = match admission::admit(&shared, &tls, peer, hello) {
        Ok(admitted) => admitted,
        Err(admission::Refused {
            session_id,
            refusal,
        }) => {
            shared.metrics.admission(false, admitting.elapsed());
            note_refused(&shared, peer, session_id, &refusal);
            return refuse(tls, refusal).await;
        }
    };
    // In gateway mode the gateway must be able to greet the client before anything is
    // dialled: without a host certificate it fails closed.
    let gateway = match &admitted.claims.gw {
        Some(gw) => match crate::gateway::prepare(&shared, gw).await {
            Ok(ready) => Some((ready, gw.clone())),
            Err(e) => {
                shared.table.unadmit(&admitted.claims.sid);
                let code = match e {
                    crate::gateway::NotReady::HostCertificate(_) => {
                        RefusalCode::ControllerUnreachable
                    }
                    crate::gateway::NotReady::GrantKey(_) => RefusalCode::InvalidGrant,
                };
                let refusal = Refusal::new(code, e.to_string());
                shared.metrics.admission(false, admitting.elapsed());
                tracing::warn!(error = %e, "gateway connection refused");
                note_refused(&shared, peer, Some(admitted.claims.sid.clone()), &refusal);
                return refuse(tls, refusal).await;
            }
        },
        None => None,
    };
    let dialed = match open(&shared, peer, &admitted).await {
        Ok(dialed) => {
            shared.metrics.admission(true, admitting.elapsed());
            dialed
        }
        Err(refusal) => {
            shared.metrics.admission(false, admitting.elapsed());
            if !admission::audited_when_opening(&refusal) {
                let session_id = Some(admitted.claims.sid.clone());
                note_refused(&shared, peer, session_id, &refusal);
            }
            return refuse(tls, refusal).await;
        }
    };
    let serving = match (gateway, &admitted.claims.pve, dialed) {
        // An injecting Proxmox API session is accepted even when the dial failed: each
        // request dials again, and answers 502 with a sentence if it cannot.
        (None, Some(claims), dialed) => {
            let spare = match dialed {
                Ok(target) => Some(target),
                Err(e) => {
                    tracing::info!(error = %e, "the Proxmox API is unreachable for now");
                    None
                }
            };
            Serving::Pve(spare, claims.clone())
        }
        (_, _, Err(e)) => {
            shared
                .spool
                .record(closed(
                    &shared,
                    &admitted,
                    0,
                    0,
                    EndReason::TargetUnreachable,
                ))
                .await;
            let endpoint = admitted.endpoint;
            let refusal = Refusal::new(
                RefusalCode::TargetUnreachable,
                format!("cannot reach {endpoint}: {e}"),
            );
            return refuse(tls, refusal).await;
        }
        (Some((ready, gw)), _, Ok(target)) => Serving::Gateway(target, ready, gw),
        (None, None, Ok(target)) => Serving::Relay(target),
    };
    reply(
        &mut tls,
        &WorkerReply::Accepted {
            connection_id: admitted.connection_id.clone(),
        },
    )
    .await;
    tracing::info!(endpoint = %admitted.endpoint, "connection accepted");
    let open_connection = shared.metrics.opened();
    let relay::Relayed { up, down, why } = match serving {
        Serving::Gateway(target, ready, gw) => {
            let conn = crate::gateway::Connection {
                session_id: admitted.claims.sid.clone(),
                connection_id: admitted.connection_id.clone(),
                grant: admitted.grant.clone(),
                gw,
                peer,
                target: admitted.endpoint,
            };
            let served = Box::pin(crate::gateway::serve(&shared, tls, target, ready, conn)).await;
            relay::Relayed {
                up: served.up,
                down: served.down,
                why: served.why,
            }
        }
        // An injecting Proxmox API session: HTTP, not bytes.
        Serving::Pve(spare, claims) => {
            let connection = crate::pve::Connection {
                session_id: admitted.claims.sid.clone(),
                connection_id: admitted.connection_id.clone(),
                grant: admitted.grant.clone(),
                claims,
                endpoint: admitted.endpoint,
            };
            let served = Box::pin(crate::pve::serve(&shared, tls, spare, connection)).await;
            relay::Relayed {
                up: served.up,
                down: served.down,
                why: served.why,
            }
        }
        Serving::Relay(target) => {
            relay::relay_until_ended(&shared, &admitted.claims.sid, tls, target).await
        }
    };
    tracing::info!(bytes.up = up, bytes.down = down, reason = %why, "connection closed");
    shared.metrics.relayed(up, down);
    drop(open_connection);
    shared
        .spool
        .record(closed(&shared, &admitted, up, down, why))
        .await;
}

/// What serves an accepted connection.
enum Serving {
    /// The byte relay to the dialled target.
    Relay(TcpStream),
    /// The SSH gateway, for a grant with `gw`.
    Gateway(
        TcpStream,
        crate::gateway::Ready,
        portcullis_proto::grant::GatewayClaims,
    ),
    /// The Proxmox API proxy, for a grant with `pve`: with the stream dialled while
    /// admitting, when the dial worked.
    Pve(Option<TcpStream>, portcullis_proto::pve::PveClaims),
}

/// Counts a refusal the worker decided, for the audit log ([`crate::refusals`]).
fn note_refused(shared: &Shared, peer: SocketAddr, session_id: Option<String>, refusal: &Refusal) {
    let refused = crate::refusals::Refused {
        session_id,
        code: refusal.code,
        client_addr: peer.ip().to_string(),
        message: refusal.reason.clone(),
    };
    shared.refusals.note(refused, shared.clock.now());
}

/// Dials the target and records the connection as opened: on disk before a byte flows, or
/// the connection is refused; the dial's outcome is the caller's to act on. For a session's
/// first connection here the target is dialled while the controller is asked to admit it,
/// so the two round trips overlap; a refused connection drops the dialled stream unused (the
/// target sees a connect and a close, never a byte).
async fn open(
    shared: &Shared,
    peer: SocketAddr,
    admitted: &Admitted,
) -> Result<std::io::Result<TcpStream>, Refusal> {
    let claims = &admitted.claims;
    let mut dialing = std::pin::pin!(dial(admitted.endpoint, shared.config.egress_addr));
    let opened = ConnectionEvent::opened(
        &claims.sid,
        &admitted.connection_id,
        shared.clock.unix_secs(),
        &peer.ip().to_string(),
        &claims.dst,
    );
    let dialed = if admitted.first {
        let admit = AdmitFirst {
            session_id: claims.sid.clone(),
            connection_id: admitted.connection_id.clone(),
            client_addr: peer.ip().to_string(),
        };
        let mut asking = std::pin::pin!(admission::ask_controller(shared, admit));
        let mut dialed = None;
        // A refusal is sent at once, without waiting for the dial.
        let answer = loop {
            tokio::select! {
                answer = &mut asking => break answer,
                result = &mut dialing, if dialed.is_none() => dialed = Some(result),
            }
        };
        if let Err(refusal) = answer {
            shared.table.unadmit(&claims.sid);
            return Err(refusal);
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
    Ok(dialed)
}

/// The event that closes an admitted connection.
fn closed(
    shared: &Shared,
    admitted: &Admitted,
    up: u64,
    down: u64,
    why: EndReason,
) -> ConnectionEvent {
    ConnectionEvent::closed(
        &admitted.claims.sid,
        &admitted.connection_id,
        shared.clock.unix_secs(),
        up,
        down,
        why,
    )
}

/// Dials `endpoint` from the egress address (if set), with `TCP_NODELAY`.
pub(crate) async fn dial(
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
