//! The controller's end of the cluster link: a mutually authenticated TLS listener on which
//! workers (or, without a certificate, workers enrolling with a join token) speak the framed
//! protocol of `portcullis_proto::link`. Either side may send requests; see
//! docs/architecture.md.

pub(crate) mod dialer;
pub(crate) mod gate;
pub(crate) mod handler;
pub(crate) mod registry;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream::FuturesUnordered;
use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_proto::link::{self, Frame, Request, Response};
use portcullis_proto::text;
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio_rustls::TlsAcceptor;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::keys::ca::CertificateAuthority;
use crate::keys::KeyError;
use crate::state::AppState;
use registry::Outgoing;

/// Builds the link's TLS config: a certificate for `portcullis-controller`, client
/// certificates verified against the CA but optional (a worker enrolling has none yet).
pub(crate) fn tls_config(ca: &CertificateAuthority) -> Result<Arc<rustls::ServerConfig>, KeyError> {
    let (chain, key) = ca.issue_server_identity(
        &[link::CONTROLLER_SERVER_NAME.to_owned()],
        Duration::from_secs(30 * 24 * 3600),
    )?;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca.cert_der.clone())
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
        .allow_unauthenticated()
        .build()
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    let mut config =
        rustls::ServerConfig::builder_with_protocol_versions(&[&rustls::version::TLS13])
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
    config.alpn_protocols = vec![link::ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Accepts worker links until `shutdown`. Connections that have not authenticated yet are
/// bounded by `cluster.*` limits (see [`gate`]).
pub(crate) async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    state: AppState,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(tls);
    let limits = state.config.cluster_handshakes;
    let gate = gate::Gate::new(limits.places);
    // Connections closed because the gate was full, logged like failed accepts.
    let mut refused: u64 = 0;
    let mut last_refusal_log: Option<tokio::time::Instant> = None;
    let mut accepting = portcullis_proto::accept::Acceptor::new("link");
    loop {
        let Some((tcp, peer)) = accepting.next_until(|| listener.accept(), &shutdown).await else {
            return;
        };
        // Until it authenticates, a connection holds a place in the gate; none left: closed.
        let place = match gate.enter(peer.ip()) {
            Ok(place) => place,
            Err(full) => {
                drop(tcp);
                refused += 1;
                if last_refusal_log.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                    tracing::warn!(client.addr = %peer, refused, cap = ?full,
                        limit.total = limits.places.total, limit.per_source = limits.places.per_source,
                        "too many link connections in their handshake; closing new ones (cluster.max_handshakes, cluster.max_handshakes_per_source)");
                    last_refusal_log = Some(tokio::time::Instant::now());
                    refused = 0;
                }
                continue;
            }
        };
        let span = tracing::info_span!("worker_link", client.addr = %peer, worker.id = tracing::field::Empty);
        let (acceptor, state, shutdown) = (acceptor.clone(), state.clone(), shutdown.clone());
        tokio::spawn(
            async move {
                if let Err(err) = run_link(acceptor, tcp, place, state, shutdown).await {
                    tracing::info!(error = %text::escaped(&err), "worker link closed");
                }
            }
            .instrument(span),
        );
    }
}

/// Any byte stream a link runs over: TLS accepted from a worker, or TLS dialled to one.
pub(crate) trait LinkIo:
    tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send
{
}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> LinkIo for T {}

type LinkStream<S> = Framed<S, tokio_util::codec::LengthDelimitedCodec>;

async fn send<S: LinkIo>(stream: &mut LinkStream<S>, frame: &Frame) -> Result<(), String> {
    let bytes = link::encode(frame).map_err(|e| e.to_string())?;
    stream.send(bytes).await.map_err(|e| e.to_string())
}

async fn run_link(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    place: gate::Place,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().map_err(|e| e.to_string())?.ip();
    let handshake_timeout = state.config.cluster_handshakes.handshake_timeout;
    let tls = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS handshake failed: {e}"))?;
    let peer_spki = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| {
            webpki::EndEntityCert::try_from(cert)
                .ok()
                .map(|c| c.subject_public_key_info().as_ref().to_vec())
        });
    drive(tls, peer, peer_spki, Some(place), state, shutdown).await
}

/// Runs the link protocol over an established stream with the worker at `peer`.
/// `peer_spki` is the worker's key when its certificate chains to the CA; without one, the
/// link may only enrol. `place`, the link's place in the listener's [`gate`], is given back
/// as soon as the link is authenticated (hello accepted) or has had its answer (join).
pub(crate) async fn drive<S: LinkIo>(
    io: S,
    peer: std::net::IpAddr,
    peer_spki: Option<Vec<u8>>,
    place: Option<gate::Place>,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut stream = Framed::new(io, link::codec());
    let first_frame_timeout = state.config.cluster_handshakes.first_frame_timeout;
    let first = tokio::time::timeout(first_frame_timeout, stream.next())
        .await
        .map_err(|_| format!("no first frame within {first_frame_timeout:?}"))?
        .ok_or("closed before the first frame")?
        .map_err(|e| e.to_string())?;
    let (id, request) = match link::decode(&first) {
        Ok(Frame::Request { id, body }) => (id, body),
        Ok(_) => return Err("first frame is not a request".into()),
        Err(e) => return Err(format!("malformed first frame: {e}")),
    };
    let Some(spki) = peer_spki else {
        // No client certificate: the only thing such a link may do is enrol.
        let response = match request {
            Request::Join(join) => crate::enrolment::join(&state, join, peer.to_canonical()).await,
            _ => Response::Error {
                message: "present a worker certificate, or enrol with a join token first".into(),
            },
        };
        drop(place);
        send(&mut stream, &Frame::Response { id, body: response }).await?;
        return Ok(());
    };
    let Request::Hello(hello) = request else {
        send(
            &mut stream,
            &Frame::Response {
                id,
                body: Response::Error {
                    message: "the first request must be hello".into(),
                },
            },
        )
        .await?;
        return Err("first request was not hello".into());
    };
    let worker_id = hello.worker_id.clone();
    tracing::Span::current().record("worker.id", worker_id.as_str());
    let answer = handler::hello(&state, &spki, &hello).await;
    let accepted = matches!(answer, Response::Sync(_));
    send(&mut stream, &Frame::Response { id, body: answer }).await?;
    if !accepted {
        return Err("hello refused".into());
    }
    drop(place);
    tracing::info!(proxy.addr = %text::escaped(&hello.proxy_addr), "worker linked");
    let (tx, mut rx) = mpsc::channel::<Outgoing>(64);
    let handle = state.links.insert(&worker_id, tx, &spki);
    let result = serve_requests(
        &state,
        &worker_id,
        &hello.proxy_addr,
        &mut stream,
        &mut rx,
        &handle.closed,
        &shutdown,
    )
    .await;
    state.links.remove(&worker_id, handle.generation);
    result
}

/// Requests of one worker served at the same time; beyond this the link stops reading.
const MAX_SERVING: usize = 64;

#[allow(clippy::too_many_arguments)]
async fn serve_requests<S: LinkIo>(
    state: &AppState,
    worker_id: &str,
    proxy_addr: &str,
    stream: &mut LinkStream<S>,
    rx: &mut mpsc::Receiver<Outgoing>,
    closed: &CancellationToken,
    shutdown: &CancellationToken,
) -> Result<(), String> {
    let mut pending: HashMap<u64, oneshot::Sender<Response>> = HashMap::new();
    let mut next_id: u64 = 2;
    // The worker's requests are served side by side: a first connection's admission does
    // not wait behind a frame of connection events being committed.
    let mut serving = FuturesUnordered::new();
    // A silent worker is dropped: it heartbeats every interval.
    let idle_limit = state.config.heartbeat_interval * 5 + Duration::from_secs(2);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = closed.cancelled() => return Err("link replaced or worker deleted".into()),
            outgoing = rx.recv() => {
                let Some(Outgoing { body, reply }) = outgoing else { return Ok(()) };
                let id = next_id;
                next_id += 2;
                pending.insert(id, reply);
                send(stream, &Frame::Request { id, body }).await?;
            }
            Some((id, answer)) = serving.next(), if !serving.is_empty() => {
                send(stream, &Frame::Response { id, body: answer }).await?;
            }
            frame = tokio::time::timeout(idle_limit, stream.next()), if serving.len() < MAX_SERVING => {
                let frame = frame.map_err(|_| "worker went silent".to_string())?;
                let Some(frame) = frame else { return Ok(()) };
                let bytes = frame.map_err(|e| e.to_string())?;
                match link::decode(&bytes) {
                    Ok(Frame::Response { id, body }) => {
                        if let Some(reply) = pending.remove(&id) {
                            let _ = reply.send(body);
                        }
                    }
                    Ok(Frame::Request { id, body }) => {
                        serving.push(async move {
                            (id, handler::handle(state, worker_id, proxy_addr, body).await)
                        });
                    }
                    Err(err) => return Err(format!("malformed frame: {err}")),
                }
            }
        }
    }
}
