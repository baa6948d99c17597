//! Replays the seed corpus and every past crash of `worker_config` (see `fuzz/README.md`).

use std::path::Path;

use super::*;

include!("../../../fuzz/replay.rs");

#[test]
fn worker_config_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    replay_corpus(&fuzz, "worker_config", worker_config);
}
