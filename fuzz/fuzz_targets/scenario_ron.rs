#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zplan_fuzz::scenario_ron(data));
