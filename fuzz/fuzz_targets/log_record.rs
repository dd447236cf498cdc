//! Fuzz target `log_record`: the property lives in `svault_tests::fuzz::log_record`, which the stable
//! regression test replays over `fuzz/regressions/log_record/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| svault_tests::fuzz::log_record(data));
