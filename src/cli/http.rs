//! The client side of the controller's HTTPS JSON API: an [`ApiClient`] that trusts only the
//! CA file it is given (never the system roots, never "insecure"), sends the bearer token and
//! turns every non-2xx answer into an error people can act on.
//!
//! `settings` resolves where the controller is and which token to send; `error` words the
//! failures.

mod ca_bundle;
mod error;
mod settings;

use std::path::Path;
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
pub(crate) use settings::{config_dir, ClientArgs, ClientSettings, Token};

/// How long a request may take to connect, and to complete.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an unused connection to the controller is kept for the next request. Short: a
/// process that waits between requests (`connect ssh` while ssh runs, for hours) gives its
/// connection back instead of holding one of the few the controller allows each address
/// (`api.connections.max_per_address`); `connect`'s 2-second watch still reuses one.
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// A client of one controller's API.
#[derive(Debug, Clone)]
pub(crate) struct ApiClient {
    addr: String,
    http: reqwest::Client,
    token: Option<Token>,
    /// The CA file trusted, followed through a CA rotation (see [`ca_bundle`]).
    ca: std::sync::Arc<ca_bundle::CaFile>,
}

impl ApiClient {
    /// Resolves the flags and fallbacks and builds a client that trusts only the CA file.
    pub(crate) fn from_args(args: &ClientArgs) -> anyhow::Result<Self> {
        Self::new(args.resolve()?)
    }

    pub(crate) fn new(settings: ClientSettings) -> anyhow::Result<Self> {
        let tls = tls_config_trusting(&settings.ca)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .pool_idle_timeout(POOL_IDLE_TIMEOUT)
            .user_agent(concat!("portcullis-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTPS client")?;
        Ok(Self {
            addr: settings.addr,
            http,
            token: settings.token,
            ca: std::sync::Arc::new(ca_bundle::CaFile::new(settings.ca, settings.ca_managed)),
        })
    }

    /// The controller's address as this client reaches it (`https://HOST:PORT`).
    pub(crate) fn addr(&self) -> &str {
        &self.addr
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.request(reqwest::Method::GET, path)).await?;
        decode(response).await
    }

    pub(crate) async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .send(self.request(reqwest::Method::POST, path).json(body))
            .await?;
        decode(response).await
    }

    pub(crate) async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .send(self.request(reqwest::Method::PATCH, path).json(body))
            .await?;
        decode(response).await
    }

    /// `DELETE`, expecting no body back (204).
    pub(crate) async fn delete(&self, path: &str) -> anyhow::Result<()> {
        self.send(self.request(reqwest::Method::DELETE, path))
            .await
            .map(drop)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.addr));
        match &self.token {
            Some(token) => request.bearer_auth(token.expose()),
            None => request,
        }
    }

    /// Sends a request; a transport failure or a non-2xx status becomes an error.
    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<reqwest::Response> {
        let response = request
            .send()
            .await
            .map_err(|err| error::transport_error(&self.addr, &err))?;
        self.follow_ca_bundle(&response).await;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let sent_token = self.token.is_some();
        // Only a token sent can have expired; the variable comes from a dev.env.
        let dev_state = std::env::var(error::DEV_STATE_VAR)
            .ok()
            .filter(|dir| sent_token && !dir.is_empty());
        Err(ApiError::from_response(status, &bytes, sent_token)
            .with_dev_hint(dev_state.as_deref())
            .into())
    }
}

impl ApiClient {
    /// Keeps the CA file in step with the controllers' bundle (see [`ca_bundle`]); a failure
    /// is a warning, never the request's.
    async fn follow_ca_bundle(&self, response: &reqwest::Response) {
        let Some(named) = response
            .headers()
            .get(ca_bundle::HEADER)
            .and_then(|v| v.to_str().ok())
        else {
            return;
        };
        match self.ca.follow(named) {
            ca_bundle::Follow::Current => {}
            ca_bundle::Follow::Warn => eprintln!("{}", self.ca.warning(&self.addr)),
            ca_bundle::Follow::Fetch => {
                let fetched = async {
                    let response = self
                        .http
                        .get(format!("{}/v1/tls/ca", self.addr))
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
mod tests {
    use super::*;

    #[test]
    fn segments_are_escaped() {
        assert_eq!(segment("web-1.prod_x~").unwrap(), "web-1.prod_x~");
        assert_eq!(segment("a/b c?").unwrap(), "a%2Fb%20c%3F");
        assert!(segment("..").is_err());
        assert!(segment("").is_err());
    }

    #[tokio::test]
    async fn unreachable_controller_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["ca".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, cert.pem()).unwrap();
        // A port that was just free: nothing listens there.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = ApiClient::new(ClientSettings {
            ca_managed: false,
            addr: format!("https://127.0.0.1:{port}"),
            ca,
            token: None,
        })
        .unwrap();
        let err = client
            .get::<portcullis_proto::api::Health>("/v1/health")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("cannot reach the controller at https://127.0.0.1"),
            "{text}"
        );
        assert!(text.contains("PORTCULLIS_ADDR"), "{text}");
    }
}
