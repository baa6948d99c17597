//! The real-browser tier's harness (tests/common/browser.rs, tests/browser/driver.mjs) proved
//! on the HTML the controller serves today: an OIDC login in Debian's chromium through the real
//! OpenID provider's form to the controller's callback page, and the callback's failure page.
//! Each page: its text, its Content-Security-Policy (enforced: a fetch from the page is
//! refused), no console errors, no serious or critical axe-core violation, a PNG screenshot;
//! the provider's error text rendered as text, never as markup. The controller serves the
//! certificate its internal CA issues (ECDSA P-256, no `[api] tls_cert_file`); only that
//! certificate is trusted (pinned by its key) and no name but 127.0.0.1 resolves. At the end
//! no chromium process outlives the browser.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;
use std::time::Instant;

use common::browser::{Browser, Fetched, Response};
use common::dev::{curl, Dev};
use common::oidc::{dev_with_provider, sign_in};

/// The CSP of every page in controller/src/api/oidc_pages.rs.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// Starts a code-mode login through the API (as a CLI on another machine would) with a secret
/// of the test's own; its reply (login_id, authorization_url).
fn api_start(dev: &Dev, secret: &str) -> serde_json::Value {
    use base64::Engine as _;
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(portcullis_crypto::digest::sha256(secret.as_bytes()));
    let body = serde_json::json!({"mode": "code", "secret_hash": hash}).to_string();
    let (code, text) = curl(dev, "POST", "/v1/auth/oidc/start", None, Some(&body));
    assert_eq!(code, 201, "{text}");
    serde_json::from_str(&text).unwrap()
}

/// What every controller page must pass in the browser: its CSP, a clean console, axe, and a
/// screenshot that is a PNG.
fn check_page(browser: &mut Browser, response: &Response, name: &str) {
    assert_eq!(
        response.header("content-security-policy"),
        Some(PAGE_CSP),
        "{response:?}"
    );
    assert_eq!(
        response.header("cache-control"),
        Some("no-store"),
        "{response:?}"
    );
    let serious = browser.axe_serious();
    assert!(serious.is_empty(), "axe on the {name} page: {serious:#?}");
    let problems = browser.console_problems();
    assert!(
        problems.is_empty(),
        "the console on the {name} page: {problems:#?}"
    );
    let shot = browser.screenshot(name);
    let bytes = std::fs::read(&shot).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG",
        shot.display()
    );
}

#[test]
fn oidc_login_pages_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy-lab.toml");
    let (dev, _provider) = dev_with_provider(dir.path(), &policy, "", "");
    let started = Instant::now();
    let mut browser = Browser::for_dev(&dev, dir.path());
    eprintln!("chromium {} up in {:?}", browser.version, started.elapsed());

    // The provider's login form, then its redirect to the controller's callback (over https,
    // trusted by the certificate's pin), which shows the code to type into the CLI.
    let secret = "a-secret-only-this-test-knows-000000000000";
    let login = api_start(&dev, secret);
    browser.goto(login["authorization_url"].as_str().unwrap());
    browser.wait_for("input[name=user]");
    browser.messages(); // The provider's own page is not under test.
    sign_in(&mut browser, "rita", "lab", "pwd");
    let url = browser.wait_for_url("/v1/auth/oidc/callback");
    assert!(url.starts_with(&dev.api()), "{url}");
    let response = browser.last_response();
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(browser.text("h1"), "Type this code into the CLI");
    assert!(browser.text("body").contains("Signed in as rita."));
    let code = browser.text("p.code");
    assert_eq!(browser.eval("document.documentElement.lang"), "en");
    check_page(&mut browser, &response, "oidc-code");
    // The code on the page is the real one: the CLI's redemption with it gives a token.
    let body = serde_json::json!({"login_id": login["login_id"], "code": code, "secret": secret});
    let (status, text) = curl(
        &dev,
        "POST",
        "/v1/auth/oidc/redeem",
        None,
        Some(&body.to_string()),
    );
    assert_eq!(status, 201, "{text}");
    // The CSP holds in the browser: the page may fetch nothing, not even from its own origin.
    match browser.fetch("/v1/health", "GET", None, &[]) {
        Fetched::Error(error) => assert!(error.contains("Failed to fetch"), "{error}"),
        other => panic!("a fetch from a page with connect-src 'none' went through: {other:?}"),
    }
    let refused = browser.console_problems();
    assert!(
        refused
            .iter()
            .any(|m| m.text.contains("Content Security Policy")),
        "chromium reports the refusal: {refused:#?}"
    );
    // The provider's cookies are the context's; the controller set none on this flow.
    let cookies = browser.cookies();
    assert!(!cookies.is_empty(), "the provider's session cookies");

    // The failure page, reached with a login's real state and an error from the "provider"
    // holding markup: it is shown as text, and no script runs.
    browser.new_context();
    assert!(
        browser.cookies().is_empty(),
        "a new context starts without cookies"
    );
    let login = api_start(&dev, secret);
    let authorization = login["authorization_url"].as_str().unwrap();
    let state = authorization
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("state="))
        .unwrap();
    let hostile = "<script>console.error('injected')</script><img src=x onerror=alert(1)>";
    let encoded: String = url::form_urlencoded::byte_serialize(hostile.as_bytes()).collect();
    let response = browser.goto(&format!(
        "{}/v1/auth/oidc/callback?state={state}&error=access_denied&error_description={encoded}",
        dev.api()
    ));
    assert_eq!(response.status, 401, "{response:?}");
    assert_eq!(browser.text("h1"), "Login failed");
    assert!(
        browser.text("body").contains(hostile),
        "the markup is shown as text"
    );
    assert_eq!(
        browser.eval("document.querySelectorAll('script, img').length"),
        0
    );
    check_page(&mut browser, &response, "oidc-failed");

    // Nothing but the pinned certificate is trusted, and nothing leaves the machine: a
    // browser without the pin refuses the controller, and names other than 127.0.0.1 do
    // not resolve.
    let mut stranger = Browser::start(dir.path(), &[]);
    let refused = stranger.try_goto(&dev.api()).unwrap_err();
    assert!(refused.contains("ERR_CERT_AUTHORITY_INVALID"), "{refused}");
    let refused = stranger.try_goto("https://example.com/").unwrap_err();
    assert!(refused.contains("ERR_NAME_NOT_RESOLVED"), "{refused}");
    drop(stranger);

    // Nothing of chromium's outlives the browser.
    let processes = browser.processes();
    assert!(!processes.is_empty(), "chromium runs under the driver");
    drop(browser);
    let left: Vec<_> = processes.iter().filter(|p| p.alive()).collect();
    assert!(
        left.is_empty(),
        "processes left after the browser's drop: {left:?}"
    );
    eprintln!("the browser test took {:?}", started.elapsed());
}
