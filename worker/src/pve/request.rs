//! [`vet`]: the checks on a request head, in order, then the rewrite of its headers.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::request::Parts;
use http::{Method, StatusCode, Version};

use super::path::api_path;
use super::{Framing, LocalSecret, Refusal, RefusalCode, Rules, Vetted};

/// Headers never forwarded: the client's credentials (the local secret's header among them,
/// whether or not the listener requires one), the hop-by-hop headers (RFC 9110 7.6.1), `Host`
/// (replaced by the upstream's) and `Expect` (answered locally).
const STRIPPED: [&str; 13] = [
    "authorization",
    super::LOCAL_SECRET_HEADER,
    "cookie",
    "proxy-authorization",
    "csrfpreventiontoken",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "host",
    "expect",
];

/// Headers some servers read as the method: a GET that carries one could write upstream.
const METHOD_OVERRIDES: [&str; 3] = [
    "x-http-method-override",
    "x-http-method",
    "x-method-override",
];

/// The head to send upstream, or why not (see the module doc of [`super`]).
pub fn vet(head: &Parts, rules: &Rules) -> Result<Vetted, Refusal> {
    // The local credential first: a client without it learns nothing about the rules.
    if let Some(secret) = &rules.local_secret {
        check_local_secret(&head.headers, secret)?;
    }
    if head.version != Version::HTTP_11 && head.version != Version::HTTP_10 {
        return Err(Refusal::new(
            RefusalCode::Version,
            StatusCode::HTTP_VERSION_NOT_SUPPORTED,
            "this proxy speaks HTTP/1.1 only",
        ));
    }
    check_method(&head.method)?;
    let path_and_query = match (head.uri.scheme(), head.uri.authority(), head.uri.path_and_query()) {
        (None, None, Some(pq)) if pq.as_str().starts_with('/') => pq.clone(),
        _ => {
            return Err(Refusal::new(
                RefusalCode::TargetForm,
                StatusCode::BAD_REQUEST,
                "send the request target as a path (origin form, /api2/json/...), not a full URL or host:port",
            ))
        }
    };
    let path = api_path(path_and_query.path())?;
    if path.access && is_write(&head.method) && !rules.allow_access_writes {
        return Err(Refusal::new(
            RefusalCode::AccessWrite,
            StatusCode::FORBIDDEN,
            format!(
                "{} under /api2/json/access/ (tokens, ACLs, users, passwords, TFA) is not allowed for this session: ask an admin for a policy that allows access writes",
                head.method
            ),
        ));
    }
    check_values(&head.headers)?;
    if head.headers.contains_key(header::UPGRADE) {
        return Err(Refusal::new(
            RefusalCode::Upgrade,
            StatusCode::BAD_REQUEST,
            "this proxy does not upgrade connections (WebSocket, h2c): the Proxmox API needs none",
        ));
    }
    if let Some(name) = METHOD_OVERRIDES
        .iter()
        .find(|name| head.headers.contains_key(**name))
    {
        return Err(Refusal::new(
            RefusalCode::MethodOverride,
            StatusCode::BAD_REQUEST,
            format!("the header {name} is not allowed: send the method itself"),
        ));
    }
    let framing = framing(&head.headers, head.version, rules.max_body)?;
    let named = connection_named(&head.headers)?;
    let mut headers = HeaderMap::with_capacity(head.headers.len() + 2);
    for (name, value) in &head.headers {
        if STRIPPED.contains(&name.as_str()) || named.contains(name) {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    headers.insert(header::HOST, rules.upstream.host.clone());
    headers.insert(header::AUTHORIZATION, rules.upstream.authorization.clone());
    Ok(Vetted {
        method: head.method.clone(),
        path_and_query,
        headers,
        framing,
    })
}

/// The local listener's secret: in one [`super::LOCAL_SECRET_HEADER`] when the request has
/// that header, else as the secret part of its one `Authorization: PVEAPIToken=...=SECRET`.
/// Anything else (none, several, a wrong one) is refused with 401.
pub fn check_local_secret(headers: &HeaderMap, secret: &LocalSecret) -> Result<(), Refusal> {
    let mut own = headers.get_all(super::LOCAL_SECRET_HEADER).iter();
    let candidate = match own.next() {
        Some(value) => own.next().is_none().then_some(value.as_bytes()),
        None => {
            let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
            match (authorizations.next(), authorizations.next()) {
                (Some(value), None) => token_secret(value.as_bytes()),
                _ => None,
            }
        }
    };
    if candidate.is_some_and(|c| !c.is_empty() && secret.matches(c)) {
        Ok(())
    } else {
        Err(Refusal::new(
            RefusalCode::LocalSecret,
            StatusCode::UNAUTHORIZED,
            format!(
                "this local listener needs the session's secret, in one {} header or as the secret of Authorization: PVEAPIToken=...=SECRET: run the client through `portcullis connect --exec`, which sets both",
                super::LOCAL_SECRET_HEADER
            ),
        ))
    }
}

/// The secret part of `PVEAPIToken=USER@REALM!NAME=SECRET`: after its last `=`.
fn token_secret(value: &[u8]) -> Option<&[u8]> {
    const SCHEME: &[u8] = b"PVEAPIToken=";
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return None;
    }
    let rest = &value[SCHEME.len()..];
    let at = rest.iter().rposition(|b| *b == b'=')?;
    Some(&rest[at + 1..])
}

/// GET, HEAD, POST, PUT and DELETE: what the Proxmox API serves. OPTIONS is a browser's CORS
/// preflight, which no API client sends; CONNECT, TRACE, PATCH and the rest are refused.
fn check_method(method: &Method) -> Result<(), Refusal> {
    if [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
    ]
    .contains(method)
    {
        return Ok(());
    }
    Err(Refusal::new(
        RefusalCode::Method,
        StatusCode::METHOD_NOT_ALLOWED,
        format!("the method {method} is not allowed: the Proxmox API takes GET, HEAD, POST, PUT and DELETE"),
    ))
}

fn is_write(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD)
}

/// Header values in printable ASCII and spaces only: no control bytes (tab included), no
/// obs-text, which parsers read differently.
fn check_values(headers: &HeaderMap) -> Result<(), Refusal> {
    for (name, value) in headers {
        if !value
            .as_bytes()
            .iter()
            .all(|b| *b == b' ' || b.is_ascii_graphic())
        {
            return Err(Refusal::new(
                RefusalCode::HeaderValue,
                StatusCode::BAD_REQUEST,
                format!("the value of the header {name} has control or non-ASCII bytes"),
            ));
        }
    }
    Ok(())
}

/// The body's framing, refused when two readers could disagree on where the body ends.
fn framing(headers: &HeaderMap, version: Version, max_body: u64) -> Result<Framing, Refusal> {
    let refuse = |message: &str| {
        Err(Refusal::new(
            RefusalCode::Framing,
            StatusCode::BAD_REQUEST,
            format!("{message}: send one Content-Length or Transfer-Encoding: chunked"),
        ))
    };
    let lengths: Vec<&HeaderValue> = headers.get_all(header::CONTENT_LENGTH).iter().collect();
    let codings: Vec<&HeaderValue> = headers.get_all(header::TRANSFER_ENCODING).iter().collect();
    match (lengths.as_slice(), codings.as_slice()) {
        ([], []) => Ok(Framing::Empty),
        ([_, ..], [_, ..]) => refuse("both Content-Length and Transfer-Encoding"),
        ([_, _, ..], []) => refuse("several Content-Length headers"),
        ([], [_, _, ..]) => refuse("several Transfer-Encoding headers"),
        ([length], []) => {
            let text = length.as_bytes();
            let parsed =
                (!text.is_empty() && text.len() <= 19 && text.iter().all(u8::is_ascii_digit))
                    .then(|| std::str::from_utf8(text).ok()?.parse::<u64>().ok())
                    .flatten();
            match parsed {
                None => refuse("a Content-Length that is not a decimal number"),
                Some(n) if n > max_body => Err(Refusal::new(
                    RefusalCode::BodyTooLarge,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a body of {n} bytes is over this proxy's limit of {max_body}: the Proxmox API takes up to 512 KiB"),
                )),
                Some(n) => Ok(Framing::Length(n)),
            }
        }
        ([], [coding]) => {
            if version != Version::HTTP_11 {
                refuse("Transfer-Encoding in an HTTP/1.0 request")
            } else if coding.as_bytes().eq_ignore_ascii_case(b"chunked") {
                Ok(Framing::Chunked)
            } else {
                refuse("a Transfer-Encoding other than exactly chunked")
            }
        }
    }
}

/// The headers `Connection` names, to be stripped; naming a framing header is refused (the
/// stripping would change where the body ends).
fn connection_named(headers: &HeaderMap) -> Result<Vec<HeaderName>, Refusal> {
    let mut named = Vec::new();
    for value in headers.get_all(header::CONNECTION) {
        // check_values has passed: the value is ASCII.
        let text = String::from_utf8_lossy(value.as_bytes());
        for token in text.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let Ok(name) = HeaderName::from_bytes(token.as_bytes()) else {
                return Err(Refusal::new(
                    RefusalCode::Framing,
                    StatusCode::BAD_REQUEST,
                    "the Connection header names something that is not a header name",
                ));
            };
            if name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING {
                return Err(Refusal::new(
                    RefusalCode::Framing,
                    StatusCode::BAD_REQUEST,
                    format!("the Connection header names {name}, which frames the body: remove it from Connection"),
                ));
            }
            named.push(name);
        }
    }
    Ok(named)
}
