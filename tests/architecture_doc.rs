//! docs/architecture.md's code map must name only paths that exist: every backticked name
//! with a `/` in it resolves to a file or directory of the repository, a crate's `src/`, or
//! the binary's `src/cli/` (with or without `.rs`). Needs no peer.

use std::path::Path;

/// Backticked names with a `/` that are not paths, with what they are.
const NOT_PATHS: &[(&str, &str)] = &[
    ("portcullis-link/1", "the cluster link's ALPN protocol name"),
    ("ssh/sign", "a Vault endpoint"),
];

const ROOTS: &[&str] = &[
    "",
    "controller/src/",
    "worker/src/",
    "proto/src/",
    "policy/src/",
    "audit/src/",
    "crypto/src/",
    "net/src/",
    "files/src/",
    "src/",
    "src/cli/",
];

fn resolves(repo: &Path, name: &str) -> bool {
    let name = name.trim_end_matches('/');
    ROOTS.iter().any(|root| {
        let path = repo.join(format!("{root}{name}"));
        path.exists()
            || path.with_extension("rs").exists()
            || repo.join(format!("{root}{name}.rs")).exists()
    })
}

#[test]
fn every_path_the_architecture_doc_names_exists() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let doc = std::fs::read_to_string(repo.join("docs/architecture.md"))
        .unwrap_or_else(|e| panic!("cannot read docs/architecture.md: {e}"));
    let mut checked = 0;
    let mut missing = Vec::new();
    for (n, piece) in doc.split('`').enumerate() {
        // Odd pieces are inside backticks; a path has a `/` and no spaces.
        if n % 2 == 0 || !piece.contains('/') || piece.contains(char::is_whitespace) {
            continue;
        }
        if piece.starts_with('/') || piece.contains("://") || piece.contains(['{', '<', '*', '=']) {
            continue;
        }
        if NOT_PATHS.iter().any(|(name, _)| *name == piece) {
            continue;
        }
        checked += 1;
        if !resolves(repo, piece) {
            missing.push(piece.to_owned());
        }
    }
    assert!(
        checked >= 40,
        "only {checked} paths found in docs/architecture.md"
    );
    assert!(
        missing.is_empty(),
        "docs/architecture.md names paths that do not exist (fix the doc with the code, or \
         list a name that is not a path in NOT_PATHS): {missing:?}"
    );
}
