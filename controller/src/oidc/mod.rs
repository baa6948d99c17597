//! The controller as an OpenID Connect relying party (the `openidconnect` crate over the
//! workspace's rustls/ring reqwest). This module sets a [`Relying`] party up (the client
//! secret, an HTTPS client that follows no redirects); `discovery` fetches and caches the
//! provider's metadata and keys, `code` runs the authorization code flow with PKCE, state and
//! nonce, `device` the device authorization grant, and `id_token` verifies ID tokens into an
//! [`OidcIdentity`] (read from the claims by `claims`). The login state machine around it
//! (pending logins in the store, the binding to the CLI that started a login) lives in
//! `api/oidc/`.

pub(crate) mod claims;
mod code;
pub(crate) mod config;
mod device;
mod discovery;
mod http;
mod id_token;
mod refresh;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use claims::OidcIdentity;
use config::{ClientSecretSource, OidcConfig};
pub(crate) use device::DevicePoll;
use discovery::Metadata;

use crate::secret::SecretString;

const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("cannot reach the OpenID provider ({what}): {cause}; check that it is up and that auth.oidc.issuer is right")]
    Unreachable { what: String, cause: String },
    #[error("the OpenID provider refused: {0}")]
    Refused(String),
    #[error("the ID token was rejected: {0}")]
    InvalidToken(String),
    #[error("{0}")]
    Claims(String),
    #[error("OIDC is misconfigured: {0}")]
    Config(String),
}

/// The relying party of one provider; shared by every request of a controller.
pub(crate) struct Relying {
    config: OidcConfig,
    secret: SecretString,
    http: reqwest::Client,
    cached: tokio::sync::Mutex<Option<(Instant, Arc<Metadata>)>>,
    /// When an unknown key id last forced a re-fetch (they are rate limited).
    forced_refresh: std::sync::Mutex<refresh::RefreshLimit>,
    /// The metadata's age, the re-fetch limit and the `iat` check.
    clock: crate::clock::SharedClock,
}

impl std::fmt::Debug for Relying {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relying")
            .field("issuer", &self.config.issuer)
            .finish_non_exhaustive()
    }
}

/// The error chain in one line (the innermost cause names the real problem).
fn chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut current = err.source();
    while let Some(next) = current {
        let text = next.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        current = next.source();
    }
    out
}

impl Relying {
    /// Reads the client secret and sets up the HTTP client (rustls with ring; the public web
    /// roots, or only `ca_file` when set; no redirects followed).
    pub(crate) fn new(
        config: OidcConfig,
        clock: crate::clock::SharedClock,
    ) -> Result<Relying, OidcError> {
        let secret = client_secret(&config.client_secret)?;
        let http = https_client(&config)?;
        Ok(Relying {
            config,
            secret,
            http,
            cached: tokio::sync::Mutex::new(None),
            forced_refresh: std::sync::Mutex::default(),
            clock,
        })
    }

    pub(crate) fn config(&self) -> &OidcConfig {
        &self.config
    }
}

/// The client secret, from the environment (read with the config) or its file.
fn client_secret(source: &ClientSecretSource) -> Result<SecretString, OidcError> {
    let path = match source {
        ClientSecretSource::Env(secret) => return Ok(secret.clone()),
        ClientSecretSource::File(path) => path,
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        OidcError::Config(format!(
            "cannot read auth.oidc.client_secret_file {}: {e}",
            path.display()
        ))
    })?;
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = std::fs::metadata(path) {
            if meta.permissions().mode() & 0o077 != 0 {
                tracing::warn!(
                    file = %path.display(),
                    "auth.oidc.client_secret_file is readable by other users: chmod 600 it"
                );
            }
        }
    }
    let text = text.trim().to_owned();
    if text.is_empty() {
        return Err(OidcError::Config(format!(
            "auth.oidc.client_secret_file {} is empty",
            path.display()
        )));
    }
    Ok(SecretString::from(text))
}

/// The HTTPS client every request to the provider goes through.
fn https_client(config: &OidcConfig) -> Result<reqwest::Client, OidcError> {
    let mut roots = rustls::RootCertStore::empty();
    match &config.ca_file {
        Some(path) => {
            use rustls_pki_types::pem::PemObject as _;
            let certs = rustls_pki_types::CertificateDer::pem_file_iter(path).map_err(|e| {
                OidcError::Config(format!(
                    "cannot read auth.oidc.ca_file {}: {e}",
                    path.display()
                ))
            })?;
            for cert in certs {
                let cert = cert.map_err(|e| {
                    OidcError::Config(format!("auth.oidc.ca_file {}: {e}", path.display()))
                })?;
                roots.add(cert).map_err(|e| {
                    OidcError::Config(format!("auth.oidc.ca_file {}: {e}", path.display()))
                })?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    let tls = portcullis_crypto::tls::https_client_config(
        roots,
        portcullis_crypto::tls::ClientAuth::None,
    )
    .map_err(|e| OidcError::Config(e.to_string()))?;
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(HTTP_TIMEOUT)
        .timeout(HTTP_TIMEOUT)
        .user_agent(concat!("portcullis-controller/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| OidcError::Config(format!("cannot set up the HTTPS client: {e}")))
}
