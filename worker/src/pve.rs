//! The decisions of the Proxmox API proxy (issue 20): which requests a `proxmox-api` session
//! may send upstream, what the worker takes out of them, what it puts in, and the line each
//! request leaves in the session's record.
//!
//! Why a proxy that decides: the worker holds a Proxmox API token minted for the session and
//! sets it on every request, so whoever reaches the session's local end acts with the token.
//! The client must never pass its own credentials through (they would be someone else's, or
//! a way round the token's privileges), must not smuggle a second request past the checks
//! (ambiguous framing, absolute-form targets, upgrades), and must not use the token to hand
//! itself more rights (writes under `/api2/json/access/`: tokens, ACLs, users, passwords).
//!
//! Everything here is pure: [`vet`] takes a parsed request head and the session's [`Rules`]
//! and returns the head to send upstream ([`Vetted`]) or a [`Refusal`] (an HTTP status and a
//! sentence for the client and the audit). [`record_line`] turns a finished exchange into a
//! [`RequestRecord`] with every query value redacted and no body.
//!
//! What the caller (the worker's HTTP driver) must do around it:
//! - Parse the head with an HTTP/1.1 parser that refuses obsolete line folding (hyper and
//!   httparse do) and hand over `http::request::Parts`.
//! - On a [`Refusal`], answer `refusal.status` with `refusal.message` and close the
//!   connection (the body, if any, was not read, so the stream cannot be trusted for another
//!   request), and record the refusal.
//! - On [`Vetted`], send `vetted.into_request(body)` over HTTPS to the upstream the
//!   [`Upstream`] was built for, with the same framing the client used ([`Framing`]): the
//!   `Content-Length` or `Transfer-Encoding: chunked` header stays in the vetted head.
//!   [`vet`] checks a declared length against [`Rules::max_body`]; a chunked body's length is
//!   known only as it arrives, so the caller stops reading it past `max_body` and answers 413.
//! - Answer `Expect: 100-continue` itself (hyper's server does): [`vet`] strips `Expect`.
//! - After the response, call [`record_line`] with the client's method and target (the
//!   vetted `path_and_query`), the status and the body bytes each way.
//!
//! Invariants: the output head carries exactly one `Authorization` (the session's token,
//! marked sensitive so `Debug` prints no secret) and one `Host` (the upstream's), and none of
//! the client's credentials, hop-by-hop headers or the headers its `Connection` names; no
//! secret is ever in a [`Refusal`] or a [`RequestRecord`].

pub(crate) mod credential;
mod frames;
#[cfg(any(test, fuzzing))]
pub(crate) mod fuzz;
mod path;
mod record;
mod request;
mod serve;
mod upstream;

pub(crate) use serve::{serve, Connection};
pub use upstream::TrustError;

pub use record::{record_line, RequestRecord, REDACTED};
pub use request::{check_local_secret, vet};

use http::header::{HeaderMap, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};

/// The largest request body pveproxy accepts (pve-http-server 5.2.1): 512 KiB.
pub const MAX_BODY: u64 = 512 * 1024;

/// What a session's proxy lets through; one per session.
#[derive(Debug)]
pub struct Rules {
    /// Whether POST, PUT and DELETE under `/api2/json/access/` go through (default: no).
    pub allow_access_writes: bool,
    /// The largest request body, in bytes ([`MAX_BODY`] by default).
    pub max_body: u64,
    /// The secret the local listener requires, when it is a TCP port (a unix socket's 0600
    /// mode is its own check, so it has none).
    pub local_secret: Option<LocalSecret>,
    /// Where requests go and the token they carry.
    pub upstream: Upstream,
}

impl Rules {
    /// The defaults: no `/access/` writes, [`MAX_BODY`], no local secret.
    pub fn new(upstream: Upstream) -> Rules {
        Rules {
            allow_access_writes: false,
            max_body: MAX_BODY,
            local_secret: None,
            upstream,
        }
    }
}

/// The per-session secret a local TCP listener requires, known here only by its SHA-256 (the
/// grant's `lsh`). A request carries it in [`LOCAL_SECRET_HEADER`], or as the secret part of
/// `Authorization: PVEAPIToken=USER@REALM!NAME=SECRET` (what clients built for Proxmox tokens
/// send); its SHA-256 is compared in constant time, and both headers are stripped.
#[derive(Clone)]
pub struct LocalSecret {
    sha256: [u8; 32],
}

impl std::fmt::Debug for LocalSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LocalSecret(<sha256>)")
    }
}

/// The grant's `lsh` is not a hex SHA-256.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the session's local secret hash is not 64 hex characters (a SHA-256): the controller signed a malformed grant")]
pub struct LocalSecretError;

impl LocalSecret {
    /// From the grant's `lsh`: the hex SHA-256 of the secret.
    pub fn from_sha256_hex(lsh: &str) -> Result<LocalSecret, LocalSecretError> {
        let mut sha256 = [0u8; 32];
        hex::decode_to_slice(lsh, &mut sha256).map_err(|_| LocalSecretError)?;
        Ok(LocalSecret { sha256 })
    }

    /// For `secret` itself (tests and the fuzz target).
    pub fn of(secret: &str) -> LocalSecret {
        LocalSecret {
            sha256: portcullis_crypto::digest::sha256(secret.as_bytes()),
        }
    }

    /// Whether `candidate` is the secret: SHA-256 compared in constant time.
    fn matches(&self, candidate: &[u8]) -> bool {
        let digest = portcullis_crypto::digest::sha256(candidate);
        bool::from(subtle::ConstantTimeEq::ct_eq(&digest[..], &self.sha256[..]))
    }
}

/// The header that carries the local secret on its own (`x-portcullis-session-secret`).
pub const LOCAL_SECRET_HEADER: &str = portcullis_proto::pve::LOCAL_SECRET_HEADER;

/// The upstream Proxmox API: its `Host` and the `Authorization` carrying the session's token.
#[derive(Debug, Clone)]
pub struct Upstream {
    host: HeaderValue,
    /// `PVEAPIToken=USER@REALM!TOKENID=SECRET`, marked sensitive (its `Debug` is `Sensitive`).
    authorization: HeaderValue,
}

/// Why an [`Upstream`] could not be built. The token itself is never in the message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UpstreamError {
    #[error("the Proxmox API address {0:?} carries user information: give host and port only")]
    UserInfo(String),
    #[error("the Proxmox API token is not of the form USER@REALM!TOKENID=SECRET in printable ASCII: check what the controller minted")]
    Token,
}

impl Upstream {
    /// The upstream at `authority` (`host:port`, the `Host` every request carries) with
    /// `token` (`USER@REALM!TOKENID=SECRET`, as Proxmox's token API returns it joined).
    pub fn new(authority: &Authority, token: &SecretString) -> Result<Upstream, UpstreamError> {
        if authority.as_str().contains('@') {
            return Err(UpstreamError::UserInfo(authority.as_str().to_owned()));
        }
        let host = HeaderValue::from_str(authority.as_str())
            .map_err(|_| UpstreamError::UserInfo(authority.as_str().to_owned()))?;
        let token = token.expose_secret();
        let well_formed = token
            .split_once('=')
            .is_some_and(|(id, secret)| id.contains('@') && id.contains('!') && !secret.is_empty())
            && token.bytes().all(|b| b.is_ascii_graphic());
        if !well_formed {
            return Err(UpstreamError::Token);
        }
        let mut authorization = HeaderValue::from_str(&format!("PVEAPIToken={token}"))
            .map_err(|_| UpstreamError::Token)?;
        authorization.set_sensitive(true);
        Ok(Upstream {
            host,
            authorization,
        })
    }
}

/// A request head that may go upstream, rewritten: what to send, in origin form.
#[derive(Debug)]
pub struct Vetted {
    pub method: Method,
    /// The target as the client sent it (origin form, checked, not rewritten).
    pub path_and_query: PathAndQuery,
    /// The client's headers minus credentials and hop-by-hop ones, plus `Host` and the
    /// session's `Authorization`.
    pub headers: HeaderMap,
    pub framing: Framing,
}

impl Vetted {
    /// The request to send upstream (HTTP/1.1, origin-form target) with `body`.
    pub fn into_request<B>(self, body: B) -> http::Request<B> {
        let mut request = http::Request::new(body);
        *request.method_mut() = self.method;
        *request.uri_mut() = http::Uri::from(self.path_and_query);
        *request.version_mut() = http::Version::HTTP_11;
        *request.headers_mut() = self.headers;
        request
    }
}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No `Content-Length` and no `Transfer-Encoding`: no body.
    Empty,
    /// `Content-Length`, at most [`Rules::max_body`].
    Length(u64),
    /// `Transfer-Encoding: chunked`: the caller counts the bytes against the maximum.
    Chunked,
}

/// A request the proxy will not send: the status and sentence the client gets, which the
/// session's record keeps too. Never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{status}: {message}")]
pub struct Refusal {
    pub code: RefusalCode,
    pub status: StatusCode,
    pub message: String,
}

/// Which rule refused a request (a bounded set, for counting and for tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// The local listener's secret was missing, repeated or wrong.
    LocalSecret,
    /// An HTTP version other than 1.0 and 1.1.
    Version,
    /// A method outside GET, HEAD, POST, PUT, DELETE (CONNECT and OPTIONS included).
    Method,
    /// An absolute-form, authority-form or asterisk-form target.
    TargetForm,
    /// A path outside `/api2/json/`.
    OutsideApi,
    /// A path with dot segments, empty segments or encoded separators.
    AmbiguousPath,
    /// A write under `/api2/json/access/` without the policy's leave.
    AccessWrite,
    /// A header value with control or non-ASCII bytes.
    HeaderValue,
    /// An `Upgrade` request (WebSocket, h2c).
    Upgrade,
    /// A method-override header (it would turn a read into a write upstream).
    MethodOverride,
    /// Ambiguous body framing: CL and TE, several CL or TE, a TE other than chunked, a bad
    /// CL, or a `Connection` that names either.
    Framing,
    /// A declared body larger than the maximum.
    BodyTooLarge,
}

impl RefusalCode {
    /// The rule's name in snake case, as records and audit events carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::LocalSecret => "local_secret",
            RefusalCode::Version => "version",
            RefusalCode::Method => "method",
            RefusalCode::TargetForm => "target_form",
            RefusalCode::OutsideApi => "outside_api",
            RefusalCode::AmbiguousPath => "ambiguous_path",
            RefusalCode::AccessWrite => "access_write",
            RefusalCode::HeaderValue => "header_value",
            RefusalCode::Upgrade => "upgrade",
            RefusalCode::MethodOverride => "method_override",
            RefusalCode::Framing => "framing",
            RefusalCode::BodyTooLarge => "body_too_large",
        }
    }
}

impl Refusal {
    fn new(code: RefusalCode, status: StatusCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            status,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests;
