#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zplan_fuzz::sidecar_json(data));
