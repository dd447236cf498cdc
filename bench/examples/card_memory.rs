//! What a card and an idempotency key cost in memory, by RSS: builds `CARDS` demo cards
//! (default 10 M, each opened and topped up with 1 000.00, which gives it a bonus lot, a lot
//! timer and two history entries), without keys, then the same with both requests keyed (two
//! live keys a card), each in a fresh process; prints the RSS growth per card, per key (the
//! difference of the two runs), and the state's own per-part account (`State::memory`).
//!
//! Small pages only, as `svault serve` runs.
//!
//! `cargo run --release -p bench --example card_memory -- 10000000`

use bench::cards::demo_cards_keyed;
use bench::memory::status_mib;

/// The same allocator as the `svault` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut args = std::env::args().skip(1);
    let cards: u64 = args
        .next()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    match args.next().as_deref() {
        // One measurement in this process: RSS growth in bytes, then the state's account.
        Some(keyed @ ("keyed" | "unkeyed")) => measure(cards, keyed == "keyed"),
        _ => {
            let run = |keyed: &str| -> Vec<f64> {
                let me = std::env::current_exe().expect("this example's path");
                let out = std::process::Command::new(me)
                    .args([cards.to_string().as_str(), keyed])
                    .output()
                    .expect("a measuring process");
                String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|w| w.parse().ok())
                    .collect()
            };
            let (plain, keyed) = (run("unkeyed"), run("keyed"));
            let (Some(&rss), Some(&rss_keyed)) = (plain.first(), keyed.first()) else {
                panic!("a measuring process printed nothing");
            };
            let [_, c, index, timers, history, _, _] = plain[..] else {
                panic!("unexpected output {plain:?}");
            };
            let [_, _, _, _, _, key_account, live_keys] = keyed[..] else {
                panic!("unexpected output {keyed:?}");
            };
            // Per key remembered: divided by the keys the state holds at the end.
            assert!(live_keys > 0.0, "the keyed state remembers its keys");
            let n = cards as f64;
            println!(
                "{cards} cards: RSS {:.1} B/card; the state's account {:.1} B/card (cards {:.1}, \
                 index {:.1}, timers {:.1}, history {:.1})",
                rss / n,
                (c + index + timers + history) / n,
                c / n,
                index / n,
                timers / n,
                history / n,
            );
            println!(
                "{live_keys} live keys: RSS {:.1} B/key (keyed run minus plain run); the state's \
                 account {:.1} B/key",
                (rss_keyed - rss) / live_keys,
                key_account / live_keys,
            );
        }
    }
}

fn measure(cards: u64, keyed: bool) {
    // As the server runs (transparent huge pages would round the figure up to 2 MiB pages).
    runtime::pages::small_pages_only().expect("transparent huge pages off");
    let before = status_mib("VmRSS");
    let st = demo_cards_keyed(cards, keyed);
    let after = status_mib("VmRSS");
    let m = st.memory();
    println!(
        "{} {} {} {} {} {} {}",
        (after - before) * 1_048_576,
        m.cards,
        m.card_index,
        m.timers,
        m.history,
        m.keys,
        st.key_count()
    );
}
