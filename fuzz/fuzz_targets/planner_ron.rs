#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| zplan_fuzz::planner_ron(data));
