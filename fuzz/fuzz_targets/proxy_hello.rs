#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_proto::fuzzing::proxy_hello(data));
