//! Each verifier against certificates minted here: the good one passes; a wrong key, a wrong
//! CA, an expired certificate, a wrong name or usage, and a certificate whose key the peer
//! does not hold are refused. Handshakes run in memory.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    PublicKeyData as _,
};
use rustls::client::danger::ServerCertVerifier as _;
use rustls::server::danger::ClientCertVerifier as _;
use rustls::sign::CertifiedKey;
use rustls::{ClientConnection, ServerConnection};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};

use super::verify::{
    chains_to, AnyKey, CaTrust, PinnedCa, PinnedCertificate, PinnedKey, TrustBundle, Usage,
};
use super::*;
use crate::digest::{sha256, sha256_hex};

const CONTROLLER: &str = "portcullis-controller";
const ALPN: &[u8] = b"test/1";

struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: CertificateDer<'static>,
}

fn ca() -> Ca {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let der = params.self_signed(&key).unwrap().der().clone();
    Ca {
        issuer: Issuer::new(params, key),
        der,
    }
}

/// A certificate, its key, and the key's fingerprint.
struct Leaf {
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
    fingerprint: String,
}

impl Leaf {
    fn chain(&self, ca: Option<&Ca>) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![self.cert.clone()];
        chain.extend(ca.map(|ca| ca.der.clone()));
        chain
    }

    /// This certificate, signing with `signer`'s key (which it does not carry).
    fn signed_by_key_of(&self, signer: &Leaf) -> Arc<CertifiedKey> {
        Arc::new(CertifiedKey::new(
            vec![self.cert.clone()],
            signing_key(&signer.key).unwrap(),
        ))
    }
}

struct Minted<'a> {
    names: &'a [&'a str],
    usage: ExtendedKeyUsagePurpose,
    expired: bool,
}

fn leaf(ca: Option<&Ca>, minted: Minted<'_>) -> Leaf {
    let key = KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let names: Vec<String> = minted.names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = CertificateParams::new(names).unwrap();
    params.extended_key_usages = vec![minted.usage];
    if minted.expired {
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(2);
        params.not_after = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    }
    let cert = match ca {
        Some(ca) => params.signed_by(&key, &ca.issuer).unwrap(),
        None => params.self_signed(&key).unwrap(),
    };
    Leaf {
        cert: cert.der().clone(),
        fingerprint: sha256_hex(&key.subject_public_key_info()),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

fn controller_cert(ca: &Ca, usage: ExtendedKeyUsagePurpose) -> Leaf {
    leaf(
        Some(ca),
        Minted {
            names: &[CONTROLLER],
            usage,
            expired: false,
        },
    )
}

fn worker_cert(ca: Option<&Ca>) -> Leaf {
    leaf(
        ca,
        Minted {
            names: &[],
            usage: ExtendedKeyUsagePurpose::ClientAuth,
            expired: false,
        },
    )
}

/// Offers one certified key, whatever it is.
#[derive(Debug)]
struct Fixed(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Fixed {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }
}

impl rustls::client::ResolvesClientCert for Fixed {
    fn resolve(&self, _: &[&[u8]], _: &[rustls::SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Runs a handshake in memory; the first error either side raises.
fn handshake(client: ClientConfig, server: ServerConfig) -> Result<(), rustls::Error> {
    let name = ServerName::try_from(CONTROLLER).unwrap();
    let mut client = ClientConnection::new(Arc::new(client), name)?;
    let mut server = ServerConnection::new(Arc::new(server))?;
    for _ in 0..10 {
        let mut wire = Vec::new();
        client.write_tls(&mut wire).unwrap();
        server.read_tls(&mut wire.as_slice()).unwrap();
        server.process_new_packets()?;
        let mut wire = Vec::new();
        server.write_tls(&mut wire).unwrap();
        client.read_tls(&mut wire.as_slice()).unwrap();
        client.process_new_packets()?;
        if !client.is_handshaking() && !server.is_handshaking() && !client.wants_write() {
            assert_eq!(client.alpn_protocol(), Some(ALPN));
            return Ok(());
        }
    }
    Err(rustls::Error::General(
        "the handshake did not finish".into(),
    ))
}

fn server_with(
    leaf: &Leaf,
    clients: Arc<dyn rustls::server::danger::ClientCertVerifier>,
) -> ServerConfig {
    server_config(
        clients,
        ServerCert::Single {
            chain: leaf.chain(None),
            key: leaf.key.clone_key(),
        },
        ALPN,
    )
    .unwrap()
}

fn now() -> UnixTime {
    UnixTime::now()
}

fn name() -> ServerName<'static> {
    ServerName::try_from(CONTROLLER).unwrap()
}

// ---- PinnedKey: a client dialling a worker it was told the key of ----

#[test]
fn the_pinned_key_passes_and_another_key_is_refused() {
    let worker = worker_cert(None);
    let pinned = PinnedKey::new(&worker.fingerprint.to_ascii_uppercase()).unwrap();
    assert!(pinned
        .verify_server_cert(&worker.cert, &[], &name(), &[], now())
        .is_ok());
    let other = worker_cert(None);
    let err = pinned
        .verify_server_cert(&other.cert, &[], &name(), &[], now())
        .unwrap_err();
    let rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) = err else {
        panic!("not a certificate error: {err}");
    };
    assert!(other.0.to_string().contains("is not the key"), "{other:?}");
    // A garbled certificate is refused, not panicked on.
    let garbled = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
    assert!(pinned
        .verify_server_cert(&garbled, &[], &name(), &[], now())
        .is_err());
}

#[test]
fn a_pin_must_be_a_sha256_in_hex() {
    assert!(matches!(
        PinnedKey::new("abc"),
        Err(TlsError::BadFingerprint(_))
    ));
    assert!(PinnedKey::new(&"zz".repeat(32)).is_err());
    assert!(PinnedKey::new(&format!(" {} ", "AB".repeat(32))).is_ok());
}

#[test]
fn the_pinned_key_must_sign_the_handshake() {
    let worker = worker_cert(None);
    let client = || {
        client_config(
            Arc::new(PinnedKey::new(&worker.fingerprint).unwrap()),
            ClientAuth::None,
            ALPN,
        )
        .unwrap()
    };
    let any_client: Arc<dyn rustls::server::danger::ClientCertVerifier> =
        Arc::new(rustls::server::NoClientAuth);
    handshake(client(), server_with(&worker, any_client.clone())).unwrap();
    // The pinned certificate shown by a server that does not hold its key.
    let impostor = worker_cert(None);
    let server = server_config(
        any_client,
        ServerCert::Resolver(Arc::new(Fixed(worker.signed_by_key_of(&impostor)))),
        ALPN,
    )
    .unwrap();
    let err = handshake(client(), server).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("signature"),
        "{err}"
    );
}

// ---- AnyKey: a controller dialling a worker; a worker's proxy port ----

#[test]
fn any_key_takes_any_certificate_whose_key_signs_and_requires_one() {
    let worker = worker_cert(None);
    let client = worker_cert(None);
    let config = |auth| client_config(Arc::new(AnyKey), auth, ALPN).unwrap();
    let cert_of = |leaf: &Leaf| ClientAuth::Cert {
        chain: leaf.chain(None),
        key: leaf.key.clone_key(),
    };
    handshake(
        config(cert_of(&client)),
        server_with(&worker, Arc::new(AnyKey)),
    )
    .unwrap();
    // No client certificate: refused (the proxy needs the session key).
    assert!(handshake(
        config(ClientAuth::None),
        server_with(&worker, Arc::new(AnyKey))
    )
    .is_err());
    // A client certificate whose key the client does not hold.
    let forged = ClientAuth::Resolver(Arc::new(Fixed(client.signed_by_key_of(&worker))));
    let err = handshake(config(forged), server_with(&worker, Arc::new(AnyKey))).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("signature"),
        "{err}"
    );
    // A server certificate whose key the server does not hold.
    let server = server_config(
        Arc::new(AnyKey),
        ServerCert::Resolver(Arc::new(Fixed(worker.signed_by_key_of(&client)))),
        ALPN,
    )
    .unwrap();
    assert!(handshake(config(cert_of(&client)), server).is_err());
    let garbled = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
    assert!(AnyKey
        .verify_server_cert(&garbled, &[], &name(), &[], now())
        .is_err());
    assert!(AnyKey.verify_client_cert(&garbled, &[], now()).is_err());
}

// ---- PinnedCa: a worker and its controllers; the controller's link listener ----

#[test]
fn a_controller_certificate_of_the_pinned_ca_passes_on_either_side() {
    let ca = ca();
    let server_side = controller_cert(&ca, ExtendedKeyUsagePurpose::ServerAuth);
    let client_side = controller_cert(&ca, ExtendedKeyUsagePurpose::ClientAuth);
    let verifier = PinnedCa::controller(CaTrust::Pinned(ca.der.clone()), CONTROLLER).unwrap();
    assert!(verifier
        .verify_server_cert(&server_side.cert, &[], &name(), &[], now())
        .is_ok());
    assert!(verifier
        .verify_client_cert(&client_side.cert, &[], now())
        .is_ok());
    assert!(verifier.client_auth_mandatory());
    // Each side checks its own usage.
    assert!(verifier
        .verify_server_cert(&client_side.cert, &[], &name(), &[], now())
        .is_err());
    assert!(verifier
        .verify_client_cert(&server_side.cert, &[], now())
        .is_err());
}

#[test]
fn a_certificate_of_another_ca_is_refused() {
    let (ca, other) = (ca(), ca());
    let verifier = PinnedCa::controller(CaTrust::Pinned(ca.der.clone()), CONTROLLER).unwrap();
    let foreign = controller_cert(&other, ExtendedKeyUsagePurpose::ServerAuth);
    assert!(verifier
        .verify_server_cert(&foreign.cert, &[], &name(), &[], now())
        .is_err());
    // Sending our CA alongside changes nothing: the chain is checked, not the company.
    assert!(verifier
        .verify_server_cert(
            &foreign.cert,
            std::slice::from_ref(&ca.der),
            &name(),
            &[],
            now()
        )
        .is_err());
    let self_signed = leaf(
        None,
        Minted {
            names: &[CONTROLLER],
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            expired: false,
        },
    );
    assert!(verifier
        .verify_server_cert(&self_signed.cert, &[], &name(), &[], now())
        .is_err());
}

#[test]
fn an_expired_certificate_is_refused() {
    let ca = ca();
    let verifier = PinnedCa::controller(CaTrust::Pinned(ca.der.clone()), CONTROLLER).unwrap();
    let expired = leaf(
        Some(&ca),
        Minted {
            names: &[CONTROLLER],
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            expired: true,
        },
    );
    let err = verifier
        .verify_server_cert(&expired.cert, &[], &name(), &[], now())
        .unwrap_err();
    assert!(err.to_string().contains("Expired"), "{err}");
}

#[test]
fn a_certificate_without_the_controller_name_is_refused_whatever_was_dialled() {
    let ca = ca();
    let verifier = PinnedCa::controller(CaTrust::Pinned(ca.der.clone()), CONTROLLER).unwrap();
    // A worker's certificate: same CA, client authentication, no name.
    let worker = worker_cert(Some(&ca));
    let err = verifier
        .verify_client_cert(&worker.cert, &[], now())
        .unwrap_err();
    assert!(err.to_string().contains("does not name"), "{err}");
    let elsewhere = leaf(
        Some(&ca),
        Minted {
            names: &["portcullis-worker"],
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            expired: false,
        },
    );
    let dialled = ServerName::try_from("portcullis-worker").unwrap();
    assert!(verifier
        .verify_server_cert(&elsewhere.cert, &[], &dialled, &[], now())
        .is_err());
}

#[test]
fn before_enrolment_the_ca_is_the_one_whose_key_the_join_token_pins() {
    let (ca, other) = (ca(), ca());
    let ca_hash = sha256_hex(&spki_of(&ca.der).unwrap());
    let verifier = PinnedCa::controller(CaTrust::KeyHash(ca_hash), CONTROLLER).unwrap();
    let good = controller_cert(&ca, ExtendedKeyUsagePurpose::ServerAuth);
    assert!(verifier
        .verify_server_cert(
            &good.cert,
            std::slice::from_ref(&ca.der),
            &name(),
            &[],
            now()
        )
        .is_ok());
    let err = verifier
        .verify_server_cert(&good.cert, &[], &name(), &[], now())
        .unwrap_err();
    assert!(err.to_string().contains("sent no CA"), "{err}");
    // Another CA, sent with a certificate it issued: not the pinned one.
    let foreign = controller_cert(&other, ExtendedKeyUsagePurpose::ServerAuth);
    let err = verifier
        .verify_server_cert(
            &foreign.cert,
            std::slice::from_ref(&other.der),
            &name(),
            &[],
            now(),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("does not match the join token"),
        "{err}"
    );
    // The pinned CA sent with a certificate another CA issued.
    assert!(verifier
        .verify_server_cert(
            &foreign.cert,
            std::slice::from_ref(&ca.der),
            &name(),
            &[],
            now()
        )
        .is_err());
}

#[test]
fn the_link_listener_takes_a_worker_of_its_ca_or_no_certificate() {
    let (ca, other) = (ca(), ca());
    let verifier = PinnedCa::worker_or_none(TrustBundle::new(vec![ca.der.clone()])).unwrap();
    assert!(!verifier.client_auth_mandatory());
    assert_eq!(
        rustls::server::danger::ClientCertVerifier::root_hint_subjects(&verifier).len(),
        1
    );
    assert!(verifier
        .verify_client_cert(&worker_cert(Some(&ca)).cert, &[], now())
        .is_ok());
    assert!(verifier
        .verify_client_cert(&worker_cert(Some(&other)).cert, &[], now())
        .is_err());
    assert!(verifier
        .verify_client_cert(&worker_cert(None).cert, &[], now())
        .is_err());
}

#[test]
fn a_trust_bundle_accepts_either_ca_until_one_leaves_it() {
    let (old, new) = (ca(), ca());
    let bundle = TrustBundle::new(vec![old.der.clone()]);
    let verifier = PinnedCa::worker_or_none(bundle.clone()).unwrap();
    let (of_old, of_new) = (worker_cert(Some(&old)).cert, worker_cert(Some(&new)).cert);
    assert!(verifier.verify_client_cert(&of_old, &[], now()).is_ok());
    assert!(verifier.verify_client_cert(&of_new, &[], now()).is_err());
    // The overlap: the new CA joins, the old one stays.
    bundle.replace(vec![new.der.clone(), old.der.clone()]);
    assert!(verifier.verify_client_cert(&of_old, &[], now()).is_ok());
    assert!(verifier.verify_client_cert(&of_new, &[], now()).is_ok());
    // The old CA retired: its certificates are refused, with what to do.
    bundle.replace(vec![new.der.clone()]);
    assert!(verifier.verify_client_cert(&of_new, &[], now()).is_ok());
    let refused = verifier
        .verify_client_cert(&of_old, &[], now())
        .unwrap_err()
        .to_string();
    assert!(refused.contains("new join token"), "{refused}");
    // A controller's view, as a worker holds it: the same bundle.
    let controller = PinnedCa::controller(CaTrust::Bundle(bundle), CONTROLLER).unwrap();
    let link = controller_cert(&new, ExtendedKeyUsagePurpose::ServerAuth);
    assert!(controller
        .verify_server_cert(&link.cert, &[], &name(), &[], now())
        .is_ok());
}

#[test]
fn a_link_handshake_checks_the_ca_and_the_key_both_ways() {
    let ca = ca();
    let controller = controller_cert(&ca, ExtendedKeyUsagePurpose::ClientAuth);
    let worker = leaf(
        Some(&ca),
        Minted {
            names: &[],
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            expired: false,
        },
    );
    let worker_side =
        || Arc::new(PinnedCa::controller(CaTrust::Pinned(ca.der.clone()), CONTROLLER).unwrap());
    let dial = |auth| client_config(Arc::new(AnyKey), auth, ALPN).unwrap();
    let as_controller = ClientAuth::Cert {
        chain: controller.chain(None),
        key: controller.key.clone_key(),
    };
    handshake(dial(as_controller), server_with(&worker, worker_side())).unwrap();
    // The controller's certificate without its key.
    let forged = ClientAuth::Resolver(Arc::new(Fixed(controller.signed_by_key_of(&worker))));
    assert!(handshake(dial(forged), server_with(&worker, worker_side())).is_err());
    assert!(handshake(dial(ClientAuth::None), server_with(&worker, worker_side())).is_err());
}

#[test]
fn chains_to_is_the_one_ca_check() {
    let ca = ca();
    let worker = worker_cert(Some(&ca));
    assert!(chains_to(&worker.cert, &ca.der, Usage::ClientAuth, now()).is_ok());
    assert!(chains_to(&worker.cert, &ca.der, Usage::ServerAuth, now()).is_err());
    assert!(chains_to(&worker.cert, &worker.cert, Usage::ClientAuth, now()).is_err());
}

// ---- configurations ----

/// A server of the cluster's CA speaking TLS 1.2 only.
fn tls12_server(leaf: &Leaf) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(leaf.chain(None), leaf.key.clone_key())
        .unwrap();
    config.alpn_protocols = vec![ALPN.to_vec()];
    config
}

#[test]
fn link_and_proxy_configs_speak_tls_13_only_and_https_also_12() {
    let ca = ca();
    let server = controller_cert(&ca, ExtendedKeyUsagePurpose::ServerAuth);
    let link = client_config(
        Arc::new(PinnedCa::controller(CaTrust::Pinned(ca.der.clone()), CONTROLLER).unwrap()),
        ClientAuth::None,
        ALPN,
    )
    .unwrap();
    assert_eq!(link.alpn_protocols, vec![ALPN.to_vec()]);
    assert!(handshake(link, tls12_server(&server)).is_err());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.der.clone()).unwrap();
    let mut https = https_client_config(roots, ClientAuth::None).unwrap();
    https.alpn_protocols = vec![ALPN.to_vec()];
    handshake(https, tls12_server(&server)).unwrap();
}

#[test]
fn the_provider_is_installed_once() {
    // The first install may have happened in another test of this binary; the second never
    // succeeds.
    let _ = install_process_default();
    assert!(rustls::crypto::CryptoProvider::get_default().is_some());
    assert!(matches!(
        install_process_default(),
        Err(TlsError::ProviderInstalled)
    ));
}

#[test]
fn link_and_proxy_configs_offer_the_fastest_suite_for_this_cpu_first() {
    use rustls::CipherSuite;
    let first = |aes| tls13_suites(aes)[0].suite();
    assert_eq!(first(true), CipherSuite::TLS13_AES_128_GCM_SHA256);
    assert_eq!(first(false), CipherSuite::TLS13_CHACHA20_POLY1305_SHA256);
    for aes in [true, false] {
        let mut all: Vec<_> = tls13_suites(aes).iter().map(|s| s.suite()).collect();
        all.sort_by_key(|s| u16::from(*s));
        assert_eq!(all.len(), 3, "every TLS 1.3 suite of ring stays offered");
        all.dedup();
        assert_eq!(all.len(), 3);
    }
    let ca = ca();
    let link = client_config(
        Arc::new(PinnedCa::controller(CaTrust::Pinned(ca.der.clone()), CONTROLLER).unwrap()),
        ClientAuth::None,
        ALPN,
    )
    .unwrap();
    let offered: Vec<_> = link
        .crypto_provider()
        .cipher_suites
        .iter()
        .map(|s| s.suite())
        .collect();
    let expected: Vec<_> = tls13_suites(aes_in_hardware())
        .iter()
        .map(|s| s.suite())
        .collect();
    assert_eq!(offered, expected);
    // HTTPS keeps the provider's own order.
    assert_eq!(
        provider().cipher_suites[0].suite(),
        CipherSuite::TLS13_AES_256_GCM_SHA384
    );
}

// ---- PinnedCertificate: a Proxmox API pinned by its ssl_fingerprint ----

/// A TLS 1.3 server presenting `certified`.
fn tls13_server(certified: Arc<CertifiedKey>) -> ServerConfig {
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(certified)));
    config.alpn_protocols = vec![ALPN.to_vec()];
    config
}

fn pinned_client(pin: [u8; 32]) -> ClientConfig {
    let mut config =
        https_client_config_verified_by(Arc::new(PinnedCertificate::new(pin))).unwrap();
    config.alpn_protocols = vec![ALPN.to_vec()];
    config
}

#[test]
fn the_pinned_certificate_passes_over_tls_12_and_13_and_another_is_refused() {
    // A node's self-signed certificate for another name: names carry no authority here.
    let node = leaf(
        None,
        Minted {
            names: &["pve1.example"],
            usage: ExtendedKeyUsagePurpose::ServerAuth,
            expired: false,
        },
    );
    let pin = sha256(node.cert.as_ref());
    handshake(pinned_client(pin), tls12_server(&node)).unwrap();
    handshake(
        pinned_client(pin),
        tls13_server(node.signed_by_key_of(&node)),
    )
    .unwrap();
    let other = worker_cert(None);
    let err = handshake(pinned_client(pin), tls12_server(&other)).unwrap_err();
    assert!(err.to_string().contains("not the pinned"), "{err}");
    // The verifier alone: a garbled certificate with the pinned hash cannot exist, but a
    // garbled one is refused, not panicked on.
    let garbled = CertificateDer::from(vec![0x30, 0x03, 1, 2, 3]);
    let verifier = PinnedCertificate::new(sha256(garbled.as_ref()));
    assert!(verifier
        .verify_server_cert(&garbled, &[], &name(), &[], now())
        .is_err());
}

#[test]
fn the_pinned_certificate_must_sign_the_handshake_in_tls_12_and_13() {
    let node = worker_cert(None);
    let impostor = worker_cert(None);
    let pin = sha256(node.cert.as_ref());
    let err = handshake(
        pinned_client(pin),
        tls13_server(node.signed_by_key_of(&impostor)),
    )
    .unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("signature"),
        "{err}"
    );
    let mut tls12 = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS12])
        .unwrap()
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(Fixed(node.signed_by_key_of(&impostor))));
    tls12.alpn_protocols = vec![ALPN.to_vec()];
    let err = handshake(pinned_client(pin), tls12).unwrap_err();
    assert!(
        err.to_string().to_lowercase().contains("signature"),
        "{err}"
    );
}
