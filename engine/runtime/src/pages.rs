//! Small pages only: transparent huge pages off for the whole process.
//!
//! Why: mimalloc asks the kernel for huge pages (`MADV_HUGEPAGE`), so the first touch of
//! fresh heap memory makes the kernel zero a whole 2 MiB page on the faulting thread. A shard
//! thread that grows its state, or copies a card chunk after a snapshot freeze, then stops for
//! that long on every fresh 2 MiB. Measured with `snapshot_stall` (1 M cards, keyed spends
//! back to back): in the first second after a freeze 207–691 spends with huge pages against
//! 104 000–208 000 without, apply max 15–32 ms against 2–3 ms; `State::apply` throughput was
//! the same within noise either way (`state_ops`). With small pages the same zeroing is spread
//! over 4 KiB faults, one request at a time.

/// Turns transparent huge pages off for this process and its children (`PR_SET_THP_DISABLE`),
/// from now on, for memory mapped before too. Call it first thing in `main`. An error means
/// the kernel refused (it predates the flag); svault runs as before then, and says so.
#[allow(unsafe_code)]
pub fn small_pages_only() -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: PR_SET_THP_DISABLE takes plain integers (1, then unused zeros) and touches
        // no memory of ours; it only sets a flag on this process's address space.
        let rc = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// The kernel reports the flag in `/proc/self/status` (`THP_enabled`): on before, off after.
    #[cfg(target_os = "linux")]
    #[test]
    fn turns_huge_pages_off_for_the_process() {
        let thp = || {
            std::fs::read_to_string("/proc/self/status")
                .expect("status")
                .lines()
                .find_map(|l| l.strip_prefix("THP_enabled:").map(|v| v.trim().to_string()))
        };
        // Kernels before 5.0 do not report it: then only the call's success is checked.
        let before = thp();
        super::small_pages_only().expect("prctl");
        if let Some(before) = before {
            assert_eq!(before, "1", "huge pages were already off before the call");
            assert_eq!(thp().as_deref(), Some("0"));
        }
    }
}
