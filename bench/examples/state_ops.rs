//! A plain loop over `State::apply` for profiling (`perf stat`/`perf record`):
//! `cargo run --release -p bench --example state_ops -- CARDS OPS [keyed]`, then one freeze
//! (the shard's snapshot pause), serialisation of the frozen state, restore and digests.
//! `SVAULT_KEY_TTL_MS` sets how long keys live (default 1 000 ms = 1 M ops: time moves 1 ms per
//! 1 000 ops); `SVAULT_FREEZE_LOOP=1` times 20 freezes first; `SVAULT_PREFETCH=1` prefetches
//! ahead of `apply` as the shard does (`State::prefetch_ahead`); `SVAULT_OPS_ONLY=1` stops
//! after the timed loop (for profiles of `apply` alone); `SVAULT_WARMUP=N` applies N more
//! spends before the timed ones (histories and the key table grow to their steady size first).
//! `timed loop starts` on stderr marks the end of the set-up: attach `perf record -p PID` then.

use std::time::Instant;
use svault_core::command::{CardId, Channel, Command, Method, Millis, Request};
use svault_core::money::Amount;
use svault_core::program::Program;
use svault_core::state::{State, StateConfig};

/// The same allocator as the `svault` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let cards: u64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let ops: u64 = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(2_000_000);
    let keyed = args.get(3).is_some_and(|s| s == "keyed");
    let mut st = State::new(StateConfig {
        // Keys live for 1 000 000 ops (time moves 1 ms per 1 000 ops) unless told otherwise.
        idempotency_ttl_ms: std::env::var("SVAULT_KEY_TTL_MS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1_000),
        history_per_card_max: 8,
        ..StateConfig::default()
    });
    let mut ev = Vec::new();
    let t0 = 1_704_081_600_000;
    let req = |c| Request {
        idempotency_key: None,
        command: c,
    };
    st.apply(
        &req(Command::UpsertProgram(Program::demo())),
        Millis(t0),
        &mut ev,
    );
    for i in 0..cards {
        let c = CardId(i + 1);
        st.apply(
            &req(Command::OpenCard {
                card_id: c,
                program: "demo".into(),
                registered: true,
                birthday: None,
            }),
            Millis(t0),
            &mut ev,
        );
        st.apply(
            &req(Command::TopUp {
                card_id: c,
                amount: Amount(300_000),
                channel: Channel::Wechat,
            }),
            Millis(t0),
            &mut ev,
        );
    }
    // The requests are made first, so the timed loop is `apply` alone (and can look ahead).
    let warmup: u64 = std::env::var("SVAULT_WARMUP")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let mut x: u64 = 1;
    let requests: Vec<Request> = (0..warmup + ops)
        .map(|n| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            Request {
                idempotency_key: keyed.then(|| format!("key-{n}")),
                command: Command::Spend {
                    card_id: CardId((x >> 33) % cards + 1),
                    amount: Amount(1),
                    method: Method::Qr,
                    store: None,
                    allow_partial: false,
                },
            }
        })
        .collect();
    let prefetch = std::env::var("SVAULT_PREFETCH").is_ok_and(|v| v == "1");
    let caller = svault_core::command::CallerId::DEFAULT;
    let mut start = Instant::now();
    let mut approved = 0u64;
    if prefetch {
        st.prefetch_first(|d| requests.get(d).map(|r| (r, caller)));
    }
    for (n, r) in requests.iter().enumerate() {
        if n as u64 == warmup {
            // A mark for profilers that attach to the timed loop alone (`perf record -p`).
            eprintln!("timed loop starts");
            start = Instant::now();
            approved = 0;
        }
        if prefetch {
            st.prefetch_ahead(|d| requests.get(n + d).map(|r| (r, caller)));
        }
        ev.clear();
        let rep = st.apply(r, Millis(t0 + (n / 1000) as i64), &mut ev);
        approved += matches!(rep.outcome, svault_core::outcome::Outcome::Approved(_)) as u64;
    }
    let el = start.elapsed();
    println!(
        "{ops} spends over {cards} cards: {:.0} ns/op, {:.2} M ops/s ({approved} approved)",
        el.as_nanos() as f64 / ops as f64,
        ops as f64 / el.as_secs_f64() / 1e6
    );
    if std::env::var("SVAULT_OPS_ONLY").is_ok() {
        return;
    }
    if std::env::var("SVAULT_FREEZE_LOOP").is_ok() {
        for _ in 0..20 {
            let t = Instant::now();
            let f = st.freeze();
            let a = t.elapsed();
            drop(f);
            println!(
                "freeze {:.1} ms, drop {:.1} ms",
                a.as_secs_f64() * 1e3,
                (t.elapsed() - a).as_secs_f64() * 1e3
            );
        }
    }
    let t = Instant::now();
    let frozen = st.freeze();
    let t_freeze = t.elapsed();
    let t = Instant::now();
    let snap = frozen.to_bytes();
    let t_snap = t.elapsed();
    drop(frozen);
    println!(
        "freeze (the shard's snapshot pause) {:.1} ms; {} live keys, {:.1} B/key (State::memory)",
        t_freeze.as_secs_f64() * 1e3,
        st.key_count(),
        st.memory().keys as f64 / st.key_count().max(1) as f64
    );
    let t = Instant::now();
    let restored = State::restore(&snap, StateConfig::default()).expect("restore");
    let t_restore = t.elapsed();
    let t = Instant::now();
    let same = restored.digest() == st.digest();
    println!(
        "snapshot {:.1} MB in {:.0} ms, restore {:.0} ms, two digests {:.0} ms, equal: {same}",
        snap.len() as f64 / 1e6,
        t_snap.as_secs_f64() * 1e3,
        t_restore.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
}
