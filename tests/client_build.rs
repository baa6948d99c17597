//! The client-only build (`--no-default-features`: the `server` feature off) links none of
//! the daemons' heavy crates, so the laptop binary carries no database, HTTP server, OpenID
//! or Vault code. The full build does, which shows the check can fail.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::process::Command;

/// Crates only the daemons need; none may be in the client's tree.
const SERVER_ONLY: [&str; 6] = [
    "sqlx",
    "axum",
    "openidconnect",
    "vaultrs",
    "portcullis-controller",
    "portcullis-worker",
];

/// The names of the crates `cargo tree` lists for the binary's normal dependencies.
fn tree(features: &[&str]) -> Vec<String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-e",
            "normal",
            "-p",
            "portcullis",
            "--prefix",
            "none",
        ])
        .args(["--format", "{p}", "--offline"])
        .args(features)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "cargo tree failed: {stderr}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect()
}

#[test]
fn the_client_build_has_no_server_crate() {
    let client = tree(&["--no-default-features"]);
    assert!(
        client.iter().any(|c| c == "portcullis-proto"),
        "the client's tree is listed: {client:?}"
    );
    for name in SERVER_ONLY {
        assert!(
            !client.iter().any(|c| c == name),
            "{name} is in the client-only build's tree"
        );
    }
}

#[test]
fn the_full_build_has_the_server_crates() {
    let full = tree(&[]);
    for name in SERVER_ONLY {
        assert!(
            full.iter().any(|c| c == name),
            "{name} is missing from the full build's tree"
        );
    }
}
