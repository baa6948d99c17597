//! The CI gate `scripts/check-banned-crates` can fail: against throw-away workspaces that pull
//! a banned crate, or whose `cargo tree` fails, and it passes on this workspace. The banned
//! crate is a local stand-in with the real name, so the test needs no network.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::path::Path;
use std::process::{Command, Output};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/check-banned-crates");

fn gate(manifest: &Path) -> Output {
    Command::new(SCRIPT)
        .arg("--manifest-path")
        .arg(manifest)
        .arg("--offline")
        .output()
        .unwrap()
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A workspace whose `app` crate depends on a local crate named `dependency` (as a normal or
/// build dependency).
fn workspace(dir: &Path, dependency: &str, section: &str) -> std::path::PathBuf {
    write(
        &dir.join("Cargo.toml"),
        // Not a member (path dependencies inside the root would be): only a dependency.
        &format!(
            "[workspace]\nmembers = [\"app\"]\nexclude = [\"{dependency}\"]\nresolver = \"2\"\n"
        ),
    );
    write(
        &dir.join("app/Cargo.toml"),
        &format!(
            "[package]\nname = \"app\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[{section}]\n{dependency} = {{ path = \"../{dependency}\" }}\n"
        ),
    );
    write(&dir.join("app/src/lib.rs"), "");
    write(
        &dir.join(format!("{dependency}/Cargo.toml")),
        &format!("[package]\nname = \"{dependency}\"\nversion = \"0.9.0\"\nedition = \"2021\"\n"),
    );
    write(&dir.join(format!("{dependency}/src/lib.rs")), "");
    dir.join("Cargo.toml")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_banned_crate_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    for (name, section) in [
        ("openssl-sys", "dependencies"),
        ("aws-lc-sys", "build-dependencies"),
    ] {
        let manifest = workspace(&dir.path().join(name), name, section);
        let out = gate(&manifest);
        assert_eq!(out.status.code(), Some(1), "{name}: {}", stderr(&out));
        assert!(
            stderr(&out).contains(&format!("{name} is in the dependency tree")),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn a_failing_cargo_tree_fails_the_gate() {
    let dir = tempfile::tempdir().unwrap();
    // A dependency whose path does not exist: cargo cannot load the workspace.
    let manifest = workspace(dir.path(), "openssl-sys", "dependencies");
    std::fs::remove_dir_all(dir.path().join("openssl-sys")).unwrap();
    let out = gate(&manifest);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`cargo tree` failed"),
        "{}",
        stderr(&out)
    );
    // A manifest that is not there at all.
    let out = gate(&dir.path().join("nowhere/Cargo.toml"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn a_clean_workspace_passes_and_so_does_this_one() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = workspace(dir.path(), "harmless", "dependencies");
    let out = gate(&manifest);
    assert!(out.status.success(), "{}", stderr(&out));
    // Only a dev-dependency: not shipped, so not refused.
    let manifest = workspace(&dir.path().join("dev"), "openssl-sys", "dev-dependencies");
    let out = gate(&manifest);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = gate(&Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"));
    assert!(out.status.success(), "{}", stderr(&out));
}
