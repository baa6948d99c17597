//! The controller's end of the cluster link: a mutually authenticated TLS listener on which
//! workers (or, without a certificate, workers enrolling with a join token) speak the framed
//! protocol of `portcullis_proto::link`. Either side may send requests; see
//! docs/architecture.md. [`drive`] runs one link, whichever side dialled.

pub(crate) mod dialer;
mod drive;
pub(crate) mod gate;
pub(crate) mod handler;
pub(crate) mod registry;

use std::sync::Arc;
use std::time::Duration;

use portcullis_proto::link::{self, LinkError};
use portcullis_proto::text;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::keys::identities::CaIdentities;
use crate::keys::KeyError;
use crate::state::AppState;
pub(crate) use drive::drive;

/// Builds the link's TLS config: the controller's certificate for `portcullis-controller`
/// and client certificates verified against the trusted CAs but optional (a worker enrolling
/// has none yet), both followed in place through a TLS CA rotation.
pub(crate) fn tls_config(ca: &CaIdentities) -> Result<Arc<rustls::ServerConfig>, KeyError> {
    use portcullis_crypto::tls::{verify::PinnedCa, ServerCert};
    let workers =
        PinnedCa::worker_or_none(ca.trust.clone()).map_err(|e| KeyError::Crypto(e.to_string()))?;
    let cert = ServerCert::Resolver(ca.link.clone());
    let config = portcullis_crypto::tls::server_config(Arc::new(workers), cert, link::ALPN)
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
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
    let mut accepting = portcullis_net::accept::Acceptor::new("link");
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

async fn run_link(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    place: gate::Place,
    state: AppState,
    shutdown: CancellationToken,
) -> Result<(), LinkError> {
    let _ = tcp.set_nodelay(true);
    let peer = tcp.peer_addr().map_err(LinkError::transport)?.ip();
    let handshake_timeout = state.config.cluster_handshakes.handshake_timeout;
    let tls = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| LinkError::TlsTimedOut {
            after: handshake_timeout,
        })?
        .map_err(|source| LinkError::Tls { source })?;
    let peer_spki = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|cert| portcullis_crypto::tls::spki_of(cert).ok());
    drive(tls, peer, peer_spki, Some(place), state, shutdown).await
}
