//! A shard's state of many demo cards, built in process (no log), for the examples that measure
//! what a large state costs: a snapshot written while it serves, a restore.

use svault_core::command::{CardId, Channel, Command, Millis, Request};
use svault_core::money::Amount;
use svault_core::program::Program;
use svault_core::state::{State, StateConfig};

/// The batch time of every request [`demo_cards`] applies (2024-01-01 04:00 UTC).
pub const T0: i64 = 1_704_081_600_000;

/// The demo program and cards 1..=`cards`, each opened and topped up with 1 000.00, both
/// keyed (`o{id}`, `t{id}`), so the state holds two live idempotency keys per card.
pub fn demo_cards(cards: u64) -> State {
    demo_cards_keyed(cards, true)
}

/// [`demo_cards`], with or without the idempotency keys (without: the state holds cards alone,
/// to measure what a card costs). The key cap is raised to hold every key: with the default cap
/// (16 Mi a shard) the oldest keys of more than 8 M cards would expire as the state is built,
/// and a per-key figure that divided by the keys applied would come out too low.
pub fn demo_cards_keyed(cards: u64, keyed: bool) -> State {
    let key = |k: String| keyed.then_some(k);
    let defaults = StateConfig::default();
    let keys = usize::try_from(2 * cards).unwrap_or(usize::MAX);
    let mut st = State::new(StateConfig {
        idempotency_keys_max: defaults.idempotency_keys_max.max(keys),
        ..defaults
    });
    let mut ev = Vec::new();
    let mut apply = |st: &mut State, command: Command, key: Option<String>| {
        ev.clear();
        st.apply(
            &Request {
                idempotency_key: key,
                command,
            },
            Millis(T0),
            &mut ev,
        );
    };
    apply(&mut st, Command::UpsertProgram(Program::demo()), None);
    for c in 1..=cards {
        let card_id = CardId(c);
        let open = Command::OpenCard {
            card_id,
            program: "demo".into(),
            registered: true,
            birthday: None,
        };
        apply(&mut st, open, key(format!("o{c}")));
        let top_up = Command::TopUp {
            card_id,
            amount: Amount(100_000),
            channel: Channel::Wechat,
        };
        apply(&mut st, top_up, key(format!("t{c}")));
    }
    if keyed {
        assert_eq!(
            st.key_count(),
            keys,
            "every key of the demo state stays live"
        );
    }
    st
}
