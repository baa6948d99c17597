#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Instant;

use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::*;

/// A CA of the admin's PKI: its certificate (PEM) and what signs with it.
struct AdminCa {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl AdminCa {
    fn new(name: &str) -> AdminCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let pem = params.self_signed(&key).unwrap().pem();
        AdminCa {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A server certificate for `localhost` with this CA after it (PEM), and its key (PEM).
    fn issue(&self, alg: &'static rcgen::SignatureAlgorithm) -> (String, String) {
        let key = KeyPair::generate_for(alg).unwrap();
        let params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (format!("{}{}", cert.pem(), self.pem), key.serialize_pem())
    }
}

fn write(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn files(dir: &Path) -> CertificateFiles {
    CertificateFiles {
        cert: dir.join("api.crt"),
        key: dir.join("api.key"),
    }
}

/// Installs a pair at `files` the way an admin's renewal does: new files renamed over the
/// old ones.
fn install(files: &CertificateFiles, (chain, key): &(String, String)) {
    let dir = files.cert.parent().unwrap();
    write(&dir.join("next.crt"), chain, 0o644);
    write(&dir.join("next.key"), key, 0o600);
    std::fs::rename(dir.join("next.key"), &files.key).unwrap();
    std::fs::rename(dir.join("next.crt"), &files.cert).unwrap();
}

/// The leaf certificate a TLS client trusting only `ca_pem` is shown by a server holding
/// `resolver`; an error when the handshake fails.
async fn served(resolver: Arc<ReloadingCertificate>, ca_pem: &str) -> Result<Vec<u8>, String> {
    let server =
        portcullis_crypto::tls::https_server_config_resolved(resolver, b"http/1.1").unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let client = portcullis_crypto::tls::https_client_config(
        roots,
        portcullis_crypto::tls::ClientAuth::None,
    )
    .unwrap();
    let (near, far) = tokio::io::duplex(64 * 1024);
    let accept = tokio::spawn(async move {
        let mut tls = tokio_rustls::TlsAcceptor::from(Arc::new(server))
            .accept(far)
            .await?;
        tls.write_all(b"ok").await?;
        tls.shutdown().await
    });
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("localhost").unwrap(), near)
        .await
        .map_err(|e| e.to_string())?;
    let mut answer = [0u8; 2];
    tls.read_exact(&mut answer)
        .await
        .map_err(|e| e.to_string())?;
    let leaf = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let _ = accept.await;
    Ok(leaf)
}

fn leaf_of(chain_pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(chain_pem.as_bytes())
        .unwrap()
        .to_vec()
}

#[test]
fn keys_of_every_kind_load_and_a_readable_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let ca = AdminCa::new("admin CA");
    // PKCS#8 keys of both kinds rcgen makes; RSA and SEC1 keys go through the same reader.
    for alg in [&rcgen::PKCS_ECDSA_P256_SHA256, &rcgen::PKCS_ED25519] {
        install(&files, &ca.issue(alg));
        let loaded = load(&files).unwrap();
        assert_eq!(
            loaded.cert.len(),
            2,
            "the chain's leaf and CA are both kept"
        );
    }
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = load(&files).unwrap_err().to_string();
    assert!(
        err.contains("mode 640") && err.contains("chmod 600") && err.contains("api.key"),
        "{err}"
    );
}

#[test]
fn a_key_of_another_certificate_and_a_file_without_pem_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let ca = AdminCa::new("admin CA");
    let (chain, _) = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    let (_, other_key) = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    install(&files, &(chain.clone(), other_key));
    let err = load(&files).unwrap_err().to_string();
    assert!(err.contains("does not belong"), "{err}");

    install(&files, &("not a certificate\n".into(), String::new()));
    let err = load(&files).unwrap_err().to_string();
    assert!(
        err.contains("api.crt") && err.contains("api.tls_cert_file"),
        "{err}"
    );
    install(&files, &(chain, "-----BEGIN NOTHING-----\n".into()));
    let err = load(&files).unwrap_err().to_string();
    assert!(
        err.contains("api.key") && err.contains("api.tls_key_file"),
        "{err}"
    );
    std::fs::remove_file(&files.key).unwrap();
    let err = load(&files).unwrap_err().to_string();
    assert!(err.contains("api.key"), "{err}");
}

#[tokio::test]
async fn handshakes_get_the_pair_the_resolver_holds_now() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let (first_ca, second_ca) = (AdminCa::new("first"), AdminCa::new("second"));
    let first = first_ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    install(&files, &first);
    let resolver = Arc::new(ReloadingCertificate::new(load(&files).unwrap()));
    assert_eq!(
        served(resolver.clone(), &first_ca.pem).await.unwrap(),
        leaf_of(&first.0)
    );
    let second = second_ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    install(&files, &second);
    resolver.replace(load(&files).unwrap());
    assert_eq!(
        served(resolver.clone(), &second_ca.pem).await.unwrap(),
        leaf_of(&second.0)
    );
    let err = served(resolver, &first_ca.pem).await.unwrap_err();
    assert!(err.contains("certificate"), "{err}");
}

#[test]
fn a_check_swaps_in_changed_files_and_keeps_the_old_pair_when_they_are_broken() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let ca = AdminCa::new("admin CA");
    let first = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    install(&files, &first);
    let resolver = Arc::new(ReloadingCertificate::new(load(&files).unwrap()));
    let mut watcher = Watcher::new(resolver.clone(), files.clone());
    assert!(matches!(watcher.check(), Check::Unchanged));

    // A broken pair (the key of another certificate) is not taken, and reported once.
    let (_, stray_key) = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    let second = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    install(&files, &(second.0.clone(), stray_key));
    assert!(matches!(
        watcher.check(),
        Check::Kept(CertificateError::Mismatch { .. })
    ));
    assert!(matches!(watcher.check(), Check::Unchanged));
    assert_eq!(resolver.current().cert[0].as_ref(), leaf_of(&first.0));

    // A whole pair whose key others may read: kept out until `chmod 600`.
    install(&files, &second);
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        watcher.check(),
        Check::Kept(CertificateError::Readable { .. })
    ));
    assert_eq!(resolver.current().cert[0].as_ref(), leaf_of(&first.0));
    std::fs::set_permissions(&files.key, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(matches!(watcher.check(), Check::Replaced));
    assert_eq!(resolver.current().cert[0].as_ref(), leaf_of(&second.0));

    // Rewritten in place (same inode) counts too.
    let third = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    std::fs::write(&files.key, &third.1).unwrap();
    std::fs::write(&files.cert, &third.0).unwrap();
    assert!(matches!(watcher.check(), Check::Replaced));
    assert_eq!(resolver.current().cert[0].as_ref(), leaf_of(&third.0));
}

/// Polls `current` until the resolver holds a leaf other than `old`, within `limit`.
async fn wait_for_change(resolver: &ReloadingCertificate, old: &[u8], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if resolver.current().cert[0].as_ref() != old {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn the_running_watch_serves_renewed_files_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let files = files(dir.path());
    let ca = AdminCa::new("admin CA");
    let first = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    install(&files, &first);
    let resolver = Arc::new(ReloadingCertificate::new(load(&files).unwrap()));
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(watch(
        Watcher::new(resolver.clone(), files.clone()),
        shutdown.clone(),
    ));
    let second = ca.issue(&rcgen::PKCS_ECDSA_P256_SHA256);
    install(&files, &second);
    assert!(wait_for_change(&resolver, &leaf_of(&first.0), CHECK_INTERVAL * 5).await);
    assert_eq!(
        served(resolver.clone(), &ca.pem).await.unwrap(),
        leaf_of(&second.0)
    );
    shutdown.cancel();
    task.await.unwrap();
}
