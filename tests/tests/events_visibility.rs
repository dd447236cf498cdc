//! An event of a request that was answered is in the next read of the feed, whatever the other
//! shards' clocks say: two events of one shard in the same millisecond (the second has a later
//! index than the other shard's floor at that millisecond) are both shown at once.

use runtime::router::shard_of;
use runtime::{Durability, Engine, EngineConfig, Scope, Tuning};
use std::sync::Arc;
use svault_core::command::{CardId, Channel, Command, Method, Millis, Request};
use svault_core::money::Amount;
use svault_core::outcome::{EventKind, Outcome};
use svault_core::program::Program;

/// 2026-01-05T02:00:00Z; the clock never moves in this test.
const T0: i64 = 1_767_578_400_000;

fn submit(engine: &Engine, rt: &tokio::runtime::Runtime, key: &str, command: Command) -> Outcome {
    let request = Request {
        idempotency_key: Some(key.into()),
        command,
    };
    rt.block_on(engine.submit(request, &Scope::All))
        .expect("submitted")
        .outcome
}

#[test]
fn two_events_of_one_shard_in_one_millisecond_are_both_visible_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        clock: Arc::new(|| Millis(T0)),
        // No idle tick raises a floor behind the test's back.
        idle_tick_ms: 1 << 40,
        ..Tuning::default()
    };
    let engine = Engine::open_with(
        EngineConfig {
            data_dir: dir.path().into(),
            shards: Some(2),
            durability: Durability::Group,
        },
        tuning,
    )
    .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert!(matches!(
        submit(&engine, &rt, "p", Command::UpsertProgram(Program::demo())),
        Outcome::Approved(_)
    ));
    // Two cards of shard 0; shard 1 stays idle at the same millisecond.
    let cards: Vec<CardId> = (1..)
        .map(CardId)
        .filter(|c| shard_of(*c, 2) == 0)
        .take(2)
        .collect();
    for c in &cards {
        let open = Command::OpenCard {
            card_id: *c,
            program: "demo".into(),
            registered: true,
            birthday: None,
        };
        assert!(matches!(
            submit(&engine, &rt, &format!("o{}", c.0), open),
            Outcome::Approved(_)
        ));
        let top_up = Command::TopUp {
            card_id: *c,
            amount: Amount(3_000),
            channel: Channel::Wechat,
        };
        assert!(matches!(
            submit(&engine, &rt, &format!("t{}", c.0), top_up),
            Outcome::Approved(_)
        ));
    }
    // Each spend takes its card below 20.00: one low-balance event each, same shard, same ms.
    for c in &cards {
        let spend = Command::Spend {
            card_id: *c,
            amount: Amount(1_500),
            method: Method::Qr,
            store: None,
            allow_partial: false,
        };
        assert!(matches!(
            submit(&engine, &rt, &format!("s{}", c.0), spend),
            Outcome::Approved(_)
        ));
    }
    let seen: Vec<CardId> = rt
        .block_on(engine.events(0, 100))
        .into_iter()
        .filter(|(_, e)| matches!(e.kind, EventKind::LowBalance { .. }))
        .map(|(_, e)| e.card_id)
        .collect();
    assert_eq!(
        seen, cards,
        "both answered low-balance events are in the feed"
    );
    engine.shutdown();
}
