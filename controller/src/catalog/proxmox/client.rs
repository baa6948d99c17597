//! The HTTP side: one `reqwest` client per cluster and token on a rustls configuration of
//! portcullis-crypto (the cluster's CA as the only root, or one certificate pinned by its
//! SHA-256), `Authorization: PVEAPIToken=...` on every request, the per-request limit of
//! `timeout`. Discovery only reads (GET): its first call tries the URLs in order and the one
//! that answers serves the rest of the sync ([`Bound`]). The token-management client of
//! sessions' tokens also writes ([`Client::call`], form-encoded like Proxmox's own tools), each
//! call trying the URLs in order; the calls it makes are idempotent or made so by their
//! caller (`access`).

use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

use portcullis_crypto::tls::verify::PinnedCertificate;
use reqwest::header::{HeaderValue, AUTHORIZATION};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde_json::Value;
use zeroize::Zeroizing;

use super::{errors, token, wire, ProxmoxError, TokenUse};
use crate::catalog::config::{ProxmoxCluster, ServerTrust};
use crate::secret::{ExposeSecret as _, SecretString};

/// The most of one answer read (a large cluster's `/cluster/resources` is a few MiB).
const MAX_BODY: usize = 32 << 20;

/// A client for one cluster.
pub(crate) struct Client {
    http: reqwest::Client,
    urls: Vec<url::Url>,
    token: SecretString,
    timeout: Duration,
    usage: TokenUse,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("urls", &self.urls)
            .field("token", &"<secret>")
            .field("timeout", &self.timeout)
            .field("usage", &self.usage)
            .finish()
    }
}

/// How a request failed: no answer (the next URL may do better), or an answer.
enum Failure {
    Unreachable(String),
    Answered(ProxmoxError),
}

impl Client {
    /// A discovery client for `cluster`'s URLs with `token` (`USER@REALM!TOKENID=SECRET`).
    pub(crate) fn new(
        cluster: &ProxmoxCluster,
        token: SecretString,
    ) -> Result<Client, ProxmoxError> {
        Client::with_usage(cluster, token, TokenUse::Discovery)
    }

    /// A token-management client for `cluster`'s URLs with its sessions' management token.
    pub(crate) fn for_sessions(
        cluster: &ProxmoxCluster,
        token: SecretString,
    ) -> Result<Client, ProxmoxError> {
        Client::with_usage(cluster, token, TokenUse::Sessions)
    }

    fn with_usage(
        cluster: &ProxmoxCluster,
        token: SecretString,
        usage: TokenUse,
    ) -> Result<Client, ProxmoxError> {
        if !token::well_formed(token.expose_secret()) {
            return Err(ProxmoxError::Token(format!(
                "{} is not a Proxmox API token: expected {}",
                usage.what(),
                token::SHAPE
            )));
        }
        let setup = |e: &dyn std::fmt::Display| {
            ProxmoxError::Setup(format!(
                "catalog.proxmox {:?}: cannot set up TLS: {e}",
                cluster.name
            ))
        };
        let tls = match &cluster.trust {
            ServerTrust::CaFile(path) => {
                let shown = path.display();
                let mut roots = rustls::RootCertStore::empty();
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                    ProxmoxError::Setup(format!("cannot read catalog.proxmox.ca_file {shown}: {e}"))
                })?;
                for cert in certs {
                    let cert = cert.map_err(|e| {
                        ProxmoxError::Setup(format!("catalog.proxmox.ca_file {shown}: {e}"))
                    })?;
                    roots.add(cert).map_err(|e| {
                        ProxmoxError::Setup(format!("catalog.proxmox.ca_file {shown}: {e}"))
                    })?;
                }
                if roots.is_empty() {
                    return Err(ProxmoxError::Setup(format!(
                        "catalog.proxmox.ca_file {shown} holds no PEM certificate: copy the cluster's /etc/pve/pve-root-ca.pem"
                    )));
                }
                portcullis_crypto::tls::https_client_config(
                    roots,
                    portcullis_crypto::tls::ClientAuth::None,
                )
                .map_err(|e| setup(&e))?
            }
            ServerTrust::Fingerprint(pin) => {
                portcullis_crypto::tls::https_client_config_verified_by(Arc::new(
                    PinnedCertificate::new(*pin),
                ))
                .map_err(|e| setup(&e))?
            }
        };
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cluster.timeout)
            .timeout(cluster.timeout)
            .user_agent(concat!("portcullis-controller/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| setup(&e))?;
        Ok(Client {
            http,
            urls: cluster.urls.clone(),
            token,
            timeout: cluster.timeout,
            usage,
        })
    }

    /// `method` on `api2/json/` + `segments` (each percent-encoded as a path segment), with
    /// `form` as an `application/x-www-form-urlencoded` body, at the first URL that answers.
    /// Connection, TLS and timeout failures move on to the next URL.
    pub(crate) async fn call(
        &self,
        method: Method,
        segments: &[&str],
        form: &[(&str, &str)],
    ) -> Result<Value, ProxmoxError> {
        let path = segments.join("/");
        let mut tried = Vec::new();
        for base in &self.urls {
            let mut url = base.clone();
            match url.path_segments_mut() {
                Ok(mut parts) => {
                    parts
                        .pop_if_empty()
                        .extend(["api2", "json"])
                        .extend(segments);
                }
                Err(()) => {
                    return Err(ProxmoxError::Setup(format!(
                        "{base} cannot carry an API path"
                    )))
                }
            }
            match self.execute(base, url, &path, method, form).await {
                Ok(data) => return Ok(data),
                Err(Failure::Answered(e)) => return Err(e),
                Err(Failure::Unreachable(why)) => {
                    tracing::info!(url = %base, error = %why, "a Proxmox API URL did not answer; trying the next");
                    tried.push(format!("{base}: {why}"));
                }
            }
        }
        Err(ProxmoxError::Unreachable(tried.join("; ")))
    }

    /// GET `path` from the first URL that answers, and that URL. Connection, TLS and timeout
    /// failures move on to the next URL; an HTTP answer, even an error, is the cluster's.
    pub(crate) async fn first(&self, path: &str) -> Result<(Bound<'_>, Value), ProxmoxError> {
        let mut tried = Vec::new();
        for base in &self.urls {
            match self.request(base, path).await {
                Ok(data) => {
                    let bound = Bound {
                        client: self,
                        base: base.clone(),
                    };
                    return Ok((bound, data));
                }
                Err(Failure::Answered(e)) => return Err(e),
                Err(Failure::Unreachable(why)) => {
                    tracing::info!(url = %base, error = %why, "a Proxmox API URL did not answer; trying the next");
                    tried.push(format!("{base}: {why}"));
                }
            }
        }
        Err(ProxmoxError::Unreachable(tried.join("; ")))
    }

    async fn request(&self, base: &url::Url, path: &str) -> Result<Value, Failure> {
        let url = base.join(&format!("api2/json/{path}")).map_err(|e| {
            Failure::Answered(ProxmoxError::Setup(format!(
                "{base}: bad request path {path:?}: {e}"
            )))
        })?;
        self.execute(base, url, path, Method::Get, &[]).await
    }

    async fn execute(
        &self,
        base: &url::Url,
        url: url::Url,
        path: &str,
        method: Method,
        form: &[(&str, &str)],
    ) -> Result<Value, Failure> {
        let header = Zeroizing::new(format!("PVEAPIToken={}", self.token.expose_secret()));
        let mut value = HeaderValue::from_str(&header).map_err(|_| {
            Failure::Answered(ProxmoxError::Token(format!(
                "{} cannot be sent in a header: expected {}",
                self.usage.what(),
                token::SHAPE
            )))
        })?;
        value.set_sensitive(true);
        let unreachable = |e: reqwest::Error| {
            if e.is_timeout() {
                Failure::Unreachable(format!(
                    "no answer within {}",
                    humantime::format_duration(self.timeout)
                ))
            } else {
                // reqwest's own sentence repeats the URL: its causes say what failed.
                Failure::Unreachable(e.source().map_or_else(|| e.to_string(), error_chain))
            }
        };
        let mut request = self
            .http
            .request(method.as_reqwest(), url)
            .header(AUTHORIZATION, value);
        if method != Method::Get && method != Method::Delete {
            request = request.form(form);
        }
        let mut response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let reason = response
            .extensions()
            .get::<hyper::ext::ReasonPhrase>()
            .and_then(|r| std::str::from_utf8(r.as_bytes()).ok())
            .map(str::to_owned)
            .or_else(|| response.status().canonical_reason().map(str::to_owned));
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(unreachable)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(Failure::Answered(ProxmoxError::BadAnswer {
                    url: base.to_string(),
                    method: method.as_str(),
                    path: path.to_owned(),
                    message: format!("the answer is larger than {} MiB", MAX_BODY >> 20),
                }));
            }
            body.extend_from_slice(&chunk);
        }
        if !(200..300).contains(&status) {
            let words = errors::proxmox_words(status, reason.as_deref(), &body);
            return Err(Failure::Answered(ProxmoxError::Api {
                url: base.to_string(),
                method: method.as_str(),
                path: path.to_owned(),
                status,
                message: errors::explain_for(self.usage, status, &words),
            }));
        }
        wire::envelope(&body).map_err(|message| {
            Failure::Answered(ProxmoxError::BadAnswer {
                url: base.to_string(),
                method: method.as_str(),
                path: path.to_owned(),
                message,
            })
        })
    }
}

/// The methods the API is called with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    Get,
    Post,
    Put,
    Delete,
}

impl Method {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
        }
    }

    fn as_reqwest(self) -> reqwest::Method {
        match self {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
            Method::Delete => reqwest::Method::DELETE,
        }
    }
}

/// The client bound to the URL that answered the sync's first call.
#[derive(Debug)]
pub(crate) struct Bound<'a> {
    client: &'a Client,
    base: url::Url,
}

impl Bound<'_> {
    pub(crate) fn url(&self) -> &url::Url {
        &self.base
    }
}

impl super::discover::Api for Bound<'_> {
    async fn get(&self, path: &str) -> Result<Value, ProxmoxError> {
        self.client
            .request(&self.base, path)
            .await
            .map_err(|failure| match failure {
                Failure::Answered(e) => e,
                Failure::Unreachable(why) => {
                    ProxmoxError::Unreachable(format!("{}: {why}", self.base))
                }
            })
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests;
