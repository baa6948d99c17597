//! The console's OIDC login in Debian's chromium, through the real OpenID provider
//! (oidc-provider, tests/oidc/provider.mjs) and the controller's own callback: the login page
//! offers the provider, the provider's form signs `rita` in, the callback opens a console
//! session (its cookie `__Host-`, HttpOnly, Secure, SameSite=Strict; the login's binding
//! cookie forgotten) and moves on to the sessions page, where rita is logged in. A login link
//! opened in another browser (without the binding cookie of the browser that started it) is
//! refused before its code is exchanged, nothing is issued, and the refusal is audited.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::path::Path;

use common::browser::Browser;
use common::oidc::{dev_with_provider, sign_in};

#[test]
fn a_console_login_through_the_provider_is_bound_to_the_browser_that_started_it() {
    let dir = tempfile::tempdir().unwrap();
    let policy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policy-lab.toml");
    let (dev, _provider) = dev_with_provider(dir.path(), &policy, "", "");
    let mut browser = Browser::for_dev(&dev, dir.path());

    // The login page offers the provider; it passes axe and keeps a clean console.
    let response = browser.goto(&format!("{}/console/login", dev.api()));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(browser.count("a[href='/console/login/oidc']"), 1);
    assert!(browser.axe_serious().is_empty());
    assert!(browser.console_problems().is_empty());

    // To the provider: the login's binding cookie is set for this browser only.
    browser.click("a[href='/console/login/oidc']");
    browser.wait_for("input[name=user]");
    browser.messages(); // The provider's own page is not under test.
    let binding = browser
        .cookies()
        .into_iter()
        .find(|c| c["name"] == "__Host-portcullis-oidc")
        .expect("the binding cookie");
    assert_eq!(binding["httpOnly"], true, "{binding}");
    assert_eq!(binding["secure"], true, "{binding}");
    assert_eq!(binding["sameSite"], "Lax", "{binding}");
    assert_eq!(binding["path"], "/", "{binding}");

    // Signed in at the provider, back through the callback, on to the console: the Strict
    // session cookie is sent on the console's own navigation.
    sign_in(&mut browser, "rita", "lab", "pwd");
    let url = browser.wait_for_url("/console/sessions");
    assert!(url.starts_with(&dev.api()), "{url}");
    browser.wait_for("h1");
    assert_eq!(browser.text("h1"), "Sessions");
    assert_eq!(browser.text("header .who"), "rita");
    let cookies = browser.cookies();
    let session = cookies
        .iter()
        .find(|c| c["name"] == "__Host-portcullis-console")
        .expect("the console session cookie");
    assert_eq!(session["httpOnly"], true, "{session}");
    assert_eq!(session["secure"], true, "{session}");
    assert_eq!(session["sameSite"], "Strict", "{session}");
    assert!(
        !cookies
            .iter()
            .any(|c| c["name"] == "__Host-portcullis-oidc"),
        "the binding is single-use: {cookies:?}"
    );
    let problems = browser.console_problems();
    assert!(problems.is_empty(), "{problems:#?}");

    // A login link opened in another browser: the provider signs the user in, and the
    // controller refuses the login, which came back without its binding.
    // Someone starts a login (curl here) and sends its link to the victim's browser.
    let started = std::process::Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
        ])
        .arg("--cacert")
        .arg(dev.var("PORTCULLIS_CA"))
        .arg(format!("{}/console/login/oidc", dev.api()))
        .output()
        .unwrap();
    let started = String::from_utf8(started.stdout).unwrap();
    let (status, link) = started.split_once(' ').unwrap();
    assert_eq!(status, "303", "{started}");
    browser.new_context();
    browser.goto(link);
    browser.messages();
    sign_in(&mut browser, "mallory", "lab", "pwd");
    browser.wait_for_url("/v1/auth/oidc/callback");
    let refused = browser.last_response();
    assert_eq!(refused.status, 401, "{refused:?}");
    assert!(
        browser
            .text("main")
            .contains("another browser than the one that started it"),
        "{}",
        browser.text("main")
    );
    assert!(
        !browser
            .cookies()
            .iter()
            .any(|c| c["name"] == "__Host-portcullis-console"),
        "nothing was issued"
    );

    // The audit log: the console logins started, rita's succeeded, the unbound one refused.
    let out = dev
        .cli()
        .args(["audit", "list", "--limit", "50", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let events: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let started = events
        .iter()
        .filter(|e| e["type"] == "login_started" && e["details"]["mode"] == "console")
        .count();
    assert_eq!(started, 2, "{events:#?}");
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "login_succeeded" && e["actor"]["user"] == "rita"),
        "{events:#?}"
    );
    assert!(
        events.iter().any(|e| e["type"] == "login_failed"
            && e["reason"]
                .as_str()
                .is_some_and(|r| r.contains("another browser"))),
        "{events:#?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "login_succeeded" && e["actor"]["user"] == "mallory"),
        "{events:#?}"
    );
}
