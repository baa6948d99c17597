#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_worker::fuzzing::gateway_ssh(data));
