//! The API behind the admin's own certificate (`api.tls_cert_file`, `api.tls_key_file`):
//! curl and the CLI trust the admin's CA and no longer the internal one, a renewed pair is
//! served without a restart, and the cluster link (join tokens, the worker proxy) keeps the
//! internal CA.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::client::{listen, outcome, Outcome};
use common::cluster::{Controller, Worker};
use common::wait::poll;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A CA of the admin's own PKI, written to `DIR/NAME.pem`.
struct AdminCa {
    file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
}

impl AdminCa {
    fn new(dir: &Path, name: &str) -> AdminCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, params.self_signed(&key).unwrap().pem()).unwrap();
        AdminCa {
            file,
            issuer: Issuer::new(params, key),
        }
    }

    /// Writes a server certificate for localhost and 127.0.0.1 and its key (0600) to
    /// `cert` and `key`, renamed over what was there (as a renewal does).
    fn install(&self, cert: &Path, key: &Path) {
        let pair = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
        let issued = params.signed_by(&pair, &self.issuer).unwrap();
        let (next_cert, next_key) = (
            cert.with_extension("crt.next"),
            key.with_extension("key.next"),
        );
        std::fs::write(&next_cert, issued.pem()).unwrap();
        std::fs::write(&next_key, pair.serialize_pem()).unwrap();
        std::fs::set_permissions(&next_key, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::rename(&next_key, key).unwrap();
        std::fs::rename(&next_cert, cert).unwrap();
    }
}

/// `curl --cacert CA https://localhost:PORT/v1/health`: the HTTP status, or curl's exit code
/// and message when the TLS handshake fails.
fn health(c: &Controller, ca: &Path) -> Result<u16, String> {
    let port = c.api.rsplit(':').next().unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")])
        .arg(format!("https://localhost:{port}/v1/health"))
        .output()
        .unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().parse().unwrap())
    } else {
        Err(format!(
            "curl exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[test]
fn the_api_presents_the_admins_certificate_renewed_in_place_and_the_cluster_link_keeps_the_internal_ca(
) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("api.crt"), dir.path().join("api.key"));
    let first = AdminCa::new(dir.path(), "first-admin-ca");
    first.install(&cert, &key);
    let mut c = Controller::start_with_api(
        &dir.path().join("controller"),
        &format!(
            "tls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n",
            cert.display(),
            key.display()
        ),
    );
    let internal_ca = c.ca.clone();

    // The admin's CA verifies the API; the internal CA no longer does (curl exit 60: the
    // peer certificate cannot be authenticated with the given CA certificates).
    assert_eq!(health(&c, &first.file), Ok(200));
    let refused = health(&c, &internal_ca).unwrap_err();
    assert!(refused.contains("exit Some(60)"), "{refused}");

    // Renewed under another CA: served without a restart, within a few of the controller's
    // checks of the files.
    let second = AdminCa::new(dir.path(), "second-admin-ca");
    second.install(&cert, &key);
    poll(
        "the API to present the renewed certificate",
        Duration::from_secs(20),
        || health(&c, &second.file),
    );
    assert!(
        health(&c, &first.file).is_err(),
        "the old certificate is still served"
    );

    // The cluster link still runs on the internal CA: a worker enrols with a join token
    // (which pins it) and brokers a session for a CLI that trusts the admin's CA.
    c.ca = second.file.clone();
    let _worker: Worker = c.join_worker_with_echo(dir.path(), std::slice::from_ref(&c.cluster), "");
    let out = c.cli().args(["whoami", "--json"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("admin"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let session = listen(c.cli(), "echo");
    assert_eq!(outcome(session.port), Outcome::Echoed);

    // The same CLI with the internal CA is refused by the API's certificate.
    let out = c
        .cli()
        .env("PORTCULLIS_CA", &internal_ca)
        .arg("whoami")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "the internal CA still verifies the API"
    );
}
