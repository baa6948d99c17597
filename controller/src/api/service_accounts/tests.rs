#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::collections::BTreeSet;

use super::*;

const ED25519: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEsONfBR65VAdSaMtvm2GvOnqvt+Li+a5bYzEO0+puWJ ci";
const ECDSA: &str = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBNVENFwObQ0aJiKKDgyBjxy9npS/jdRPEMTBliXJ82ZjZAP7Ss1bfduJHvdy76S/GYSUXFUf+W+JsvXoH9Vdw4Q= ci";

#[test]
fn an_ed25519_public_key_line_is_read_and_fingerprinted() {
    let key = parse_public_key(&format!("  {ED25519}\n")).unwrap();
    assert_eq!(key.line, ED25519);
    assert_eq!(key.fingerprint, ed25519_fingerprint(&key.raw));
    // The same fingerprint the signer names its assertions with.
    assert_eq!(parse_public_key(ED25519).unwrap().raw, key.raw);
}

#[test]
fn another_key_type_or_no_key_is_refused_with_a_sentence() {
    let err = parse_public_key(ECDSA).unwrap_err();
    assert!(err.contains("not Ed25519"), "{err}");
    assert!(err.contains("ssh-keygen -t ed25519"), "{err}");
    let err = parse_public_key("ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC ci").unwrap_err();
    assert!(err.contains("the key is ssh-rsa, not Ed25519"), "{err}");
    let err = parse_public_key("-----BEGIN OPENSSH PRIVATE KEY-----").unwrap_err();
    assert!(err.contains("not an OpenSSH public key line"), "{err}");
    assert!(parse_public_key("").is_err());
}

#[test]
fn groups_must_be_among_the_allowed_groups_and_the_error_names_the_key() {
    let allowed: BTreeSet<String> = ["ci".to_owned(), "ops".into()].into();
    check_groups(&["ci".into()], &allowed).unwrap();
    check_groups(&["ci".into(), "ops".into()], &allowed).unwrap();
    let err = check_groups(&["admins".into()], &allowed).unwrap_err();
    let text = format!("{err:?}");
    assert!(text.contains("admins"), "{text}");
    assert!(text.contains("allowed_groups"), "{text}");
    assert!(check_groups(&[], &allowed).is_err());
    assert!(check_groups(&["ci".into()], &BTreeSet::new()).is_err());
}
