//! The client side of the controller's HTTPS JSON API: an [`ApiClient`] that trusts only the
//! CA file it is given (never the system roots, never "insecure"), sends the bearer token and
//! turns every non-2xx answer into an error people can act on.
//!
//! `settings` resolves where the controller is and which token to send; `failover` picks
//! among several controllers; `error` words the failures.

mod ca_bundle;
mod error;
mod failover;
mod settings;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;

pub(crate) use error::ApiError;
/// dev.env sets it (`portcullis dev`, server builds only).
#[cfg(feature = "server")]
pub(crate) use error::DEV_STATE_VAR;
pub(crate) use settings::{config_dir, split_addrs, ClientArgs, ClientSettings, Token};

use crate::cli::profile::Profile;

/// How long a request may take to connect (TCP and TLS), and to complete. With several
/// controllers an unreachable one costs at most the connect timeout before the next is tried.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const FAILOVER_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an unused connection to the controller is kept for the next request. Short: a
/// process that waits between requests (`connect ssh` while ssh runs, for hours) gives its
/// connection back instead of holding one of the few the controller allows each address
/// (`api.connections.max_per_address`); `connect`'s 2-second watch still reuses one.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of the controllers' API (one, or several tried in turn: see [`failover`]).
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    /// At least one.
    addrs: Vec<String>,
    /// The index of the controller that answered last, tried first.
    good: Arc<AtomicUsize>,
    http: reqwest::Client,
    token: Option<Token>,
    /// The CA file trusted, followed through a CA rotation (see [`ca_bundle`]).
    ca: Arc<ca_bundle::CaFile>,
    /// The profile the settings came from: it remembers the controller that answered.
    profile: Option<Profile>,
}

impl ApiClient {
    /// Resolves the flags and fallbacks and builds a client that trusts only the CA file.
    pub(crate) fn from_args(args: &ClientArgs) -> anyhow::Result<Self> {
        Self::new(args.resolve()?)
    }

    pub(crate) fn new(settings: ClientSettings) -> anyhow::Result<Self> {
        if settings.addrs.is_empty() {
            bail!("no controller address: set PORTCULLIS_ADDR, e.g. https://127.0.0.1:9200");
        }
        let tls = tls_config_trusting(&settings.ca)?;
        let connect_timeout = if settings.addrs.len() > 1 {
            FAILOVER_CONNECT_TIMEOUT
        } else {
            CONNECT_TIMEOUT
        };
        let good = settings
            .profile
            .as_ref()
            .and_then(Profile::last_good)
            .and_then(|last| settings.addrs.iter().position(|a| *a == last))
            .unwrap_or(0);
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(connect_timeout)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("portcullis-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTPS client")?;
        Ok(Self {
            addrs: settings.addrs,
            good: Arc::new(AtomicUsize::new(good)),
            http,
            token: settings.token,
            ca: Arc::new(ca_bundle::CaFile::new(settings.ca, settings.ca_managed)),
            profile: settings.profile,
        })
    }

    /// The same client, sending `token`.
    pub(crate) fn with_token(&self, token: Token) -> ApiClient {
        ApiClient {
            token: Some(token),
            ..self.clone()
        }
    }

    /// The controller's address as this client reaches it (`https://HOST:PORT`): the one
    /// that answered last (or is tried first).
    pub(crate) fn addr(&self) -> &str {
        let good = self.good.load(Ordering::Relaxed);
        self.addrs
            .get(good)
            .or_else(|| self.addrs.first())
            .map_or("", String::as_str)
    }

    /// Every controller this client may ask, in their listed order.
    pub(crate) fn addrs(&self) -> &[String] {
        &self.addrs
    }

    /// The profile the settings came from.
    pub(crate) fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    /// The CA file trusted.
    pub(crate) fn ca_path(&self) -> &Path {
        self.ca.path()
    }

    /// Whether a token is sent.
    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `GET /v1/health` at the controller `addr` alone (no failover): how long it took.
    pub(crate) async fn probe(&self, addr: &str) -> anyhow::Result<Duration> {
        let started = std::time::Instant::now();
        let response = self
            .http
            .get(format!("{addr}/v1/health"))
            .send()
            .await
            .map_err(|err| error::transport_error(addr, &err))?;
        let status = response.status();
        if !status.is_success() {
            bail!("answered {status}");
        }
        Ok(started.elapsed())
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(reqwest::Method::GET, path, None).await?;
        decode(response).await
    }

    pub(crate) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .send(reqwest::Method::POST, path, Some(json_body(body)?))
            .await?;
        decode(response).await
    }

    /// `POST`, with whatever the answer's body is (none, or JSON nobody needs) ignored.
    pub(crate) async fn post_ignoring_answer<B: Serialize + ?Sized>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<()> {
        self.send(reqwest::Method::POST, path, Some(json_body(body)?))
            .await
            .map(drop)
    }

    pub(crate) async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .send(reqwest::Method::PATCH, path, Some(json_body(body)?))
            .await?;
        decode(response).await
    }

    /// `DELETE`, expecting no body back (204).
    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(reqwest::Method::DELETE, path, None)
            .await
            .map(drop)
    }

    fn request(
        &self,
        addr: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&bytes::Bytes>,
    ) -> reqwest::RequestBuilder {
        let mut request = self.http.request(method, format!("{addr}{path}"));
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
        }
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Sends a request to the first controller that takes it (see [`failover`]); a transport
    /// failure or a non-2xx status becomes an error.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<bytes::Bytes>,
    ) -> anyhow::Result<reqwest::Response> {
        let order = failover::order(self.addrs.len(), self.good.load(Ordering::Relaxed));
        let last = order.len().saturating_sub(1);
        let mut tried = Vec::new();
        for (n, index) in order.into_iter().enumerate() {
            let addr = &self.addrs[index];
            let more = n < last;
            let response = match self
                .request(addr, method.clone(), path, body.as_ref())
                .send()
                .await
            {
                Ok(response) => response,
                Err(err) if more && failover::moves_on_error(&err) => {
                    tracing::debug!(%addr, "controller unreachable, trying the next: {err}");
                    tried.push((
                        addr.clone(),
                        format!("{:#}", error::transport_error(addr, &err)),
                    ));
                    continue;
                }
                Err(err) if tried.is_empty() => return Err(error::transport_error(addr, &err)),
                Err(err) => {
                    tried.push((
                        addr.clone(),
                        format!("{:#}", error::transport_error(addr, &err)),
                    ));
                    return Err(crate::cli::exit::Unreachable(failover::all_failed(&tried)).into());
                }
            };
            let status = response.status();
            if more && failover::moves_on_status(status.as_u16()) {
                tracing::debug!(%addr, %status, "controller unavailable, trying the next");
                tried.push((addr.clone(), format!("answered {status}")));
                continue;
            }
            self.answered(index);
            self.follow_ca_bundle(addr, &response).await;
            if status.is_success() {
                return Ok(response);
            }
            let bytes = response.bytes().await.unwrap_or_default();
            let sent_token = self.token.is_some();
            // Only a token sent can have expired; the variable comes from a dev.env.
            let dev_state = std::env::var(error::DEV_STATE_VAR)
                .ok()
                .filter(|dir| sent_token && !dir.is_empty());
            return Err(ApiError::from_response(status, &bytes, sent_token)
                .with_dev_hint(dev_state.as_deref())
                .into());
        }
        Err(crate::cli::exit::Unreachable(failover::all_failed(&tried)).into())
    }

    /// Remembers the controller that answered: first for this process's next request, and
    /// (when it changed) for the profile's next run.
    fn answered(&self, index: usize) {
        let before = self.good.swap(index, Ordering::Relaxed);
        if self.addrs.len() > 1 {
            if let Some(profile) = &self.profile {
                let addr = &self.addrs[index];
                if before != index || profile.last_good().as_deref() != Some(addr.as_str()) {
                    profile.set_last_good(addr);
                }
            }
        }
    }
}

fn json_body<B: Serialize + ?Sized>(body: &B) -> anyhow::Result<bytes::Bytes> {
    Ok(serde_json::to_vec(body)
        .context("cannot encode the request")?
        .into())
}

impl ApiClient {
    /// Keeps the CA file in step with the controllers' bundle (see [`ca_bundle`]); a failure
    /// is a warning, never the request's.
    async fn follow_ca_bundle(&self, addr: &str, response: &reqwest::Response) {
        let Some(named) = response
            .headers()
            .get(ca_bundle::HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        match self.ca.follow(named) {
            ca_bundle::Follow::Current => {}
            ca_bundle::Follow::Warn => eprintln!("{}", self.ca.warning(addr)),
            ca_bundle::Follow::Fetch => {
                let fetched = async {
                    let response = self
                        .http
                        .get(format!("{addr}/v1/tls/ca"))
                        .send()
                        .await?
                        .error_for_status()?;
                    response.bytes().await
                }
                .await;
                let outcome = match fetched {
                    Ok(pem) => self.ca.replace(&pem, named),
                    Err(err) => Err(anyhow::anyhow!("cannot fetch it: {err}")),
                };
                match outcome {
                    Ok(()) => eprintln!(
                        "the controller's TLS CA bundle changed (a CA rotation); updated {}",
                        self.ca.path().display()
                    ),
                    Err(err) => eprintln!(
                        "warning: the controller's TLS CA bundle changed but {} was not updated: {err:#}",
                        self.ca.path().display()
                    ),
                }
            }
        }
    }
}

async fn decode<T: DeserializeOwned>(response: reqwest::Response) -> anyhow::Result<T> {
    let status = response.status();
    let bytes = response
        .bytes()
        .await
        .context("the controller's answer was cut off")?;
    serde_json::from_slice(&bytes).with_context(|| {
        format!("the controller's answer ({status}) is not what this CLI expects; are both the same version?")
    })
}

/// A rustls client config whose only trust anchors are the certificates in `ca_file`.
pub(crate) fn tls_config_trusting(ca_file: &Path) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file)
        .with_context(|| format!("cannot read the CA file {}", ca_file.display()))?;
    for cert in certs {
        let cert =
            cert.with_context(|| format!("the CA file {} is not valid PEM", ca_file.display()))?;
        roots.add(cert).with_context(|| {
            format!(
                "the CA file {} holds an unusable certificate",
                ca_file.display()
            )
        })?;
    }
    if roots.is_empty() {
        bail!("the CA file {} holds no certificate", ca_file.display());
    }
    portcullis_crypto::tls::https_client_config(roots, portcullis_crypto::tls::ClientAuth::None)
        .context("cannot set up TLS")
}

/// Percent-encodes one URL path segment (an id or a name), so `a/b` cannot change the path;
/// refuses the empty string, `.` and `..`, which URL parsing would fold away.
pub(crate) fn segment(text: &str) -> anyhow::Result<String> {
    if matches!(text, "" | "." | "..") {
        bail!("{text:?} is not a valid id or name");
    }
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
