//! Replays the seed corpus and every past crash of `policy_compile` (see `fuzz/README.md`).

use std::path::Path;

use super::*;

#[test]
fn policy_compile_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("policy_compile")) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("replaying {}", path.display());
            policy_compile(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "no seed corpus under {}", fuzz.display());
}
