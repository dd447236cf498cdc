//! What a snapshot of a large shard costs the requests it serves meanwhile: one `State` of
//! `CARDS` cards (default 1 M, opened and topped up), then keyed spends on random cards back to
//! back on this thread, as the shard thread applies them, first alone, then from a freeze on
//! while another thread at nice 10 serialises the frozen state and writes it with
//! `wal::snapshot::write` (fsync, rename), as the runtime's snapshot writer does. Prints the
//! freeze (the pause every queued request waits), and each phase's apply latency: the first
//! writes after a freeze copy the chunks they touch (copy on write), and on 2 cores the writer
//! takes CPU from the shard. Also prints the process's RSS before the freeze and its peak
//! (`VmHWM`) at the end: the snapshot's memory cost.
//!
//! The writer streams the bytes into the file as the runtime does
//! (`wal::snapshot::write_streamed`); `in-memory` as a second argument serialises them whole
//! first and then writes them (what the runtime did before), for comparison.
//!
//! Huge pages are off, as in the `svault` binary (`runtime::pages`); `SVAULT_HUGE_PAGES=1` keeps
//! them on, to compare. The frozen card chunks go back to this thread once written, which drops
//! `runtime::LEFTOVER_CARDS_PER_TURN` cards per spend, as the shard does per batch (`Leftover`);
//! `SVAULT_DROP_ON_WRITER=1` drops them on the writer instead, as before, to compare.
//!
//! `cargo run --release -p bench --example snapshot_stall -- 1000000 [in-memory]`

use bench::cards::{demo_cards, T0};
use bench::memory::status_mib;
use hdrhistogram::Histogram;
use std::time::{Duration, Instant};
use svault_core::command::{CardId, Command, Method, Millis, Request};
use svault_core::money::Amount;
use svault_core::state::State;

/// The same allocator as the `svault` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The runtime's snapshot writer runs at this nice value too.
const WRITER_NICE: i32 = 10;

#[allow(unsafe_code)]
fn lower_this_thread_priority() {
    // SAFETY: plain integer arguments, no memory passed; PRIO_PROCESS with a thread id names
    // that one thread on Linux.
    unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            WRITER_NICE,
        );
    }
}

struct Spender {
    x: u64,
    n: u64,
    cards: u64,
}

impl Spender {
    /// One keyed spend of 0.01 on a pseudo-random card; returns its apply time in µs.
    fn spend(&mut self, st: &mut State, ev: &mut Vec<svault_core::outcome::Event>) -> u64 {
        self.x = self
            .x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.n += 1;
        let r = Request {
            idempotency_key: Some(format!("s{}", self.n)),
            command: Command::Spend {
                card_id: CardId((self.x >> 33) % self.cards + 1),
                amount: Amount(1),
                method: Method::Qr,
                store: None,
                allow_partial: false,
            },
        };
        ev.clear();
        let t = Instant::now();
        st.apply(&r, Millis(T0 + 1_000), ev);
        t.elapsed().as_micros() as u64
    }
}

fn line(name: &str, h: &Histogram<u64>, secs: f64) {
    println!(
        "{name}: {} spends in {secs:.2} s, apply p50 {} µs, p99 {} µs, p99.9 {} µs, max {:.2} ms",
        h.len(),
        h.value_at_quantile(0.5),
        h.value_at_quantile(0.99),
        h.value_at_quantile(0.999),
        h.max() as f64 / 1e3
    );
}

fn main() {
    let cards: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let in_memory = std::env::args().nth(2).as_deref() == Some("in-memory");
    // As the `svault` binary does (`runtime::pages`); SVAULT_HUGE_PAGES=1 keeps them, to compare.
    let huge = std::env::var("SVAULT_HUGE_PAGES").is_ok_and(|v| v == "1");
    if !huge {
        runtime::pages::small_pages_only().expect("transparent huge pages off");
    }
    println!(
        "transparent huge pages: {}",
        if huge { "on" } else { "off (as svault runs)" }
    );
    let drop_on_writer = std::env::var("SVAULT_DROP_ON_WRITER").is_ok_and(|v| v == "1");
    let mut st = demo_cards(cards);
    println!("{cards} cards opened and topped up (keyed)");

    let mut ev = Vec::new();
    let mut spender = Spender { x: 7, n: 0, cards };
    let new_hist = || Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");

    // Alone: as long as the snapshot will take, at least 2 s.
    let mut alone = new_hist();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(2) {
        let us = spender.spend(&mut st, &mut ev);
        alone.record(us.max(1)).expect("record");
    }
    line("no snapshot", &alone, started.elapsed().as_secs_f64());

    let dir = tempfile::tempdir().expect("scratch directory");
    println!(
        "RSS before the freeze: {} MiB (peak so far {} MiB)",
        status_mib("VmRSS"),
        status_mib("VmHWM")
    );
    let t = Instant::now();
    let frozen = st.freeze();
    let freeze = t.elapsed();
    println!(
        "freeze (the shard's pause): {:.2} ms for {} cards",
        freeze.as_secs_f64() * 1e3,
        frozen.cards()
    );
    let path = dir.path().to_path_buf();
    let writer = std::thread::spawn(move || {
        lower_this_thread_priority();
        let t = Instant::now();
        let (serialised, written, bytes) = if in_memory {
            let bytes = frozen.to_bytes();
            let serialised = t.elapsed();
            wal::snapshot::write(&path, wal::Lsn(1), &bytes).expect("snapshot write");
            (Some(serialised), t.elapsed(), bytes.len() as u64)
        } else {
            let bytes = wal::snapshot::write_streamed(&path, wal::Lsn(1), |out| {
                frozen.write_to(out).map(|_| ())
            })
            .expect("snapshot write");
            (None, t.elapsed(), bytes)
        };
        // As the runtime's writer does: the card chunks go back to the shard thread.
        let leftover = frozen.into_leftover();
        if drop_on_writer {
            drop(leftover);
            (serialised, written, bytes, None)
        } else {
            (serialised, written, bytes, Some(leftover))
        }
    });
    let mut during = new_hist();
    let mut first_ms = new_hist();
    let started = Instant::now();
    // Applies over 10 ms, with when they started (s after the freeze): where the tail sits.
    let mut slow: Vec<(f64, u64)> = Vec::new();
    let mut note = |at: f64, us: u64| {
        during.record(us.max(1)).expect("record");
        if us > 10_000 {
            slow.push((at, us));
        }
        if at < 1.0 {
            first_ms.record(us.max(1)).expect("record");
        }
    };
    while !writer.is_finished() {
        let at = started.elapsed().as_secs_f64();
        let us = spender.spend(&mut st, &mut ev);
        note(at, us);
    }
    let (serialised, written, bytes, leftover) = writer.join().expect("writer");
    // Then the shard drops them a few chunks per turn, serving between (one spend a turn
    // here); a turn's time counts the dropping, which the next request waits for.
    let mut turns = 0;
    if let Some(mut leftover) = leftover {
        let mut more = true;
        while more {
            turns += 1;
            let at = started.elapsed().as_secs_f64();
            let t = Instant::now();
            more = leftover.shed(runtime::LEFTOVER_CARDS_PER_TURN);
            let shed_us = t.elapsed().as_micros() as u64;
            let us = shed_us + spender.spend(&mut st, &mut ev);
            note(at, us);
        }
    }
    let secs = started.elapsed().as_secs_f64();
    match serialised {
        Some(serialised) => println!(
            "writer (nice {WRITER_NICE}, in memory): serialised {:.2} s, written and synced {:.2} s, {} MiB",
            serialised.as_secs_f64(),
            written.as_secs_f64(),
            bytes >> 20
        ),
        None => println!(
            "writer (nice {WRITER_NICE}, streamed): serialised, written and synced {:.2} s, {} MiB",
            written.as_secs_f64(),
            bytes >> 20
        ),
    }
    println!(
        "RSS after: {} MiB, peak {} MiB",
        status_mib("VmRSS"),
        status_mib("VmHWM")
    );
    if drop_on_writer {
        println!("the writer dropped the frozen state (SVAULT_DROP_ON_WRITER=1)");
    } else {
        println!("the shard dropped the frozen card chunks in {turns} turns");
    }
    line("while the snapshot is written", &during, secs);
    line("  of which its first second", &first_ms, secs.min(1.0));
    for (at, us) in slow {
        println!("  an apply of {:.1} ms at {at:.2} s", us as f64 / 1e3);
    }
}
