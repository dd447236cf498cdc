//! Fuzz target `amount`: the property lives in `svault_tests::fuzz::amount`, which the stable
//! regression test replays over `fuzz/regressions/amount/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| svault_tests::fuzz::amount(data));
