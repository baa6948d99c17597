//! The target end of `connect http`: one brokered connection of the session per local
//! connection, spoken to as plain HTTP/1.1 or inside TLS to the target (verified against the
//! system's roots, `--target-ca`, a pinned `--target-fingerprint`, or with
//! `--insecure-target` not at all).
//!
//! A certificate the roots or the CA file refuse is reported (by `WebPki`) with the SHA-256
//! fingerprint the target presented, so a homelab's self-signed Proxmox node can be pinned
//! with `--target-fingerprint` rather than trusted blindly.

use std::fmt;
use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use portcullis_crypto::tls::verify::{AnyCertificate, PinnedCertificate, WebPki};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::CertificateError;
use rustls_pki_types::pem::PemObject as _;
use tokio::io::{AsyncRead, AsyncWrite};

use super::args::HttpArgs;
use crate::cli::connect::tunnel::SessionTicket;

const UNUSABLE_ROOTS: &str = "cannot set up the check of the target's certificate";

/// HTTP/1.1 is what the proxy speaks both ways.
const ALPN: &[u8] = b"http/1.1";

/// A byte stream to the target.
pub(super) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// How the target is reached inside each brokered connection.
pub(super) struct Upstream {
    /// For an https target: the TLS client and the name its certificate is checked for.
    tls: Option<(tokio_rustls::TlsConnector, ServerName<'static>)>,
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("tls", &self.tls.as_ref().map(|(_, name)| name))
            .finish()
    }
}

/// How an https target's certificate is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Trust {
    /// The system's roots.
    Roots,
    CaFile(std::path::PathBuf),
    /// Exactly this certificate (SHA-256 of its DER).
    Fingerprint([u8; 32]),
    Insecure,
}

impl Trust {
    pub(super) fn from_args(args: &HttpArgs) -> anyhow::Result<Self> {
        if let Some(path) = &args.target_ca {
            return Ok(Self::CaFile(path.clone()));
        }
        if let Some(text) = &args.target_fingerprint {
            return Ok(Self::Fingerprint(parse_fingerprint(text)?));
        }
        Ok(match args.insecure_target {
            true => Self::Insecure,
            false => Self::Roots,
        })
    }
}

/// `80:D4:...:F5` or `80d4...f5`: 32 bytes.
pub(super) fn parse_fingerprint(text: &str) -> anyhow::Result<[u8; 32]> {
    let digits: String = text.chars().filter(|c| *c != ':').collect();
    let mut out = [0u8; 32];
    hex::decode_to_slice(&digits, &mut out).with_context(|| {
        format!("--target-fingerprint {text:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")
    })?;
    Ok(out)
}

impl Upstream {
    /// Plain HTTP to the target.
    pub(super) fn plain() -> Self {
        Self { tls: None }
    }

    /// TLS to the target, its certificate checked for `server_name` as `trust` says.
    pub(super) fn https(trust: &Trust, server_name: &str) -> anyhow::Result<Self> {
        let name = ServerName::try_from(server_name.to_owned()).with_context(|| {
            format!(
                "{server_name:?} is not a name a certificate can be checked for; set --host-header"
            )
        })?;
        let verifier: Arc<dyn ServerCertVerifier> = match trust {
            Trust::Roots => Arc::new(WebPki::new(system_roots()?).context(UNUSABLE_ROOTS)?),
            Trust::CaFile(path) => Arc::new(WebPki::new(ca_file(path)?).context(UNUSABLE_ROOTS)?),
            Trust::Fingerprint(pin) => Arc::new(PinnedCertificate::new(*pin)),
            Trust::Insecure => Arc::new(AnyCertificate),
        };
        let mut config = portcullis_crypto::tls::https_client_config_verified_by(verifier)
            .context("cannot set up TLS to the target")?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        Ok(Self {
            tls: Some((connector, name)),
        })
    }

    /// Opens a brokered connection of the session, with TLS to the target inside it for
    /// an https target.
    pub(super) async fn open(&self, ticket: &SessionTicket) -> anyhow::Result<Box<dyn Io>> {
        let stream = ticket.open().await?.into_stream();
        let Some((connector, name)) = &self.tls else {
            return Ok(Box::new(stream));
        };
        let tls = connector
            .connect(name.clone(), stream)
            .await
            .map_err(|err| anyhow::anyhow!("TLS with the target failed: {}", tls_error(&err)))?;
        Ok(Box::new(tls))
    }
}

/// A rustls error's cause in words (a certificate error's cause is shown with `Debug`).
fn tls_error(err: &std::io::Error) -> String {
    let cause = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .and_then(|tls| match tls {
            rustls::Error::InvalidCertificate(CertificateError::Other(other)) => {
                Some(other.0.to_string())
            }
            _ => None,
        });
    cause.unwrap_or_else(|| err.to_string())
}

fn system_roots() -> anyhow::Result<rustls::RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        bail!(
            "no system root certificates found to check the target with; pass --target-ca \
             FILE or --target-fingerprint SHA256"
        );
    }
    Ok(roots)
}

fn ca_file(path: &Path) -> anyhow::Result<rustls::RootCertStore> {
    let text = std::fs::read(path)
        .with_context(|| format!("cannot read --target-ca {}", path.display()))?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&text) {
        let cert = cert.with_context(|| format!("{} is not PEM", path.display()))?;
        roots
            .add(cert)
            .with_context(|| format!("{} holds an unusable certificate", path.display()))?;
    }
    if roots.is_empty() {
        bail!("--target-ca {} holds no certificate", path.display());
    }
    Ok(roots)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let colons = "80:D4:".to_owned() + &["00"; 30].join(":");
        let plain = "80d4".to_owned() + &"00".repeat(30);
        assert_eq!(
            parse_fingerprint(&colons).unwrap(),
            parse_fingerprint(&plain).unwrap()
        );
        assert_eq!(parse_fingerprint(&plain).unwrap()[..2], [0x80, 0xd4]);
        assert!(parse_fingerprint("80:D4").is_err());
        assert!(parse_fingerprint(&"zz".repeat(32)).is_err());
    }
}
