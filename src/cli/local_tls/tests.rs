#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use rustls_pki_types::{ServerName, UnixTime};
use std::os::unix::fs::PermissionsExt as _;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Whether `leaf` chains to `ca` as a server certificate (the webpki path check, which
/// applies the CA's name constraints to the leaf's names). The names a client asks for are
/// checked by the handshake test below.
fn verify(ca: &LocalCa, leaf: &CertificateDer<'_>) -> Result<(), rustls::Error> {
    let ca = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
    portcullis_crypto::tls::verify::chains_to(
        leaf,
        &ca,
        portcullis_crypto::tls::verify::Usage::ServerAuth,
        UnixTime::now(),
    )
}

#[test]
fn the_ca_is_made_once_with_a_private_key() {
    let config = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(config.path()).unwrap();
    let dir = config.path().join(CA_DIR);
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_KEY_FILE)), 0o600);
    assert_eq!(ca.cert_path(), dir.join(CA_CERT_FILE));
    // No staging directory is left behind.
    assert_eq!(fs::read_dir(config.path()).unwrap().count(), 1);
    // The second use loads the same CA, and its leaves chain to the first one's certificate.
    let again = LocalCa::load_or_create(config.path()).unwrap();
    assert_eq!(again.cert_pem(), ca.cert_pem());
    let (leaf, _) = again
        .issue(
            &["localhost".into()],
            Duration::from_secs(60),
            SystemTime::now(),
        )
        .unwrap();
    verify(&ca, &leaf).unwrap();

    // A key others can read is refused, with what to do.
    fs::set_permissions(dir.join(CA_KEY_FILE), fs::Permissions::from_mode(0o644)).unwrap();
    let err = LocalCa::load_or_create(config.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("chmod 600"), "{err}");
}

#[test]
fn a_ca_whose_certificate_is_not_its_keys_is_refused() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    LocalCa::load_or_create(a.path()).unwrap();
    LocalCa::load_or_create(b.path()).unwrap();
    fs::copy(
        b.path().join(CA_DIR).join(CA_CERT_FILE),
        a.path().join(CA_DIR).join(CA_CERT_FILE),
    )
    .unwrap();
    let err = LocalCa::load_or_create(a.path()).unwrap_err().to_string();
    assert!(err.contains("damaged"), "{err}");
}

/// The name constraints extension (2.5.29.30) is present and critical, and it binds: a leaf
/// the CA signs for any other name does not verify, even though its signature is good.
#[test]
fn the_ca_certifies_only_localhost_and_loopback_addresses() {
    let config = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(config.path()).unwrap();
    let der = CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap();
    // OID 2.5.29.30, then BOOLEAN TRUE (critical).
    let name_constraints = [0x06, 0x03, 0x55, 0x1d, 0x1e, 0x01, 0x01, 0xff];
    assert!(
        der.windows(name_constraints.len())
            .any(|w| w == name_constraints),
        "no critical name constraints extension"
    );
    // The permitted subtrees: dNSName [2] "localhost", iPAddress [7] 127.0.0.1/32 and ::1/128.
    let localhost = [&[0x82, 9][..], b"localhost"].concat();
    let v4 = [0x87, 8, 127, 0, 0, 1, 255, 255, 255, 255];
    let v6 = [[0x87, 32].as_slice(), &[0; 15], &[1], &[255; 16]].concat();
    for subtree in [&localhost[..], &v4[..], &v6[..]] {
        assert!(
            der.windows(subtree.len()).any(|w| w == subtree),
            "{subtree:?}"
        );
    }

    let names = ["localhost".into(), "127.0.0.1".into(), "::1".into()];
    let (leaf, _) = ca
        .issue(&names, Duration::from_secs(60), SystemTime::now())
        .unwrap();
    verify(&ca, &leaf).unwrap();
    for name in ["evil.example", "localhost.evil.example", "10.0.0.1"] {
        let (leaf, _) = ca
            .issue(&[name.into()], Duration::from_secs(60), SystemTime::now())
            .unwrap();
        let err = verify(&ca, &leaf).unwrap_err();
        assert!(
            format!("{err:?}").contains("NameConstraintViolation"),
            "{name}: {err:?}"
        );
    }
}

#[tokio::test]
async fn a_listener_serves_https_for_localhost_and_loopback_addresses() {
    let config = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(config.path()).unwrap();
    let acceptor = ca.acceptor(Duration::from_secs(3600)).unwrap();
    let listener = bind(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0)
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(tcp).await {
                    let _ = tls.write_all(b"ok").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.cert_pem().as_bytes()).unwrap())
        .unwrap();
    let mut client = portcullis_crypto::tls::https_client_config(
        roots,
        portcullis_crypto::tls::ClientAuth::None,
    )
    .unwrap();
    client.alpn_protocols = vec![b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    for name in ["localhost", "127.0.0.1", "::1"] {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let mut tls = connector
            .connect(ServerName::try_from(name.to_owned()).unwrap(), tcp)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut reply = Vec::new();
        tls.read_to_end(&mut reply).await.unwrap();
        assert_eq!(reply, b"ok");
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    }
    // Any other name is refused by the client.
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    assert!(connector
        .connect(ServerName::try_from("pve.lan").unwrap(), tcp)
        .await
        .is_err());
}

#[tokio::test]
async fn only_loopback_addresses_are_bound() {
    let err = bind("0.0.0.0".parse().unwrap(), 0).await.unwrap_err();
    assert!(err.to_string().contains("loopback"), "{err}");
    let err = bind("192.0.2.1".parse().unwrap(), 0).await.unwrap_err();
    assert!(err.to_string().contains("refusing"), "{err}");
    assert!(bind("127.0.0.1".parse().unwrap(), 0).await.is_ok());
}

#[test]
fn the_ca_bundle_is_private_and_removed() {
    let config = tempfile::tempdir().unwrap();
    let ca = LocalCa::load_or_create(config.path()).unwrap();
    let bundle = CaBundle::write(&ca).unwrap();
    let path = bundle.path().to_path_buf();
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(bundle.dir()), 0o700);
    let text = fs::read_to_string(&path).unwrap();
    assert!(
        text.ends_with(ca.cert_pem()),
        "the local CA is in the bundle"
    );
    drop(bundle);
    assert!(!path.exists());
}
