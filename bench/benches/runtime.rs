//! Runtime benchmark (a plain binary, not criterion: each figure needs minutes of setup with a
//! million cards, so it runs once and prints what it measured).
//!
//! For 1 and 2 shards, on `SVAULT_BENCH_CARDS` cards (default 1 000 000), group commit:
//! 1. closed-loop durable throughput of spends (authorize + capture) from many concurrent
//!    `submit_batch` callers, for `SVAULT_BENCH_SECS` seconds (default 5);
//! 2. open-loop latency at half that rate, measured from the intended send time (HDR histogram);
//! 3. restart time replaying the whole log (no snapshot);
//! 4. the snapshot pause (the freeze on the shard thread), throughput while snapshots are
//!    written back to back, and restart time from a snapshot;
//! 5. offline `svault replay` records/s (shards in parallel, WAL only).
//!
//! `cargo bench -p bench --bench runtime` (`SVAULT_BENCH_SHARDS=N` for one shard count only). The load comes from the same process and the same
//! 2 cores as the shards.

use hdrhistogram::Histogram;
use runtime::replay::{replay, ReplayOptions};
use runtime::{Durability, Engine, EngineConfig, Scope, Tuning};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use svault_core::command::{CardId, Channel, Command, Method, Request};
use svault_core::money::Amount;
use svault_core::outcome::Outcome;

/// The same allocator as the `svault` binary, so the figures are the server's.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::{Duration, Instant};

use bench::load::{setup, FIRST_CARD};

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `SVAULT_BENCH_SYNC=pwrite` selects the wal's pwrite + fdatasync commit instead of msync.
fn tuning() -> Tuning {
    // No automatic snapshots: "restart from the WAL only" and the offline replay need the whole
    // log (at 10 M cards the setup alone would pass the default 10 M-record interval). The
    // snapshot step below asks for one explicitly.
    let mut t = Tuning {
        snapshot_every_records: u64::MAX,
        snapshot_every_secs: u64::MAX,
        ..Tuning::default()
    };
    if std::env::var("SVAULT_BENCH_SYNC").as_deref() == Ok("pwrite") {
        t.wal.sync_method = wal::SyncMethod::PwriteFdatasync;
    }
    t
}

fn config(dir: &Path, shards: usize) -> EngineConfig {
    EngineConfig {
        data_dir: dir.into(),
        shards: Some(shards),
        durability: Durability::Group,
    }
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument selects shard counts ("1", "2").
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let cards = env_u64("SVAULT_BENCH_CARDS", 1_000_000);
    let secs = env_u64("SVAULT_BENCH_SECS", 5);
    let tmp = std::env::var("SVAULT_BENCH_DIR")
        .unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_string());
    println!("runtime bench: {cards} cards, {secs} s per measurement, data under {tmp}");
    // `SVAULT_BENCH_SHARDS=N` measures only N shards (large card counts take minutes per run).
    let only = env_u64("SVAULT_BENCH_SHARDS", 0) as usize;
    let shard_counts: Vec<usize> = if only > 0 { vec![only] } else { vec![1, 2] };
    for shards in shard_counts {
        if !filter.is_empty() && !filter.iter().any(|f| *f == shards.to_string()) {
            continue;
        }
        let dir = tempfile::tempdir_in(&tmp).expect("bench dir");
        run(dir.path(), shards, cards, secs);
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

fn run(dir: &Path, shards: usize, cards: u64, secs: u64) {
    println!("\n## {shards} shard(s)");
    let rt = rt();
    let engine = Engine::open_with(config(dir, shards), tuning()).expect("open");
    let started = Instant::now();
    rt.block_on(setup(&engine, cards));
    println!(
        "setup: {cards} cards opened and topped up in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    let key_seq = Arc::new(AtomicU64::new(0));
    let before = engine.shard_stats();
    let rate = rt.block_on(closed_loop(
        &engine,
        cards,
        Duration::from_secs(secs),
        key_seq.clone(),
    ));
    print_stats(&before, &engine.shard_stats(), secs);
    println!(
        "throughput (closed loop, 64 callers x batches of 256 spends): {rate:.0} authorizations/s"
    );
    let half = rate / 2.0;
    let before = engine.shard_stats();
    let h = rt.block_on(open_loop(
        &engine,
        cards,
        half,
        Duration::from_secs(secs),
        key_seq.clone(),
    ));
    print_stats(&before, &engine.shard_stats(), secs);
    println!(
        "latency at {half:.0}/s (open loop, batches of 64 every {:.0} us): p50 {} us, p99 {} us, p99.9 {} us, max {} us ({} requests)",
        64.0 * 1e6 / half,
        h.value_at_quantile(0.50),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max(),
        h.len()
    );
    let records: u64 = engine.shard_stats().iter().map(|s| s.committed_lsn).sum();
    engine.shutdown();
    drop(engine);

    // Restart from the log alone.
    let t = Instant::now();
    let e = Engine::open_with(config(dir, shards), tuning()).expect("reopen");
    let el = t.elapsed();
    let replayed: u64 = e.recovery_reports().iter().map(|r| r.records).sum();
    println!(
        "restart from the WAL only: {:.2} s for {replayed} records ({:.0} records/s, shards in parallel)",
        el.as_secs_f64(),
        replayed as f64 / el.as_secs_f64()
    );
    e.shutdown();
    drop(e);

    // A snapshot: the pause is the freeze on the shard thread.
    let snap_tuning = Tuning {
        snapshot_every_records: 1,
        snapshot_every_secs: 0,
        remove_covered_segments: false,
        ..tuning()
    };
    let e = Engine::open_with(config(dir, shards), snap_tuning).expect("reopen for snapshot");
    rt.block_on(async {
        let reqs: Vec<Request> = (0..shards as u64 * 4)
            .map(|i| Request {
                idempotency_key: Some(format!("snap-{i}")),
                command: Command::TopUp {
                    card_id: CardId(FIRST_CARD + i),
                    amount: Amount(100),
                    channel: Channel::Cash,
                },
            })
            .collect();
        let _ = e.submit_batch(reqs, &Scope::All).await;
    });
    let deadline = Instant::now() + Duration::from_secs(600);
    while e.shard_stats().iter().any(|s| s.snapshots == 0) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for (k, s) in e.shard_stats().iter().enumerate() {
        println!("snapshot pause shard {k}: {:.1} ms (freeze; serialised and written by a helper thread in {} ms) at lsn {}", s.snapshot_pause_us as f64 / 1e3, s.snapshot_write_ms, s.snapshot_lsn);
    }
    // The cost of copy-on-write: the same closed loop while each shard writes snapshots back
    // to back (a new one is frozen as soon as the last is durable), the worst case.
    let before = e.shard_stats();
    let rate = rt.block_on(closed_loop(
        &e,
        cards,
        Duration::from_secs(secs),
        key_seq.clone(),
    ));
    let after = e.shard_stats();
    let written: u64 = after
        .iter()
        .zip(&before)
        .map(|(a, b)| a.snapshots - b.snapshots)
        .sum();
    let pauses: Vec<String> = after
        .iter()
        .map(|s| format!("{:.1} ms", s.snapshot_pause_us as f64 / 1e3))
        .collect();
    println!(
        "throughput while snapshots are written back to back: {rate:.0} authorizations/s ({written} snapshots finished in {secs} s; last pauses {})",
        pauses.join(", ")
    );
    e.shutdown();
    drop(e);
    let t = Instant::now();
    let e = Engine::open_with(config(dir, shards), tuning()).expect("reopen from snapshot");
    let el = t.elapsed();
    let tail: u64 = e.recovery_reports().iter().map(|r| r.records).sum();
    println!(
        "restart from snapshot ({cards} cards) + {tail} tail records: {:.2} s",
        el.as_secs_f64()
    );
    e.shutdown();
    drop(e);

    let (decoded, rate) = decode_only(dir, shards);
    println!("log read + record decode only (no apply): {decoded} records at {rate:.0} records/s");
    let report = replay(
        dir,
        &ReplayOptions {
            ignore_snapshots: true,
            ..Default::default()
        },
    )
    .expect("replay");
    println!(
        "offline replay (WAL only, shards in parallel): {} records in {:.2} s = {:.0} records/s (the log read in place; {records} records logged)",
        report.records,
        report.elapsed.as_secs_f64(),
        report.records_per_sec()
    );
}

fn print_stats(before: &[runtime::ShardStats], after: &[runtime::ShardStats], secs: u64) {
    for (k, (a, b)) in before.iter().zip(after).enumerate() {
        let (reqs, batches, commits) = (
            b.requests - a.requests,
            b.batches - a.batches,
            b.commits - a.commits,
        );
        println!(
            "  shard {k}: {:.0} requests/s, mean batch {:.0} requests, {:.0} commits/s, mean commit {:.0} us",
            reqs as f64 / secs as f64,
            reqs as f64 / batches.max(1) as f64,
            commits as f64 / secs as f64,
            (b.commit_us_total - a.commit_us_total) as f64 / commits.max(1) as f64
        );
    }
}

fn spend(key: u64, card: u64) -> Request {
    Request {
        idempotency_key: Some(format!("b{key}")),
        command: Command::Spend {
            card_id: CardId(FIRST_CARD + card),
            amount: Amount(100),
            method: Method::Qr,
            store: None,
            allow_partial: false,
        },
    }
}

async fn closed_loop(engine: &Engine, cards: u64, dur: Duration, key_seq: Arc<AtomicU64>) -> f64 {
    let done = Arc::new(AtomicU64::new(0));
    let approved = Arc::new(AtomicU64::new(0));
    let stop_at = Instant::now() + dur;
    let started = Instant::now();
    let mut handles = Vec::new();
    for t in 0..64u64 {
        let (engine, done, approved, key_seq) = (
            engine.clone(),
            done.clone(),
            approved.clone(),
            key_seq.clone(),
        );
        handles.push(tokio::spawn(async move {
            let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while Instant::now() < stop_at {
                let base = key_seq.fetch_add(256, Ordering::Relaxed);
                let reqs: Vec<Request> = (0..256)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        spend(base + i, x % cards)
                    })
                    .collect();
                let results = engine.submit_batch(reqs, &Scope::All).await;
                let ok = results
                    .iter()
                    .filter(
                        |r| matches!(r, Ok(reply) if matches!(reply.outcome, Outcome::Approved(_))),
                    )
                    .count();
                let answered = results.iter().filter(|r| r.is_ok()).count();
                done.fetch_add(answered as u64, Ordering::Relaxed);
                approved.fetch_add(ok as u64, Ordering::Relaxed);
                if answered < results.len() {
                    tokio::task::yield_now().await;
                }
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
    let el = started.elapsed().as_secs_f64();
    let d = done.load(Ordering::Relaxed);
    let a = approved.load(Ordering::Relaxed);
    if a < d {
        println!("  note: {} of {d} answered spends were not approved", d - a);
    }
    d as f64 / el
}

async fn open_loop(
    engine: &Engine,
    cards: u64,
    rate: f64,
    dur: Duration,
    key_seq: Arc<AtomicU64>,
) -> Histogram<u64> {
    let hist = Arc::new(parking_lot::Mutex::new(
        Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("hist"),
    ));
    let batch = 64u64;
    let interval = Duration::from_secs_f64(batch as f64 / rate.max(1.0));
    let started = Instant::now();
    let mut handles = Vec::new();
    let mut n = 0u64;
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    loop {
        let intended = started + interval.mul_f64(n as f64);
        if intended.duration_since(started) >= dur {
            break;
        }
        let now = Instant::now();
        if intended > now {
            tokio::time::sleep(intended - now).await;
        }
        let base = key_seq.fetch_add(batch, Ordering::Relaxed);
        let reqs: Vec<Request> = (0..batch)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                spend(base + i, x % cards)
            })
            .collect();
        let (engine, hist) = (engine.clone(), hist.clone());
        handles.push(tokio::spawn(async move {
            let results = engine.submit_batch(reqs, &Scope::All).await;
            let us = intended.elapsed().as_micros() as u64;
            let mut h = hist.lock();
            for _ in results.iter().filter(|r| r.is_ok()) {
                let _ = h.record(us.max(1));
            }
        }));
        n += 1;
        if handles.len() > 4_096 {
            handles.retain(|h| !h.is_finished());
        }
    }
    for h in handles {
        let _ = h.await;
    }
    let h = hist.lock().clone();
    h
}

/// Reads and decodes every record of every shard's log without applying it: the log + decode
/// part of replay, i.e. what replay would reach with a free state machine.
fn decode_only(dir: &Path, shards: usize) -> (u64, f64) {
    let mut n = 0u64;
    let started = Instant::now();
    for k in 0..shards {
        let paths = runtime::recovery::shard_paths(dir, k);
        let (wal, _) = wal::Wal::open(&paths.wal, wal::WalOptions::default()).expect("open log");
        wal.read_from(wal::Lsn(1), |_, bytes| -> Result<(), wal::WalError> {
            if svault_core::record::decode(bytes).is_ok() {
                n += 1;
            }
            Ok(())
        })
        .expect("read log");
    }
    (n, n as f64 / started.elapsed().as_secs_f64())
}
