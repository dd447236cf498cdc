//! The product never holds svault's test hooks (failure injection, injected panics): they
//! compile only under `cfg(svault_faults)`, which only the test harness's own build of these
//! sources sets (tests/with-faults/), so no feature unification can carry them into `svault`.
//! The test harness checks the other side: its `svault-under-test` binary does hold them.

/// Strings only the hooks put into a binary (their log and panic messages, the keys that arm
/// them, and the names the hooks had before they moved behind the cfg).
const HOOK_MARKERS: [&str; 5] = [
    "svault-fault-hooks-compiled-in",
    "svault-fault:",
    "FailNextCommit",
    "fail_next_sync",
    "fail_next_commit",
];

fn holds(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn the_svault_binary_holds_no_fault_hooks() {
    let path = env!("CARGO_BIN_EXE_svault");
    let bin = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    assert!(bin.len() > 1 << 20, "{path} is not the svault binary");
    for marker in HOOK_MARKERS {
        assert!(
            !holds(&bin, marker.as_bytes()),
            "{path} holds test hook code ({marker:?})"
        );
    }
}
