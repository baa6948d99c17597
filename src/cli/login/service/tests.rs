use std::os::unix::fs::PermissionsExt as _;

use base64::Engine as _;
use portcullis_proto::assertion::{verify, AssertionError};

use super::*;

const URL: &str = "https://portcullis.example:8443/";
const AUD: &str = "https://portcullis.example:8443";
const NOW: u64 = 1_800_000_000;

/// Made with `ssh-keygen -t ed25519 -N fixture-passphrase`: a throwaway test key.
const ENCRYPTED_OPENSSH: &str = "-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAACmFlczI1Ni1jdHIAAAAGYmNyeXB0AAAAGAAAABCBaF9SUw
KXAeMPluqEYffaAAAAEAAAAAEAAAAzAAAAC3NzaC1lZDI1NTE5AAAAIFIA4w0qIBGZahPW
EUZkMc3MoUOQLvHLOSpEhkJ7H/0wAAAAkDefPwH5LTYaldXMCO6L2OFFoadxuwar2V49Yr
1we7EuQQ6GUs6p7fO30lVD/rkQG03MzDg/abOLu7qF3vaL8pDmFa0Lixkh0acF37NAvOxe
/pXUAdLUoqc4DMT85Cr0D+vOty9NCIgvALQn2pXajlxm6gS8LD9pGxym7IL1Z2CR2frTIf
rUr3te6q4fmRl0vg==
-----END OPENSSH PRIVATE KEY-----
";

/// A fresh OpenSSH private key and its raw public key.
fn openssh_key() -> (String, [u8; 32]) {
    let key =
        ssh_key::PrivateKey::random(&mut ssh_key::rand_core::OsRng, ssh_key::Algorithm::Ed25519)
            .unwrap();
    let public = key.public_key().key_data().ed25519().unwrap().0;
    (
        key.to_openssh(ssh_key::LineEnding::LF).unwrap().to_string(),
        public,
    )
}

/// A fresh PKCS#8 PEM private key and its raw public key.
fn pkcs8_key() -> (String, [u8; 32]) {
    let der = SigningKey::generate_pkcs8().unwrap();
    let public = SigningKey::from_pkcs8(&der)
        .unwrap()
        .public_key()
        .try_into()
        .unwrap();
    let b64 = base64::engine::general_purpose::STANDARD.encode(&*der);
    (
        format!("-----BEGIN PRIVATE KEY-----\n{b64}\n-----END PRIVATE KEY-----\n"),
        public,
    )
}

fn write_key(dir: &Path, text: &str, mode: u32) -> std::path::PathBuf {
    let path = dir.join("key");
    std::fs::write(&path, text).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

#[test]
fn an_openssh_key_signs_what_the_controller_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let (text, public) = openssh_key();
    let key = ServiceKey::read(&write_key(dir.path(), &text, 0o600)).unwrap();
    assert_eq!(key.fingerprint(), ed25519_fingerprint(&public));
    let token = key.assertion("ansible-ci", URL, NOW).unwrap();
    let verified = verify(&token, &[public], AUD, NOW, 0).unwrap();
    assert_eq!(verified.claims.sub, "ansible-ci");
    assert_eq!(verified.claims.aud, AUD);
    assert_eq!(
        verified.claims.exp - verified.claims.iat,
        ASSERTION_LIFETIME_SECS
    );
    assert_eq!(verified.key_fingerprint, key.fingerprint());
    assert!(format!("{key:?}").contains("SigningKey(<secret>)"));
}

#[test]
fn a_pkcs8_pem_key_signs_too_and_a_read_only_file_is_fine() {
    let dir = tempfile::tempdir().unwrap();
    let (text, public) = pkcs8_key();
    let key = ServiceKey::read(&write_key(dir.path(), &text, 0o400)).unwrap();
    let token = key.assertion("terraform-ci", URL, NOW).unwrap();
    assert!(verify(&token, &[public], AUD, NOW + 30, 0).is_ok());
}

#[test]
fn another_accounts_key_is_refused() {
    let (text, _) = openssh_key();
    let (_, registered) = openssh_key();
    let token = ServiceKey::parse(&text)
        .unwrap()
        .assertion("ci", URL, NOW)
        .unwrap();
    assert!(matches!(
        verify(&token, &[registered], AUD, NOW, 0),
        Err(AssertionError::UnknownKey(_))
    ));
}

#[test]
fn a_key_file_others_may_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (text, _) = openssh_key();
    for mode in [0o644, 0o640, 0o604, 0o660] {
        let err = ServiceKey::read(&write_key(dir.path(), &text, mode)).unwrap_err();
        let message = format!("{err:#}");
        assert!(message.contains("chmod 600"), "{mode:o}: {message}");
    }
    let err = ServiceKey::read(dir.path()).unwrap_err();
    assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
}

#[test]
fn encrypted_and_foreign_keys_are_refused_with_what_to_do() {
    let err = ServiceKey::parse(ENCRYPTED_OPENSSH).unwrap_err();
    assert!(format!("{err:#}").contains("ssh-keygen -p"), "{err:#}");
    let encrypted_pkcs8 =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIGb\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let err = ServiceKey::parse(encrypted_pkcs8).unwrap_err();
    assert!(format!("{err:#}").contains("encrypted"), "{err:#}");
    for junk in [
        "",
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFIA4w0qIBGZahPW",
        "-----BEGIN OPENSSH PRIVATE KEY-----\n!!\n-----END OPENSSH PRIVATE KEY-----\n",
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    ] {
        assert!(ServiceKey::parse(junk).is_err(), "{junk}");
    }
}
