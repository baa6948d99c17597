//! The fuzz entry points of the worker: its config parser, the SSH gateway's input, the
//! sftp channels the gateway follows, and the request heads the Proxmox API proxy vets.
//!
//! `worker_config`: the worker's config parser: no config text may make the worker
//! panic before it can say which key is wrong. `fuzz/fuzz_targets/worker_config.rs` drives it
//! under libFuzzer (see `fuzz/README.md`); the unit tests replay the seed corpus and every
//! input that once crashed, on stable.

use std::path::Path;

use crate::config::Config;

/// Parses the text as a worker config, with a join token in the environment and a token
/// file that reads for some paths and fails for others (no real file or variable is used).
pub fn worker_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env = |key: &str| (key == "PORTCULLIS_JOIN_TOKEN").then(|| "jt_env".to_owned());
    let read = |path: &Path| {
        if path.as_os_str().len().is_multiple_of(2) {
            Ok(" jt_file \n".to_owned())
        } else {
            Err(std::io::Error::other("unreadable"))
        }
    };
    let Ok(config) = Config::parse(text, env, read) else {
        return;
    };
    assert!(
        !config.controllers.is_empty() || config.cluster_listen.is_some(),
        "a worker config with no way to reach a controller was accepted"
    );
    for (name, d) in [
        ("admit_grace", config.admit_grace),
        ("live_grace", config.live_grace),
        ("drain_timeout", config.drain_timeout),
    ] {
        assert!(!d.is_zero(), "{name} of zero was accepted");
    }
}

/// The SSH gateway's server, with its production settings, fed `data` as everything a
/// client sends (see `crate::gateway::fuzz`): no input may panic it or hang it.
pub fn gateway_ssh(data: &[u8]) {
    let _ = crate::gateway::fuzz::ssh_input(data);
}

/// The gateway's sftp tracker fed both directions of a channel, in records whose first
/// byte says the direction and length (see `crate::gateway::fuzz_sftp`): no input may panic
/// it, and how the bytes are split must not change its events.
pub fn sftp_tracker(data: &[u8]) {
    crate::gateway::fuzz_sftp(data);
}

/// A raw request head through the Proxmox API proxy's `vet` and `record_line` (see
/// `crate::pve::fuzz`): the first byte picks the rules (bit 0: `/access/` writes allowed,
/// bit 1: a local secret required), the rest is parsed as an HTTP/1.1 server would. No input
/// may panic them; a vetted head carries only the session's token and `Host`, none of the
/// client's credentials or hop-by-hop headers; a record keeps no query value.
pub fn pve_request(data: &[u8]) {
    crate::pve::fuzz::request(data);
}

#[cfg(test)]
mod tests;
