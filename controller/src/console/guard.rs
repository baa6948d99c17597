//! The checks of every state-changing console request, pure: the request must come from
//! the console's own origin (`Origin`, `Sec-Fetch-Site`) and carry the session's CSRF token.

use axum::http::{header, HeaderMap};

use crate::secret::constant_time_eq;

/// Why a request is not from the console's own origin (shown and audited).
pub(crate) fn cross_site(headers: &HeaderMap) -> Option<&'static str> {
    let fetch_site = headers
        .get("sec-fetch-site")
        .map(|v| v.to_str().unwrap_or(""));
    let origin = headers
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or(""));
    if fetch_site.is_none() && origin.is_none() {
        return Some("neither Origin nor Sec-Fetch-Site: the request's origin is unknown");
    }
    if fetch_site.is_some_and(|site| site != "same-origin") {
        return Some("Sec-Fetch-Site is not same-origin");
    }
    if let Some(origin) = origin {
        let host = headers
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let own = format!("https://{host}");
        if host.is_empty() || !origin.eq_ignore_ascii_case(&own) {
            return Some("Origin is not the controller's own");
        }
    }
    None
}

/// Whether the form's CSRF token is the session's (compared in constant time).
pub(crate) fn csrf_ok(session: &str, given: Option<&str>) -> bool {
    given.is_some_and(|given| constant_time_eq(given.as_bytes(), session.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(*name, value.parse().unwrap_or_else(|_| unreachable!()));
        }
        map
    }

    #[test]
    fn only_the_own_origin_passes() {
        let host = ("host", "ctl.example:8443");
        assert_eq!(
            cross_site(&headers(&[host, ("origin", "https://ctl.example:8443")])),
            None
        );
        assert_eq!(
            cross_site(&headers(&[host, ("sec-fetch-site", "same-origin")])),
            None
        );
        for bad in [
            headers(&[host]),
            headers(&[host, ("origin", "https://evil.example")]),
            headers(&[host, ("origin", "http://ctl.example:8443")]),
            headers(&[host, ("origin", "null")]),
            headers(&[host, ("sec-fetch-site", "cross-site")]),
            headers(&[host, ("sec-fetch-site", "same-site")]),
            headers(&[
                host,
                ("sec-fetch-site", "same-origin"),
                ("origin", "https://evil.example"),
            ]),
            headers(&[("origin", "https://")]),
        ] {
            assert!(cross_site(&bad).is_some(), "{bad:?}");
        }
    }

    #[test]
    fn csrf_token_must_match() {
        assert!(csrf_ok("abc", Some("abc")));
        assert!(!csrf_ok("abc", Some("abd")));
        assert!(!csrf_ok("abc", Some("")));
        assert!(!csrf_ok("abc", None));
    }
}
