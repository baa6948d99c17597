//! Names the commit the binary is built from, for `portcullis --version`:
//! `PORTCULLIS_GIT_HASH` is `git rev-parse --short=12 HEAD`, or `unknown` outside a git
//! checkout (a source tarball) or without git.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let hash = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PORTCULLIS_GIT_HASH={hash}");
    // Rebuilt when HEAD moves: a checkout changes HEAD, a commit changes the ref HEAD names
    // (a loose ref, or packed-refs once `git gc` packed it). `--git-path` finds them in a
    // linked worktree too, where `.git` is a file.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        if let Some(path) = git(&["rev-parse", "--git-path", &name]).map(PathBuf::from) {
            // A path that does not exist would make cargo rerun this script on every build.
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
}

/// `git ARGS` in the package's directory: its trimmed output, or `None` when git is
/// absent, this is not a checkout, or the command fails.
fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()?;
    let text = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}
