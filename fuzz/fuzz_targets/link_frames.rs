#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_proto::fuzzing::link_frames(data));
