//! The controller's TLS certificate authority: it certifies controllers (API and cluster
//! link) and workers. Certificates are short-lived.
//!
//! Algorithms: a new CA is ECDSA P-256 (what browsers accept: the web console and the OpenID
//! callback page are served with a certificate it issues); a CA made before that is Ed25519,
//! still loaded and issuing (the algorithm is read from its stored key) until `keys rotate
//! tls-ca` replaces it. The keys the controller makes for its own certificates (API, link,
//! dialling workers) are P-256 too, whatever the CA; a worker's key is its own (Ed25519, pinned
//! by clients) and is certified as it is.

use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use super::KeyError;
use crate::clock::SharedClock;
use crate::secret::{ExposeSecret as _, SecretBytes};

/// How long the CA itself is valid (it is rotated by replacing the key).
const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// The CA's distinguished name is derived from its key id, so an issuer can be rebuilt from
/// the stored key alone.
fn ca_params(kid: &str) -> CertificateParams {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Portcullis");
    dn.push(DnType::CommonName, format!("Portcullis CA {kid}"));
    let mut params = CertificateParams::default();
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

fn set_validity(params: &mut CertificateParams, lifetime: Duration, now: SystemTime) {
    // Five minutes of back-dating absorbs clock skew between machines.
    let now = time::OffsetDateTime::from(now);
    params.not_before = now - Duration::from_secs(300);
    params.not_after = now + lifetime;
}

/// The signature algorithm of a key pair in the keyset: a TLS CA's (ECDSA P-256, or Ed25519
/// for a CA made before P-256) or any other purpose's (Ed25519).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    /// ECDSA P-256 with SHA-256: every new TLS CA.
    EcdsaP256,
    /// Ed25519: every other key pair, and TLS CAs made by releases before P-256 (browsers
    /// refuse their certificates).
    Ed25519,
}

impl KeyAlgorithm {
    /// The algorithm of every new TLS CA.
    pub const NEW: KeyAlgorithm = KeyAlgorithm::EcdsaP256;

    /// As the keyset's `algorithm` column and `keys list` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Ed25519 => "ed25519",
        }
    }

    fn rcgen(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyAlgorithm::Ed25519 => &rcgen::PKCS_ED25519,
        }
    }

    /// A fresh key pair of this algorithm.
    pub(crate) fn generate(self) -> Result<KeyPair, KeyError> {
        KeyPair::generate_for(self.rcgen()).map_err(|e| KeyError::Crypto(e.to_string()))
    }
}

/// The algorithm of a key pair rcgen parsed, if it is one a CA may have.
fn algorithm_of(key: &KeyPair) -> Option<KeyAlgorithm> {
    [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Ed25519]
        .into_iter()
        .find(|alg| key.algorithm() == alg.rcgen())
}

/// The CA's key from its PKCS#8, its algorithm read from the key itself.
fn key_pair(pkcs8: &[u8]) -> Result<(KeyPair, KeyAlgorithm), KeyError> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
    let key = KeyPair::try_from(&der).map_err(|e| {
        KeyError::Crypto(format!(
            "the tls-ca key is not a usable ECDSA P-256 or Ed25519 PKCS#8 key ({e}); \
             rotate it with `portcullis controller keys rotate tls-ca`"
        ))
    })?;
    let alg = algorithm_of(&key).ok_or_else(|| {
        KeyError::Crypto(
            "the tls-ca key is neither ECDSA P-256 nor Ed25519; rotate it with \
             `portcullis controller keys rotate tls-ca`"
                .into(),
        )
    })?;
    Ok((key, alg))
}

/// The key the controller makes for each certificate of its own (API, link, dialling): P-256,
/// which browsers and rustls peers accept.
fn own_leaf_key() -> Result<KeyPair, KeyError> {
    KeyAlgorithm::EcdsaP256.generate()
}

/// Creates a self-signed CA certificate (PEM) for a freshly generated key.
pub(crate) fn self_signed_ca(kid: &str, pkcs8: &[u8], now: SystemTime) -> Result<String, KeyError> {
    let (key, _) = key_pair(pkcs8)?;
    let mut params = ca_params(kid);
    set_validity(&mut params, CA_LIFETIME, now);
    let cert = params
        .self_signed(&key)
        .map_err(|e| KeyError::Crypto(e.to_string()))?;
    Ok(cert.pem())
}

/// What a leaf certificate is for.
pub enum Leaf<'a> {
    /// A server certificate valid for these DNS names or IP addresses.
    Server { names: &'a [String] },
    /// A worker's certificate: client and server authentication, named by its id.
    Worker { worker_id: &'a str },
    /// A controller's link identity when it dials workers: client and server authentication
    /// for `portcullis-controller`.
    Controller,
}

/// The CA with its private key, ready to issue.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The `tls-ca` key's id.
    pub key_id: String,
    pub cert_pem: String,
    pub cert_der: CertificateDer<'static>,
    /// Hex SHA-256 of the CA's SPKI: what join tokens carry.
    pub key_fingerprint: String,
    /// Its key's algorithm, read from the stored key.
    pub algorithm: KeyAlgorithm,
    /// When the certificates it issues begin and end.
    clock: SharedClock,
}

impl CertificateAuthority {
    pub fn new(
        kid: &str,
        pkcs8: &SecretBytes,
        cert_pem: &str,
        clock: SharedClock,
    ) -> Result<Self, KeyError> {
        let (key, algorithm) = key_pair(pkcs8.expose_secret())?;
        let spki = key.subject_public_key_info();
        let cert_der = pem_to_der(cert_pem)?;
        Ok(CertificateAuthority {
            issuer: Issuer::new(ca_params(kid), key),
            key_id: kid.to_owned(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key_fingerprint: portcullis_proto::keys::spki_fingerprint(&spki),
            algorithm,
            clock,
        })
    }

    /// Issues a certificate for `spki_der` (a DER SubjectPublicKeyInfo of an Ed25519 key: a
    /// worker's).
    pub fn issue(
        &self,
        spki_der: &[u8],
        leaf: Leaf<'_>,
        lifetime: Duration,
    ) -> Result<String, KeyError> {
        let public = Ed25519Public(
            portcullis_proto::keys::ed25519_from_spki(spki_der)
                .map_err(|e| KeyError::Crypto(e.to_string()))?,
        );
        self.issue_for(&public, leaf, lifetime)
    }

    /// Issues a certificate for `public`, signed with the CA's own algorithm.
    fn issue_for(
        &self,
        public: &impl PublicKeyData,
        leaf: Leaf<'_>,
        lifetime: Duration,
    ) -> Result<String, KeyError> {
        let mut params = CertificateParams::default();
        set_validity(&mut params, lifetime, self.clock.now());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        match leaf {
            Leaf::Server { names } => {
                params.distinguished_name.push(
                    DnType::CommonName,
                    names.first().cloned().unwrap_or_default(),
                );
                for name in names {
                    let san = match name.parse::<std::net::IpAddr>() {
                        Ok(ip) => SanType::IpAddress(ip),
                        Err(_) => SanType::DnsName(name.clone().try_into().map_err(|_| {
                            KeyError::Crypto(format!("{name:?} is not a DNS name"))
                        })?),
                    };
                    params.subject_alt_names.push(san);
                }
                params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            }
            Leaf::Controller => {
                let name = portcullis_proto::link::CONTROLLER_SERVER_NAME;
                params.distinguished_name.push(DnType::CommonName, name);
                params.subject_alt_names.push(SanType::DnsName(
                    name.to_owned()
                        .try_into()
                        .map_err(|_| KeyError::Crypto("bad controller name".into()))?,
                ));
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ClientAuth,
                    ExtendedKeyUsagePurpose::ServerAuth,
                ];
            }
            Leaf::Worker { worker_id } => {
                // Workers dial in with client authentication too; what sets a controller apart
                // (workers accept links only from it) is its name, which a worker's
                // certificate never carries: no subject alternative name at all, and a common
                // name that is a worker id.
                if !is_worker_id(worker_id) {
                    return Err(KeyError::Crypto(format!(
                        "{worker_id:?} is not a worker id; refusing to issue a worker certificate for it"
                    )));
                }
                params
                    .distinguished_name
                    .push(DnType::CommonName, worker_id);
                params.extended_key_usages = vec![
                    ExtendedKeyUsagePurpose::ClientAuth,
                    ExtendedKeyUsagePurpose::ServerAuth,
                ];
            }
        }
        let cert = params
            .signed_by(public, &self.issuer)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(cert.pem())
    }

    /// Issues a server certificate with a fresh key pair held only in memory.
    pub fn issue_server_identity(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), KeyError> {
        let key = own_leaf_key()?;
        let pem = self.issue_for(&key, Leaf::Server { names }, lifetime)?;
        let leaf = pem_to_der(&pem)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![leaf, self.cert_der.clone()], private))
    }
}

/// A worker id as the controller makes them (`w_` and letters or digits): never
/// `portcullis-controller` or any other DNS name.
fn is_worker_id(id: &str) -> bool {
    id.strip_prefix("w_")
        .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// A worker's raw Ed25519 public key to certify.
struct Ed25519Public([u8; 32]);

impl PublicKeyData for Ed25519Public {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ED25519
    }
}

impl CertificateAuthority {
    /// The identity a controller presents when it dials workers, with a fresh in-memory key.
    pub fn issue_controller_identity(
        &self,
        lifetime: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), KeyError> {
        let key = own_leaf_key()?;
        let pem = self.issue_for(&key, Leaf::Controller, lifetime)?;
        let private = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok((vec![pem_to_der(&pem)?, self.cert_der.clone()], private))
    }
}

fn pem_to_der(pem: &str) -> Result<CertificateDer<'static>, KeyError> {
    use rustls_pki_types::pem::PemObject as _;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| KeyError::Crypto(format!("bad certificate PEM: {e}")))
}

#[cfg(test)]
mod tests;
