//! An API certificate of the test's own (ECDSA P-256, which chromium accepts), for a browser
//! test of `[api] tls_cert_file`. The browser tests need none otherwise: the internal CA
//! issues P-256 certificates.

use std::path::{Path, PathBuf};

use crate::common::dev::Dev;

/// An ECDSA P-256 CA and a certificate it issued for 127.0.0.1 and localhost, for the
/// controller's API (`[api] tls_cert_file`, `tls_key_file`): one chromium accepts.
pub(crate) struct ApiCertificate {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl ApiCertificate {
    /// Writes `DIR/browser-ca.pem`, `DIR/api.crt` and `DIR/api.key` (0600).
    pub(crate) fn new(dir: &Path) -> ApiCertificate {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        use std::os::unix::fs::PermissionsExt as _;
        let ca_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "portcullis browser tests");
        let ca_pem = params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(params, ca_key);
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let files = ApiCertificate {
            ca: dir.join("browser-ca.pem"),
            cert: dir.join("api.crt"),
            key: dir.join("api.key"),
        };
        std::fs::write(&files.ca, ca_pem).unwrap();
        std::fs::write(&files.cert, leaf.pem()).unwrap();
        std::fs::write(&files.key, key.serialize_pem()).unwrap();
        std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
        files
    }

    /// The controller config's `[api]` table serving this certificate.
    pub(crate) fn config(&self) -> String {
        format!(
            "[api]\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            self.cert.display(),
            self.key.display()
        )
    }

    /// Makes `dev`'s environment (its `curl`, its CLI) trust this CA instead of the internal
    /// one, which no longer signs the API's certificate.
    pub(crate) fn trusted_by(&self, dev: &mut Dev) {
        for (name, value) in &mut dev.env {
            if name == "PORTCULLIS_CA" {
                *value = self.ca.display().to_string();
            }
        }
    }
}
