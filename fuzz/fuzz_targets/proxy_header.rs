#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| portcullis_net::proxy_header::fuzz(data));
