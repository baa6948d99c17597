#![no_main]

// The CLI is a binary crate: its loopback parser is compiled here from its own source file.
#[path = "../../src/cli/login/loopback.rs"]
mod loopback;

libfuzzer_sys::fuzz_target!(|data: &[u8]| loopback::fuzz_loopback(data));
