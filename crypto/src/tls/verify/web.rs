//! Server verifiers for a web target a client reaches on the user's behalf (`portcullis
//! connect http`), besides [`super::PinnedCertificate`]:
//!
//! - [`WebPki`]: a chain to one of the given roots, for the name asked, as a browser checks;
//!   a refusal names the SHA-256 fingerprint of the certificate the server presented, so
//!   that a self-signed one (a homelab's Proxmox node) can be pinned instead of trusted
//!   blindly;
//! - [`AnyCertificate`]: no check of the certificate at all (an explicit, warned-about
//!   choice); the handshake signature is still checked, proving only that the server holds
//!   the key it showed.
//!
//! Both accept TLS 1.2 as well as 1.3, as web servers may speak either.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{algorithms, colon_hex};
use crate::digest::sha256;
use crate::tls::TlsError;

/// A chain to `roots` for the server's name; refusals name the presented fingerprint.
#[derive(Debug)]
pub struct WebPki(Arc<WebPkiServerVerifier>);

impl WebPki {
    pub fn new(roots: RootCertStore) -> Result<WebPki, TlsError> {
        let inner =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crate::tls::provider())
                .build()
                .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
        Ok(WebPki(inner))
    }
}

/// The server's certificate was refused. Its `Debug` is its sentence (rustls shows a
/// certificate error's cause with `Debug`).
struct Refused {
    cause: rustls::Error,
    presented: String,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "its certificate was refused ({}); it presented the certificate with SHA-256 \
             fingerprint {}: if that is the target's own (compare it on the target, e.g. in \
             the Proxmox node's summary), pin it with --target-fingerprint {}, or pass \
             --target-ca FILE",
            self.cause, self.presented, self.presented
        )
    }
}

impl fmt::Debug for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Refused {}

impl ServerCertVerifier for WebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
            .map_err(|cause| {
                let presented = colon_hex(&sha256(end_entity.as_ref()));
                rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                    Arc::new(Refused { cause, presented }),
                )))
            })
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// Any server certificate; handshake signatures checked.
#[derive(Debug)]
pub struct AnyCertificate;

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // Still a certificate the signature checks can read.
        webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms().supported_schemes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A CA, and a leaf it issued for `name`.
    fn issued(name: &str) -> (CertificateDer<'static>, CertificateDer<'static>) {
        let ca_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = rcgen::CertificateParams::new(vec![name.to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        (ca_cert.der().clone(), leaf.der().clone())
    }

    fn check(
        verifier: &dyn ServerCertVerifier,
        leaf: &CertificateDer<'_>,
        name: &str,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let name = ServerName::try_from(name.to_owned()).unwrap();
        verifier.verify_server_cert(leaf, &[], &name, &[], UnixTime::now())
    }

    #[test]
    fn web_pki_checks_the_chain_and_name_and_a_refusal_names_the_fingerprint() {
        let (ca, leaf) = issued("app.lan");
        let mut roots = RootCertStore::empty();
        roots.add(ca).unwrap();
        let verifier = WebPki::new(roots).unwrap();
        check(&verifier, &leaf, "app.lan").unwrap();
        let fingerprint = colon_hex(&sha256(leaf.as_ref()));
        let wrong_name = check(&verifier, &leaf, "other.lan").unwrap_err();
        let said = format!("{wrong_name:?}");
        assert!(
            said.contains(&format!("--target-fingerprint {fingerprint}")),
            "{said}"
        );
        // Another CA's leaf: refused, named the same way.
        let (_, stranger) = issued("app.lan");
        let said = format!("{:?}", check(&verifier, &stranger, "app.lan").unwrap_err());
        assert!(
            said.contains(&colon_hex(&sha256(stranger.as_ref()))),
            "{said}"
        );
    }

    #[test]
    fn any_certificate_takes_any_readable_certificate_only() {
        let (_, leaf) = issued("app.lan");
        check(&AnyCertificate, &leaf, "whatever.lan").unwrap();
        let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);
        assert!(check(&AnyCertificate, &garbage, "app.lan").is_err());
    }
}
