//! WAL benchmarks: append throughput, commit latency per batch size for both sync
//! methods, p50/p99 of a one-record commit (hdrhistogram), recovery/replay scan speed.
//!
//! `cargo bench -p bench --bench wal` (figures in bench/RESULTS.md, "## wal").
//! The log lives in a temp dir on the same disk as the repo (`TMPDIR` to move it).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use hdrhistogram::Histogram;
use wal::{Lsn, SyncMethod, Wal, WalError, WalOptions};

const METHODS: [(SyncMethod, &str); 2] = [
    (SyncMethod::Msync, "msync"),
    (SyncMethod::PwriteFdatasync, "pwrite"),
];

fn open(dir: &std::path::Path, method: SyncMethod) -> Wal {
    let opts = WalOptions {
        segment_size_bytes: 64 << 20,
        sync_method: method,
        ..WalOptions::default()
    };
    Wal::open(dir, opts).expect("open").0
}

/// Appends without commit; a commit (outside the timed region) every 8 MiB keeps the
/// dirty range bounded, as a real shard would.
fn append_throughput(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_append");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    for (method, name) in METHODS {
        for size in [64usize, 256] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = open(dir.path(), method);
            let payload = vec![0x5Au8; size];
            let per_commit = (8 << 20) / (size + 16);
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_function(BenchmarkId::new(name, size), |b| {
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    let mut left = iters;
                    while left > 0 {
                        let n = left.min(per_commit as u64);
                        let t = Instant::now();
                        for _ in 0..n {
                            log.append(&payload).expect("append");
                        }
                        spent += t.elapsed();
                        log.commit().expect("commit");
                        left -= n;
                    }
                    spent
                })
            });
        }
    }
    g.finish();
}

/// Thread CPU time, to tell the CPU cost of `append` from waits on a shared machine.
fn thread_cpu() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Sustained appends into a fresh log (rotations and background zero-fill included),
/// wall time and the appending thread's CPU time, printed side by side.
fn append_sustained(_c: &mut Criterion) {
    for (method, name) in METHODS {
        for (size, count) in [(64usize, 4_000_000u64), (256, 1_000_000)] {
            let dir = tempfile::tempdir().expect("tempdir");
            let mut log = open(dir.path(), method);
            let payload = vec![0x5Au8; size];
            let per_commit = (8 << 20) / (size as u64 + 16);
            let (mut wall, mut cpu) = (Duration::ZERO, Duration::ZERO);
            let mut left = count;
            while left > 0 {
                let n = left.min(per_commit);
                let (t, c) = (Instant::now(), thread_cpu());
                for _ in 0..n {
                    log.append(&payload).expect("append");
                }
                wall += t.elapsed();
                cpu += thread_cpu() - c;
                log.commit().expect("commit");
                left -= n;
            }
            let bytes = (count * size as u64) as f64;
            println!(
                "append sustained [{name} {size} B x {count}]: wall {:.0} MB/s ({:.0} ns/record), cpu {:.0} MB/s ({:.0} ns/record)",
                bytes / wall.as_secs_f64() / 1e6,
                wall.as_nanos() as f64 / count as f64,
                bytes / cpu.as_secs_f64() / 1e6,
                cpu.as_nanos() as f64 / count as f64,
            );
        }
    }
}

/// Time of `append × batch` + one `commit`, 100-byte records.
fn commit_latency(c: &mut Criterion) {
    let mut g = c.benchmark_group("wal_commit");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    let payload = [0xA5u8; 100];
    for (method, name) in METHODS {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut log = open(dir.path(), method);
        for batch in [1u64, 16, 256, 4096] {
            g.throughput(Throughput::Elements(batch));
            g.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter(|| {
                    for _ in 0..batch {
                        log.append(&payload).expect("append");
                    }
                    log.commit().expect("commit")
                })
            });
        }
    }
    g.finish();
}

/// p50/p99/p999 of a one-record commit, by hand with hdrhistogram (criterion reports means).
///
/// The two WAL methods and two raw baselines on pre-zeroed files (a 4 KiB `pwrite` +
/// `fdatasync`; a 4 KiB store into a map + `msync`) run interleaved, one of each per round,
/// so a noisy neighbour on the shared disk hits all four alike.
fn one_record_commit_percentiles(_c: &mut Criterion) {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut logs: Vec<(Wal, &str)> = METHODS
        .iter()
        .map(|(m, name)| (open(&dir.path().join(name), *m), *name))
        .collect();
    let raw_len = 64u64 << 20;
    let zeroed = |name: &str| {
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join(name))
            .expect("raw file");
        let page = [0u8; 4096];
        for off in (0..raw_len).step_by(4096) {
            f.write_all_at(&page, off).expect("zero");
        }
        f.sync_all().expect("sync");
        f
    };
    let raw_pwrite = zeroed("raw-pwrite");
    let raw_map_file = zeroed("raw-msync");
    // SAFETY: a private temp file nobody else knows about; it is never truncated while mapped.
    let mut raw_map = unsafe { memmap2::MmapMut::map_mut(&raw_map_file).expect("map") };
    let new_h = || Histogram::<u64>::new_with_bounds(1, 1_000_000_000, 3).expect("histogram");
    let mut hs = [new_h(), new_h(), new_h(), new_h()];
    let rounds = 2000u64;
    for i in 0..rounds {
        let off = (i * 4096) % raw_len;
        let mut rec = [0u8; 4096];
        rec[..8].copy_from_slice(&i.to_le_bytes());
        let t = Instant::now();
        raw_pwrite.write_all_at(&rec, off).expect("pwrite");
        raw_pwrite.sync_data().expect("fdatasync");
        let _ = hs[0].record(t.elapsed().as_nanos() as u64);
        let t = Instant::now();
        raw_map[off as usize..off as usize + 128].copy_from_slice(&rec[..128]);
        raw_map.flush_range(off as usize, 4096).expect("msync");
        let _ = hs[1].record(t.elapsed().as_nanos() as u64);
        for (k, (log, _)) in logs.iter_mut().enumerate() {
            let t = Instant::now();
            log.append(&[7u8; 100]).expect("append");
            log.commit().expect("commit");
            let _ = hs[2 + k].record(t.elapsed().as_nanos() as u64);
        }
    }
    let names = [
        "raw 4 KiB pwrite+fdatasync".to_string(),
        "raw 4 KiB store+msync".to_string(),
        format!("wal {}", logs[0].1),
        format!("wal {}", logs[1].1),
    ];
    for (h, name) in hs.iter().zip(names) {
        println!(
            "one-record commit [{name}]: p50 {:.1} µs, p99 {:.1} µs, p99.9 {:.1} µs, max {:.1} µs ({} samples)",
            h.value_at_quantile(0.50) as f64 / 1e3,
            h.value_at_quantile(0.99) as f64 / 1e3,
            h.value_at_quantile(0.999) as f64 / 1e3,
            h.max() as f64 / 1e3,
            h.len()
        );
    }
}

/// Replay speed: `read_from` over every record (checksums verified) and a full `open`.
fn recovery_scan(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = 2_000_000u64;
    let payload = [0x3Cu8; 48]; // 64-byte records on disk
    {
        let mut log = open(dir.path(), SyncMethod::Msync);
        for i in 0..records {
            log.append(&payload).expect("append");
            if i % 4096 == 4095 {
                log.commit().expect("commit");
            }
        }
        log.commit().expect("commit");
    }
    let bytes = records * 64;
    let mut g = c.benchmark_group("wal_recovery");
    g.warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10);
    g.throughput(Throughput::Elements(records));
    let log = open(dir.path(), SyncMethod::Msync);
    g.bench_function(
        BenchmarkId::new("read_from", format!("{records}x48B")),
        |b| {
            b.iter(|| {
                let mut n = 0u64;
                let mut sum = 0u64;
                log.read_from(Lsn(1), |_, p| -> Result<(), WalError> {
                    n += 1;
                    sum += p.len() as u64;
                    Ok(())
                })
                .expect("read");
                assert_eq!(n, records);
                sum
            })
        },
    );
    drop(log);
    g.bench_function(BenchmarkId::new("open", format!("{records}x48B")), |b| {
        b.iter(|| {
            let (log, rec) = Wal::open(
                dir.path(),
                WalOptions {
                    segment_size_bytes: 64 << 20,
                    ..Default::default()
                },
            )
            .expect("open");
            assert_eq!(rec.last_lsn, Lsn(records));
            drop(log);
        })
    });
    g.finish();
    println!(
        "wal recovery log: {records} records, {} MiB of records",
        bytes >> 20
    );
}

criterion_group!(
    benches,
    one_record_commit_percentiles,
    append_sustained,
    commit_latency,
    append_throughput,
    recovery_scan
);
criterion_main!(benches);
