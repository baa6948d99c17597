#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_worker::fuzzing::pve_request(data));
