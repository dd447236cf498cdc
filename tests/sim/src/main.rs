//! `svault-sim`: runs many seeds of the whole-engine simulator and prints what it injected.
//!
//! `cargo run --release -p svault-sim -- --seeds 10000 --ops 10000` runs seeds 0..10000 on
//! every core; the first failure stops the run and prints the seed and step that reproduce it.

use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Instant;

use clap::Parser;
use svault_sim::{run, Failure, Options, Stats};

/// mimalloc: the simulated disks allocate and free segment- and snapshot-sized buffers all the
/// time; with the system allocator a run spends a fifth of its time in page faults and frees.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs seeds `first..first+seeds` of the simulator.
#[derive(Parser, Debug)]
#[command(name = "svault-sim")]
struct Args {
    /// How many seeds.
    #[arg(long, default_value_t = 100)]
    seeds: u64,
    /// Steps per seed.
    #[arg(long, default_value_t = 1000)]
    ops: u64,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    first: u64,
    /// Threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// Chance, in parts per million, of an extra from-scratch replay of every log after a
    /// restart (there is one whenever the logs doubled since the last, and one at the end of a
    /// seed, whatever this says).
    #[arg(long, default_value_t = 0)]
    full_replay_ppm: u32,
    /// Print every step (use with one seed).
    #[arg(long)]
    trace: bool,
    /// Start no new seed after this many seconds (the totals cover the seeds finished).
    #[arg(long)]
    max_secs: Option<u64>,
}

/// No transparent huge pages for this process: the simulated disks grow and free segment-sized
/// buffers all the time, and with huge pages every fresh 2 MiB the allocator touches is zeroed
/// whole by the kernel (a quarter of a run's time went there).
fn no_huge_pages() {
    // SAFETY: prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0) only sets a flag of this process; it reads
    // and writes no memory of ours.
    let r = unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) };
    if r != 0 {
        eprintln!(
            "svault-sim: could not disable transparent huge pages ({}); runs are slower",
            std::io::Error::last_os_error()
        );
    }
}

fn main() -> ExitCode {
    no_huge_pages();
    let args = Args::parse();
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .max(1);
    let next = AtomicU64::new(args.first);
    let end = args.first + args.seeds;
    let stop = AtomicBool::new(false);
    let totals = Mutex::new(Stats::default());
    let failures: Mutex<Vec<Failure>> = Mutex::new(Vec::new());
    let done = AtomicU64::new(0);
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                if stop.load(Relaxed)
                    || args
                        .max_secs
                        .is_some_and(|m| started.elapsed().as_secs() >= m)
                {
                    break;
                }
                let seed = next.fetch_add(1, Relaxed);
                if seed >= end {
                    break;
                }
                let mut opts = Options::new(seed, args.ops);
                opts.trace = args.trace;
                opts.full_replay_ppm = args.full_replay_ppm;
                match run(&opts) {
                    Ok(st) => totals.lock().unwrap_or_else(|e| e.into_inner()).add(&st),
                    Err(f) => {
                        eprintln!("FAILED: {f}");
                        failures.lock().unwrap_or_else(|e| e.into_inner()).push(f);
                        stop.store(true, Relaxed);
                    }
                }
                let n = done.fetch_add(1, Relaxed) + 1;
                if n.is_multiple_of(500) {
                    eprintln!("{n} seeds in {:.0} s", started.elapsed().as_secs_f64());
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let t = totals.into_inner().unwrap_or_else(|e| e.into_inner());
    print_totals(&t, elapsed.as_secs_f64(), threads);
    let failures = failures.into_inner().unwrap_or_else(|e| e.into_inner());
    if failures.is_empty() {
        ExitCode::SUCCESS
    } else {
        for f in &failures {
            println!("FAILED: {f}");
        }
        ExitCode::FAILURE
    }
}

fn print_totals(t: &Stats, secs: f64, threads: usize) {
    println!(
        "{} seeds passed, {} steps, {:.1} s wall on {threads} threads ({:.0} steps/s)",
        t.seeds,
        t.steps,
        secs,
        t.steps as f64 / secs.max(1e-9)
    );
    let rows: Vec<(&str, u64)> = vec![
        ("requests sent", t.requests),
        ("answers acknowledged", t.acked),
        ("refused Unavailable (disk full, failed log)", t.unavailable),
        ("refused by the doors' rules (never sent)", t.door_refused),
        ("answers swallowed by a crash", t.unanswered),
        ("retries checked byte for byte", t.retries_checked),
        ("keys re-sent and checked at the end", t.final_keys_checked),
        ("restarts", t.restarts),
        ("  after a power loss", t.power_losses),
        ("  after a kill", t.kills),
        ("  after a clean close", t.clean_restarts),
        ("crashes between append and commit", t.crash_after_append),
        (
            "crashes after commit, before the reply",
            t.crash_after_commit,
        ),
        ("deaths at an I/O call: in a commit", t.death_in_commit),
        ("  in an append (segment rotation)", t.death_in_append),
        ("  in a snapshot write", t.death_in_snapshot),
        ("  in a recovery", t.death_in_recovery),
        ("  elsewhere (clean close)", t.death_elsewhere),
        ("shards poisoned by a failed write or sync", t.poisoned),
        ("recoveries retried after EIO/ENOSPC", t.recovery_retries),
        ("snapshots written", t.snapshots_written),
        ("snapshot writes failed", t.snapshots_failed),
        ("segments archived after a snapshot", t.segments_archived),
        (
            "snapshot files passed over (torn, damaged)",
            t.snapshots_passed_over,
        ),
        ("recoveries from a snapshot", t.restored_from_snapshot),
        ("torn tails cut", t.torn_tails_cut),
        (
            "unacknowledged records lost (allowed)",
            t.unacked_records_lost,
        ),
        ("disk-full spells", t.disk_full_spells),
        ("clock steps back", t.clock_steps_back),
        ("clock jumps (hours to days)", t.clock_jumps),
        ("program changes", t.program_changes),
        ("reversals acknowledged", t.reversals),
        (
            "reversals sent before their request",
            t.reversals_before_request,
        ),
        ("ticks logged", t.ticks),
        ("from-scratch replays", t.full_replays),
        (
            "records replayed from scratch",
            t.records_replayed_from_scratch,
        ),
        ("latent sector errors injected", t.latent_injected),
        ("  of which refused by recovery (typed)", t.latent_refused),
        ("disk: power losses", t.disk.power_losses),
        ("disk: unsynced sectors dropped", t.disk.sectors_dropped),
        ("disk: unsynced sectors kept", t.disk.sectors_kept),
        ("disk: files torn", t.disk.torn_files),
        ("disk: directory operations undone", t.disk.dir_ops_dropped),
        ("disk: writes failed EIO", t.disk.write_eio),
        ("disk: syncs failed EIO", t.disk.sync_eio),
        ("disk: creations refused ENOSPC", t.disk.enospc),
        ("disk: sectors corrupted", t.disk.corrupted_sectors),
    ];
    println!("| what | count |\n| --- | --- |");
    for (what, n) in rows {
        println!("| {what} | {n} |");
    }
}
