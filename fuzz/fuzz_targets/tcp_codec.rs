//! Fuzz target `tcp_codec`: the property lives in `svault_tests::fuzz::tcp_codec`, which the stable
//! regression test replays over `fuzz/regressions/tcp_codec/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| svault_tests::fuzz::tcp_codec(data));
