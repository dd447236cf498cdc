//! The other side of engine/server/tests/no_fault_hooks.rs: the test harness's `svault-under-test`
//! binary does hold the hooks' marker, so the check that `svault` does not can see them.

#[test]
fn the_test_binary_holds_the_fault_hook_marker() {
    let path = svault_tests::svault_bin!();
    let bin = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let marker = runtime::faults::MARKER.as_bytes();
    assert!(
        bin.windows(marker.len()).any(|w| w == marker),
        "{path} lacks the fault hooks' marker: the release check would prove nothing"
    );
}
