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

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::keys::ca::CertificateAuthority;
use crate::keys::KeyError;
use crate::state::AppState;

/// Accepts the worker's certificate as whatever it is (the protocol decides what the link may
/// do), but verifies that the worker holds its key.
#[derive(Debug)]
struct AnyWorkerKey(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyWorkerKey {
    fn verify_server_cert(
        &self,
        ee: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        webpki::EndEntityCert::try_from(ee)
            .map_err(|_| rustls::Error::General("unparsable worker certificate".into()))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not used".into()))
    }

    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS client config a controller dials workers with.
pub(crate) fn client_config(
    ca: &CertificateAuthority,
) -> Result<Arc<rustls::ClientConfig>, KeyError> {
    let (chain, key) = ca.issue_controller_identity(Duration::from_secs(30 * 24 * 3600))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| KeyError::Crypto(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyWorkerKey(provider)))
        .with_client_auth_cert(chain, key)
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    config.alpn_protocols = vec![portcullis_proto::link::ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// The worker's key, when its certificate chains to our CA (an enrolled worker).
fn enrolled_key(cert: &CertificateDer<'_>, ca: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let ee = webpki::EndEntityCert::try_from(cert).ok()?;
    let anchor = webpki::anchor_from_trusted_cert(ca).ok()?;
    ee.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        UnixTime::now(),
        webpki::KeyUsage::server_auth(),
        None,
        None,
    )
    .ok()?;
    Some(ee.subject_public_key_info().as_ref().to_vec())
}

/// Keeps a link to each configured worker address until `shutdown`.
pub(crate) fn spawn_all(
    state: &AppState,
    addrs: &[String],
    tls: Arc<rustls::ClientConfig>,
    ca_der: CertificateDer<'static>,
    shutdown: &CancellationToken,
) -> Vec<tokio::task::JoinHandle<()>> {
    addrs
        .iter()
        .map(|addr| {
            let span = tracing::info_span!("worker_dial", worker.addr = %addr, worker.id = tracing::field::Empty);
            tokio::spawn(dial_loop(state.clone(), addr.clone(), tls.clone(), ca_der.clone(), shutdown.clone()).instrument(span))
        })
        .collect()
}

async fn dial_loop(
    state: AppState,
    addr: String,
    tls: Arc<rustls::ClientConfig>,
    ca: CertificateDer<'static>,
    shutdown: CancellationToken,
) {
    let connector = tokio_rustls::TlsConnector::from(tls);
    // From 200 ms, doubling and jittered, at most 5 s; from the start again after a link
    // that was up.
    let retries =
        || portcullis_proto::retry::schedule(Duration::from_millis(200), Duration::from_secs(5));
    let mut waits = retries();
    loop {
        let attempt = async {
            let tcp = tokio::time::timeout(
                Duration::from_secs(5),
                tokio::net::TcpStream::connect(&addr),
            )
            .await
            .map_err(|_| "connect timed out".to_string())?
            .map_err(|e| e.to_string())?;
            let _ = tcp.set_nodelay(true);
            let peer_addr = tcp.peer_addr().map_err(|e| e.to_string())?.ip();
            let name = ServerName::try_from("portcullis-worker").map_err(|e| e.to_string())?;
            let tls = tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                .await
                .map_err(|_| "TLS handshake timed out".to_string())?
                .map_err(|e| format!("TLS handshake failed: {e}"))?;
            let peer = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| enrolled_key(c, &ca));
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
