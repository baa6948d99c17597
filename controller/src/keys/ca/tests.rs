use super::*;
use portcullis_crypto::tls::verify::{chains_to, Usage};
use portcullis_proto::clock::{Clock as _, ManualClock};
use rustls_pki_types::{alg_id, SignatureVerificationAlgorithm, UnixTime};

/// Both algorithms a CA may have: the new one first, then the one older keysets hold.
const BOTH: [KeyAlgorithm; 2] = [KeyAlgorithm::NEW, KeyAlgorithm::Ed25519];

/// A CA of `alg` created from a stored PKCS#8 (as the keyset loads it), issuing on `clock`.
fn ca_of(alg: KeyAlgorithm, clock: SharedClock) -> CertificateAuthority {
    let pkcs8 = alg.generate().unwrap().serialize_der();
    let ca_pem = self_signed_ca("k_1", &pkcs8, clock.now()).unwrap();
    CertificateAuthority::new("k_1", &SecretBytes::from(pkcs8), &ca_pem, clock).unwrap()
}

/// A new CA, created and issuing on `clock`.
fn ca_on(clock: SharedClock) -> CertificateAuthority {
    ca_of(KeyAlgorithm::NEW, clock)
}

/// The provider's verification algorithms for signatures of `signature` by keys of `key`.
fn only(
    key: rustls_pki_types::AlgorithmIdentifier,
    signature: rustls_pki_types::AlgorithmIdentifier,
) -> Vec<&'static dyn SignatureVerificationAlgorithm> {
    let all = portcullis_crypto::tls::provider()
        .signature_verification_algorithms
        .all;
    let chosen: Vec<_> = all
        .iter()
        .copied()
        .filter(|a| a.public_key_alg_id() == key && a.signature_alg_id() == signature)
        .collect();
    assert!(!chosen.is_empty(), "the provider verifies it");
    chosen
}

/// How often `needle` occurs in `der`.
fn occurrences(der: &[u8], needle: &[u8]) -> usize {
    der.windows(needle.len()).filter(|w| *w == needle).count()
}

/// Whether `ee` chains to `ca` for `usage` when the only signatures accepted are `algs`.
fn chains_with(
    ee: &CertificateDer<'_>,
    ca: &CertificateDer<'_>,
    algs: &[&dyn SignatureVerificationAlgorithm],
    usage: webpki::KeyUsage,
) -> bool {
    let anchor = webpki::anchor_from_trusted_cert(ca).unwrap();
    webpki::EndEntityCert::try_from(ee)
        .unwrap()
        .verify_for_usage(algs, &[anchor], &[], UnixTime::now(), usage, None, None)
        .is_ok()
}

#[test]
fn a_new_ca_is_p256_and_so_are_the_certificates_of_the_controller() {
    let ca = ca_on(crate::clock::system());
    assert_eq!(ca.algorithm, KeyAlgorithm::EcdsaP256);
    assert_eq!(ca.algorithm.as_str(), "ecdsa-p256");
    let p256 = only(alg_id::ECDSA_P256, alg_id::ECDSA_SHA256);
    // The CA's own key is P-256 and it signs itself with ECDSA and SHA-256 (the algorithm
    // identifier twice: in the signed part and beside the signature).
    let spki = portcullis_crypto::tls::spki_of(&ca.cert_der).unwrap();
    assert_eq!(occurrences(&spki, alg_id::ECDSA_P256.as_ref()), 1);
    assert_eq!(occurrences(&ca.cert_der, alg_id::ECDSA_SHA256.as_ref()), 2);
    assert_eq!(occurrences(&ca.cert_der, alg_id::ED25519.as_ref()), 0);
    let names = ["localhost".to_owned(), "127.0.0.1".to_owned()];
    let (chain, key) = ca
        .issue_server_identity(&names, Duration::from_secs(60))
        .unwrap();
    assert_eq!(chain[1], ca.cert_der, "the chain carries the CA");
    // The API's certificate: a P-256 key, signed by the CA with ECDSA P-256: it chains with
    // nothing but that algorithm, for server authentication and the names asked.
    assert!(chains_with(
        &chain[0],
        &ca.cert_der,
        &p256,
        webpki::KeyUsage::server_auth()
    ));
    let ed25519 = only(alg_id::ED25519, alg_id::ED25519);
    assert!(!chains_with(
        &chain[0],
        &ca.cert_der,
        &ed25519,
        webpki::KeyUsage::server_auth()
    ));
    let signer = portcullis_crypto::tls::signing_key(&key).unwrap();
    assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::ECDSA);
    let cert = webpki::EndEntityCert::try_from(&chain[0]).unwrap();
    for name in &names {
        let name = rustls_pki_types::ServerName::try_from(name.as_str()).unwrap();
        cert.verify_is_valid_for_subject_name(&name).unwrap();
    }
    // The identity it dials workers with: P-256 too, for client and server authentication.
    let (chain, key) = ca
        .issue_controller_identity(Duration::from_secs(60))
        .unwrap();
    let signer = portcullis_crypto::tls::signing_key(&key).unwrap();
    assert_eq!(signer.algorithm(), rustls::SignatureAlgorithm::ECDSA);
    chains_to(&chain[0], &ca.cert_der, Usage::ClientAuth, UnixTime::now()).unwrap();
    chains_to(&chain[0], &ca.cert_der, Usage::ServerAuth, UnixTime::now()).unwrap();
}

#[test]
fn a_p256_ca_certifies_a_workers_ed25519_key() {
    let ca = ca_on(crate::clock::system());
    let worker = KeyAlgorithm::Ed25519.generate().unwrap();
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
    let p256 = only(alg_id::ECDSA_P256, alg_id::ECDSA_SHA256);
    assert!(chains_with(
        &der,
        &ca.cert_der,
        &p256,
        webpki::KeyUsage::client_auth()
    ));
}

#[test]
fn an_ed25519_ca_of_an_older_keyset_still_loads_and_issues() {
    let ca = ca_of(KeyAlgorithm::Ed25519, crate::clock::system());
    assert_eq!(ca.algorithm, KeyAlgorithm::Ed25519);
    let ed25519 = only(alg_id::ED25519, alg_id::ED25519);
    // Its worker certificates and its controller's: signed with Ed25519, as before.
    let worker = KeyAlgorithm::Ed25519.generate().unwrap();
    let pem = ca
        .issue(
            &worker.subject_public_key_info(),
            Leaf::Worker { worker_id: "w_1" },
            Duration::from_secs(60),
        )
        .unwrap();
    assert!(chains_with(
        &pem_to_der(&pem).unwrap(),
        &ca.cert_der,
        &ed25519,
        webpki::KeyUsage::client_auth()
    ));
    let (chain, _) = ca
        .issue_server_identity(&["localhost".to_owned()], Duration::from_secs(60))
        .unwrap();
    assert!(chains_with(
        &chain[0],
        &ca.cert_der,
        &ed25519,
        webpki::KeyUsage::server_auth()
    ));
    let (chain, _) = ca
        .issue_controller_identity(Duration::from_secs(60))
        .unwrap();
    chains_to(&chain[0], &ca.cert_der, Usage::ClientAuth, UnixTime::now()).unwrap();
}

#[test]
fn the_join_tokens_fingerprint_is_the_sha256_of_the_certificates_key() {
    // What a worker checks the CA a controller sends against (`CaTrust::KeyHash`).
    for alg in BOTH {
        let ca = ca_of(alg, crate::clock::system());
        let spki = portcullis_crypto::tls::spki_of(&ca.cert_der).unwrap();
        assert_eq!(
            ca.key_fingerprint,
            portcullis_proto::keys::spki_fingerprint(&spki),
            "{alg:?}"
        );
    }
}

#[test]
fn a_ca_key_of_another_algorithm_is_refused_with_what_to_do() {
    let p384 = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384)
        .unwrap()
        .serialize_der();
    let pem = ca_on(crate::clock::system()).cert_pem;
    for pkcs8 in [p384, b"not a key".to_vec()] {
        let refused = CertificateAuthority::new(
            "k_1",
            &SecretBytes::from(pkcs8),
            &pem,
            crate::clock::system(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(refused.contains("keys rotate tls-ca"), "{refused}");
    }
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
    for alg in BOTH {
        issued_worker_certificate_chains_to_a_ca_of(alg);
    }
}

fn issued_worker_certificate_chains_to_a_ca_of(alg: KeyAlgorithm) {
    let ca = ca_of(alg, crate::clock::system());
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
