//! Keys and certificates for the gateway's unit tests (fixed seeds: reproducible).

use russh::keys::ssh_key::certificate::{Builder, CertType};
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::{Certificate, PrivateKey};

pub(crate) fn key(seed: u8) -> PrivateKey {
    PrivateKey::from(Ed25519Keypair::from_seed(&[seed; 32]))
}

/// A certificate of `subject` by `ca`, of `kind`, for `principals` (none: any), valid in
/// `[after, before)`.
pub(crate) fn certificate(
    ca: &PrivateKey,
    subject: &PrivateKey,
    kind: CertType,
    principals: &[&str],
    after: u64,
    before: u64,
) -> Certificate {
    let mut builder = Builder::new(
        [7u8; 16],
        subject.public_key().key_data().clone(),
        after,
        before,
    )
    .unwrap();
    builder.cert_type(kind).unwrap();
    if principals.is_empty() {
        builder.all_principals_valid().unwrap();
    }
    for p in principals {
        builder.valid_principal(*p).unwrap();
    }
    builder.sign(ca).unwrap()
}
