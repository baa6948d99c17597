#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_controller::fuzzing::proxmox_answers(data));
