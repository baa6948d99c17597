#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_controller::fuzzing::oidc_callback(data));
