//! Builds a large, realistic log to measure replay over, through the real runtime (group
//! commit, every record durable):
//! `cargo run --release -p bench --example replay_log -- --data DIR --records 50000000`,
//! then `svault replay --data DIR --ignore-snapshots` (and `--verify`).
//!
//! The mix, after opening and topping up `--cards` cards: keyed spends on uniformly chosen
//! cards, with one top-up and one hold in every 16 requests. No snapshots are taken and no
//! segment is removed, so the whole log from LSN 1 stays for the replay.
//!
//! `--days D` spreads the traffic over D days of batch time (a clock that moves with the
//! requests sent, starting now) instead of the minutes it takes to write: idempotency keys,
//! histories and holds then expire as they would in service, and the state a replay or a
//! report rebuilds holds one day's keys rather than every key of the log.

use bench::load::{setup, submit_all, FIRST_CARD};
use clap::Parser;
use runtime::{Durability, Engine, EngineConfig, Tuning};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use svault_core::command::{CardId, Channel, Command, Method, Millis, Request};
use svault_core::money::Amount;

/// The same allocator as the `svault` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser, Debug)]
#[command(about = "Write a large svault log to measure replay over")]
struct Args {
    /// Data directory (created; must not hold another log).
    #[arg(long)]
    data: PathBuf,
    /// Records to log in all (setup included).
    #[arg(long, default_value_t = 50_000_000)]
    records: u64,
    /// Cards opened and topped up first.
    #[arg(long, default_value_t = 1_000_000)]
    cards: u64,
    /// Shards (fixed for the data directory).
    #[arg(long, default_value_t = 2)]
    shards: usize,
    /// Batch time the traffic spans, in days (0: the wall clock, so a few minutes).
    #[arg(long, default_value_t = 0)]
    days: u64,
}

fn main() {
    let args = Args::parse();
    let key_seq = Arc::new(AtomicU64::new(0));
    let mut tuning = Tuning {
        snapshot_every_records: u64::MAX,
        snapshot_every_secs: u64::MAX,
        remove_covered_segments: false,
        ..Tuning::default()
    };
    if args.days > 0 {
        // Each request sent moves batch time on by the same step, so the traffic fills the
        // days asked for; the shards never let batch time go backwards.
        let start = runtime::wall_clock().0;
        let (span_ms, records) = (
            u128::from(args.days) * 86_400_000,
            u128::from(args.records.max(1)),
        );
        let sent = key_seq.clone();
        tuning.clock = Arc::new(move || {
            let ms = u128::from(sent.load(Ordering::Relaxed)) * span_ms / records;
            Millis(start.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX)))
        });
    }
    let config = EngineConfig {
        data_dir: args.data.clone(),
        shards: Some(args.shards),
        durability: Durability::Group,
    };
    let engine = match Engine::open_with(config, tuning) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("replay_log: cannot open {}: {e}", args.data.display());
            std::process::exit(2);
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let started = Instant::now();
    rt.block_on(setup(&engine, args.cards));
    println!(
        "setup: {} cards opened and topped up in {:.1} s",
        args.cards,
        started.elapsed().as_secs_f64()
    );
    rt.block_on(traffic(&engine, args.cards, args.records, key_seq));
    let logged: u64 = engine.shard_stats().iter().map(|s| s.committed_lsn).sum();
    let el = started.elapsed().as_secs_f64();
    println!(
        "{logged} records logged in {el:.1} s ({:.0} records/s); replay with: svault replay --data {} --ignore-snapshots",
        logged as f64 / el,
        args.data.display()
    );
    // The live state's memory, to compare with a restart's and a replay's.
    println!(
        "RSS of the live engine: {} MiB (peak {} MiB)",
        bench::memory::status_mib("VmRSS"),
        bench::memory::status_mib("VmHWM")
    );
    engine.shutdown();
}

fn logged(engine: &Engine) -> u64 {
    engine.shard_stats().iter().map(|s| s.committed_lsn).sum()
}

async fn traffic(engine: &Engine, cards: u64, records: u64, key_seq: Arc<AtomicU64>) {
    let mut last_report = Instant::now();
    let mut handles = Vec::new();
    for t in 0..32u64 {
        let (engine, key_seq) = (engine.clone(), key_seq.clone());
        handles.push(tokio::spawn(async move {
            let mut x = t.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
            while logged(&engine) < records {
                let base = key_seq.fetch_add(256, Ordering::Relaxed);
                let reqs = (0..256)
                    .map(|i| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        let card_id = CardId(FIRST_CARD + x % cards);
                        let n = base + i;
                        let command = match n % 16 {
                            0 => Command::TopUp {
                                card_id,
                                amount: Amount(5_000),
                                channel: Channel::Unionpay,
                            },
                            1 => Command::Hold {
                                card_id,
                                amount: Amount(500),
                                ttl_seconds: 60,
                                method: Method::Card,
                                store: None,
                                allow_partial: false,
                            },
                            _ => Command::Spend {
                                card_id,
                                amount: Amount(100),
                                method: Method::Qr,
                                store: None,
                                allow_partial: false,
                            },
                        };
                        Request {
                            idempotency_key: Some(format!("r{n}")),
                            command,
                        }
                    })
                    .collect();
                submit_all(&engine, reqs).await;
            }
        }));
    }
    while !handles.iter().all(|h| h.is_finished()) {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if last_report.elapsed() >= Duration::from_secs(10) {
            println!("  {} records logged", logged(engine));
            last_report = Instant::now();
        }
    }
    for h in handles {
        let _ = h.await;
    }
}
