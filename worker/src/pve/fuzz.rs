//! Raw request bytes through [`vet`] and [`record_line`], for the `pve_request` fuzz target
//! and the unit tests: [`parse_head`] reads a head as an HTTP/1.1 server would (httparse,
//! the parser under hyper), [`assert_clean`] is what no vetted head may break.

use std::sync::OnceLock;

use http::header;
use http::request::Parts;
use http::{Method, StatusCode, Version};
use secrecy::SecretString;

use super::{record_line, vet, LocalSecret, Rules, Upstream, Vetted, REDACTED};

/// The token the fuzz rules inject.
pub(crate) const TOKEN: &str = "svc@pve!s_0123=9a1b2c3d-0000-4000-8000-00000000beef";
/// The local listener's secret header and secret in the fuzz rules.
pub(crate) const SECRET_HEADER: &str = super::LOCAL_SECRET_HEADER;
pub(crate) const SECRET: &str = "local-5ecret-0f-the-5ession";

/// A request head from raw bytes, as an HTTP/1.1 server's parser reads it; `None` when the
/// parser refuses it (obsolete line folding among others) or it is incomplete.
pub(crate) fn parse_head(bytes: &[u8]) -> Option<Parts> {
    let mut headers = [httparse::EMPTY_HEADER; 64];
    let mut request = httparse::Request::new(&mut headers);
    let httparse::Status::Complete(_) = request.parse(bytes).ok()? else {
        return None;
    };
    let version = match request.version? {
        0 => Version::HTTP_10,
        _ => Version::HTTP_11,
    };
    let mut builder = http::Request::builder()
        .method(request.method?)
        .uri(request.path?)
        .version(version);
    for h in request.headers.iter() {
        builder = builder.header(h.name, h.value);
    }
    builder.body(()).ok().map(|r| r.into_parts().0)
}

/// The rules the fuzz target uses: `/access/` writes allowed or not, a local secret or not.
pub(crate) fn rules(allow_access_writes: bool, local_secret: bool) -> Rules {
    static UPSTREAM: OnceLock<Option<Upstream>> = OnceLock::new();
    let upstream = UPSTREAM
        .get_or_init(|| {
            let authority = http::uri::Authority::from_static("pve1.lab.example:8006");
            Upstream::new(&authority, &SecretString::from(TOKEN)).ok()
        })
        .clone();
    let Some(upstream) = upstream else {
        panic!("the fuzz rules' upstream does not build");
    };
    let mut rules = Rules::new(upstream);
    rules.allow_access_writes = allow_access_writes;
    rules.local_secret = local_secret.then(|| LocalSecret::of(SECRET));
    rules
}

/// What every vetted head holds: one `Authorization` (the session's), one `Host` (the
/// upstream's), none of the client's credentials or hop-by-hop headers, the local secret's
/// header gone, a path under `/api2/json/`.
pub(crate) fn assert_clean(vetted: &Vetted, rules: &Rules) {
    let headers = &vetted.headers;
    for name in [
        "cookie",
        "proxy-authorization",
        "csrfpreventiontoken",
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "upgrade",
        "expect",
    ] {
        assert!(!headers.contains_key(name), "{name} was forwarded");
    }
    assert!(
        !headers.contains_key(SECRET_HEADER),
        "the local secret was forwarded"
    );
    let auth: Vec<_> = headers.get_all(header::AUTHORIZATION).iter().collect();
    assert_eq!(auth, [&rules.upstream.authorization], "Authorization");
    assert!(auth[0].is_sensitive(), "the token is not marked sensitive");
    let host: Vec<_> = headers.get_all(header::HOST).iter().collect();
    assert_eq!(host, [&rules.upstream.host], "Host");
    assert!(vetted.path_and_query.as_str().starts_with("/api2/json/"));
    // The token's own header prints no secret (a client may send the same text elsewhere).
    let secret = TOKEN.split_once('=').map_or(TOKEN, |(_, secret)| secret);
    assert!(!format!("{:?}", auth[0]).contains(secret));
}

/// The `pve_request` fuzz target: the first byte picks the rules (bit 0: `/access/` writes
/// allowed, bit 1: a local secret), the rest is a request head. No input may panic [`vet`],
/// [`record_line`] or the raw head reader (whole, and fed in pieces); a vetted head must be
/// clean; a record keeps no query value.
pub(crate) fn request(data: &[u8]) {
    let Some((&mode, bytes)) = data.split_first() else {
        return;
    };
    let verdicts = std::sync::Arc::new(super::frames::Verdicts::default());
    let mut scanner = super::frames::Scanner::new(verdicts);
    for piece in bytes.chunks(usize::from(mode >> 2).max(1)) {
        scanner.feed(piece);
    }
    let rules = rules(mode & 1 == 1, mode & 2 == 2);
    let Some(head) = parse_head(bytes) else {
        return;
    };
    match vet(&head, &rules) {
        Ok(vetted) => {
            let writes = !matches!(vetted.method, Method::GET | Method::HEAD);
            if writes && !rules.allow_access_writes {
                let area = vetted.path_and_query.path().split('/').nth(3);
                assert!(!area.is_some_and(|a| a.eq_ignore_ascii_case("access")));
            }
            assert_clean(&vetted, &rules);
        }
        Err(refusal) => {
            assert!(refusal.status.is_client_error() || refusal.status.is_server_error());
            assert!(!refusal.message.contains(SECRET));
        }
    }
    let target = head
        .uri
        .path_and_query()
        .map_or("", http::uri::PathAndQuery::as_str);
    let record = record_line(&head.method, target, StatusCode::OK, 0, 0);
    if let Some((_, query)) = record.path.split_once('?') {
        for pair in query.split('&') {
            let value = pair.split_once('=').map(|(_, v)| v);
            assert!(
                value == Some(REDACTED) || pair == "...",
                "a query value was kept: {pair:?}"
            );
        }
    }
}
