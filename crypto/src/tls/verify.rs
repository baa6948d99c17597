//! The certificate verifiers, by what they trust:
//!
//! | verifier | trusts | used by |
//! |---|---|---|
//! | [`PinnedKey`] (server) | exactly one key, by the SHA-256 of its SPKI | a client dialling a worker's proxy port (the controller named the key) |
//! | [`AnyKey`] (server and client) | any key its holder proves; the protocol decides what it may do | a controller dialling a worker; a worker's proxy port, whose grants bind the client's key |
//! | [`PinnedCa`] (server and client) | a certificate the pinned CA issued, for the side's usage and, where set, a name | a worker dialling or dialled by a controller; the controller's link listener |
//! | [`PinnedCertificate`] (server) | exactly one certificate, by the SHA-256 of its DER | the controller reading a Proxmox API pinned by `ssl_fingerprint`; `connect http --target-fingerprint` |
//! | [`WebPki`] (server) | a chain to given roots, for the name asked; a refusal names the presented fingerprint | `connect http` to an https target (system roots or `--target-ca`) |
//! | [`AnyCertificate`] (server) | any certificate (signatures still checked) | `connect http --insecure-target` |
//!
//! Every verifier checks the TLS 1.3 handshake signature with the provider's algorithms, so
//! only the holder of the key can finish a handshake; TLS 1.2 is refused, except by
//! [`PinnedCertificate`], [`WebPki`] and [`AnyCertificate`] (a Proxmox node or a web server
//! may speak 1.2), which check its signature too. Whether a
//! certificate was issued by a CA is decided in one place, [`chains_to`].

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::TlsError;
use crate::digest::{sha256, sha256_hex};

mod web;
pub use web::{AnyCertificate, WebPki};

/// What a certificate is checked to be good for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server's certificate.
    ServerAuth,
    /// A TLS client's certificate.
    ClientAuth,
}

/// The one check of "issued by this CA": `ee` chains to `ca` (no intermediates), is valid at
/// `now` and carries `usage`; signatures are checked with the provider's algorithms.
pub fn chains_to(
    ee: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    usage: Usage,
    now: UnixTime,
) -> Result<(), rustls::Error> {
    issued(ee, ca, usage, now).map(drop)
}

fn issued<'a>(
    ee: &'a CertificateDer<'a>,
    ca: &CertificateDer<'_>,
    usage: Usage,
    now: UnixTime,
) -> Result<webpki::EndEntityCert<'a>, rustls::Error> {
    issued_by_any(ee, std::slice::from_ref(ca), usage, now)
}

/// Like [`issued`], by any of `cas` (a trust bundle during a CA rotation).
fn issued_by_any<'a>(
    ee: &'a CertificateDer<'a>,
    cas: &[CertificateDer<'_>],
    usage: Usage,
    now: UnixTime,
) -> Result<webpki::EndEntityCert<'a>, rustls::Error> {
    let anchors = cas
        .iter()
        .map(|ca| {
            webpki::anchor_from_trusted_cert(ca)
                .map_err(|e| rustls::Error::General(format!("unusable CA certificate: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let cert = webpki::EndEntityCert::try_from(ee)
        .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
    let usage = match usage {
        Usage::ServerAuth => webpki::KeyUsage::server_auth(),
        Usage::ClientAuth => webpki::KeyUsage::client_auth(),
    };
    cert.verify_for_usage(algorithms().all, &anchors, &[], now, usage, None, None)
        .map_err(|e| rustls::Error::General(format!("the certificate is not the CA's: {e}")))?;
    Ok(cert)
}

fn algorithms() -> WebPkiSupportedAlgorithms {
    rustls::crypto::ring::default_provider().signature_verification_algorithms
}

/// The handshake-signature half every verifier shares (the same three methods in rustls's
/// server and client verifier traits): TLS 1.3 signatures checked with the provider's
/// algorithms, TLS 1.2 refused.
macro_rules! handshake_signatures {
    () => {
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &CertificateDer<'_>,
            _: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
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
    };
}

/// Accepts exactly one server key, by the SHA-256 (hex) of its SPKI: a client's view of the
/// worker the controller named for its session. The certificate's names and dates carry no
/// authority and are not checked; the handshake signature is.
#[derive(Debug)]
pub struct PinnedKey {
    fingerprint: String,
}

/// The server's certificate carries another key than the one pinned.
#[derive(Debug)]
struct PinMismatch {
    expected: String,
    presented: String,
}

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the worker's key {} is not the key {} the controller named for this session",
            self.presented, self.expected
        )
    }
}

impl std::error::Error for PinMismatch {}

impl PinnedKey {
    /// `fingerprint`: the hex SHA-256 of the worker's SPKI (case and surrounding space do
    /// not matter).
    pub fn new(fingerprint: &str) -> Result<PinnedKey, TlsError> {
        let fingerprint = fingerprint.trim().to_ascii_lowercase();
        if fingerprint.len() != 64 || !fingerprint.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(TlsError::BadFingerprint(fingerprint));
        }
        Ok(PinnedKey { fingerprint })
    }
}

impl ServerCertVerifier for PinnedKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = webpki::EndEntityCert::try_from(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        let presented = sha256_hex(cert.subject_public_key_info().as_ref());
        if presented != self.fingerprint {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(PinMismatch {
                    expected: self.fingerprint.clone(),
                    presented,
                })),
            )));
        }
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

/// Accepts any well-formed certificate whose key the peer proves it holds; what the key may
/// do is for the protocol to decide. As a server verifier: a controller dialling a worker
/// (the link's hello checks the key against the store). As a client verifier (a certificate
/// is required): a worker's proxy port (the grant binds the client's key).
#[derive(Debug, Default)]
pub struct AnyKey;

impl AnyKey {
    fn parse(ee: &CertificateDer<'_>) -> Result<(), rustls::Error> {
        webpki::EndEntityCert::try_from(ee)
            .map(drop)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))
    }
}

impl ServerCertVerifier for AnyKey {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Self::parse(end_entity)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

impl ClientCertVerifier for AnyKey {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Self::parse(end_entity)?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    handshake_signatures!();
}

/// The CA certificates a side trusts, replaced in place when a CA rotation changes them
/// (a new CA joins before it signs; a retired one leaves): every verifier holding a clone
/// sees the change at its next handshake.
#[derive(Debug, Clone)]
pub struct TrustBundle(Arc<std::sync::RwLock<Vec<CertificateDer<'static>>>>);

impl TrustBundle {
    pub fn new(cas: Vec<CertificateDer<'static>>) -> TrustBundle {
        TrustBundle(Arc::new(std::sync::RwLock::new(cas)))
    }

    /// The CA certificates trusted now.
    pub fn get(&self) -> Vec<CertificateDer<'static>> {
        match self.0.read() {
            Ok(cas) => cas.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Trusts `cas` from now on, instead of what was trusted.
    pub fn replace(&self, cas: Vec<CertificateDer<'static>>) {
        match self.0.write() {
            Ok(mut held) => *held = cas,
            Err(poisoned) => *poisoned.into_inner() = cas,
        }
    }
}

/// What a side that trusted only the CAs of its bundle is told when a certificate is not
/// theirs: after a CA rotation completed without it, a worker must enrol again.
const NOT_TRUSTED_ADVICE: &str = "if the controllers' TLS CA was rotated and the old CA \
     retired while this worker was away, enrol the worker again with a new join token \
     (`portcullis controller join-token`; see docs/operations.md)";

/// Which CA a [`PinnedCa`] verifier trusts.
#[derive(Debug, Clone)]
pub enum CaTrust {
    /// This CA certificate (saved at enrolment, or the controller's own).
    Pinned(CertificateDer<'static>),
    /// Any CA of this bundle (the CA file a worker keeps, the controller's usable CAs).
    Bundle(TrustBundle),
    /// The CA certificate the peer sends last in its chain, if the SHA-256 (hex) of its SPKI
    /// is this: the pin a join token carries, before the worker has the CA.
    KeyHash(String),
}

/// Accepts a certificate the trusted CA issued for the side's usage (server authentication
/// as a server verifier, client authentication as a client verifier) and, where set, naming
/// one name whatever name was dialled.
#[derive(Debug)]
pub struct PinnedCa {
    trust: CaTrust,
    name: Option<ServerName<'static>>,
    /// What the certificate is called in errors ("controller", "worker").
    role: &'static str,
    /// Client verifier only: a client may present no certificate at all.
    optional: bool,
    hints: Vec<DistinguishedName>,
}

impl PinnedCa {
    /// A controller's link certificate, as a worker sees it, dialling or dialled: issued by
    /// the CA of `trust` and naming `name` (`portcullis-controller`, which the CA gives no
    /// worker).
    pub fn controller(trust: CaTrust, name: &str) -> Result<PinnedCa, TlsError> {
        let name = ServerName::try_from(name.to_owned())
            .map_err(|e| TlsError::BadCertificate(format!("bad controller name: {e}")))?;
        Ok(PinnedCa {
            trust,
            name: Some(name),
            role: "controller",
            optional: false,
            hints: Vec::new(),
        })
    }

    /// A worker's certificate issued by a CA of `cas`, or none: the controller's link
    /// listener (a worker enrolling has no certificate yet and may only send `join`). The
    /// hints name the CAs trusted at construction; they are advisory (a worker presents its
    /// one certificate whatever they say).
    pub fn worker_or_none(cas: TrustBundle) -> Result<PinnedCa, TlsError> {
        let hints = cas
            .get()
            .iter()
            .map(|ca| {
                webpki::anchor_from_trusted_cert(ca)
                    .map(|anchor| DistinguishedName::in_sequence(anchor.subject.as_ref()))
                    .map_err(|e| TlsError::BadCertificate(format!("the CA: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PinnedCa {
            trust: CaTrust::Bundle(cas),
            name: None,
            role: "worker",
            optional: true,
            hints,
        })
    }

    fn verify(
        &self,
        ee: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        usage: Usage,
        now: UnixTime,
    ) -> Result<(), rustls::Error> {
        let role = self.role;
        let bundle;
        let cas = match &self.trust {
            CaTrust::Pinned(ca) => std::slice::from_ref(ca),
            CaTrust::Bundle(trusted) => {
                bundle = trusted.get();
                bundle.as_slice()
            }
            CaTrust::KeyHash(hash) => {
                let ca = intermediates.last().ok_or_else(|| {
                    rustls::Error::General(format!("the {role} sent no CA certificate"))
                })?;
                let spki = webpki::EndEntityCert::try_from(ca)
                    .map_err(|_| rustls::Error::General("unparsable CA certificate".into()))?
                    .subject_public_key_info();
                if sha256_hex(spki.as_ref()) != *hash {
                    return Err(rustls::Error::General(format!(
                        "the {role}'s CA does not match the join token: wrong {role}?"
                    )));
                }
                std::slice::from_ref(ca)
            }
        };
        let cert = issued_by_any(ee, cas, usage, now).map_err(|e| {
            let advice = match self.trust {
                CaTrust::KeyHash(_) => String::new(),
                _ => format!("; {NOT_TRUSTED_ADVICE}"),
            };
            rustls::Error::General(format!("{role} certificate: {e}{advice}"))
        })?;
        if let Some(name) = &self.name {
            cert.verify_is_valid_for_subject_name(name).map_err(|_| {
                rustls::Error::General(format!(
                    "the certificate does not name {}: only a {role} may use this link",
                    name.to_str()
                ))
            })?;
        }
        Ok(())
    }
}

impl ServerCertVerifier for PinnedCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, Usage::ServerAuth, now)?;
        Ok(ServerCertVerified::assertion())
    }

    handshake_signatures!();
}

impl ClientCertVerifier for PinnedCa {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.verify(end_entity, intermediates, Usage::ClientAuth, now)?;
        Ok(ClientCertVerified::assertion())
    }

    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.optional
    }

    handshake_signatures!();
}

/// Accepts exactly one server certificate, by the SHA-256 of its DER encoding: what Proxmox
/// VE reports as a node's `ssl_fingerprint`. The certificate's names, dates and issuer carry
/// no authority and are not checked (a node's self-signed certificate, reached by any
/// address); the handshake signature is, in TLS 1.2 and 1.3, so only the holder of the
/// certificate's key can finish a handshake.
#[derive(Debug)]
pub struct PinnedCertificate {
    sha256: [u8; 32],
}

/// The server presented another certificate than the one pinned. Its `Debug` is its
/// sentence: rustls shows a certificate error's cause with `Debug`.
struct CertificateMismatch {
    expected: [u8; 32],
    presented: [u8; 32],
}

/// `80:D4:...:F5`, as Proxmox writes fingerprints.
fn colon_hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

impl fmt::Display for CertificateMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's certificate has the SHA-256 fingerprint {}, not the pinned {}",
            colon_hex(&self.presented),
            colon_hex(&self.expected)
        )
    }
}

impl fmt::Debug for CertificateMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for CertificateMismatch {}

impl PinnedCertificate {
    /// `sha256`: the SHA-256 of the certificate's DER encoding.
    pub fn new(sha256: [u8; 32]) -> PinnedCertificate {
        PinnedCertificate { sha256 }
    }
}

impl ServerCertVerifier for PinnedCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented = sha256(end_entity.as_ref());
        if presented != self.sha256 {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Other(
                rustls::OtherError(Arc::new(CertificateMismatch {
                    expected: self.sha256,
                    presented,
                })),
            )));
        }
        // The pinned bytes must still be a certificate the signature checks can read.
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
