//! The console's policy and targets pages in a real browser: Debian's chromium under
//! playwright-core (tests/common/browser.rs) on `portcullis dev`, local user `ada` (role
//! admin: `targets:admin`, `audit:read`) logged in with password and TOTP. The policy page
//! shows the zone matrix grid and the roles, and its explain form answers for ada reaching
//! the `echo` target; on the targets page ada edits `echo`'s tags and the API shows the
//! change. Each page: the strict CSP, a clean browser console, no serious or critical axe
//! violation, a screenshot (docs/console/policy.png and targets.png come from here:
//! `PORTCULLIS_TEST_SCREENSHOTS=docs/console`).

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use common::browser::check_page;
use common::browser::Browser;
use common::console::{enrol, log_in, stack};
use common::dev::curl;

#[test]
fn the_policy_grid_explain_and_a_target_edit_work_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let mut dev = stack(dir.path(), "");
    let (secret, enrolled_step) = enrol(&dev);
    let mut browser = Browser::for_dev(&dev, dir.path());
    let base = dev.api();
    log_in(&mut browser, &dev, &secret, enrolled_step);

    // The grid: the test policy's one cell, LOCAL → LOCAL, allows echo.
    let policy = browser.goto(&format!("{base}/console/policy"));
    assert_eq!(policy.status, 200, "{policy:?}");
    assert_eq!(browser.text("h1"), "Policy");
    assert_eq!(browser.count("table.matrix td.cell"), 1);
    assert_eq!(browser.text("table.matrix td.cell"), "allow echo");
    assert_eq!(
        browser.eval("document.querySelector('table.matrix td.cell').title"),
        "LOCAL → LOCAL: allow: echo"
    );
    assert!(browser.text("#roles + div").contains("LOCAL: echo"));

    // Explain: ada, from 127.0.0.1, to echo.
    browser.fill("input[name=user]", "ada");
    browser.fill("input[name=from]", "127.0.0.1");
    browser.fill("input[name=target]", "echo");
    browser.click("form[action^='/console/policy'] button[type=submit]");
    browser.wait_for_url("target=echo");
    let explained = browser.last_response();
    assert_eq!(explained.status, 200, "{explained:?}");
    let answer = browser.text(".answer");
    assert!(answer.starts_with("Allowed"), "{answer}");
    assert!(
        answer.contains("from LOCAL to LOCAL, service echo"),
        "{answer}"
    );
    check_page(&mut browser, &explained, "policy");

    // The targets page: ada edits echo's tags; the API shows them.
    let targets = browser.goto(&format!("{base}/console/targets"));
    assert_eq!(targets.status, 200, "{targets:?}");
    assert_eq!(browser.text("h1"), "Targets");
    browser.click("details summary");
    let tags = "form[action^='/console/targets/'] input[name=tags]";
    browser.wait_for(tags);
    browser.fill(tags, "dev, edited-in-chromium");
    browser.click("form[action^='/console/targets/'] button[type=submit]");
    browser.wait_for("td[data-label=Tags]:has-text('edited-in-chromium')");
    assert_eq!(browser.last_response().status, 200);
    let token = dev.var("PORTCULLIS_TOKEN");
    let (status, body) = curl(&dev, "GET", "/v1/targets/echo", Some(&token), None);
    assert_eq!(status, 200, "{body}");
    let target: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        target["tags"],
        serde_json::json!(["dev", "edited-in-chromium"])
    );

    // The page with the edit form open, for the screenshot.
    let again = browser.goto(&format!("{base}/console/targets"));
    browser.click("details summary");
    browser.wait_for(tags);
    check_page(&mut browser, &again, "targets");
    drop(browser);
    dev.stop();
}
