//! Links that controllers dial (the outbound-only control plane): the worker listens on
//! `cluster_listen`, presents its certificate, requires the controller's CA-issued link
//! certificate, and then speaks the same protocol as when it dials out.
//!
//! Before enrolment the worker has no certificate: it presents a throw-away self-signed one,
//! accepts only a controller whose CA matches the join token's hash, and sends `join`.

use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use portcullis_proto::api::JoinRequest;
use portcullis_proto::link::{self, Frame, Request, Response};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::net::TcpListener;
use tokio_util::codec::Framed;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::identity::Identity;
use crate::{Shared, WorkerError};

/// Accepts a controller whose certificate chains to the CA with the given key hash.
#[derive(Debug)]
struct ControllerOfCa {
    ca_hash: String,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ClientCertVerifier for ControllerOfCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        ee: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let ca = intermediates.last().ok_or(rustls::Error::General(
            "the controller sent no CA certificate".into(),
        ))?;
        let spki = webpki::EndEntityCert::try_from(ca)
            .map_err(|_| rustls::Error::General("unparsable CA".into()))?
            .subject_public_key_info();
        if portcullis_proto::keys::spki_fingerprint(spki.as_ref()) != self.ca_hash {
            return Err(rustls::Error::General(
                "the controller's CA does not match".into(),
            ));
        }
        let anchor = webpki::anchor_from_trusted_cert(ca)
            .map_err(|_| rustls::Error::General("bad CA".into()))?;
        webpki::EndEntityCert::try_from(ee)
            .map_err(|_| rustls::Error::General("unparsable controller certificate".into()))?
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[anchor],
                &[],
                now,
                webpki::KeyUsage::client_auth(),
                None,
                None,
            )
            .map_err(|e| rustls::Error::General(format!("controller certificate: {e}")))?;
        Ok(ClientCertVerified::assertion())
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
        rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn server_config(
    verifier: Arc<dyn ClientCertVerifier>,
    resolver: Option<Arc<dyn rustls::server::ResolvesServerCert>>,
    single: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
) -> Result<Arc<rustls::ServerConfig>, WorkerError> {
    let builder = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .map_err(|e| WorkerError::Tls(e.to_string()))?
    .with_client_cert_verifier(verifier);
    let mut config = match (resolver, single) {
        (Some(r), _) => builder.with_cert_resolver(r),
        (None, Some((chain, key))) => builder
            .with_single_cert(chain, key)
            .map_err(|e| WorkerError::Tls(e.to_string()))?,
        (None, None) => return Err(WorkerError::Tls("no certificate".into())),
    };
    config.alpn_protocols = vec![link::ALPN.to_vec()];
    Ok(Arc::new(config))
}

/// Waits for a controller to dial in and enrols through it with the join token.
pub async fn enrol(
    listener: &TcpListener,
    dir: &std::path::Path,
    token: &str,
    name: &str,
    proxy_addr: &str,
) -> Result<Identity, WorkerError> {
    let (ca_hash, _) = portcullis_proto::api::join_token::parse(token)
        .map_err(|m| WorkerError::Enrol(m.to_owned()))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map_err(|e| WorkerError::Identity(e.to_string()))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let throwaway = rcgen::CertificateParams::new(vec!["portcullis-worker".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| WorkerError::Identity(e.to_string()))?;
    let verifier = Arc::new(ControllerOfCa {
        ca_hash: ca_hash.to_owned(),
        provider: Arc::new(rustls::crypto::ring::default_provider()),
    });
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(
        verifier,
        None,
        Some((vec![throwaway.der().clone()], private)),
    )?);
    tracing::info!("waiting for a controller to dial in for enrolment");
    loop {
        let (tcp, peer) = listener
            .accept()
            .await
            .map_err(|e| WorkerError::Enrol(e.to_string()))?;
        let attempt = async {
            let tls = acceptor
                .accept(tcp)
                .await
                .map_err(|e| format!("TLS with {peer}: {e}"))?;
            let mut framed = Framed::new(tls, link::codec());
            let join = Frame::Request {
                id: 1,
                body: Request::Join(JoinRequest {
                    token: token.to_owned(),
                    name: name.to_owned(),
                    public_key: portcullis_proto::keys::b64(&spki),
                    proxy_addr: proxy_addr.to_owned(),
                }),
            };
            framed
                .send(link::encode(&join).map_err(|e| e.to_string())?)
                .await
                .map_err(|e| e.to_string())?;
            let answer = tokio::time::timeout(std::time::Duration::from_secs(10), framed.next())
                .await
                .map_err(|_| "no answer to join".to_string())?
                .ok_or("closed")?
                .map_err(|e| e.to_string())?;
            match link::decode(&answer).map_err(|e| e.to_string())? {
                Frame::Response {
                    body: Response::Joined(joined),
                    ..
                } => Ok(joined),
                Frame::Response {
                    body: Response::Error { message },
                    ..
                } => Err(format!("enrolment refused: {message}")),
                _ => Err("unexpected answer to join".to_string()),
            }
        };
        match attempt.await {
            Ok(joined) => return crate::identity::finish_enrolment(dir, key, joined),
            Err(e) => {
                tracing::warn!(error = %portcullis_proto::text::escaped(&e), "enrolment attempt failed; waiting for another")
            }
        }
    }
}

/// Serves links dialled by controllers until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(shared.identity.ca_der()?)
        .map_err(|e| WorkerError::Tls(e.to_string()))?;
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .map_err(|e| WorkerError::Tls(e.to_string()))?;
    let acceptor =
        tokio_rustls::TlsAcceptor::from(server_config(verifier, Some(shared.certs.clone()), None)?);
    loop {
        let (tcp, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(_) => continue,
            },
        };
        let (acceptor, shared, shutdown) = (acceptor.clone(), shared.clone(), shutdown.clone());
        let span = tracing::info_span!("inbound_link", controller.addr = %peer);
        tokio::spawn(
            async move {
                let result = async {
                    let tls = acceptor
                        .accept(tcp)
                        .await
                        .map_err(|e| format!("TLS: {e}"))?;
                    crate::link::drive(&shared, tls, &peer.to_string(), &shutdown).await
                }
                .await;
                if let Err(e) = result {
                    shared.link.clear();
                    tracing::info!(error = %portcullis_proto::text::escaped(&e), "controller link ended");
                }
            }
            .instrument(span),
        );
    }
}
