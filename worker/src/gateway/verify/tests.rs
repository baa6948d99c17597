use super::*;
use crate::gateway::testing::{certificate, key};

const NOW: u64 = 1_800_000_000;

fn credential(host_keys: Vec<String>, host_cas: Vec<String>) -> Credential {
    Credential {
        certificate: String::new(),
        valid_before: NOW + 3600,
        host_keys,
        host_cas,
        target_name: "web-01".into(),
    }
}

fn line(k: &russh::keys::PrivateKey) -> String {
    k.public_key().to_openssh().unwrap()
}

fn plain(k: &russh::keys::PrivateKey) -> PublicKeyOrCertificate {
    PublicKeyOrCertificate::from(k.public_key().clone())
}

#[test]
fn a_pinned_key_is_accepted_and_another_fails_closed_naming_target_and_fingerprint() {
    let (host, other) = (key(10), key(11));
    let pins = Pins::from_credential(&credential(vec![line(&host)], vec![]), "10.0.0.5").unwrap();
    assert_eq!(pins.check(&plain(&host), NOW), Ok(()));
    let err = pins.check(&plain(&other), NOW).unwrap_err();
    let fingerprint = other.public_key().fingerprint(HashAlg::Sha256).to_string();
    assert_eq!(
        err.to_string(),
        format!("host key mismatch for web-01: the target offered {fingerprint} which is not pinned; fix the target's ssh_host_keys")
    );
    assert!(!pins.has_cas());
}

#[test]
fn a_host_certificate_of_a_pinned_ca_for_the_target_valid_now_is_accepted() {
    let (ca, host) = (key(20), key(21));
    let pins = Pins::from_credential(&credential(vec![], vec![line(&ca)]), "10.0.0.5").unwrap();
    assert!(pins.has_cas());
    let ok = |principals: &[&str]| {
        PublicKeyOrCertificate::Certificate(certificate(
            &ca,
            &host,
            CertType::Host,
            principals,
            NOW - 10,
            NOW + 10,
        ))
    };
    assert_eq!(pins.check(&ok(&["web-01"]), NOW), Ok(()));
    assert_eq!(pins.check(&ok(&["10.0.0.5"]), NOW), Ok(()));
    assert_eq!(pins.check(&ok(&[]), NOW), Ok(()));
    // For another host.
    assert!(matches!(
        pins.check(&ok(&["db-01"]), NOW),
        Err(HostKeyMismatch::BadCertificate { .. })
    ));
    // Expired, not yet valid.
    assert!(pins.check(&ok(&["web-01"]), NOW + 10).is_err());
    assert!(pins.check(&ok(&["web-01"]), NOW - 11).is_err());
    // A user certificate of the same CA.
    let user = certificate(&ca, &host, CertType::User, &["web-01"], NOW - 10, NOW + 10);
    assert!(pins
        .check(&PublicKeyOrCertificate::Certificate(user), NOW)
        .is_err());
    // Another CA.
    let rogue = certificate(
        &key(22),
        &host,
        CertType::Host,
        &["web-01"],
        NOW - 10,
        NOW + 10,
    );
    let err = pins
        .check(&PublicKeyOrCertificate::Certificate(rogue), NOW)
        .unwrap_err();
    assert!(err.to_string().contains("web-01"), "{err}");
    // The bare key of a host that has only a CA pinned.
    assert!(matches!(
        pins.check(&plain(&host), NOW),
        Err(HostKeyMismatch::NotPinned { .. })
    ));
}

#[test]
fn a_pinned_key_in_an_untrusted_certificate_is_still_the_pinned_key() {
    let (host, stranger_ca) = (key(30), key(31));
    let pins = Pins::from_credential(&credential(vec![line(&host)], vec![]), "10.0.0.5").unwrap();
    let cert = certificate(&stranger_ca, &host, CertType::Host, &[], NOW - 10, NOW + 10);
    assert_eq!(
        pins.check(&PublicKeyOrCertificate::Certificate(cert), NOW),
        Ok(())
    );
}

#[test]
fn nothing_pinned_refuses_every_key_and_a_bad_pin_is_an_error() {
    let pins = Pins::from_credential(&credential(vec![], vec![]), "10.0.0.5").unwrap();
    let err = pins.check(&plain(&key(40)), NOW).unwrap_err();
    assert!(
        matches!(err, HostKeyMismatch::NothingPinned { .. }),
        "{err}"
    );
    assert!(
        Pins::from_credential(&credential(vec!["ssh-ed25519 !!".into()], vec![]), "x").is_err()
    );
}
