//! The stall a midnight of expiries causes: `CARDS` cards get a one-day bonus lot at the same
//! instant, then two days later the shard ticks until nothing is due. Prints the longest single
//! tick (one apply on the shard thread: the stall every request queued behind it waits) with
//! ticks bounded by `StateConfig::timers_per_tick_max` (default) and unbounded (as before):
//! `cargo run --release -p bench --example tick_stall -- 1000000`.

use std::time::Instant;
use svault_core::command::{CardId, Channel, Command, Millis, Request};
use svault_core::money::Amount;
use svault_core::program::{Program, ProgramSpec};
use svault_core::state::{State, StateConfig};

/// The same allocator as the `svault` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const T0: i64 = 1_704_081_600_000;
const DAY: i64 = 86_400_000;

fn run(cards: u64, bound: usize) -> (usize, f64, f64) {
    let mut st = State::new(StateConfig {
        timers_per_tick_max: bound,
        ..StateConfig::default()
    });
    let mut ev = Vec::new();
    let mut apply = |st: &mut State, now: i64, command: Command| {
        let r = Request {
            idempotency_key: None,
            command,
        };
        ev.clear();
        st.apply(&r, Millis(now), &mut ev);
    };
    let spec: ProgramSpec = serde_json::from_str(
        r#"{"id":"gym","currency":"CNY","utc_offset":"+00:00",
            "bonus_ladder":[{"nth":1,"min":"50","bonus":"5"}],"bonus_expiry_days":1}"#,
    )
    .expect("program");
    apply(
        &mut st,
        T0,
        Command::UpsertProgram(Program::from_spec(&spec).expect("program")),
    );
    for c in 1..=cards {
        apply(
            &mut st,
            T0,
            Command::OpenCard {
                card_id: CardId(c),
                program: "gym".into(),
                registered: true,
                birthday: None,
            },
        );
        apply(
            &mut st,
            T0,
            Command::TopUp {
                card_id: CardId(c),
                amount: Amount(10_000),
                channel: Channel::Wechat,
            },
        );
    }
    let later = T0 + 2 * DAY;
    let (mut ticks, mut worst, mut total) = (0usize, 0f64, 0f64);
    while st.tick_due(Millis(later)) {
        let t = Instant::now();
        apply(&mut st, later, Command::Tick);
        let ms = t.elapsed().as_secs_f64() * 1e3;
        worst = worst.max(ms);
        total += ms;
        ticks += 1;
    }
    (ticks, worst, total)
}

fn main() {
    let cards: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    // As the `svault` binary runs (`runtime::pages`).
    runtime::pages::small_pages_only().expect("transparent huge pages off");
    for (name, bound) in [
        ("bounded", StateConfig::TIMERS_PER_TICK_DEFAULT),
        ("unbounded", StateConfig::UNBOUNDED),
    ] {
        let (ticks, worst, total) = run(cards, bound);
        println!(
            "{cards} lots expiring at one instant, {name} ticks: {ticks} ticks, longest {worst:.2} ms, all {total:.0} ms"
        );
    }
}
