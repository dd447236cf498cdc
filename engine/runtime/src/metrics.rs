//! Counters the shard threads update with relaxed atomics (no lock on the hot path) and
//! `Engine::render_metrics` prints in Prometheus text format.
//!
//! The stage histograms ([`StageHistogram`]: queue wait, apply, commit, reply) are what an
//! operator reads to see where a stall sits. Each shard has its own, written only by its own
//! thread, so recording is a plain load and store (no locked instruction, no line shared with
//! another shard, no allocation).

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Upper bounds (µs) of the commit latency histogram buckets.
pub const COMMIT_US_BUCKETS: [u64; 12] = [
    50, 100, 200, 400, 800, 1_600, 3_200, 6_400, 12_800, 25_600, 51_200, 102_400,
];
/// Upper bounds of the batch size histogram buckets (requests per batch).
pub const BATCH_SIZE_BUCKETS: [u64; 10] = [1, 2, 4, 16, 64, 256, 1_024, 4_096, 16_384, 65_536];

/// Buckets of a [`StageHistogram`]: upper bounds 2^0 .. 2^(STAGE_BUCKETS-1) µs (1 µs to
/// about 16.8 s), then `+Inf`.
pub const STAGE_BUCKETS: usize = 25;

/// A latency histogram (µs) with power-of-two buckets that exactly one thread records into
/// and any thread may read. Why single-writer: a read-modify-write by plain load + store costs
/// what an ordinary counter does; a reader may see a count and a sum of slightly different
/// instants, which Prometheus tolerates.
#[derive(Default)]
pub struct StageHistogram {
    counts: [AtomicU64; STAGE_BUCKETS + 1],
    sum_us: AtomicU64,
    max_us: AtomicU64,
}

impl StageHistogram {
    /// The bucket `us` falls in: the smallest `i` with `us <= 2^i`, or the last (`+Inf`).
    fn bucket(us: u64) -> usize {
        if us <= 1 {
            return 0;
        }
        ((64 - (us - 1).leading_zeros()) as usize).min(STAGE_BUCKETS)
    }

    /// Records one duration. Only the owning shard thread may call it (single writer).
    pub fn record(&self, us: u64) {
        if let Some(c) = self.counts.get(Self::bucket(us)) {
            c.store(c.load(Relaxed) + 1, Relaxed);
        }
        self.sum_us
            .store(self.sum_us.load(Relaxed).wrapping_add(us), Relaxed);
        if us > self.max_us.load(Relaxed) {
            self.max_us.store(us, Relaxed);
        }
    }

    /// Durations recorded so far.
    pub fn count(&self) -> u64 {
        self.counts.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Longest duration recorded (µs).
    pub fn max_us(&self) -> u64 {
        self.max_us.load(Relaxed)
    }

    fn render(&self, out: &mut String, name: &str, shard: usize) {
        let mut cumulative = 0u64;
        for (i, c) in self.counts.iter().enumerate() {
            cumulative += c.load(Relaxed);
            if i < STAGE_BUCKETS {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{shard=\"{shard}\",le=\"{}\"}} {cumulative}",
                    1u64 << i
                );
            } else {
                let _ = writeln!(
                    out,
                    "{name}_bucket{{shard=\"{shard}\",le=\"+Inf\"}} {cumulative}"
                );
            }
        }
        let _ = writeln!(
            out,
            "{name}_sum{{shard=\"{shard}\"}} {}",
            self.sum_us.load(Relaxed)
        );
        let _ = writeln!(out, "{name}_count{{shard=\"{shard}\"}} {cumulative}");
    }
}

/// One shard's stage histograms, in the order a request meets them.
#[derive(Default)]
pub struct Stages {
    /// From `Engine::submit` (or a frame, or a read) handing a message to the shard's queue to
    /// the shard taking it up: one per message.
    pub queue_wait: StageHistogram,
    /// Appending and applying a batch (ticks and segment rotations inside it included; its
    /// syncs and replies not): one per batch.
    pub apply: StageHistogram,
    /// The log's sync (`Wal::commit`: pwrite + fdatasync): one per commit.
    pub commit: StageHistogram,
    /// Publishing events and releasing the answers a commit covers (waking their tasks): one
    /// per batch.
    pub reply: StageHistogram,
}

/// A stage series: name, help line, which histogram.
type StageSeries = (&'static str, &'static str, fn(&Stages) -> &StageHistogram);

/// What each stage histogram is called in `/metrics`, with its help line.
const STAGE_SERIES: [StageSeries; 4] = [
    (
        "svault_shard_queue_wait_us",
        "Time a message waited in its shard's queue (µs), per message.",
        |s| &s.queue_wait,
    ),
    (
        "svault_shard_apply_us",
        "Time a shard spent appending and applying one batch (µs).",
        |s| &s.apply,
    ),
    (
        "svault_shard_commit_us",
        "Time of one log sync, pwrite + fdatasync (µs).",
        |s| &s.commit,
    ),
    (
        "svault_shard_reply_us",
        "Time a shard spent publishing events and releasing one batch's answers (µs).",
        |s| &s.reply,
    ),
];

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
    /// Batches slower than the slow-batch threshold (each logged with its parts).
    pub slow_batches: AtomicU64,
    /// Where each batch's time went (written by the shard thread only).
    pub stages: Stages,
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
    let gauges: [Gauge; 12] = [
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
        ("svault_shard_slow_batches_total", "counter", |m| {
            m.slow_batches.load(Relaxed)
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
    for (name, help, get) in STAGE_SERIES {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} histogram");
        for (k, m) in shards.iter().enumerate() {
            get(&m.stages).render(out, name, k);
        }
        let max = format!("{}_max", name);
        let _ = writeln!(out, "# TYPE {max} gauge");
        for (k, m) in shards.iter().enumerate() {
            let _ = writeln!(out, "{max}{{shard=\"{k}\"}} {}", get(&m.stages).max_us());
        }
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

    #[test]
    fn stage_buckets_are_powers_of_two_and_cumulative() {
        assert_eq!(StageHistogram::bucket(0), 0);
        assert_eq!(StageHistogram::bucket(1), 0);
        assert_eq!(StageHistogram::bucket(2), 1);
        assert_eq!(StageHistogram::bucket(3), 2);
        assert_eq!(StageHistogram::bucket(4), 2);
        assert_eq!(StageHistogram::bucket(5), 3);
        assert_eq!(StageHistogram::bucket(1 << 24), 24);
        assert_eq!(StageHistogram::bucket((1 << 24) + 1), STAGE_BUCKETS);
        assert_eq!(StageHistogram::bucket(u64::MAX), STAGE_BUCKETS);
        let m = Arc::new(ShardMetrics::default());
        m.stages.apply.record(3);
        m.stages.apply.record(1000);
        m.stages.apply.record(u64::MAX / 2);
        let mut out = String::new();
        render(&mut out, &[m], &[0], 1);
        for line in [
            "svault_shard_apply_us_bucket{shard=\"0\",le=\"2\"} 0",
            "svault_shard_apply_us_bucket{shard=\"0\",le=\"4\"} 1",
            "svault_shard_apply_us_bucket{shard=\"0\",le=\"1024\"} 2",
            "svault_shard_apply_us_bucket{shard=\"0\",le=\"16777216\"} 2",
            "svault_shard_apply_us_bucket{shard=\"0\",le=\"+Inf\"} 3",
            "svault_shard_apply_us_count{shard=\"0\"} 3",
            "svault_shard_queue_wait_us_count{shard=\"0\"} 0",
            "svault_shard_apply_us_max{shard=\"0\"} 9223372036854775807",
        ] {
            assert!(out.contains(line), "{line} missing from\n{out}");
        }
    }
}
