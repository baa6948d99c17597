//! The client side of the controller's HTTPS JSON API: where the address, CA and token come
//! from, and an [`ApiClient`] that turns every non-2xx answer into an error people can act on.
//!
//! The client trusts only the CA file it is given (never the system roots, never "insecure"),
//! and the bearer token lives in a [`Token`] whose `Debug` and `Display` print `<redacted>`.

use portcullis_controller::secret::{ExposeSecret as _, SecretString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context as _};
use portcullis_proto::api::ErrorBody;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::CertificateDer;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// How long a request may take to connect, and to complete.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Where the CLI finds the controller: flags, then environment, then files under the
/// user's config directory (`$XDG_CONFIG_HOME/portcullis/` or `~/.config/portcullis/`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct ClientArgs {
    /// Controller API address, e.g. https://127.0.0.1:9200 [fallback: CONFIG/portcullis/addr].
    #[arg(long, env = "PORTCULLIS_ADDR", value_name = "URL")]
    pub addr: Option<String>,
    /// PEM file of the CA that signed the controller's certificate; the only CA trusted
    /// [fallback: CONFIG/portcullis/ca.pem].
    #[arg(long, env = "PORTCULLIS_CA", value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// API token; prefer the environment or the file written by login, since a flag shows
    /// in the process list [fallback: CONFIG/portcullis/token].
    #[arg(
        long,
        env = "PORTCULLIS_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub token: Option<Token>,
}

/// A bearer token. It has no `Serialize`, `Debug`/`Display` never show it, and its memory is
/// zeroised when dropped.
#[derive(Clone)]
pub struct Token(SecretString);

impl Token {
    /// The token itself, for the `Authorization` header only.
    fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl PartialEq for Token {
    fn eq(&self, other: &Token) -> bool {
        portcullis_controller::secret::constant_time_eq(
            self.expose().as_bytes(),
            other.expose().as_bytes(),
        )
    }
}

impl Eq for Token {}

impl FromStr for Token {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if text.is_empty() {
            return Err("the token is empty".into());
        }
        if !text.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the token contains spaces or non-ASCII characters".into());
        }
        Ok(Token(SecretString::from(text.to_owned())))
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// The user's Portcullis config directory: `$XDG_CONFIG_HOME/portcullis`, else
/// `$HOME/.config/portcullis`; `None` when neither variable is usable.
pub fn config_dir() -> Option<PathBuf> {
    let from_xdg = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute());
    let base = from_xdg.or_else(|| {
        std::env::var_os("HOME")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .map(|home| home.join(".config"))
    })?;
    Some(base.join("portcullis"))
}

/// [`ClientArgs`] with every fallback applied.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// `https://host:port`, without a trailing slash.
    pub addr: String,
    pub ca: PathBuf,
    pub token: Option<Token>,
}

impl ClientArgs {
    /// Applies the config-directory fallbacks (see [`config_dir`]).
    pub fn resolve(&self) -> anyhow::Result<ClientSettings> {
        self.resolve_in(config_dir().as_deref())
    }

    /// Applies the fallbacks from `dir` (the config directory, if there is one).
    pub fn resolve_in(&self, dir: Option<&Path>) -> anyhow::Result<ClientSettings> {
        let addr = match &self.addr {
            Some(addr) => addr.clone(),
            None => match dir.map(|d| d.join("addr")).filter(|p| p.exists()) {
                Some(file) => read_small_file(&file)?,
                None => bail!(
                    "no controller address: pass --addr, set PORTCULLIS_ADDR (e.g. \
                     https://127.0.0.1:9200), or `. STATE/dev.env` after `portcullis dev`"
                ),
            },
        };
        let addr = normalize_addr(&addr)?;
        let ca = match &self.ca {
            Some(ca) => ca.clone(),
            None => match dir.map(|d| d.join("ca.pem")).filter(|p| p.exists()) {
                Some(file) => file,
                None => bail!(
                    "no CA for the controller: pass --ca FILE or set PORTCULLIS_CA to the PEM \
                     file of the controller's CA (the CLI trusts nothing else)"
                ),
            },
        };
        let token = match &self.token {
            Some(token) => Some(token.clone()),
            None => match dir.map(|d| d.join("token")).filter(|p| p.exists()) {
                Some(file) => Some(read_token_file(&file)?),
                None => None,
            },
        };
        Ok(ClientSettings { addr, ca, token })
    }
}

/// Accepts `https://host:port[/]` or a bare `host:port` (taken as HTTPS); refuses plain HTTP.
fn normalize_addr(addr: &str) -> anyhow::Result<String> {
    let addr = addr.trim().trim_end_matches('/');
    if addr.is_empty() {
        bail!("the controller address is empty: set PORTCULLIS_ADDR, e.g. https://127.0.0.1:9200");
    }
    if addr.starts_with("http://") {
        bail!("the controller address {addr} uses plain HTTP; the API is served only over HTTPS");
    }
    let addr = if addr.contains("://") {
        addr.to_owned()
    } else {
        format!("https://{addr}")
    };
    let url = reqwest::Url::parse(&addr).with_context(|| {
        format!("the controller address {addr} is not a URL like https://HOST:PORT")
    })?;
    if url.scheme() != "https" || url.host_str().is_none() {
        bail!("the controller address {addr} must look like https://HOST:PORT");
    }
    Ok(addr)
}

fn read_small_file(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text.trim().to_owned())
}

/// Reads the token file written by login, refusing it when other users could read it.
fn read_token_file(path: &Path) -> anyhow::Result<Token> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        bail!(
            "{} holds an API token but other users may read it (mode {mode:03o}): run `chmod 600 {}`",
            path.display(),
            path.display()
        );
    }
    let text = read_small_file(path)?;
    text.parse::<Token>()
        .map_err(|why| anyhow!("{}: {why}; log in again", path.display()))
}

/// An error answer from the API: the HTTP status and the API's [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub body: ErrorBody,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = &self.body.message;
        match self.status {
            401 => write!(f, "not authenticated: {message}")?,
            403 => write!(f, "forbidden: {message}")?,
            404 => write!(f, "not found: {message}")?,
            status => write!(f, "{message} (HTTP {status}, {})", self.body.error)?,
        }
        if let Some(field) = &self.body.field {
            write!(f, " [field `{field}`]")?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// A client of one controller's API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    addr: String,
    http: reqwest::Client,
    token: Option<Token>,
}

impl ApiClient {
    /// Resolves the flags and fallbacks and builds a client that trusts only the CA file.
    pub fn from_args(args: &ClientArgs) -> anyhow::Result<Self> {
        Self::new(args.resolve()?)
    }

    pub fn new(settings: ClientSettings) -> anyhow::Result<Self> {
        let tls = tls_config_trusting(&settings.ca)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .user_agent(concat!("portcullis-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("cannot set up the HTTPS client")?;
        Ok(Self {
            addr: settings.addr,
            http,
            token: settings.token,
        })
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let response = self.send(self.request(reqwest::Method::GET, path)).await?;
        decode(response).await
    }

    pub async fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        let response = self
            .send(self.request(reqwest::Method::POST, path).json(body))
            .await?;
        decode(response).await
    }

    pub async fn patch<B: Serialize + ?Sized, T: DeserializeOwned>(
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
    pub async fn delete(&self, path: &str) -> anyhow::Result<()> {
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
            .map_err(|err| self.transport_error(err))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        let body = serde_json::from_slice::<ErrorBody>(&bytes).unwrap_or_else(|_| ErrorBody {
            error: "unexpected_response".into(),
            message: format!(
                "the controller answered {status} with an unexpected body: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
            ),
            field: None,
        });
        let mut err = ApiError {
            status: status.as_u16(),
            body,
        };
        if err.status == 401 && self.token.is_none() {
            err.body.message = format!(
                "{} (no token: set PORTCULLIS_TOKEN or log in)",
                err.body.message
            );
        }
        Err(err.into())
    }

    fn transport_error(&self, err: reqwest::Error) -> anyhow::Error {
        let cause = root_cause(&err);
        if err.is_timeout() {
            anyhow!(
                "the controller at {} did not answer in time ({cause})",
                self.addr
            )
        } else if err.is_connect() {
            let hint = if cause.contains("certificate") || cause.contains("Certificate") {
                "is PORTCULLIS_CA the CA file of this controller?"
            } else {
                "is it running? set PORTCULLIS_ADDR"
            };
            anyhow!(
                "cannot reach the controller at {}: {cause}; {hint}",
                self.addr
            )
        } else {
            anyhow!("request to the controller at {} failed: {cause}", self.addr)
        }
    }
}

/// The innermost error message, which names the real problem (refused, unknown issuer, ...).
fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut current = err;
    while let Some(next) = current.source() {
        current = next;
    }
    current.to_string()
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
pub fn tls_config_trusting(ca_file: &Path) -> anyhow::Result<rustls::ClientConfig> {
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
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("cannot set up TLS")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(config)
}

/// Percent-encodes one URL path segment (an id or a name), so `a/b` cannot change the path;
/// refuses the empty string, `.` and `..`, which URL parsing would fold away.
pub fn segment(text: &str) -> anyhow::Result<String> {
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
    use clap::Parser;

    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        client: ClientArgs,
    }

    fn parse(args: &[&str]) -> ClientArgs {
        let mut all = vec!["test"];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().client
    }

    #[test]
    fn flags_win_over_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("addr"), "https://file:1\n").unwrap();
        let args = parse(&[
            "--addr",
            "https://flag:9200/",
            "--ca",
            "/x/ca.pem",
            "--token",
            "t0k",
        ]);
        let settings = args.resolve_in(Some(dir.path())).unwrap();
        assert_eq!(settings.addr, "https://flag:9200");
        assert_eq!(settings.ca, PathBuf::from("/x/ca.pem"));
        assert_eq!(settings.token, Some("t0k".parse().unwrap()));
    }

    #[test]
    fn files_fill_in_what_flags_leave_out() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("addr"), "127.0.0.1:9200\n").unwrap();
        std::fs::write(dir.path().join("ca.pem"), "x").unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "secret-token\n").unwrap();
        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o600)).unwrap();
        let settings = parse(&[]).resolve_in(Some(dir.path())).unwrap();
        assert_eq!(settings.addr, "https://127.0.0.1:9200");
        assert_eq!(settings.ca, dir.path().join("ca.pem"));
        assert_eq!(settings.token, Some("secret-token".parse().unwrap()));

        std::fs::set_permissions(&token, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = parse(&[]).resolve_in(Some(dir.path())).unwrap_err();
        assert!(format!("{err:#}").contains("chmod 600"), "{err:#}");
    }

    #[test]
    fn missing_settings_say_what_to_set() {
        let dir = tempfile::tempdir().unwrap();
        let err = parse(&[]).resolve_in(Some(dir.path())).unwrap_err();
        assert!(err.to_string().contains("PORTCULLIS_ADDR"), "{err}");
        let err = parse(&["--addr", "https://a:1"])
            .resolve_in(None)
            .unwrap_err();
        assert!(err.to_string().contains("PORTCULLIS_CA"), "{err}");
        let settings = parse(&["--addr", "https://a:1", "--ca", "c"])
            .resolve_in(None)
            .unwrap();
        assert_eq!(settings.token, None);
        let err = parse(&["--addr", "http://a:1", "--ca", "c"])
            .resolve_in(None)
            .unwrap_err();
        assert!(err.to_string().contains("HTTPS"), "{err}");
    }

    #[test]
    fn token_never_shows() {
        let args = parse(&["--token", "hunter2"]);
        assert!(!format!("{args:?}").contains("hunter2"));
        let settings = parse(&["--addr", "https://a:1", "--ca", "c", "--token", "hunter2"])
            .resolve_in(None)
            .unwrap();
        assert!(!format!("{settings:?}").contains("hunter2"));
        assert_eq!(
            "hunter2".parse::<Token>().unwrap().to_string(),
            "<redacted>"
        );
        assert!("".parse::<Token>().is_err());
        assert!("a b".parse::<Token>().is_err());
    }

    #[test]
    fn api_errors_read_well() {
        let err = ApiError {
            status: 403,
            body: ErrorBody {
                error: "forbidden".into(),
                message: "you may not reach db".into(),
                field: None,
            },
        };
        assert_eq!(err.to_string(), "forbidden: you may not reach db");
        let err = ApiError {
            status: 400,
            body: ErrorBody {
                error: "invalid_request".into(),
                message: "bad address".into(),
                field: Some("address".into()),
            },
        };
        assert_eq!(
            err.to_string(),
            "bad address (HTTP 400, invalid_request) [field `address`]"
        );
    }

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
