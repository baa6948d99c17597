//! The worker's current certificate, renewed at half-life over the link. The key never
//! changes (clients pin it); the certificate is swapped under running listeners.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

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
        Ok(Certificates {
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

    /// True once half of the certificate's lifetime has passed.
    pub fn renewal_due(&self, now: u64) -> bool {
        let c = self.read();
        now >= c.issued_at + c.expires_at.saturating_sub(c.issued_at) / 2
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
        Ok(())
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.read().certified)
    }
}
