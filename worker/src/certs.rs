//! The worker's current certificate, renewed at half-life over the link. The key never
//! changes (clients pin it); the certificate is swapped under running listeners.
//!
//! Beside it, the CAs the worker trusts for the controllers' link certificates: the bundle
//! the controllers send in each sync, saved to `ca.pem`. During a TLS CA rotation the bundle
//! gains the next CA before it signs; once it signs (it leads the bundle), a certificate of
//! the old CA is renewed at once, before the old CA is retired.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use portcullis_crypto::tls::verify::{chains_to, TrustBundle, Usage};

use rustls::pki_types::CertificateDer;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject as _;

use crate::identity::Identity;
use crate::WorkerError;

#[derive(Clone)]
struct Current {
    pem: String,
    issued_at: u64,
    expires_at: u64,
    certified: Arc<CertifiedKey>,
}

pub struct Certificates {
    current: RwLock<Current>,
    signing_key: Arc<dyn rustls::sign::SigningKey>,
    dir: PathBuf,
    /// The CAs trusted for the controllers' certificates.
    trust: TrustBundle,
    /// Set when the certificate is not from the signing CA: renew at the next heartbeat.
    renew_now: AtomicBool,
}

impl std::fmt::Debug for Certificates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Certificates")
    }
}

fn certified(
    pem: &str,
    key: &Arc<dyn rustls::sign::SigningKey>,
) -> Result<Arc<CertifiedKey>, WorkerError> {
    let der = CertificateDer::from_pem_slice(pem.as_bytes())
        .map_err(|e| WorkerError::Identity(format!("bad certificate: {e}")))?;
    Ok(Arc::new(CertifiedKey::new(vec![der], key.clone())))
}

impl Certificates {
    pub fn new(identity: &Identity, dir: PathBuf) -> Result<Certificates, WorkerError> {
        let signing_key = portcullis_crypto::tls::signing_key(&identity.key_der())
            .map_err(|e| WorkerError::Identity(format!("unusable worker key: {e}")))?;
        let certified = certified(&identity.cert_pem, &signing_key)?;
        let trust = TrustBundle::new(parse_bundle(&identity.ca_pem)?);
        Ok(Certificates {
            trust,
            renew_now: AtomicBool::new(false),
            current: RwLock::new(Current {
                pem: identity.cert_pem.clone(),
                issued_at: identity.cert_issued_at,
                expires_at: identity.cert_expires_at,
                certified,
            }),
            signing_key,
            dir,
        })
    }

    fn read(&self) -> Current {
        match self.current.read() {
            Ok(c) => c.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    pub fn pem(&self) -> String {
        self.read().pem
    }

    /// True once half of the certificate's lifetime has passed, or at once when the
    /// certificate is not from the signing CA.
    pub fn renewal_due(&self, now: u64) -> bool {
        let c = self.read();
        self.renew_now.load(Ordering::Relaxed)
            || now >= c.issued_at + c.expires_at.saturating_sub(c.issued_at) / 2
    }

    /// The CAs trusted for the controllers' certificates, as the link's verifiers hold them.
    pub fn trust(&self) -> TrustBundle {
        self.trust.clone()
    }

    /// Takes the controllers' CA bundle (PEM, the signing CA first): trusted from now on and
    /// saved when it differs from the one held; a certificate not from the signing CA is
    /// due for renewal. Whether the bundle changed.
    pub(crate) fn apply_ca_bundle(&self, pem: &str, now: u64) -> Result<bool, WorkerError> {
        let cas = parse_bundle(pem)?;
        let changed = cas != self.trust.get();
        if changed {
            crate::identity::save_ca(&self.dir, pem)?;
            self.trust.replace(cas.clone());
        }
        let own = CertificateDer::from_pem_slice(self.read().pem.as_bytes())
            .map_err(|e| WorkerError::Identity(format!("bad certificate: {e}")))?;
        let at = rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(now));
        let from_signing = cas
            .first()
            .is_some_and(|signing| chains_to(&own, signing, Usage::ClientAuth, at).is_ok());
        self.renew_now.store(!from_signing, Ordering::Relaxed);
        Ok(changed)
    }

    /// Installs a renewed certificate and saves it.
    pub fn replace(&self, pem: String, expires_at: u64, now: u64) -> Result<(), WorkerError> {
        let certified = certified(&pem, &self.signing_key)?;
        crate::identity::save_certificate(&self.dir, &pem, now, expires_at)?;
        let mut guard = match self.current.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        *guard = Current {
            pem,
            issued_at: now,
            expires_at,
            certified,
        };
        self.renew_now.store(false, Ordering::Relaxed);
        Ok(())
    }
}

/// The certificates of a CA bundle (PEM); at least one.
fn parse_bundle(pem: &str) -> Result<Vec<CertificateDer<'static>>, WorkerError> {
    let cas = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| WorkerError::Identity(format!("bad CA certificate: {e}")))?;
    if cas.is_empty() {
        return Err(WorkerError::Identity(
            "the CA bundle holds no certificate".into(),
        ));
    }
    Ok(cas)
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().certified)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    /// A CA of `alg` (the controller's is ECDSA P-256, or Ed25519 when made before): its
    /// certificate and what issues in its name.
    fn ca(
        name: &str,
        alg: &'static rcgen::SignatureAlgorithm,
    ) -> (rcgen::Certificate, rcgen::Issuer<'static, rcgen::KeyPair>) {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        (cert, rcgen::Issuer::new(params, key))
    }

    /// A certificate for the worker's (Ed25519) key from `issuer`.
    fn worker_cert(
        worker_key: &rcgen::KeyPair,
        issuer: &rcgen::Issuer<'static, rcgen::KeyPair>,
    ) -> rcgen::Certificate {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
        params.signed_by(worker_key, issuer).unwrap()
    }

    /// A rotation from an Ed25519 CA (an older keyset's) to a P-256 one (today's).
    #[test]
    fn a_bundle_led_by_another_ca_is_saved_and_makes_the_certificate_due() {
        let dir = tempfile::tempdir().unwrap();
        let (old, issuer) = ca("old", &rcgen::PKCS_ED25519);
        let (new, new_issuer) = ca("new", &rcgen::PKCS_ECDSA_P256_SHA256);
        let worker_key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = worker_cert(&worker_key, &issuer);
        let identity = Identity {
            worker_id: "w_1".into(),
            key_pkcs8: Arc::new(worker_key.serialize_der().into()),
            cert_pem: cert.pem(),
            ca_pem: old.pem(),
            cert_issued_at: 1,
            cert_expires_at: u64::MAX,
        };
        let now = portcullis_proto::clock::Clock::unix_secs(&portcullis_proto::clock::SystemClock);
        let certs = Certificates::new(&identity, dir.path().to_owned()).unwrap();
        assert!(!certs.renewal_due(now));
        // The same bundle: nothing to save, nothing due.
        assert!(!certs.apply_ca_bundle(&old.pem(), now).unwrap());
        assert!(!certs.renewal_due(now));
        // The overlap: the next CA is trusted and saved; the old one still signs.
        let overlap = old.pem() + &new.pem();
        assert!(certs.apply_ca_bundle(&overlap, now).unwrap());
        assert_eq!(certs.trust().get().len(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join("ca.pem")).unwrap(),
            overlap
        );
        assert!(!certs.renewal_due(now));
        // The activation: a bundle led by the new CA makes the old CA's certificate due.
        let active = new.pem() + &old.pem();
        assert!(certs.apply_ca_bundle(&active, now).unwrap());
        assert!(certs.renewal_due(now));
        // The renewal from the P-256 CA: its chain verifies, so nothing is due any more.
        let renewed = worker_cert(&worker_key, &new_issuer).pem();
        certs.replace(renewed, u64::MAX, now).unwrap();
        assert!(!certs.renewal_due(now));
        assert!(!certs.apply_ca_bundle(&active, now).unwrap());
        assert!(!certs.renewal_due(now), "a P-256 CA's certificate chains");
        // A bundle with no certificate is refused and changes nothing.
        assert!(certs.apply_ca_bundle("", now).is_err());
        assert_eq!(certs.trust().get().len(), 2);
    }
}
