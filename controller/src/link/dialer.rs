//! The outbound-only control plane: instead of workers dialling in, a controller dials the
//! workers it is configured with (`cluster.dial_workers`) and then speaks the same link
//! protocol, with the worker still the side that says hello. A worker in an untrusted network
//! never needs a route into the control plane.
//!
//! TLS roles are reversed: the controller is the client and presents its link certificate
//! (CA-issued, for `portcullis-controller`); the worker is the server. A worker that has not
//! enrolled yet presents a self-signed certificate and may only send `join`; an enrolled one
//! presents its CA-issued certificate, whose key the hello check compares with the store.

use std::sync::Arc;
use std::time::Duration;

use portcullis_crypto::tls::verify::{chains_to, AnyKey, TrustBundle, Usage};
use portcullis_crypto::tls::{self, ClientAuth};
use portcullis_proto::link::LinkError;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::keys::identities::CaIdentities;
use crate::keys::KeyError;
use crate::state::AppState;

/// The TLS client config a controller dials workers with: its link certificate (issued again
/// when the signing CA changes), and any worker key whose holder proves it (`AnyKey`): the
/// protocol decides what the link may do.
pub(crate) fn client_config(ca: &CaIdentities) -> Result<Arc<rustls::ClientConfig>, KeyError> {
    let config = tls::client_config(
        Arc::new(AnyKey),
        ClientAuth::Resolver(ca.dial.clone()),
        portcullis_proto::link::ALPN,
    )
    .map_err(|e| KeyError::Crypto(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The worker's key, when its certificate chains to a trusted CA (an enrolled worker).
fn enrolled_key(cert: &CertificateDer<'_>, trust: &TrustBundle) -> Option<Vec<u8>> {
    let now = UnixTime::now();
    trust
        .get()
        .iter()
        .any(|ca| chains_to(cert, ca, Usage::ServerAuth, now).is_ok())
        .then(|| tls::spki_of(cert).ok())?
}

/// Keeps a link to each configured worker address until `shutdown`.
pub(crate) fn spawn_all(
    state: &AppState,
    addrs: &[String],
    tls: Arc<rustls::ClientConfig>,
    trust: TrustBundle,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    addrs
        .iter()
        .map(|addr| {
            let span = tracing::info_span!("worker_dial", worker.addr = %addr, worker.id = tracing::field::Empty);
            tokio::spawn(dial_loop(state.clone(), addr.clone(), tls.clone(), trust.clone(), shutdown.clone()).instrument(span))
        })
        .collect()
}

async fn dial_loop(
    state: AppState,
    addr: String,
    tls: Arc<rustls::ClientConfig>,
    trust: TrustBundle,
    shutdown: CancellationToken,
) {
    let connector = tokio_rustls::TlsConnector::from(tls);
    // From 200 ms, doubling and jittered, at most 5 s; from the start again after a link
    // that was up.
    let retries =
        || portcullis_net::retry::schedule(Duration::from_millis(200), Duration::from_secs(5));
    let mut waits = retries();
    loop {
        let attempt = async {
            let tcp = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            .map_err(|_| LinkError::ConnectTimedOut { addr: addr.clone() })?
            .map_err(|source| LinkError::Connect {
                addr: addr.clone(),
                source,
            })?;
            let _ = tcp.set_nodelay(true);
            let peer_addr = tcp.peer_addr().map_err(LinkError::transport)?.ip();
            let name =
                ServerName::try_from("portcullis-worker").map_err(|e| LinkError::TlsSetUp {
                    reason: e.to_string(),
                })?;
            let after = Duration::from_secs(10);
            let tls = tokio::time::timeout(after, connector.connect(name, tcp))
                .await
                .map_err(|_| LinkError::TlsTimedOut { after })?
                .map_err(|source| LinkError::Tls { source })?;
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| enrolled_key(c, &trust));
            super::drive(tls, peer_addr, peer, None, state.clone(), shutdown.clone()).await
        };
        match attempt.await {
            Ok(()) => waits = retries(),
            Err(err) => {
                tracing::info!(error = %portcullis_proto::text::escaped(&err), "worker link ended; redialling")
            }
        }
        let wait = waits.next().unwrap_or(Duration::from_secs(5));
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}
