//! `portcullis --version` names the version and the commit the binary was built from.

#![allow(clippy::unwrap_used, clippy::expect_used)] // Test code: a failed unwrap is a failed test.

use std::process::Command;

#[test]
fn version_names_the_crate_version_and_the_commit() {
    let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    let said = String::from_utf8(out.stdout).unwrap();
    // Outside a git checkout (a source tarball) the build says "unknown".
    let head = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap().trim().to_owned())
        .unwrap_or_else(|| "unknown".into());
    assert_eq!(
        said.trim(),
        format!("portcullis {} ({head})", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn subcommands_print_the_same_version() {
    let version = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_portcullis"))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let top = version(&["--version"]);
    assert_eq!(
        version(&["targets", "--version"])
            .split_once(' ')
            .unwrap()
            .1,
        top.split_once(' ').unwrap().1
    );
}
