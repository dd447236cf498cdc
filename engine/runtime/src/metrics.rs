//! Counters the shard threads update with relaxed atomics (no lock on the hot path) and
//! `Engine::render_metrics` prints in Prometheus text format.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (µs) of the commit latency histogram buckets.
pub const COMMIT_US_BUCKETS: [u64; 12] = [
    50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 102_400,
];
/// Upper bounds of the batch size histogram buckets (requests per batch).
pub const BATCH_SIZE_BUCKETS: [u64; 10] = [1, 2, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536];

/// One shard's counters.
#[derive(Default)]
pub struct ShardMetrics {
    pub requests: AtomicU64,
    pub queries: AtomicU64,
    pub batches: AtomicU64,
    pub commits: AtomicU64,
    pub overloaded: AtomicU64,
    pub committed_lsn: AtomicU64,
    pub snapshots: AtomicU64,
    pub snapshot_lsn: AtomicU64,
    pub snapshot_pause_us_last: AtomicU64,
    /// Serialise + write + fsync of the last snapshot, on the writer thread (not a pause).
    pub snapshot_write_ms_last: AtomicU64,
    pub poisoned: AtomicU64,
    pub commit_us_sum: AtomicU64,
    commit_us: [AtomicU64; COMMIT_US_BUCKETS.len() + 1],
    batch_size: [AtomicU64; BATCH_SIZE_BUCKETS.len() + 1],
}

fn bucket(bounds: &[u64], v: u64) -> usize {
    bounds.iter().position(|b| v <= *b).unwrap_or(bounds.len())
}

impl ShardMetrics {
    /// Records one commit's duration.
    pub fn observe_commit(&self, us: u64) {
        self.commits.fetch_add(1, Relaxed);
        self.commit_us_sum.fetch_add(us, Relaxed);
        if let Some(b) = self.commit_us.get(bucket(&COMMIT_US_BUCKETS, us)) {
            b.fetch_add(1, Relaxed);
        }
    }
    /// Records one batch's size.
    pub fn observe_batch(&self, size: u64) {
        self.batches.fetch_add(1, Relaxed);
        if let Some(b) = self.batch_size.get(bucket(&BATCH_SIZE_BUCKETS, size)) {
            b.fetch_add(1, Relaxed);
        }
    }
}

fn histogram(
    out: &mut String,
    name: &str,
    shard: usize,
    bounds: &[u64],
    counts: &[AtomicU64],
    sum: Option<u64>,
) {
    let mut cumulative = 0u64;
    for (i, c) in counts.iter().enumerate() {
        cumulative += c.load(Relaxed);
        match bounds.get(i) {
            Some(b) => {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{shard=\"{shard}\",le=\"{b}\"}} {cumulative}"
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {cumulative}"
                );
            }
        }
    }
    if let Some(s) = sum {
        let _ = writeln!(out, "{name}_sum{{shard=\"{shard}\"}} {s}");
    }
    let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {cumulative}");
}

/// A per-shard series: name, Prometheus type, how to read it.
type Gauge = (&'static str, &'static str, fn(&ShardMetrics) -> u64);

/// Appends every shard's lines; `queue_depths[k]` is shard k's current queue length.
pub fn render(
    out: &mut String,
    shards: &[std::sync::Arc<ShardMetrics>],
    queue_depths: &[usize],
    queue_depth_max: usize,
) {
    let gauges: [Gauge; 11] = [
        ("svault_shard_requests_total", "counter", |m| {
            m.requests.load(Relaxed)
        }),
        ("svault_shard_queries_total", "counter", |m| {
            m.queries.load(Relaxed)
        }),
        ("svault_shard_batches_total", "counter", |m| {
            m.batches.load(Relaxed)
        }),
        ("svault_shard_commits_total", "counter", |m| {
            m.commits.load(Relaxed)
        }),
        ("svault_shard_overloaded_total", "counter", |m| {
            m.overloaded.load(Relaxed)
        }),
        ("svault_shard_committed_lsn", "gauge", |m| {
            m.committed_lsn.load(Relaxed)
        }),
        ("svault_shard_snapshots_total", "counter", |m| {
            m.snapshots.load(Relaxed)
        }),
        ("svault_shard_snapshot_lsn", "gauge", |m| {
            m.snapshot_lsn.load(Relaxed)
        }),
        ("svault_shard_snapshot_pause_us", "gauge", |m| {
            m.snapshot_pause_us_last.load(Relaxed)
        }),
        ("svault_shard_snapshot_write_ms", "gauge", |m| {
            m.snapshot_write_ms_last.load(Relaxed)
        }),
        ("svault_shard_poisoned", "gauge", |m| {
            m.poisoned.load(Relaxed)
        }),
    ];
    for (name, kind, get) in gauges {
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (k, m) in shards.iter().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{k}\"}} {}", get(m));
        }
    }
    let _ = writeln!(out, "# TYPE svault_shard_queue_depth gauge");
    for (k, d) in queue_depths.iter().enumerate() {
        let _ = writeln!(out, "svault_shard_queue_depth{{shard=\"{k}\"}} {d}");
    }
    let _ = writeln!(out, "# TYPE svault_shard_queue_depth_max gauge");
    let _ = writeln!(out, "svault_shard_queue_depth_max {queue_depth_max}");
    let _ = writeln!(out, "# TYPE svault_commit_latency_us histogram");
    for (k, m) in shards.iter().enumerate() {
        histogram(
            out,
            "svault_commit_latency_us",
            k,
            &COMMIT_US_BUCKETS,
            &m.commit_us,
            Some(m.commit_us_sum.load(Relaxed)),
        );
    }
    let _ = writeln!(out, "# TYPE svault_batch_size histogram");
    for (k, m) in shards.iter().enumerate() {
        histogram(
            out,
            "svault_batch_size",
            k,
            &BATCH_SIZE_BUCKETS,
            &m.batch_size,
            None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn renders_cumulative_buckets() {
        let m = Arc::new(ShardMetrics::default());
        m.observe_commit(70);
        m.observe_commit(1_000_000);
        m.observe_batch(3);
        let mut out = String::new();
        render(&mut out, &[m], &[5], 100);
        assert!(
            out.contains("svault_commit_latency_us_bucket{shard=\"0\",le=\"50\"} 0"),
            "{out}"
        );
        assert!(
            out.contains("svault_commit_latency_us_bucket{shard=\"0\",le=\"100\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("svault_commit_latency_us_bucket{shard=\"0\",le=\"+Inf\"} 2"),
            "{out}"
        );
        assert!(
            out.contains("svault_batch_size_bucket{shard=\"0\",le=\"4\"} 1"),
            "{out}"
        );
        assert!(
            out.contains("svault_shard_queue_depth{shard=\"0\"} 5"),
            "{out}"
        );
    }
}
