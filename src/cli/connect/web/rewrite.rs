//! What `connect http` changes in the HTTP it carries, as pure functions: the upstream it
//! speaks to (scheme, Host, the name its certificate is checked for), the request headers
//! that name the local URL (`Host`, `Origin`, `Referer`), and a response's `Location` that
//! names the target (rewritten back to the local URL, so redirects stay on the tunnel) and
//! its cookies' `Domain` (dropped: the browser keeps them for the local URL's host).

use anyhow::{bail, Context as _};
use http::header::{HeaderMap, HeaderValue, HOST, LOCATION, ORIGIN, REFERER, SET_COOKIE};
use url::Url;

use super::args::Scheme;

/// The two ends of the proxy, as origins (`scheme://authority`, no trailing slash).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Origins {
    /// What the browser uses: `https://localhost:PORT`.
    pub(super) local: String,
    /// What the target expects: `https://pve.lan:8006`.
    pub(super) upstream: String,
    /// The Host header sent to the target: `pve.lan:8006`.
    pub(super) host: String,
}

/// The scheme for a target at `address` (`HOST:PORT`): the one asked for, else https for
/// ports 8006 (Proxmox VE) and 443, else http.
pub(super) fn scheme_for(address: &str, asked: Option<Scheme>) -> Scheme {
    if let Some(scheme) = asked {
        return scheme;
    }
    match split_host_port(address).1 {
        Some(8006 | 443) => Scheme::Https,
        _ => Scheme::Http,
    }
}

/// `HOST:PORT`, `[V6]:PORT` or `HOST` into the host (without brackets) and the port.
pub(super) fn split_host_port(authority: &str) -> (&str, Option<u16>) {
    if let Some(rest) = authority.strip_prefix('[') {
        if let Some((host, tail)) = rest.split_once(']') {
            let port = tail.strip_prefix(':').and_then(|p| p.parse().ok());
            return (host, port);
        }
    }
    match authority.rsplit_once(':') {
        // A bare IPv6 address has several colons and no port.
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (authority, None),
    }
}

impl Origins {
    /// The origins of a proxy from `local` (e.g. `https://localhost:8443`) to a target
    /// whose Host is `host` (the target's address unless `--host-header` names another).
    pub(super) fn new(local: &str, scheme: Scheme, host: &str) -> anyhow::Result<Self> {
        let host = host.trim();
        if host.is_empty() || host.contains(['/', ' ', '@', '?', '#']) {
            bail!("{host:?} is not a host name for --host-header (e.g. pve.lan:8006)");
        }
        HeaderValue::from_str(host)
            .with_context(|| format!("{host:?} cannot be sent as a Host header"))?;
        let upstream = format!("{}://{host}", scheme.as_str());
        Url::parse(&upstream).with_context(|| format!("{host:?} is not a host name"))?;
        Ok(Self {
            local: local.trim_end_matches('/').to_owned(),
            upstream,
            host: host.to_owned(),
        })
    }

    /// The name the target's certificate is checked for: the Host without its port.
    pub(super) fn server_name(&self) -> &str {
        split_host_port(&self.host).0
    }

    /// Rewrites a request's headers for the target: `Host` always, `Origin` and `Referer`
    /// when they name the local URL.
    pub(super) fn rewrite_request(&self, headers: &mut HeaderMap) {
        if let Ok(host) = HeaderValue::from_str(&self.host) {
            headers.insert(HOST, host);
        }
        for name in [ORIGIN, REFERER] {
            let rewritten = headers
                .get(&name)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| replace_origin(v, &self.local, &self.upstream))
                .and_then(|v| HeaderValue::from_str(&v).ok());
            if let Some(value) = rewritten {
                headers.insert(name, value);
            }
        }
    }

    /// Rewrites a response's `Location` that points at the target back to the local URL, and
    /// drops the `Domain` of its cookies: a cookie for `pve.lan` would be refused by a browser
    /// on `localhost`, where a host-only cookie is kept (e.g. Proxmox's `PVEAuthCookie`).
    pub(super) fn rewrite_response(&self, headers: &mut HeaderMap) {
        let rewritten = headers
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| self.local_location(v))
            .and_then(|v| HeaderValue::from_str(&v).ok());
        if let Some(value) = rewritten {
            headers.insert(LOCATION, value);
        }
        if headers.contains_key(SET_COOKIE) {
            let cookies: Vec<HeaderValue> = headers
                .get_all(SET_COOKIE)
                .iter()
                .map(|v| {
                    v.to_str()
                        .ok()
                        .and_then(without_domain)
                        .and_then(|c| HeaderValue::from_str(&c).ok())
                        .unwrap_or_else(|| v.clone())
                })
                .collect();
            headers.remove(SET_COOKIE);
            for cookie in cookies {
                headers.append(SET_COOKIE, cookie);
            }
        }
    }

    /// A `Location` on the target's origin (absolute, or scheme-relative `//host/...`), as
    /// the same path on the local URL; `None` for anything else (a relative path stays on
    /// the tunnel by itself; another site is left alone).
    fn local_location(&self, location: &str) -> Option<String> {
        if location.starts_with('/') && !location.starts_with("//") {
            return None;
        }
        let base = Url::parse(&format!("{}/", self.upstream)).ok()?;
        let url = base.join(location).ok()?;
        if url.origin() != base.origin() {
            return None;
        }
        let mut out = format!("{}{}", self.local, url.path());
        if let Some(query) = url.query() {
            out.push('?');
            out.push_str(query);
        }
        if let Some(fragment) = url.fragment() {
            out.push('#');
            out.push_str(fragment);
        }
        Some(out)
    }
}

/// A `Set-Cookie` value without its `Domain` attribute(s); `None` when it has none.
fn without_domain(cookie: &str) -> Option<String> {
    let mut parts = cookie.split(';');
    let pair = parts.next()?;
    let mut dropped = false;
    let mut out = pair.to_owned();
    for attribute in parts {
        let name = attribute.split('=').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("domain") {
            dropped = true;
        } else {
            out.push(';');
            out.push_str(attribute);
        }
    }
    dropped.then_some(out)
}

/// `value` with its leading `from` origin replaced by `to`, when it starts with exactly that
/// origin (followed by nothing, a path, a query or a fragment); compared without regard to
/// case, as host names are.
fn replace_origin(value: &str, from: &str, to: &str) -> Option<String> {
    let head = value.get(..from.len())?;
    if !head.eq_ignore_ascii_case(from) {
        return None;
    }
    let rest = &value[from.len()..];
    if rest.is_empty() || rest.starts_with(['/', '?', '#']) {
        Some(format!("{to}{rest}"))
    } else {
        None // `https://localhost:84433` is not `https://localhost:8443`.
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn origins() -> Origins {
        Origins::new("https://localhost:8443/", Scheme::Https, "pve.lan:8006").unwrap()
    }

    #[test]
    fn the_scheme_follows_the_port_unless_asked() {
        assert_eq!(scheme_for("pve.lan:8006", None), Scheme::Https);
        assert_eq!(scheme_for("10.0.0.5:443", None), Scheme::Https);
        assert_eq!(scheme_for("grafana.lan:3000", None), Scheme::Http);
        assert_eq!(scheme_for("[fd00::5]:8006", None), Scheme::Https);
        assert_eq!(
            scheme_for("grafana.lan:3000", Some(Scheme::Https)),
            Scheme::Https
        );
        assert_eq!(scheme_for("pve.lan:8006", Some(Scheme::Http)), Scheme::Http);
    }

    #[test]
    fn host_and_port_are_split_for_names_and_addresses() {
        assert_eq!(split_host_port("pve.lan:8006"), ("pve.lan", Some(8006)));
        assert_eq!(split_host_port("[fd00::5]:8006"), ("fd00::5", Some(8006)));
        assert_eq!(split_host_port("grafana.lan"), ("grafana.lan", None));
        assert_eq!(split_host_port("fd00::5"), ("fd00::5", None));
        assert_eq!(origins().server_name(), "pve.lan");
    }

    #[test]
    fn host_is_the_targets_and_local_origin_and_referer_are_rewritten() {
        let mut headers = HeaderMap::new();
        headers.insert(HOST, HeaderValue::from_static("localhost:8443"));
        headers.insert(ORIGIN, HeaderValue::from_static("https://localhost:8443"));
        headers.insert(
            REFERER,
            HeaderValue::from_static("https://LOCALHOST:8443/#v1:0:18:4"),
        );
        origins().rewrite_request(&mut headers);
        assert_eq!(headers[HOST], "pve.lan:8006");
        assert_eq!(headers[ORIGIN], "https://pve.lan:8006");
        assert_eq!(headers[REFERER], "https://pve.lan:8006/#v1:0:18:4");

        // Another site's origin, or a longer port, is not ours: left alone.
        let mut headers = HeaderMap::new();
        headers.insert(ORIGIN, HeaderValue::from_static("https://evil.example"));
        headers.insert(
            REFERER,
            HeaderValue::from_static("https://localhost:84433/x"),
        );
        origins().rewrite_request(&mut headers);
        assert_eq!(headers[HOST], "pve.lan:8006", "Host is always set");
        assert_eq!(headers[ORIGIN], "https://evil.example");
        assert_eq!(headers[REFERER], "https://localhost:84433/x");
    }

    #[test]
    fn the_targets_cookies_lose_their_domain_and_keep_everything_else() {
        let mut headers = HeaderMap::new();
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static(
                "PVEAuthCookie=PVE%3Aroot; Domain=pve.lan; Path=/; Secure; SameSite=Strict",
            ),
        );
        headers.append(
            SET_COOKIE,
            HeaderValue::from_static("grafana_session=abc; path=/; DOMAIN=.lan; HttpOnly"),
        );
        headers.append(SET_COOKIE, HeaderValue::from_static("plain=1; Path=/"));
        headers.insert(LOCATION, HeaderValue::from_static("/"));
        origins().rewrite_response(&mut headers);
        let cookies: Vec<_> = headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect();
        assert_eq!(
            cookies,
            [
                "PVEAuthCookie=PVE%3Aroot; Path=/; Secure; SameSite=Strict",
                "grafana_session=abc; path=/; HttpOnly",
                "plain=1; Path=/",
            ]
        );
        assert_eq!(
            without_domain("a=b; Domainx=1"),
            None,
            "only the Domain attribute"
        );
    }

    #[test]
    fn a_redirect_to_the_target_stays_on_the_tunnel() {
        let o = origins();
        let rewrite = |location: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(LOCATION, HeaderValue::from_static(location));
            o.rewrite_response(&mut headers);
            headers[LOCATION].to_str().unwrap().to_owned()
        };
        assert_eq!(
            rewrite("https://pve.lan:8006/login?next=%2F#top"),
            "https://localhost:8443/login?next=%2F#top"
        );
        assert_eq!(rewrite("HTTPS://PVE.LAN:8006"), "https://localhost:8443/");
        assert_eq!(rewrite("//pve.lan:8006/x"), "https://localhost:8443/x");
        // Relative paths need nothing; other origins (scheme, host or port) are left alone.
        assert_eq!(rewrite("/login"), "/login");
        assert_eq!(rewrite("http://pve.lan:8006/x"), "http://pve.lan:8006/x");
        assert_eq!(rewrite("https://pve.lan/x"), "https://pve.lan/x");
        assert_eq!(rewrite("https://sso.lan/auth"), "https://sso.lan/auth");
    }

    #[test]
    fn a_default_port_is_the_same_origin_with_or_without_it() {
        let o = Origins::new("https://localhost:9000", Scheme::Https, "grafana.lan").unwrap();
        assert_eq!(
            o.local_location("https://grafana.lan:443/d/x").unwrap(),
            "https://localhost:9000/d/x"
        );
        assert_eq!(o.server_name(), "grafana.lan");
    }

    #[test]
    fn a_host_header_that_is_not_a_host_is_refused() {
        for bad in ["", "a/b", "user@pve.lan", "pve lan", "pve.lan#x"] {
            assert!(
                Origins::new("https://localhost:1", Scheme::Https, bad).is_err(),
                "{bad:?}"
            );
        }
    }
}
