//! Fuzz target `http_body`: the property lives in `svault_tests::fuzz::http_body`, which the stable
//! regression test replays over `fuzz/regressions/http_body/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| svault_tests::fuzz::http_body(data));
