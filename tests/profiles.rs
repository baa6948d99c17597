//! Profiles against `portcullis dev`, through the real CLI with no PORTCULLIS_* in its
//! environment: `login URL` confirms the CA by fingerprint (a wrong one, or none without a
//! terminal, is refused and saves nothing; on a terminal, made by util-linux's `script`, the
//! fingerprint is shown and only a "y" keeps it), the saved profile then works alone; `--profile`
//! and PORTCULLIS_PROFILE pick between profiles; a profile whose first controller is down fails
//! over to the live one and `status` shows the dead one unreachable; with every controller
//! down `status` exits 8.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::dev::{bin, Dev};
use rustls_pki_types::pem::PemObject as _;
use serde_json::Value;

/// The CLI as a user without any PORTCULLIS_* variable, its config under `config`.
fn cli(config: &Path) -> Command {
    let mut cmd = Command::new(bin());
    for var in [
        "PORTCULLIS_ADDR",
        "PORTCULLIS_CA",
        "PORTCULLIS_TOKEN",
        "PORTCULLIS_PROFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_CONFIG_HOME", config)
        .env("PORTCULLIS_LOG", "warn")
        .stdin(Stdio::null());
    cmd
}

/// Runs `cmd` with `input` on stdin.
fn with_stdin(mut cmd: Command, input: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok_json(out: &Output) -> Value {
    assert!(out.status.success(), "{}", stderr(out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The dev CA's fingerprint, as hex with colons (openssl's spelling).
fn ca_fingerprint(dev: &Dev) -> String {
    let ca = PathBuf::from(dev.var("PORTCULLIS_CA"));
    let cert = rustls_pki_types::CertificateDer::pem_file_iter(&ca)
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    portcullis_crypto::digest::sha256(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// A port nothing listens on.
fn dead_controller() -> String {
    format!("https://127.0.0.1:{}", common::ports::free_port())
}

/// `echo TOKEN | portcullis login URL --with-token ARGS`.
fn login(config: &Path, dev: &Dev, url: &str, args: &[&str]) -> Output {
    let mut cmd = cli(config);
    cmd.args(["login", url, "--with-token"]).args(args);
    with_stdin(cmd, &format!("{}\n", dev.var("PORTCULLIS_TOKEN")))
}

fn profile_dir(config: &Path, name: &str) -> PathBuf {
    config.join("portcullis/profiles").join(name)
}

#[test]
fn a_profile_saved_with_the_right_fingerprint_works_without_any_environment() {
    let dev = Dev::start(&[]);
    let config = tempfile::tempdir().unwrap();
    let fp = ca_fingerprint(&dev);
    let out = login(config.path(), &dev, &dev.api(), &["--ca-fingerprint", &fp]);
    assert!(out.status.success(), "{}", stderr(&out));
    let dir = profile_dir(config.path(), "default");
    let mode = |p: &Path| {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    };
    assert_eq!(mode(&dir.join("token")), 0o600);
    assert_eq!(mode(&dir.join("profile.toml")), 0o600);
    assert!(std::fs::read_to_string(dir.join("profile.toml"))
        .unwrap()
        .contains(&dev.api()));
    assert_eq!(
        std::fs::read_to_string(config.path().join("portcullis/current")).unwrap(),
        "default\n"
    );
    // No flags, no environment: the profile alone.
    let me = ok_json(
        &cli(config.path())
            .args(["whoami", "--json"])
            .output()
            .unwrap(),
    );
    assert!(!me["username"].as_str().unwrap().is_empty(), "{me}");
    let status = ok_json(
        &cli(config.path())
            .args(["status", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["profile"], "default", "{status}");
    assert_eq!(status["token"], "valid", "{status}");
    assert_eq!(status["user"], me["username"], "{status}");
    assert_eq!(status["controllers"][0]["addr"], dev.api().as_str());
    assert_eq!(status["controllers"][0]["reachable"], true);
    assert!(status["token_expires_at"].as_u64().is_some(), "{status}");
    let shown = status["ca_fingerprints"][0].as_str().unwrap().to_owned();
    assert!(shown.starts_with("SHA256:"), "{status}");
    // The SHA256:BASE64 spelling status shows is accepted too (a second login, same CA).
    let again = login(
        config.path(),
        &dev,
        &dev.api(),
        &["--ca-fingerprint", &shown],
    );
    assert!(again.status.success(), "{}", stderr(&again));
}

#[test]
fn a_wrong_fingerprint_or_no_terminal_is_refused_and_nothing_is_saved() {
    let dev = Dev::start(&[]);
    let config = tempfile::tempdir().unwrap();
    let wrong = "00".repeat(32);
    let out = login(
        config.path(),
        &dev,
        &dev.api(),
        &["--ca-fingerprint", &wrong],
    );
    assert!(!out.status.success());
    assert!(stderr(&out).contains("refused"), "{}", stderr(&out));
    assert!(!config.path().join("portcullis/profiles").exists());
    // No terminal, no --ca-fingerprint, no --ca.
    let out = login(config.path(), &dev, &dev.api(), &[]);
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("--ca-fingerprint") && said.contains("--ca FILE"),
        "{said}"
    );
    assert!(!config.path().join("portcullis/profiles").exists());
    assert!(!config.path().join("portcullis/current").exists());
}

#[test]
fn profiles_are_picked_by_flag_and_environment_and_fail_over_to_a_live_controller() {
    let dev = Dev::start(&[]);
    let config = tempfile::tempdir().unwrap();
    let ca = dev.var("PORTCULLIS_CA");
    let out = login(
        config.path(),
        &dev,
        &dev.api(),
        &["--profile", "one", "--ca", &ca],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // Two controllers, the first down: the login itself fails over.
    let dead = dead_controller();
    let out = login(
        config.path(),
        &dev,
        &dead,
        &["--profile", "two", "--controller", &dev.api(), "--ca", &ca],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let status = |args: &[&str], env: &[(&str, &str)]| {
        let mut cmd = cli(config.path());
        cmd.args(["status", "--json"])
            .args(args)
            .envs(env.iter().copied());
        cmd.output().unwrap()
    };
    // The last login made `two` current.
    let two = ok_json(&status(&[], &[]));
    assert_eq!(two["profile"], "two", "{two}");
    assert_eq!(two["controllers"][0]["addr"], dead.as_str());
    assert_eq!(two["controllers"][0]["reachable"], false, "{two}");
    assert!(two["controllers"][0]["error"]
        .as_str()
        .unwrap()
        .contains("cannot reach"));
    assert_eq!(two["controllers"][1]["reachable"], true, "{two}");
    assert_eq!(two["token"], "valid", "{two}");
    assert_eq!(
        ok_json(&status(&["--profile", "one"], &[]))["profile"],
        "one"
    );
    assert_eq!(
        ok_json(&status(&[], &[("PORTCULLIS_PROFILE", "one")]))["profile"],
        "one"
    );
    // The flag wins over the environment.
    assert_eq!(
        ok_json(&status(
            &["--profile", "two"],
            &[("PORTCULLIS_PROFILE", "one")]
        ))["profile"],
        "two"
    );
    // A request through `two` reaches the live controller and remembers it.
    let out = cli(config.path())
        .args(["whoami", "--json", "--profile", "two"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(profile_dir(config.path(), "two").join("last-good"))
            .unwrap()
            .trim(),
        dev.api()
    );
    // A profile named nowhere is refused with the command that makes it.
    let out = status(&["--profile", "three"], &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--profile three"), "{}", stderr(&out));
}

#[test]
fn with_every_controller_down_status_says_so_and_exits_8() {
    let dev = Dev::start(&[]);
    let config = tempfile::tempdir().unwrap();
    let out = login(
        config.path(),
        &dev,
        &dev.api(),
        &["--ca", &dev.var("PORTCULLIS_CA")],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // The profile's controllers moved away.
    let dead = [dead_controller(), dead_controller()];
    std::fs::write(
        profile_dir(config.path(), "default").join("profile.toml"),
        format!("controllers = [\"{}\", \"{}\"]\n", dead[0], dead[1]),
    )
    .unwrap();
    let out = cli(config.path())
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(8), "{}", stderr(&out));
    let status: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["controllers"][0]["reachable"], false, "{status}");
    assert_eq!(status["controllers"][1]["reachable"], false, "{status}");
    let out = cli(config.path()).args(["whoami"]).output().unwrap();
    assert!(!out.status.success());
    let said = stderr(&out);
    assert!(
        said.contains("no controller answered")
            && said.contains(&dead[0])
            && said.contains(&dead[1]),
        "{said}"
    );
}

/// `login URL --with-token` on a terminal (`script` gives it one), answering `answer` to the
/// CA question and then giving the token.
fn login_on_a_terminal(config: &Path, dev: &Dev, answer: &str) -> Output {
    let mut cmd = Command::new("script");
    cmd.args(["-qec"])
        .arg(format!("{} login {} --with-token", bin(), dev.api()))
        .arg("/dev/null");
    for var in [
        "PORTCULLIS_ADDR",
        "PORTCULLIS_CA",
        "PORTCULLIS_TOKEN",
        "PORTCULLIS_PROFILE",
    ] {
        cmd.env_remove(var);
    }
    cmd.env("XDG_CONFIG_HOME", config)
        .env("PORTCULLIS_LOG", "warn");
    with_stdin(cmd, &format!("{answer}\n{}\n", dev.var("PORTCULLIS_TOKEN")))
}

#[test]
fn on_a_terminal_the_ca_is_shown_by_fingerprint_and_kept_only_when_confirmed() {
    let dev = Dev::start(&[]);
    let config = tempfile::tempdir().unwrap();
    let fp = ca_fingerprint(&dev);
    let out = login_on_a_terminal(config.path(), &dev, "n");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("Trust this CA? [y/N]"), "{said}");
    assert!(said.contains(&fp), "the fingerprint is shown: {said}");
    assert!(said.contains("refused"), "{said}");
    assert!(!config.path().join("portcullis/profiles").exists());
    let out = login_on_a_terminal(config.path(), &dev, "y");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{said}");
    let status = ok_json(
        &cli(config.path())
            .args(["status", "--json"])
            .output()
            .unwrap(),
    );
    assert_eq!(status["profile"], "default", "{status}");
    assert_eq!(status["token"], "valid", "{status}");
}
