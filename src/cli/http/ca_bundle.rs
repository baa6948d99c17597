//! Following a TLS CA rotation from the CLI. While the API presents a certificate of the
//! internal CA, each answer names the SHA-256 of the controllers' CA bundle; when it differs
//! from the CA file the CLI trusts, the CLI fetches the bundle (`GET /v1/tls/ca`) over the
//! connection it has just verified with that file, checks that it hashes to the name, and
//! replaces the file atomically. It does that only for the file it manages
//! (`CONFIG/portcullis/ca.pem`); a file named by `--ca` or `PORTCULLIS_CA` belongs to
//! someone else, so it only warns, once, with the command that fetches the bundle. Nothing
//! is ever trusted that did not come over an already-verified connection.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::{bail, Context as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

/// The response header naming the bundle's SHA-256 (hex).
pub(super) const HEADER: &str = "portcullis-tls-ca-sha256";

/// The CA file the client trusts, and whether the CLI manages it.
#[derive(Debug)]
pub(super) struct CaFile {
    path: PathBuf,
    managed: bool,
    /// Set at the first answer that names a bundle: one look per process.
    looked: AtomicBool,
}

/// What to do about an answer's bundle name.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Follow {
    /// The file holds the bundle (or there is nothing to compare).
    Current,
    /// Fetch the bundle and replace the managed file.
    Fetch,
    /// Tell the user how to fetch it: the file is not the CLI's.
    Warn,
}

impl CaFile {
    pub(super) fn new(path: PathBuf, managed: bool) -> CaFile {
        CaFile {
            path,
            managed,
            looked: AtomicBool::new(false),
        }
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// What to do about an answer naming the bundle `named`; `Current` after the first look.
    pub(super) fn follow(&self, named: &str) -> Follow {
        if self.looked.swap(true, Ordering::Relaxed) {
            return Follow::Current;
        }
        let held = std::fs::read(&self.path)
            .map(|bytes| portcullis_crypto::digest::sha256_hex(&bytes))
            .unwrap_or_default();
        decide(&held, named, self.managed)
    }

    /// Replaces the managed file with `pem` when it hashes to `named` and holds certificates.
    pub(super) fn replace(&self, pem: &[u8], named: &str) -> anyhow::Result<()> {
        if portcullis_crypto::digest::sha256_hex(pem) != named {
            bail!("the CA bundle the controller sent does not match the digest it named");
        }
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .context("the CA bundle the controller sent is not PEM")?;
        if certs.is_empty() {
            bail!("the CA bundle the controller sent holds no certificate");
        }
        portcullis_files::write_atomic(&self.path, pem, 0o644)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// The warning for a file the CLI does not manage.
    pub(super) fn warning(&self, addr: &str) -> String {
        let file = self.path.display();
        format!(
            "warning: the controller's TLS CA bundle changed (a CA rotation is under way) and differs from {file}, \
             which --ca or PORTCULLIS_CA names; update it before the old CA is retired: \
             curl --cacert {file} {addr}/v1/tls/ca -o {file}.new && mv {file}.new {file}"
        )
    }
}

/// The pure decision: a file whose digest is `held` against the bundle `named`.
fn decide(held: &str, named: &str, managed: bool) -> Follow {
    if held.eq_ignore_ascii_case(named) {
        Follow::Current
    } else if managed {
        Follow::Fetch
    } else {
        Follow::Warn
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn only_a_managed_file_is_replaced_and_only_when_it_differs() {
        assert_eq!(decide("ab", "AB", true), Follow::Current);
        assert_eq!(decide("ab", "cd", true), Follow::Fetch);
        assert_eq!(decide("ab", "cd", false), Follow::Warn);
        assert_eq!(decide("", "cd", false), Follow::Warn);
    }

    #[test]
    fn a_bundle_is_written_only_when_it_matches_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, "OLD").unwrap();
        let file = CaFile::new(path.clone(), true);
        let cert = rcgen::CertificateParams::new(vec!["ca".into()])
            .unwrap()
            .self_signed(&rcgen::KeyPair::generate().unwrap())
            .unwrap()
            .pem();
        let named = portcullis_crypto::digest::sha256_hex(cert.as_bytes());
        assert!(file.replace(cert.as_bytes(), &"00".repeat(32)).is_err());
        assert!(file
            .replace(
                b"not pem",
                &portcullis_crypto::digest::sha256_hex(b"not pem")
            )
            .is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "OLD");
        file.replace(cert.as_bytes(), &named).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), cert);
        // One look per process.
        let fresh = CaFile::new(path, true);
        assert_eq!(fresh.follow("ff"), Follow::Fetch);
        assert_eq!(fresh.follow("ff"), Follow::Current);
    }
}
