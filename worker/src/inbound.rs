//! Links that controllers dial (the outbound-only control plane): the worker listens on
//! `cluster_listen`, presents its certificate, requires a controller's CA-issued link
//! certificate, and then speaks the same protocol as when it dials out.
//!
//! Only a controller is accepted: its certificate must chain to the CA, carry the
//! client-authentication usage and name `portcullis-controller`. Workers' certificates chain
//! to the same CA and carry client authentication too, but never that name (the CA refuses to
//! issue it to a worker), so one worker cannot pose as a controller to another and hand it
//! grant keys or end its sessions.
//!
//! Before enrolment the worker has no certificate: it presents a throw-away self-signed one,
//! accepts only a controller whose CA matches the join token's hash, and sends `join`.
//! Enrolment attempts are served side by side: an idle connection does not hold up a real
//! controller.

use std::sync::Arc;

use futures_util::stream::FuturesUnordered;
use futures_util::StreamExt as _;
use portcullis_proto::api::{JoinRequest, JoinResponse};
use portcullis_proto::clock::Clock;
use portcullis_proto::link::{self, Frame, Request};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::accept::{self, Gate};
use crate::config::Config;
use crate::identity::Identity;
use crate::ExposeSecret as _;
use crate::{Shared, WorkerError};

/// Which CA a controller's certificate must chain to.
#[derive(Debug)]
enum Trust {
    /// Before enrolment: the CA the controller sends, if its key has the join token's hash.
    CaWithHash(String),
    /// Once enrolled: the CA saved at enrolment.
    Ca(CertificateDer<'static>),
}

/// Accepts a controller's link certificate (see the module doc), nothing else.
#[derive(Debug)]
struct ControllerVerifier {
    trust: Trust,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl ControllerVerifier {
    fn new(trust: Trust) -> ControllerVerifier {
        ControllerVerifier {
            trust,
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        }
    }
}

/// Checks that `ee` is a controller's link certificate issued by `ca`.
fn verify_controller(
    ee: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    let anchor = webpki::anchor_from_trusted_cert(ca)
        .map_err(|_| rustls::Error::General("bad CA".into()))?;
    let cert = webpki::EndEntityCert::try_from(ee)
        .map_err(|_| rustls::Error::General("unparsable controller certificate".into()))?;
    cert.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &[anchor],
        &[],
        now,
        webpki::KeyUsage::client_auth(),
        None,
        None,
    )
    .map_err(|e| rustls::Error::General(format!("controller certificate: {e}")))?;
    let controller = ServerName::try_from(link::CONTROLLER_SERVER_NAME)
        .map_err(|_| rustls::Error::General("bad controller name".into()))?;
    cert.verify_is_valid_for_subject_name(&controller)
        .map_err(|_| {
            rustls::Error::General(format!(
                "the certificate does not name {}: only a controller may dial this worker",
                link::CONTROLLER_SERVER_NAME
            ))
        })
}

impl ClientCertVerifier for ControllerVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        ee: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match &self.trust {
            Trust::Ca(ca) => verify_controller(ee, ca, now)?,
            Trust::CaWithHash(hash) => {
                let ca = intermediates.last().ok_or(rustls::Error::General(
                    "the controller sent no CA certificate".into(),
                ))?;
                let spki = webpki::EndEntityCert::try_from(ca)
                    .map_err(|_| rustls::Error::General("unparsable CA".into()))?
                    .subject_public_key_info();
                if portcullis_proto::keys::spki_fingerprint(spki.as_ref()) != *hash {
                    return Err(rustls::Error::General(
                        "the controller's CA does not match".into(),
                    ));
                }
                verify_controller(ee, ca, now)?
            }
        }
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
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
    listener: &mut accept::Listener,
    config: &Config,
    proxy_addr: &str,
    clock: &dyn Clock,
) -> Result<Identity, WorkerError> {
    let token = config.join_token.as_ref().ok_or(WorkerError::NotEnrolled)?;
    let (ca_hash, _) = portcullis_proto::api::join_token::parse(token.expose_secret())
        .map_err(|m| WorkerError::Enrol(m.to_owned()))?;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)
        .map_err(|e| WorkerError::Identity(e.to_string()))?;
    let spki = rcgen::PublicKeyData::subject_public_key_info(&key);
    let throwaway = rcgen::CertificateParams::new(vec!["portcullis-worker".to_owned()])
        .and_then(|p| p.self_signed(&key))
        .map_err(|e| WorkerError::Identity(e.to_string()))?;
    let verifier = Arc::new(ControllerVerifier::new(Trust::CaWithHash(
        ca_hash.to_owned(),
    )));
    let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(
        verifier,
        None,
        Some((vec![throwaway.der().clone()], private)),
    )?);
    let join = Frame::Request {
        id: 1,
        body: Request::Join(JoinRequest {
            token: token.expose_secret().to_owned(),
            name: config.name.clone(),
            public_key: portcullis_proto::keys::b64(&spki),
            proxy_addr: proxy_addr.to_owned(),
        }),
    };
    let join = link::encode(&join).map_err(|e| WorkerError::Enrol(e.to_string()))?;
    let gate = Gate::new(config.handshake_limits, "cluster");
    let mut attempts = FuturesUnordered::new();
    tracing::info!("waiting for a controller to dial in for enrolment");
    // Enrolment ends with an identity or an error; only dropping it stops it sooner.
    let running = CancellationToken::new();
    loop {
        tokio::select! {
            Some((tcp, peer)) = listener.accept(&running) => {
                let Some(pass) = gate.enter(peer.ip()) else { continue };
                let (acceptor, join) = (acceptor.clone(), join.clone());
                attempts.push(async move {
                    let _pass = pass;
                    join_through(&acceptor, tcp, join, config.handshake_timeout)
                        .await
                        .map_err(|e| format!("with {peer}: {e}"))
                });
            }
            Some(result) = attempts.next(), if !attempts.is_empty() => match result {
                Ok(joined) => return crate::identity::finish_enrolment(&config.state_dir, key, joined, clock.unix_secs()),
                Err(e) => tracing::warn!(error = %portcullis_proto::text::escaped(&e), "enrolment attempt failed; waiting for another"),
            },
        }
    }
}

/// One enrolment attempt on an accepted connection: TLS within `handshake_timeout`, then the
/// join request and the controller's answer.
async fn join_through(
    acceptor: &tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    join: bytes::Bytes,
    handshake_timeout: std::time::Duration,
) -> Result<JoinResponse, String> {
    let tls = tokio::time::timeout(handshake_timeout, acceptor.accept(tcp))
        .await
        .map_err(|_| "TLS handshake timed out".to_string())?
        .map_err(|e| format!("TLS: {e}"))?;
    crate::identity::join_over(tls, join).await
}

/// Serves links dialled by controllers until `shutdown`. Several controllers may hold links
/// at once; a connection that fails (in TLS or later) changes no other link.
pub async fn serve(
    mut listener: accept::Listener,
    shared: Arc<Shared>,
    shutdown: CancellationToken,
) -> Result<(), WorkerError> {
    let verifier = Arc::new(ControllerVerifier::new(Trust::Ca(
        shared.identity.ca_der()?,
    )));
    let acceptor =
        tokio_rustls::TlsAcceptor::from(server_config(verifier, Some(shared.certs.clone()), None)?);
    let gate = Arc::new(Gate::new(shared.config.handshake_limits, "cluster"));
    loop {
        let Some((tcp, peer)) = listener.accept(&shutdown).await else {
            return Ok(());
        };
        let Some(pass) = gate.enter(peer.ip()) else {
            continue;
        };
        let (acceptor, shared, shutdown) = (acceptor.clone(), shared.clone(), shutdown.clone());
        let span = tracing::info_span!("inbound_link", controller.addr = %peer);
        tokio::spawn(
            async move {
                let result = async {
                    let tls =
                        tokio::time::timeout(shared.config.handshake_timeout, acceptor.accept(tcp))
                            .await
                            .map_err(|_| "TLS handshake timed out".to_string())?
                            .map_err(|e| format!("TLS: {e}"))?;
                    drop(pass);
                    // The verifier accepted a controller certificate; its key names the
                    // controller (a newer link with the same key replaces this one).
                    let controller = tls
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|c| c.first())
                        .and_then(|c| {
                            webpki::EndEntityCert::try_from(c).ok().map(|e| {
                                portcullis_proto::keys::spki_fingerprint(
                                    e.subject_public_key_info().as_ref(),
                                )
                            })
                        })
                        .ok_or("the controller presented no certificate")?;
                    crate::link::drive(&shared, tls, &controller, &peer.to_string(), &shutdown)
                        .await
                }
                .await;
                if let Err(e) = result {
                    tracing::info!(error = %portcullis_proto::text::escaped(&e), "controller link ended");
                }
            }
            .instrument(span),
        );
    }
}
