//! `portcullis policy diff` and `policy simulate` against `portcullis dev` started with its
//! own policy file: an edit that removes the cell a role needs lists exactly the live
//! sessions (opened with `connect`) that the reload then ends; an edit that adds a cell
//! lists who gains it; identical policies give an empty diff (exit 0); `--json` parses.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use common::client::{closes_within, listen, open_echo};
use common::cluster::echo_on;
use common::dev::{curl, Dev};
use common::wait::poll;
use serde_json::Value;

/// LOCAL (the loopback, the broker's zone) and LAB (one nested address). The `lab` role's
/// grant names every service, so the cell to LAB may come and go without making the file
/// invalid; `{LAB_CELL}` is where that cell goes.
const POLICY: &str = r#"
[settings]
broker_zone = "LOCAL"

[[zone]]
name = "LOCAL"
cidrs = ["127.0.0.0/8"]

[[zone]]
name = "LAB"
cidrs = ["127.0.0.2/32"]

[[service]]
name = "echo"
ports = "any"

[[service]]
name = "web"
ports = [443]

[[cell]]
from = "LOCAL"
to = "LOCAL"
access = "allow"
services = ["echo"]

{LAB_CELL}

[[role]]
name = "admin"
groups = ["admins"]
permissions = ["targets:admin", "sessions:read-all", "sessions:cancel-any", "policy:reload", "audit:read"]

[[role.grant]]
zones = ["LOCAL"]
services = ["echo"]
logins = ["{{preferred_username}}"]

[[role]]
name = "lab"
groups = ["lab"]

[[role.grant]]
zones = ["LAB"]
services = ["*"]
"#;

const LAB_ECHO: &str =
    "[[cell]]\nfrom = \"LOCAL\"\nto = \"LAB\"\naccess = \"broker-only\"\nservices = [\"echo\"]\n";
const LAB_WEB_ONLY: &str =
    "[[cell]]\nfrom = \"LOCAL\"\nto = \"LAB\"\naccess = \"broker-only\"\nservices = [\"web\"]\n";

fn policy(lab_cell: &str) -> String {
    POLICY.replace("{LAB_CELL}", lab_cell)
}

fn start(dir: &Path, text: &str) -> (Dev, std::path::PathBuf) {
    let file = dir.join("policy.toml");
    std::fs::write(&file, text).unwrap();
    let dev = Dev::start(&["--policy", file.to_str().unwrap()]);
    (dev, file)
}

/// A dev login: its token (the user is then known to the controller, with these groups).
fn login(dev: &Dev, user: &str, groups: &[&str]) -> String {
    let body = serde_json::json!({"username": user, "groups": groups, "amr": ["mfa"]}).to_string();
    let (code, text) = curl(dev, "POST", "/v1/auth/dev-login", None, Some(&body));
    assert_eq!(code, 201, "{text}");
    serde_json::from_str::<Value>(&text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn create(dev: &Dev, name: &str, address: &str, zone: &str) {
    let body =
        serde_json::json!({"name": name, "address": address, "zone": zone, "service": "echo"})
            .to_string();
    let (code, text) = curl(
        dev,
        "POST",
        "/v1/targets",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        Some(&body),
    );
    assert_eq!(code, 201, "{text}");
}

/// `portcullis policy ARGS` with dev's environment.
fn policy_cli(dev: &Dev, args: &[&str]) -> Output {
    dev.cli().arg("policy").args(args).output().unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn json(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            stdout(out),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn lines(changes: &Value) -> BTreeSet<String> {
    changes
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{} {} {}->{} {}",
                c["kind"].as_str().unwrap(),
                c["role"].as_str().unwrap(),
                c["source_zone"].as_str().unwrap(),
                c["target_zone"].as_str().unwrap(),
                c["service"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn identical_policies_are_no_change_and_an_added_cell_lists_who_gains_it() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, file) = start(dir.path(), &policy(""));
    login(&dev, "lena", &["lab"]);
    login(&dev, "otto", &["others"]);
    create(&dev, "lab", "127.0.0.2:7", "LAB");
    let file = file.to_str().unwrap();

    // Identical: no change, exit 0, offline and live.
    let out = policy_cli(&dev, &["diff", file, file]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("No change"), "{}", stdout(&out));
    let out = policy_cli(&dev, &["diff", "--live", file, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(report["changes"], serde_json::json!([]));
    assert_eq!(report["live"]["users"], serde_json::json!([]));
    assert_eq!(report["live"]["sessions"], serde_json::json!([]));

    // A cell added: the lab role gains LAB's echo; of the users, lena (group lab) gains it.
    let new = dir.path().join("new.toml");
    std::fs::write(&new, policy(LAB_ECHO)).unwrap();
    let new = new.to_str().unwrap();
    let out = policy_cli(&dev, &["diff", file, new, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let offline = json(&out);
    assert_eq!(
        lines(&offline["changes"]),
        BTreeSet::from(["allowed lab LOCAL->LAB echo".to_owned()])
    );
    assert_eq!(
        offline["cells"][0]["new"], "broker-only [echo]",
        "{offline:#}"
    );
    let out = policy_cli(&dev, &["diff", "--live", new, "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let live = json(&out);
    assert_eq!(
        live["changes"], offline["changes"],
        "the same diff, offline and live"
    );
    let users = live["live"]["users"].as_array().unwrap();
    assert_eq!(users.len(), 1, "{:#}", live["live"]);
    assert_eq!(users[0]["user"], "lena");
    assert_eq!(users[0]["changes"][0]["new"], "allow");
    assert_eq!(users[0]["changes"][0]["target_zone"], "LAB");
    assert_eq!(live["live"]["targets"][0]["target"], "lab");
    assert_eq!(live["live"]["sessions"], serde_json::json!([]));
    // In words too.
    let out = policy_cli(&dev, &["diff", "--live", new]);
    let text = stdout(&out);
    assert!(
        text.contains("ALLOWED role lab: LOCAL -> LAB echo"),
        "{text}"
    );
    assert!(
        text.contains("+ LOCAL -> LAB: broker-only [echo]"),
        "{text}"
    );
    assert!(
        text.contains("lena (lab):\n    gains LOCAL -> LAB echo"),
        "{text}"
    );

    // Simulate: lena under the new policy reaches LAB; offline, the same groups do.
    let out = policy_cli(&dev, &["simulate", "--user", "lena", "--policy", new]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ALLOW LAB echo from LOCAL: role lab"),
        "{}",
        stdout(&out)
    );
    let out = policy_cli(&dev, &["simulate", "--user", "lena", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "nothing under the loaded policy: {}",
        stdout(&out)
    );
    assert_eq!(json(&out)["groups"], serde_json::json!(["lab"]));
    let out = policy_cli(&dev, &["simulate", "--groups", "lab", "--policy", new]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

#[test]
fn a_removed_cell_lists_exactly_the_live_sessions_the_reload_then_ends() {
    let dir = tempfile::tempdir().unwrap();
    let (dev, file) = start(dir.path(), &policy(LAB_ECHO));
    let admin = dev.var("PORTCULLIS_TOKEN");
    create(&dev, "lab", &echo_on("127.0.0.2"), "LAB");
    create(&dev, "local", dev.ready["echo"].as_str().unwrap(), "LOCAL");
    // lena's session to LAB will lose its cell; the admin's to LOCAL will not.
    let lena = login(&dev, "lena", &["lab"]);
    let mut lena_cli = dev.cli();
    lena_cli.env("PORTCULLIS_TOKEN", &lena);
    let to_lab = listen(lena_cli, "lab");
    let to_local = listen(dev.cli(), "local");
    let mut lab_conn = open_echo(to_lab.port);
    let _local_conn = open_echo(to_local.port);

    let new = dir.path().join("new.toml");
    std::fs::write(&new, policy(LAB_WEB_ONLY)).unwrap();
    let out = policy_cli(&dev, &["diff", "--live", new.to_str().unwrap(), "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let report = json(&out);
    assert_eq!(
        lines(&report["changes"]),
        BTreeSet::from([
            "denied lab LOCAL->LAB echo".to_owned(),
            "allowed lab LOCAL->LAB web".to_owned()
        ])
    );
    let denied = report["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["kind"] == "denied")
        .unwrap();
    assert!(
        denied["because"]
            .as_array()
            .unwrap()
            .contains(&Value::from("- LOCAL -> LAB: broker-only [echo]")),
        "{denied:#}"
    );
    let listed: BTreeSet<&str> = report["live"]["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["session"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed,
        BTreeSet::from([to_lab.session_id.as_str()]),
        "{:#}",
        report["live"]
    );
    assert_eq!(report["live"]["sessions"][0]["user"], "lena");
    assert_eq!(report["live"]["sessions"][0]["target"], "lab");
    let text = stdout(&policy_cli(
        &dev,
        &["diff", "--live", new.to_str().unwrap()],
    ));
    assert!(
        text.contains("Live sessions the reload would end:"),
        "{text}"
    );
    assert!(
        text.contains(&format!("{}  lena -> lab:", to_lab.session_id)),
        "{text}"
    );

    // Nothing was reloaded: both sessions still carry bytes.
    assert_eq!(
        open_echo(to_lab.port).peer_addr().unwrap().port(),
        to_lab.port
    );

    // The reload ends exactly that session, and its event carries the diff's summary.
    std::fs::copy(&new, &file).unwrap();
    let (code, text) = curl(&dev, "POST", "/v1/policy/reload", Some(&admin), None);
    assert_eq!(code, 200, "{text}");
    let reloaded: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(reloaded["sessions_ended"], 1, "{text}");
    assert_eq!(reloaded["policy_hash"], report["new_hash"]);
    closes_within(&mut lab_conn, Duration::from_secs(5));
    poll(
        "lena's session ended for policy_changed",
        Duration::from_secs(5),
        || {
            let (_, text) = curl(
                &dev,
                "GET",
                &format!("/v1/sessions/{}", to_lab.session_id),
                Some(&admin),
                None,
            );
            if text.contains("\"policy_changed\"") {
                Ok(())
            } else {
                Err(text)
            }
        },
    );
    let (_, text) = curl(
        &dev,
        "GET",
        &format!("/v1/sessions/{}", to_local.session_id),
        Some(&admin),
        None,
    );
    let local: Value = serde_json::from_str(&text).unwrap();
    assert_ne!(local["state"], "terminated", "{text}");
    open_echo(to_local.port);

    let (code, text) = curl(
        &dev,
        "GET",
        "/v1/audit?type=policy_reloaded",
        Some(&admin),
        None,
    );
    assert_eq!(code, 200, "{text}");
    let events: Value = serde_json::from_str(&text).unwrap();
    let event = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["policy_hash"] == report["new_hash"])
        .unwrap_or_else(|| panic!("no policy_reloaded event for the new hash: {text}"));
    let details = &event["details"];
    assert_eq!(
        details["previous_policy_hash"], report["old_hash"],
        "{event:#}"
    );
    assert_eq!(
        (&details["denied"], &details["allowed"]),
        (&Value::from(1), &Value::from(1))
    );
    assert!(details["first_changes"]
        .as_array()
        .unwrap()
        .contains(&Value::from("role lab: LOCAL -> LAB echo: allow -> deny")));
}
