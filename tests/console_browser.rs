//! The web console in a real browser: Debian's chromium under playwright-core
//! (tests/common/browser.rs) logs local user `ada` in with password and TOTP on `portcullis
//! dev`, lands on the sessions page, and checks on each page the strict Content-Security-Policy,
//! a clean browser console, no serious or critical axe-core violation and a PNG screenshot. In
//! the browser: the session cookie is `__Host-`, HttpOnly, Secure and SameSite=Strict and
//! scripts cannot read it; a same-origin form without the CSRF token is refused with 403; the
//! API answers the cookie alone with 401; a reviewer sees the live session and the audit page
//! but no Cancel button, and a cancel POST forged with her own CSRF token is refused (403) and
//! audited; the Cancel button on a live session (opened by the
//! CLI, `connect echo --listen-port 0`) ends it, and the CLI's `connect` returns; logging out
//! ends the console session.
//!
//! The controller serves the certificate its internal CA issues (ECDSA P-256, which chromium
//! accepts; no `[api] tls_cert_file`), the browser trusting that certificate's key.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{BufRead as _, BufReader};
use std::process::Stdio;
use std::time::Duration;

use common::browser::{check_page, Browser};
use common::console::{enrol, enrol_user, log_in_as, stack, PASSWORD};
use common::dev::curl;
use common::totp::{oathtool, unix_now};
use common::wait::poll;

#[test]
fn a_local_user_logs_in_with_totp_in_chromium_and_the_console_holds_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = stack(dir.path(), "");
    let (secret, enrolled_step) = enrol(&dev);
    let mut browser = Browser::for_dev(&dev, dir.path());
    let base = dev.api();

    // The login page.
    let form = browser.goto(&format!("{base}/console/login"));
    assert_eq!(form.status, 200, "{form:?}");
    assert_eq!(browser.text("h1"), "Log in");
    check_page(&mut browser, &form, "console-login");

    // A code of a later step than the enrolment's (within the accepted skew).
    let step = (enrolled_step + 1).max(unix_now() / 30);
    browser.fill("#username", "ada");
    browser.fill("#password", PASSWORD);
    browser.fill("#totp_code", &oathtool(&secret, step * 30));
    browser.click("form.login button[type=submit]");
    browser.wait_for_url("/console/sessions");
    let sessions = browser.last_response();
    assert_eq!(sessions.status, 200, "{sessions:?}");
    assert_eq!(browser.text("h1"), "Sessions");
    check_page(&mut browser, &sessions, "console-sessions");

    // A live session the CLI holds open: its row has a Cancel button, which ends it, and
    // the CLI's `connect` returns.
    let mut connect = dev
        .cli()
        .args(["connect", "echo", "--listen-port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut listening = String::new();
    BufReader::new(connect.stdout.take().unwrap())
        .read_line(&mut listening)
        .unwrap();
    assert!(listening.contains("Listening on"), "{listening}");
    let live = browser.goto(&format!("{base}/console/sessions"));
    assert_eq!(live.status, 200, "{live:?}");
    assert_eq!(browser.count("form[action$='/cancel'] button"), 1);
    check_page(&mut browser, &live, "console-sessions-live");

    // A reviewer (sessions:read-all, audit:read, recordings:read) sees the live session and
    // the audit log but gets no Cancel button; a POST forged with the page's own CSRF token
    // is refused (403) and audited as permission_denied.
    let (rev_secret, rev_step) = enrol_user(&dev, "rev");
    let mut reviewer = Browser::for_dev(&dev, dir.path());
    log_in_as(&mut reviewer, &dev, "rev", &rev_secret, rev_step);
    let seen = reviewer.goto(&format!("{base}/console/sessions"));
    check_page(&mut reviewer, &seen, "console-sessions-reviewer");
    assert!(
        reviewer.text("tbody").contains("active") || reviewer.text("tbody").contains("pending")
    );
    assert!(
        reviewer.text("tbody").contains("echo"),
        "{}",
        reviewer.text("main")
    );
    assert_eq!(reviewer.count("form[action$='/cancel'] button"), 0);
    let audit = reviewer.goto(&format!("{base}/console/audit"));
    assert_eq!(audit.status, 200, "{audit:?}");
    let action =
        browser.eval("document.querySelector(\"form[action$='/cancel']\").getAttribute('action')");
    let action = action.as_str().unwrap().to_owned();
    reviewer.goto(&format!("{base}/console/sessions"));
    reviewer.eval(&format!(
        "(() => {{ const f = document.createElement('form'); f.method = 'post'; \
         f.action = '{action}'; const t = document.querySelector(\"input[name=csrf_token]\"); \
         f.appendChild(t.cloneNode()); document.body.appendChild(f); f.submit(); \
         return true; }})()"
    ));
    reviewer.wait_for_url("/cancel");
    let forged = reviewer.last_response();
    assert_eq!(forged.status, 403, "{forged:?}");
    let denied = poll(
        "the reviewer's refused cancel in the audit log",
        Duration::from_secs(10),
        || {
            let (code, text) = curl(
                &dev,
                "GET",
                "/v1/audit?type=permission_denied",
                Some(&dev.var("PORTCULLIS_TOKEN")),
                None,
            );
            let found: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| e.to_string())?;
            let hit = found["items"]
                .as_array()
                .and_then(|items| items.iter().find(|e| e["actor"]["user"] == "rev").cloned());
            match (code, hit) {
                (200, Some(event)) => Ok(event),
                _ => Err(text),
            }
        },
    );
    assert!(
        denied.to_string().contains("sessions:cancel-any"),
        "{denied}"
    );
    drop(reviewer);

    browser.click("form[action$='/cancel'] button");
    browser.wait_for_url("/console/sessions");
    assert_eq!(browser.last_response().status, 200);
    let status = poll(
        "connect to return after the console cancelled its session",
        Duration::from_secs(20),
        || {
            connect
                .try_wait()
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "running".to_owned())
        },
    );
    assert!(status.code().is_some(), "connect was killed: {status}");
    browser.goto(&format!("{base}/console/sessions"));
    assert!(
        browser.text("tbody").contains("canceled"),
        "{}",
        browser.text("main")
    );
    assert_eq!(browser.count("form[action$='/cancel'] button"), 0);

    // The workers page (workers:admin): the dev worker, active.
    let workers = browser.goto(&format!("{base}/console/workers"));
    assert_eq!(workers.status, 200, "{workers:?}");
    assert!(
        browser.text("tbody").contains("active"),
        "{}",
        browser.text("main")
    );
    check_page(&mut browser, &workers, "console-workers");

    // On a phone (390 CSS pixels wide) every section fits the screen: no page scrolls
    // sideways, tables become cards.
    browser.viewport(390, 844);
    for section in ["sessions", "audit", "policy", "targets", "workers"] {
        let page = browser.goto(&format!("{base}/console/{section}"));
        assert_eq!(page.status, 200, "{page:?}");
        let overflow = browser
            .eval("document.documentElement.scrollWidth - document.documentElement.clientWidth");
        // What sticks out, for the failure message.
        let wide = browser.eval(
            "[...document.querySelectorAll('body *')].filter(e => \
             e.getBoundingClientRect().right > document.documentElement.clientWidth + 1) \
             .map(e => e.tagName + '.' + e.className + ' ' + (e.innerText || '').slice(0, 40))",
        );
        assert_eq!(
            overflow, 0,
            "the {section} page scrolls sideways on a phone: {wide}"
        );
        let shot = browser.screenshot(&format!("console-phone-{section}"));
        assert!(shot.exists());
    }
    browser.viewport(1280, 720);

    // The cookie as the browser holds it, out of reach of the page's scripts.
    let cookies = browser.cookies();
    let cookie = cookies
        .iter()
        .find(|c| c["name"] == "__Host-portcullis-console")
        .unwrap_or_else(|| panic!("no console cookie in {cookies:?}"));
    assert_eq!(cookie["httpOnly"], true, "{cookie}");
    assert_eq!(cookie["secure"], true, "{cookie}");
    assert_eq!(cookie["sameSite"], "Strict", "{cookie}");
    assert_eq!(cookie["path"], "/", "{cookie}");
    assert_eq!(browser.eval("document.cookie"), "");

    // A same-origin form that lacks the CSRF token is refused.
    browser.eval(
        "(() => { const f = document.createElement('form'); f.method = 'post'; \
         f.action = '/console/logout'; document.body.appendChild(f); f.submit(); \
         return true; })()",
    );
    browser.wait_for_url("/console/logout");
    let refused = browser.last_response();
    assert_eq!(refused.status, 403, "{refused:?}");

    // The API does not take the cookie: only a bearer token.
    let api = browser.goto(&format!("{base}/v1/sessions"));
    assert_eq!(api.status, 401, "{api:?}");

    // The console session still stands; the page's own logout button ends it.
    browser.goto(&format!("{base}/console/sessions"));
    browser.click("form[action='/console/logout'] button");
    browser.wait_for_url("/console/login");
    let after = browser.goto(&format!("{base}/console/sessions"));
    assert!(after.url.ends_with("/console/login"), "{after:?}");
    assert!(
        !browser
            .cookies()
            .iter()
            .any(|c| c["name"] == "__Host-portcullis-console" && c["value"] != ""),
        "the console cookie outlived the logout"
    );
    drop(browser);
    dev.stop();
}
