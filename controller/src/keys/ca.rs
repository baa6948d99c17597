//! The controller's TLS certificate authority: it certifies controllers (API and cluster
//! link) and workers. Certificates are Ed25519 and short-lived.

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

fn key_pair(pkcs8: &[u8]) -> Result<KeyPair, KeyError> {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8));
    KeyPair::from_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
        .map_err(|e| KeyError::Crypto(format!("bad CA key: {e}")))
}

/// Creates a self-signed CA certificate (PEM) for a freshly generated key.
pub(crate) fn self_signed_ca(kid: &str, pkcs8: &[u8], now: SystemTime) -> Result<String, KeyError> {
    let key = key_pair(pkcs8)?;
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
        let key = key_pair(pkcs8.expose_secret())?;
        let spki = key.subject_public_key_info();
        let cert_der = pem_to_der(cert_pem)?;
        Ok(CertificateAuthority {
            issuer: Issuer::new(ca_params(kid), key),
            key_id: kid.to_owned(),
            cert_pem: cert_pem.to_owned(),
            cert_der,
            key_fingerprint: portcullis_proto::keys::spki_fingerprint(&spki),
            clock,
        })
    }

    /// Issues a certificate for `spki_der` (a DER SubjectPublicKeyInfo).
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
            .signed_by(&public, &self.issuer)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        Ok(cert.pem())
    }

    /// Issues a server certificate with a fresh key pair held only in memory.
    pub fn issue_server_identity(
        &self,
        names: &[String],
        lifetime: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), KeyError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let spki = key.subject_public_key_info();
        let pem = self.issue(&spki, Leaf::Server { names }, lifetime)?;
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

/// A raw Ed25519 public key to certify (the only key type Portcullis issues for).
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
        let key = KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .map_err(|e| KeyError::Crypto(e.to_string()))?;
        let pem = self.issue(&key.subject_public_key_info(), Leaf::Controller, lifetime)?;
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
mod tests {
    use super::*;
    use portcullis_crypto::tls::verify::{chains_to, Usage};
    use portcullis_proto::clock::{Clock as _, ManualClock};

    /// A CA created and issuing on `clock`.
    fn ca_on(clock: SharedClock) -> CertificateAuthority {
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let pkcs8 = ca_key.serialize_der();
        let ca_pem = self_signed_ca("k_1", &pkcs8, clock.now()).unwrap();
        CertificateAuthority::new("k_1", &SecretBytes::from(pkcs8), &ca_pem, clock).unwrap()
    }

    /// Whether `pem`, issued by `ca` for client authentication, is valid at `unix_secs`.
    fn valid_at(ca: &CertificateAuthority, pem: &str, unix_secs: u64) -> bool {
        let der = pem_to_der(pem).unwrap();
        let at = rustls_pki_types::UnixTime::since_unix_epoch(Duration::from_secs(unix_secs));
        chains_to(&der, &ca.cert_der, Usage::ClientAuth, at).is_ok()
    }

    #[test]
    fn certificates_are_valid_from_the_cas_clock_for_their_lifetime() {
        // 2001-09-09: a certificate of this clock is long expired by the machine's own.
        let t = 1_000_000_000;
        let clock = std::sync::Arc::new(ManualClock::at_unix(t));
        let ca = ca_on(clock.clone());
        let spki = KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .subject_public_key_info();
        let lifetime = Duration::from_secs(60);
        let pem = ca
            .issue(&spki, Leaf::Worker { worker_id: "w_1" }, lifetime)
            .unwrap();
        // Back-dated five minutes for skew; valid for the lifetime from the clock's now.
        assert!(!valid_at(&ca, &pem, t - 301));
        assert!(valid_at(&ca, &pem, t - 300));
        assert!(valid_at(&ca, &pem, t + 60));
        assert!(!valid_at(&ca, &pem, t + 61));
        assert!(!valid_at(&ca, &pem, crate::clock::SystemClock.unix_secs()));
    }

    #[test]
    fn issued_worker_certificate_chains_to_the_ca() {
        let ca = ca_on(crate::clock::system());
        let worker = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let spki = worker.subject_public_key_info();
        let pem = ca
            .issue(
                &spki,
                Leaf::Worker { worker_id: "w_1" },
                Duration::from_secs(60),
            )
            .unwrap();
        let der = pem_to_der(&pem).unwrap();
        let cert = webpki::EndEntityCert::try_from(&der).unwrap();
        assert_eq!(cert.subject_public_key_info().as_ref(), spki.as_slice());
        let now = rustls_pki_types::UnixTime::now();
        chains_to(&der, &ca.cert_der, Usage::ClientAuth, now).unwrap();
        // A worker certificate is no controller's: it names no host at all.
        let controller =
            rustls_pki_types::ServerName::try_from(portcullis_proto::link::CONTROLLER_SERVER_NAME)
                .unwrap();
        assert!(cert.verify_is_valid_for_subject_name(&controller).is_err());
    }

    #[test]
    fn no_worker_certificate_carries_the_controller_name() {
        let ca = ca_on(crate::clock::system());
        let spki = KeyPair::generate_for(&rcgen::PKCS_ED25519)
            .unwrap()
            .subject_public_key_info();
        for name in [
            portcullis_proto::link::CONTROLLER_SERVER_NAME,
            "w_",
            "w_a.b",
            "",
        ] {
            let issued = ca.issue(
                &spki,
                Leaf::Worker { worker_id: name },
                Duration::from_secs(60),
            );
            assert!(issued.is_err(), "{name:?} was issued");
        }
    }
}
