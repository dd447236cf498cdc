//! The process's memory as Linux reports it, for examples that measure what an operation costs
//! in RSS (a snapshot written, a state restored).

/// A `/proc/self/status` figure in MiB: `VmRSS` (resident now), `VmHWM` (peak resident).
/// 0 where the kernel gives none (not Linux): the examples print it, nothing depends on it.
pub fn status_mib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix(field)?.strip_prefix(':').map(str::to_owned))
        })
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| kib >> 10)
}
