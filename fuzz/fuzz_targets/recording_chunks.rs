#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_proto::fuzzing::recording_chunks(data));
