//! Cryptography has one home, the `portcullis-crypto` crate (`crypto/`): no other source file
//! of the repository names `ring` (its paths, or rustls's ring provider), and no other
//! manifest depends on it. clippy.toml's `disallowed-methods` stops the calls; this test also
//! catches a `use` of a type, a macro, or a crate clippy is not run on. Needs no peer.

use std::path::{Path, PathBuf};

/// Directories never looked into: build output, dependencies, VCS data.
const SKIPPED_DIRS: &[&str] = &["target", ".git", "node_modules"];

/// Whether `text` names ring: `ring::` not preceded by a character of an identifier (so
/// `String::` and `Ordering::` do not count), or the crate in a `use ring` / `extern crate`.
fn names_ring(text: &str) -> bool {
    let bytes = text.as_bytes();
    let mut from = 0;
    while let Some(at) = text[from..].find("ring::") {
        let start = from + at;
        let before = start.checked_sub(1).map(|i| bytes[i]);
        if !before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return true;
        }
        from = start + "ring::".len();
    }
    text.lines().any(|line| {
        let line = line.trim();
        line == "use ring;"
            || line.starts_with("use ring as ")
            || line.starts_with("extern crate ring")
    })
}

/// Whether a Cargo manifest lists ring as a dependency of its own.
fn depends_on_ring(manifest: &str) -> bool {
    manifest.lines().any(|line| {
        let line = line.trim();
        line.starts_with("ring ") || line.starts_with("ring=") || line.starts_with("ring.")
    })
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if path.is_dir() {
            if !SKIPPED_DIRS.contains(&name.as_ref()) {
                walk(&path, out);
            }
        } else if name.ends_with(".rs") || name == "Cargo.toml" {
            out.push(path);
        }
    }
}

#[test]
fn the_matcher_tells_ring_from_words_that_end_in_ring() {
    assert!(names_ring("use ring::rand::SystemRandom;"));
    assert!(names_ring(
        "let p = rustls::crypto::ring::default_provider();"
    ));
    assert!(names_ring(
        "    ring::digest::digest(&ring::digest::SHA256, b)"
    ));
    assert!(names_ring("use ring as crypto;"));
    assert!(!names_ring(
        "let s = String::new(); Ordering::SeqCst; x.to_string()"
    ));
    assert!(!names_ring("// the key ring of the audit verifier"));
    assert!(depends_on_ring("ring.workspace = true"));
    assert!(depends_on_ring("ring = \"0.17\""));
    assert!(!depends_on_ring("rustls = { features = [\"ring\"] }"));
}

#[test]
fn only_the_crypto_crate_names_ring() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    walk(repo, &mut files);
    let crypto = repo.join("crypto");
    let root_manifest = repo.join("Cargo.toml");
    let this_file = repo.join(file!());
    let mut offenders = Vec::new();
    let mut sources = 0;
    for path in &files {
        if path.starts_with(&crypto) || *path == this_file {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let relative = path
            .strip_prefix(repo)
            .unwrap_or(path)
            .display()
            .to_string();
        if path.extension().is_some_and(|e| e == "rs") {
            sources += 1;
            if names_ring(&text) {
                offenders.push(relative);
            }
        } else if *path != root_manifest && depends_on_ring(&text) {
            // The workspace manifest declares the version ([workspace.dependencies]); only
            // crypto/Cargo.toml may use it.
            offenders.push(relative);
        }
    }
    // The walk found the repository's sources, not an empty directory.
    assert!(
        sources > 100,
        "only {sources} source files found under {}",
        repo.display()
    );
    assert!(
        offenders.is_empty(),
        "these files name `ring` outside crypto/ (use portcullis_crypto instead): {offenders:#?}"
    );
}
