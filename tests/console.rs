//! The web console against a real controller (`portcullis dev`) with a real HTTP client:
//! `curl` with a cookie jar over HTTPS with dev's CA logs a local user in with password and
//! TOTP (codes from Debian's `oathtool`), reads the sessions page (CSP present; a CLI
//! session with its decision, the zone and time filters), is refused a form without the CSRF
//! token, and logs out; `/v1` refuses the cookie.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use common::console::{enrol, stack, PASSWORD};
use common::dev::Dev;
use common::totp::{oathtool, unix_now};

/// What one curl request answered.
struct Answer {
    status: u16,
    headers: String,
    body: String,
}

/// `curl` with the cookie jar `jar`, as a browser's same-origin request would be sent
/// (`Origin` set on POSTs); `form` fields url-encoded.
fn browser(dev: &Dev, jar: &Path, method: &str, path: &str, form: &[(&str, &str)]) -> Answer {
    let dir = tempfile::tempdir().unwrap();
    let headers = dir.path().join("headers");
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-o", "-", "-D"])
        .arg(&headers)
        .arg("--cacert")
        .arg(dev.var("PORTCULLIS_CA"))
        .arg("-c")
        .arg(jar)
        .arg("-b")
        .arg(jar)
        .args(["-X", method]);
    if method == "POST" {
        cmd.arg("-H").arg(format!("Origin: {}", dev.api()));
        for (name, value) in form {
            cmd.arg("--data-urlencode").arg(format!("{name}={value}"));
        }
    }
    let out = cmd.arg(format!("{}{path}", dev.api())).output().unwrap();
    assert!(
        out.status.success(),
        "curl: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let headers = std::fs::read_to_string(&headers).unwrap().to_lowercase();
    let status = headers
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&out.stdout).into_owned(),
    }
}

fn csrf(page: &str) -> String {
    let marker = "name=\"csrf_token\" value=\"";
    let start = page.find(marker).expect("a form with a CSRF token") + marker.len();
    let len = page[start..].find('"').unwrap();
    page[start..start + len].to_owned()
}

#[test]
fn a_browser_logs_in_with_totp_reads_the_sessions_page_and_logs_out() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = stack(dir.path(), "");
    let (secret, enrolled_step) = enrol(&dev);
    let jar = dir.path().join("cookies");

    let form = browser(&dev, &jar, "GET", "/console/login", &[]);
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form
        .headers
        .contains("content-security-policy: default-src 'none'"));

    // A code of a later step than the enrolment's (within the accepted skew).
    let step = (enrolled_step + 1).max(unix_now() / 30);
    let code = oathtool(&secret, step * 30);
    let login = browser(
        &dev,
        &jar,
        "POST",
        "/console/login",
        &[
            ("username", "ada"),
            ("password", PASSWORD),
            ("totp_code", &code),
        ],
    );
    assert_eq!(login.status, 303, "{}", login.body);
    assert!(
        login
            .headers
            .contains("set-cookie: __host-portcullis-console=",)
            && login
                .headers
                .contains("; path=/; secure; httponly; samesite=strict"),
        "{}",
        login.headers
    );
    let jar_text = std::fs::read_to_string(&jar).unwrap();
    assert!(jar_text.contains("__Host-portcullis-console"), "{jar_text}");

    let page = browser(&dev, &jar, "GET", "/console/sessions", &[]);
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("<h1>Sessions</h1>") && page.body.contains(">ada<"));
    assert!(page.headers.contains(
        "content-security-policy: default-src 'none'; style-src 'self'; script-src 'self'; \
         img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ));
    assert!(page.headers.contains("cache-control: no-store"));

    // A session through the CLI (dev's admin token) shows with the matrix cell and role that
    // allowed it, and the zone and time filters select it or not.
    let mut connect = dev
        .cli()
        .args(["connect", "echo", "--stdio"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    connect.stdin.take().unwrap().write_all(b"x").unwrap();
    let echoed = connect.wait_with_output().unwrap();
    assert_eq!(echoed.stdout, b"x", "{echoed:?}");
    for (query, shown) in [
        ("?zone=LOCAL&since=1h", true),
        ("?zone=LOCAL&until=1h", false),
        ("?since=2000-01-01T00:00&until=2000-01-02T00:00", false),
    ] {
        let page = browser(&dev, &jar, "GET", &format!("/console/sessions{query}"), &[]);
        assert_eq!(page.status, 200, "{query}: {}", page.body);
        assert_eq!(
            page.body
                .contains("LOCAL → LOCAL</span> <span class=\"roles\">role admin"),
            shown,
            "{query}: {}",
            page.body
        );
    }
    let bad = browser(&dev, &jar, "GET", "/console/sessions?since=soon", &[]);
    assert_eq!(bad.status, 400, "{}", bad.body);

    // The API does not take the cookie.
    let api = browser(&dev, &jar, "GET", "/v1/sessions", &[]);
    assert_eq!(api.status, 401, "{}", api.body);

    // A form without the CSRF token is refused; with it, logout ends the session.
    let refused = browser(&dev, &jar, "POST", "/console/logout", &[]);
    assert_eq!(refused.status, 403, "{}", refused.body);
    let out = browser(
        &dev,
        &jar,
        "POST",
        "/console/logout",
        &[("csrf_token", &csrf(&page.body))],
    );
    assert_eq!(out.status, 303, "{}", out.body);
    let after = browser(&dev, &jar, "GET", "/console/sessions", &[]);
    assert_eq!(after.status, 303);
    assert!(after.headers.contains("location: /console/login"));
    dev.stop();
}
