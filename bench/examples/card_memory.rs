//! What a card costs in memory, by RSS: builds `CARDS` demo cards (default 10 M, each opened
//! and topped up with 1 000.00, which gives it a bonus lot, a lot timer and two history
//! entries; no idempotency keys), and prints the process's RSS growth per card beside the
//! state's own per-part account (`State::memory`).
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
    let cards: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000_000);
    // As the server runs (transparent huge pages would round the figure up to 2 MiB pages).
    runtime::pages::small_pages_only().expect("transparent huge pages off");
    let before = status_mib("VmRSS");
    let st = demo_cards_keyed(cards, false);
    let after = status_mib("VmRSS");
    let m = st.memory();
    let per = |bytes: usize| bytes as f64 / cards as f64;
    println!(
        "{cards} cards: RSS {before} -> {after} MiB = {:.1} B/card; the state's account: \
         {:.1} B/card (cards {:.1}, index {:.1}, timers {:.1}, history {:.1}); keys {}",
        (after - before) as f64 * 1_048_576.0 / cards as f64,
        per(m.cards + m.card_index + m.timers + m.history),
        per(m.cards),
        per(m.card_index),
        per(m.timers),
        per(m.history),
        st.key_count(),
    );
}
