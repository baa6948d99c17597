//! Replays the seed corpus and every past crash of `worker_config` (see `fuzz/README.md`).

use std::path::Path;

use super::*;

#[test]
fn worker_config_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut count = 0;
    for kind in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(kind).join("worker_config")) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            eprintln!("replaying {}", path.display());
            worker_config(&std::fs::read(&path).unwrap());
            count += 1;
        }
    }
    assert!(count > 0, "no seed corpus under {}", fuzz.display());
}
