//! `portcullis login URL`: the first use of a controller. The CA that will be the profile's
//! only trust anchor is fetched without trusting anything (`GET /v1/tls/ca` over a TLS
//! connection whose certificate is not checked: the bytes are only a candidate), shown by
//! fingerprint and kept only when the person confirms it on a terminal or it matches
//! `--ca-fingerprint`; `--ca FILE` names it outright. Then a request over a connection verified
//! with that CA alone must succeed before anything is saved: a man in the middle who sent his
//! own CA is refused at the fingerprint, and one who sent the right CA cannot prove the
//! controller's certificate. Only then are the profile (controllers, CA) saved and made
//! current, and the login proper runs against it.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;

use super::LoginArgs;
use crate::cli::http::{config_dir, split_addrs, ApiClient, ClientArgs, ClientSettings};
use crate::cli::profile::fingerprint::Fingerprint;
use crate::cli::profile::{self, Profile};

/// The largest CA bundle read from a controller not yet trusted.
const MAX_BUNDLE_BYTES: usize = 256 * 1024;

/// Sets up the profile for `url` (and `--controller`s) and returns a client of it without a
/// token, and where the token goes.
pub(super) async fn setup(args: &LoginArgs, url: &str) -> anyhow::Result<(ApiClient, PathBuf)> {
    let name = args
        .client
        .profile
        .clone()
        .unwrap_or_else(|| profile::DEFAULT.to_owned());
    profile::check_name(&name)?;
    let config = config_dir().context("no config directory: set HOME or XDG_CONFIG_HOME")?;
    let mut controllers = split_addrs(url)?;
    for more in &args.controller {
        for addr in split_addrs(more)? {
            if !controllers.contains(&addr) {
                controllers.push(addr);
            }
        }
    }
    let existing = Profile::load(&config, &name)?;
    let kept_ca = existing
        .as_ref()
        .map(Profile::ca_path)
        .filter(|p| p.exists() && args.client.ca.is_none() && args.ca_fingerprint.is_none());
    let pem = match (&args.client.ca, &args.ca_fingerprint, &kept_ca) {
        (Some(file), _, _) => {
            let pem = std::fs::read(file)
                .with_context(|| format!("cannot read the CA file {}", file.display()))?;
            certificates(&pem)
                .with_context(|| format!("the CA file {} holds no certificate", file.display()))?;
            pem
        }
        (None, _, Some(kept)) => {
            std::fs::read(kept).with_context(|| format!("cannot read {}", kept.display()))?
        }
        (None, expected, None) => {
            let (addr, offered) = fetch_any(&controllers).await?;
            let anchors = match expected {
                Some(expected) => by_fingerprint(&offered, expected)?,
                None => confirmed_on_terminal(&addr, &offered)?,
            };
            pem_of(&anchors)
        }
    };
    // Prove the controllers with that CA alone before anything is saved.
    let staged = tempfile::Builder::new()
        .prefix(".ca-")
        .tempfile_in(std::env::temp_dir())
        .context("cannot stage the CA")?;
    std::fs::write(staged.path(), &pem).context("cannot stage the CA")?;
    let probe = ApiClient::new(ClientSettings {
        addrs: controllers.clone(),
        ca: staged.path().to_owned(),
        ca_managed: false,
        token: None,
        profile: None,
    })?;
    probe
        .get::<portcullis_proto::api::Health>("/v1/health")
        .await
        .with_context(|| {
            let kept = if kept_ca.is_some() {
                format!(
                    "the profile {name} keeps the CA it was saved with: pass --ca-fingerprint \
                     or --ca FILE to replace it; "
                )
            } else {
                String::new()
            };
            format!(
                "the controller did not prove itself with that CA ({kept}with an own API \
                 certificate, pass --ca FILE with the CA that signed it); nothing was saved"
            )
        })?;
    let saved = Profile::save(&config, &name, &controllers)?;
    portcullis_files::write_atomic(&saved.ca_path(), &pem, 0o644)
        .with_context(|| format!("cannot write {}", saved.ca_path().display()))?;
    profile::set_current(&config, &name)?;
    eprintln!(
        "Profile {name} saved to {} ({}); it is now the current profile.",
        saved.dir.display(),
        controllers.join(", ")
    );
    let settings = ClientArgs {
        profile: Some(name),
        // Keeps resolve() from reading an old token.
        token: "unused".parse().ok(),
        ..ClientArgs::default()
    }
    .resolve()?;
    let api = ApiClient::new(ClientSettings {
        token: None,
        ..settings
    })?;
    let path = args
        .token_file
        .clone()
        .unwrap_or_else(|| saved.token_path());
    Ok((api, path))
}

/// The certificates of a PEM bundle; at least one.
fn certificates(pem: &[u8]) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .context("not PEM certificates")?;
    if certs.is_empty() {
        bail!("no certificate");
    }
    Ok(certs)
}

fn pem_of(certs: &[CertificateDer<'static>]) -> Vec<u8> {
    use base64::Engine as _;
    let mut out = String::new();
    for cert in certs {
        let b64 = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        for line in b64.as_bytes().chunks(64) {
            out.push_str(&String::from_utf8_lossy(line));
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out.into_bytes()
}

/// The CA bundle the first controller that answers offers, and which one it was.
async fn fetch_any(
    controllers: &[String],
) -> anyhow::Result<(String, Vec<CertificateDer<'static>>)> {
    let mut failures = Vec::new();
    for addr in controllers {
        match fetch(addr).await {
            Ok(certs) => return Ok((addr.clone(), certs)),
            Err(err) => failures.push(format!("{addr}: {err:#}")),
        }
    }
    bail!(
        "cannot fetch the controller's CA: {}; or pass --ca FILE with its CA",
        failures.join("; ")
    )
}

/// `GET /v1/tls/ca` over a connection that trusts nothing: a candidate only.
async fn fetch(addr: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let tls = portcullis_crypto::tls::https_client_config_verified_by(Arc::new(
        portcullis_crypto::tls::verify::AnyKey,
    ))
    .context("cannot set up TLS")?;
    let http = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .context("cannot set up the HTTPS client")?;
    let mut response = http
        .get(format!("{addr}/v1/tls/ca"))
        .send()
        .await
        .context("no answer")?;
    if !response.status().is_success() {
        bail!("GET /v1/tls/ca answered {}", response.status());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.context("the answer was cut off")? {
        body.extend_from_slice(&chunk);
        if body.len() > MAX_BUNDLE_BYTES {
            bail!("the CA bundle is larger than {MAX_BUNDLE_BYTES} bytes");
        }
    }
    certificates(&body).context("the controller's CA bundle")
}

/// The one offered certificate `expected` names; every offered one is listed when none does.
fn by_fingerprint(
    offered: &[CertificateDer<'static>],
    expected: &Fingerprint,
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    match offered
        .iter()
        .find(|c| Fingerprint::of_der(c.as_ref()).matches(expected))
    {
        Some(cert) => Ok(vec![cert.clone()]),
        None => bail!(
            "refused: the controller offered a CA whose fingerprint is not {expected}: {}; \
             check the fingerprint with the controller's administrator (nothing was saved)",
            offered
                .iter()
                .map(|c| Fingerprint::of_der(c.as_ref()).to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Shows the offered CAs and asks; refuses without a terminal.
fn confirmed_on_terminal(
    addr: &str,
    offered: &[CertificateDer<'static>],
) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
        bail!(
            "refused: {addr} offers a CA ({}) that nobody confirmed, and there is no terminal \
             to ask on; pass --ca-fingerprint SHA256 (from the controller's administrator: \
             `openssl x509 -in CA.pem -noout -fingerprint -sha256`) or --ca FILE",
            fingerprints(offered)
        );
    }
    let mut stderr = std::io::stderr();
    writeln!(stderr, "The controller at {addr} offers this TLS CA:")?;
    for cert in offered {
        let fp = Fingerprint::of_der(cert.as_ref());
        writeln!(stderr, "  {fp}\n  ({})", fp.hex_colons())?;
    }
    write!(
        stderr,
        "Compare it with the fingerprint your administrator gave you. Trust this CA? [y/N] "
    )?;
    stderr.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if !matches!(answer.trim(), "y" | "Y" | "yes" | "YES" | "Yes") {
        bail!("refused: the CA was not confirmed; nothing was saved");
    }
    Ok(offered.to_vec())
}

fn fingerprints(certs: &[CertificateDer<'static>]) -> String {
    certs
        .iter()
        .map(|c| Fingerprint::of_der(c.as_ref()).to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ca(name: &str) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec![name.into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        cert.der().clone()
    }

    #[test]
    fn only_the_certificate_the_fingerprint_names_becomes_the_anchor() {
        let (real, other) = (ca("real"), ca("other"));
        let expected = Fingerprint::of_der(real.as_ref());
        let chosen = by_fingerprint(&[other.clone(), real.clone()], &expected).unwrap();
        assert_eq!(chosen, vec![real.clone()]);
        let err = by_fingerprint(std::slice::from_ref(&other), &expected)
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("refused"), "{err}");
        assert!(
            err.contains(&Fingerprint::of_der(other.as_ref()).to_string()),
            "{err}"
        );
    }

    #[test]
    fn a_bundle_written_reads_back_the_same() {
        let certs = vec![ca("a"), ca("b")];
        assert_eq!(certificates(&pem_of(&certs)).unwrap(), certs);
        assert!(certificates(b"nothing").is_err());
    }
}
