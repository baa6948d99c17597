//! `portcullis connect` for Proxmox API targets, what needs no controller: the help teaches
//! the socket, Terraform, Ansible and curl set-ups and names every variable `--exec` sets,
//! and mistaken flags are refused before any session is asked for. The sessions themselves
//! (sockets, loopback HTTPS, the secret, the token injected) are tested end to end against a
//! controller, a worker and the fake Proxmox API elsewhere.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::process::{Command, Output};

/// Runs the CLI with a home of its own and no controller to talk to.
fn portcullis(args: &[&str]) -> Output {
    let home = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", home.path().join("run"))
        .env("PORTCULLIS_ADDR", "https://127.0.0.1:9")
        .env("PORTCULLIS_TOKEN", "pct_not-a-real-token")
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_help_teaches_the_proxmox_api_set_ups() {
    let out = portcullis(&["connect", "--help"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let help = text(&out.stdout);
    for needle in [
        "--socket <PATH>",
        "curl --unix-socket $XDG_RUNTIME_DIR/portcullis/pve-1.sock http://pve/api2/json/version",
        "portcullis connect pve-1 --exec -- terraform apply",
        "portcullis connect pve-1 --exec -- ansible-playbook vms.yml",
        "portcullis connect pve-1 --listen-port 8006",
        "X-Portcullis-Session-Secret",
    ] {
        assert!(help.contains(needle), "{needle:?} not in:\n{help}");
    }
    for variable in [
        "PORTCULLIS_PVE_URL",
        "PROXMOX_VE_ENDPOINT",
        "PROXMOX_VE_API_TOKEN",
        "PROXMOX_HOST",
        "PROXMOX_PORT",
        "PROXMOX_USER",
        "PROXMOX_TOKEN_ID",
        "PROXMOX_TOKEN_SECRET",
        "PROXMOX_VALIDATE_CERTS",
        "SSL_CERT_FILE",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
    ] {
        assert!(help.contains(variable), "{variable} not in the help");
    }

    let out = portcullis(&["targets", "update", "--help"]);
    let help = text(&out.stdout);
    assert!(help.contains("--proxmox-cluster <CLUSTER>"), "{help}");
    assert!(help.contains("--clear-proxmox-cluster"), "{help}");
}

#[test]
fn mistaken_flags_are_refused_before_any_session() {
    // The controller address answers nothing: these fail on the flags alone.
    let out = portcullis(&["connect", "pve-1", "--exec", "--"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(err.contains("name the command to run"), "{err}");
    assert!(!err.contains("cannot reach"), "no request was made: {err}");

    for conflicting in [
        &[
            "connect",
            "pve-1",
            "--socket",
            "s.sock",
            "--listen-port",
            "0",
        ][..],
        &[
            "connect",
            "pve-1",
            "--socket",
            "s.sock",
            "--listen-unix",
            "u.sock",
        ][..],
        &["connect", "pve-1", "--socket", "s.sock", "--stdio"][..],
    ] {
        let out = portcullis(conflicting);
        assert_eq!(out.status.code(), Some(2), "{conflicting:?}");
        let err = text(&out.stderr);
        assert!(err.contains("cannot be used with"), "{err}");
    }
}
