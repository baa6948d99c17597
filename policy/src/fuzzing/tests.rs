//! Replays the seed corpus and every past crash of `policy_compile` (see `fuzz/README.md`).

use std::path::Path;

use super::*;

include!("../../../fuzz/replay.rs");

#[test]
fn policy_compile_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    replay_corpus(&fuzz, "policy_compile", policy_compile);
}
