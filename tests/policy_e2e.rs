//! The zone matrix in the controller and on the command line: decisions by group and MFA,
//! zones from addresses, reloads that end sessions, and the policy CLI.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::{Read as _, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::client::{closes_within, open_echo};
use common::cluster::echo_on;
use common::dev::{bin, curl, Dev};
use common::wait::poll;

const LAB_POLICY: &str = include_str!("fixtures/policy-lab.toml");

fn login(dev: &Dev, user: &str, groups: &[&str], amr: &[&str]) -> String {
    let body = serde_json::json!({"username": user, "groups": groups, "amr": amr}).to_string();
    let (code, text) = curl(dev, "POST", "/v1/auth/dev-login", None, Some(&body));
    assert_eq!(code, 201, "{text}");
    serde_json::from_str::<serde_json::Value>(&text).unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn authorize(dev: &Dev, token: &str, target: &str) -> (u16, String) {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let body = serde_json::json!({"client_public_key": portcullis_proto::keys::b64(&rcgen::PublicKeyData::subject_public_key_info(&key))}).to_string();
    curl(
        dev,
        "POST",
        &format!("/v1/targets/{target}/authorize-session"),
        Some(token),
        Some(&body),
    )
}

fn create(dev: &Dev, name: &str, address: &str, zone: Option<&str>) {
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

/// Asks for a session that must be denied (403) and returns the reason given.
fn denial(dev: &Dev, token: &str, target: &str) -> String {
    let (code, text) = authorize(dev, token, target);
    assert_eq!(code, 403, "{text}");
    let body: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(body["error"], "forbidden", "{text}");
    body["message"].as_str().unwrap().to_owned()
}

fn start(policy: &Path) -> Dev {
    std::fs::write(policy, LAB_POLICY).unwrap();
    Dev::start(&["--policy", policy.to_str().unwrap()])
}

#[test]
fn groups_and_mfa_decide_and_denials_are_audited_with_the_policy_hash() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir.path().join("policy.toml"));
    create(&dev, "lab", &echo_on("127.0.0.2"), Some("LAB"));
    create(
        &dev,
        "local",
        dev.ready["echo"].as_str().unwrap(),
        Some("LOCAL"),
    );
    let with_mfa = login(&dev, "lena", &["lab"], &["pwd", "mfa"]);
    let without_mfa = login(&dev, "luke", &["lab"], &["pwd"]);
    let nobody = login(&dev, "nina", &["games"], &["mfa"]);

    assert_eq!(authorize(&dev, &with_mfa, "lab").0, 201);
    let why = denial(&dev, &without_mfa, "lab");
    assert!(
        why.contains("role `lab` grants `echo` in LAB, but requires MFA (amr one of mfa)"),
        "{why}"
    );
    let why = denial(&dev, &nobody, "lab");
    assert!(
        why.contains("none of your groups (games) is a member of any role"),
        "{why}"
    );
    // The lab role grants LAB only.
    let why = denial(&dev, &with_mfa, "local");
    assert!(
        why.contains("your roles (lab) grant nothing for `echo` in LOCAL"),
        "{why}"
    );

    let (code, text) = curl(
        &dev,
        "GET",
        "/v1/audit?type=session_denied",
        Some(&dev.var("PORTCULLIS_TOKEN")),
        None,
    );
    assert_eq!(code, 200, "{text}");
    let events: serde_json::Value = serde_json::from_str(&text).unwrap();
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "{text}");
    assert!(
        items
            .iter()
            .all(|e| e["decision"] == "deny"
                && e["policy_hash"].as_str().is_some_and(|h| h.len() == 64)),
        "{text}"
    );
}

#[test]
fn zones_come_from_addresses() {
    let dir = tempfile::tempdir().unwrap();
    let dev = start(&dir.path().join("policy.toml"));
    let admin = dev.var("PORTCULLIS_TOKEN");
    // Declared LOCAL, but 127.0.0.2 is in LAB: refused.
    create(&dev, "liar", &echo_on("127.0.0.2"), Some("LOCAL"));
    let why = denial(&dev, &admin, "liar");
    assert!(
        why.contains("the target declares zone LOCAL, but its address 127.0.0.2 is in zone LAB"),
        "{why}"
    );
    // An address in no zone.
    create(&dev, "nowhere", "192.0.2.1:22", None);
    let why = denial(&dev, &admin, "nowhere");
    assert!(why.contains("the address 192.0.2.1 is in no zone"), "{why}");
}

#[test]
fn a_reload_applies_to_live_sessions_and_an_invalid_file_keeps_the_old_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    let dev = start(&policy);
    let admin = dev.var("PORTCULLIS_TOKEN");
    create(&dev, "lab", &echo_on("127.0.0.2"), Some("LAB"));
    let l = common::client::listen(dev.cli(), "lab");
    let mut live = open_echo(l.port);

    // An invalid file is refused (422) and the old policy still decides.
    std::fs::write(&policy, "[settings]\nbroker_zone = \"NOPE\"\n").unwrap();
    let (code, text) = curl(&dev, "POST", "/v1/policy/reload", Some(&admin), None);
    assert_eq!(code, 422, "{text}");
    assert_eq!(authorize(&dev, &admin, "lab").0, 201);
    live.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    live.read_exact(&mut buf).unwrap();

    // A valid policy without the LAB cell, applied by SIGHUP: the live session ends.
    let without_lab = LAB_POLICY.split("[[role]]\nname = \"lab\"").next().unwrap().replace(
        "[[cell]]\nfrom = \"LOCAL\"\nto = \"LAB\"\naccess = \"broker-only\"\nservices = [\"echo\"]\n",
        "",
    );
    assert!(!without_lab.contains("to = \"LAB\""));
    std::fs::write(&policy, without_lab).unwrap();
    let _ = Command::new("kill")
        .arg("-HUP")
        .arg(dev.child.id().to_string())
        .status();
    closes_within(&mut live, Duration::from_secs(5));
    poll(
        "the session's end with reason policy_changed",
        Duration::from_secs(5),
        || {
            let (_, text) = curl(
                &dev,
                "GET",
                &format!("/v1/sessions/{}", l.session_id),
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
    let why = denial(&dev, &admin, "lab");
    assert!(
        why.contains("the matrix has no cell LOCAL -> LAB: denied by default"),
        "{why}"
    );
    // And back through the API.
    std::fs::write(&policy, LAB_POLICY).unwrap();
    let (code, text) = curl(&dev, "POST", "/v1/policy/reload", Some(&admin), None);
    assert_eq!(code, 200, "{text}");
    assert_eq!(authorize(&dev, &admin, "lab").0, 201);
}

fn policy_cli(args: &[&str]) -> std::process::Output {
    Command::new(bin())
        .arg("policy")
        .args(args)
        .env("PORTCULLIS_LOG", "warn")
        .output()
        .unwrap()
}

#[test]
fn the_policy_cli_checks_explains_and_exports() {
    let seed = concat!(env!("CARGO_MANIFEST_DIR"), "/config/policy.toml");
    assert!(policy_cli(&["check", seed]).status.success());
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, LAB_POLICY.replace("to = \"LAB\"", "to = \"LABB\"")).unwrap();
    let out = policy_cli(&["check", broken.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("broken.toml:") && text.contains("LABB"),
        "{text}"
    );

    let allowed = policy_cli(&[
        "explain",
        "--policy",
        seed,
        "--groups",
        "projects",
        "--from",
        "ON-PREM-ADMIN",
        "--to",
        "WORKLOADS",
        "--service",
        "ssh",
        "--json",
    ]);
    assert_eq!(
        allowed.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&allowed.stdout)
    );
    let decision: serde_json::Value = serde_json::from_slice(&allowed.stdout).unwrap();
    assert!(decision.to_string().contains("allow"), "{decision}");
    let denied = policy_cli(&[
        "explain",
        "--policy",
        seed,
        "--groups",
        "games",
        "--from",
        "ON-PREM-ADMIN",
        "--to",
        "WORKLOADS",
        "--service",
        "ssh",
    ]);
    assert_eq!(denied.status.code(), Some(1));

    let md = policy_cli(&["export", "--policy", seed, "--format", "markdown"]);
    let md = String::from_utf8_lossy(&md.stdout).to_string();
    for zone in [
        "ON-PREM-ADMIN",
        "PROXMOX-MGMT",
        "CORE-INFRA",
        "SECURITY-SERVICES",
        "OBSERVABILITY",
        "WORKLOADS",
    ] {
        assert!(md.contains(zone), "{zone} missing from the markdown export");
    }
    let nft = policy_cli(&[
        "export",
        "--policy",
        seed,
        "--format",
        "nftables",
        "--worker-addr",
        "10.10.5.10",
    ]);
    assert!(nft.status.success());
    let Ok(mut check) = Command::new("nft")
        .args(["-c", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    else {
        panic!("nft is missing: scripts/test installs Debian's nftables");
    };
    check.stdin.take().unwrap().write_all(&nft.stdout).unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "nft -c refused the export: {}",
        String::from_utf8_lossy(&checked.stderr)
    );
    let out_dir = dir.path().join("fw");
    let pve = policy_cli(&[
        "export",
        "--policy",
        seed,
        "--format",
        "proxmox",
        "--worker-addr",
        "10.10.5.10",
        "--target",
        "4012:WORKLOADS",
        "--out",
        out_dir.to_str().unwrap(),
    ]);
    assert!(
        pve.status.success(),
        "{}",
        String::from_utf8_lossy(&pve.stderr)
    );
    let mut all = String::new();
    for entry in std::fs::read_dir(&out_dir).unwrap().flatten() {
        all.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    assert!(all.contains("[IPSET zone-"), "{all}");
    assert!(out_dir.join("4012.fw").exists());
}
