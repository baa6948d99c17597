//! Replays the seed corpus and every past crash of `worker_config`, `gateway_ssh`,
//! `sftp_tracker` and `pve_request` (see `fuzz/README.md`).

use std::path::Path;

use super::*;

include!("../../../fuzz/replay.rs");

#[test]
fn worker_config_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    replay_corpus(&fuzz, "worker_config", worker_config);
}

#[test]
fn gateway_ssh_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    replay_corpus(&fuzz, "gateway_ssh", gateway_ssh);
}

#[test]
fn sftp_tracker_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    replay_corpus(&fuzz, "sftp_tracker", sftp_tracker);
}

#[test]
fn pve_request_corpus_replays() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    replay_corpus(&fuzz, "pve_request", pve_request);
}
