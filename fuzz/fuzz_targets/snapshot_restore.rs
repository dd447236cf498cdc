//! Fuzz target `snapshot_restore`: the property lives in `svault_tests::fuzz::snapshot_restore`, which the stable
//! regression test replays over `fuzz/regressions/snapshot_restore/`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| svault_tests::fuzz::snapshot_restore(data));
