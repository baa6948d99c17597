//! The console's Audit page in a real browser (Debian's chromium under playwright-core,
//! tests/common/browser.rs) on `portcullis dev`: local user `ada` (audit:read) logs in with
//! password and TOTP; the page says the chain is verified up to its head; the search form
//! filters as `audit list` and an event's page shows its JSON. Then an event in the middle is
//! edited in the controller's SQLite file (the `sqlite3` CLI, as an attacker with the
//! database would): the incremental check, already past it, still says verified (the page
//! says why), and "Verify from the start" names the edited event. Each page: the strict CSP,
//! a clean browser console, no serious or critical axe-core violation, a screenshot.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::process::Command;

use common::browser::{check_page, Browser};
use common::console::{enrol, log_in, stack};

/// The sequence number after `prefix` in `text`.
fn number_after(text: &str, prefix: &str) -> u64 {
    let rest = text
        .split_once(prefix)
        .unwrap_or_else(|| panic!("no {prefix:?} in {text:?}"))
        .1;
    rest.chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no number after {prefix:?} in {text:?}"))
}

/// Edits event `seq`'s stored body (its time) in the SQLite file `db` beside the running
/// controller.
fn tamper(db: &std::path::Path, seq: u64) {
    let out = Command::new("sqlite3")
        .arg("-cmd")
        .arg(".timeout 10000")
        .arg(db)
        .arg(format!(
            "UPDATE audit_events SET body = replace(body, '\"time\":\"', '\"time\":\"1') \
             WHERE seq = {seq}; SELECT changes();"
        ))
        .output()
        .expect("sqlite3 (scripts/test installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "1");
}

#[test]
fn the_audit_page_shows_verified_and_verify_from_the_start_names_an_edited_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = stack(dir.path(), "");
    let (secret, enrolled_step) = enrol(&dev);
    let mut browser = Browser::for_dev(&dev, dir.path());
    log_in(&mut browser, &dev, &secret, enrolled_step);
    let base = dev.api();

    // Verified up to the head, and what that is worth.
    let page = browser.goto(&format!("{base}/console/audit"));
    assert_eq!(page.status, 200, "{page:?}");
    assert_eq!(browser.text("h1"), "Audit");
    let status = browser.text("#verify-status");
    let head = number_after(&status, "Verified up to event ");
    assert!(head >= 3, "{status}");
    assert!(
        browser
            .text("section.verify")
            .contains("portcullis audit verify --public-key"),
        "{}",
        browser.text("section.verify")
    );
    assert!(browser.count("tbody tr") >= 3);
    check_page(&mut browser, &page, "console-audit");

    // The search form filters as `audit list --type`; an event's page shows its JSON.
    browser.fill("input[name=type]", "login_succeeded");
    browser.click("form.filters button[type=submit]");
    browser.wait_for_url("type=login_succeeded");
    let found = browser.last_response();
    assert_eq!(found.status, 200, "{found:?}");
    let rows = browser.count("tbody tr");
    assert!(rows >= 1, "{}", browser.text("main"));
    assert_eq!(
        browser.count("td[data-label=Type]:text-is('login_succeeded')"),
        rows
    );
    browser.click("tbody td[data-label=Seq] a");
    browser.wait_for("pre.event");
    let event = browser.last_response();
    assert_eq!(event.status, 200, "{event:?}");
    assert!(
        browser
            .text("pre.event")
            .contains("\"type\": \"login_succeeded\""),
        "{}",
        browser.text("pre.event")
    );
    check_page(&mut browser, &event, "console-audit-event");

    // An event in the middle edited in the store: the incremental check is past it...
    let edited = head / 2;
    tamper(&dev.state_dir.join("portcullis.db"), edited);
    browser.goto(&format!("{base}/console/audit"));
    let status = browser.text("#verify-status");
    assert!(status.starts_with("Verified up to event "), "{status}");

    // ...and verifying from the start names it.
    browser.click("form[action='/console/audit/verify'] button");
    browser.wait_for("p.error#verify-status");
    let broken = browser.last_response();
    assert_eq!(broken.status, 200, "{broken:?}");
    assert!(broken.url.ends_with("/console/audit"), "{broken:?}");
    let status = browser.text("#verify-status");
    assert!(
        status.starts_with(&format!("The chain breaks at event {edited} (")),
        "{status}"
    );
    assert!(status.contains("it was edited"), "{status}");
    assert_eq!(
        number_after(&status, "Verified up to event "),
        edited - 1,
        "{status}"
    );
    check_page(&mut browser, &broken, "console-audit-broken");
    drop(browser);
    dev.stop();
}
