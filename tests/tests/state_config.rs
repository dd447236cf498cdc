//! The state config (idempotency key TTL and cap, history limit) is part of the data: it is
//! recorded in `meta` when a directory is created, `svault replay` uses the recorded one,
//! opening with another is a clear error, and a directory from before it was recorded opens
//! with the defaults, written back into `meta`.

use runtime::meta;
use runtime::replay::{replay, ReplayOptions};
use runtime::{Durability, Engine, EngineConfig, Scope, Tuning};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use svault_core::command::{CardId, Channel, Command, Millis, Request};
use svault_core::money::Amount;
use svault_core::outcome::{Outcome, Rejection};
use svault_core::program::Program;
use svault_core::state::StateConfig;

const T0: i64 = 1_767_578_400_000;

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.into(),
        shards: Some(1),
        durability: Durability::Group,
    }
}

/// Keys remembered for one second only: a reused key two seconds later is a new request.
fn short_keys() -> StateConfig {
    StateConfig {
        idempotency_ttl_ms: 1_000,
        history_per_card_max: 8,
        ..StateConfig::default()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn submit(engine: &Engine, key: &str, command: Command) -> Outcome {
    let request = Request {
        idempotency_key: Some(key.into()),
        command,
    };
    rt().block_on(engine.submit(request, &Scope::All))
        .unwrap()
        .outcome
}

fn top_up(amount: i64) -> Command {
    Command::TopUp {
        card_id: CardId(42),
        amount: Amount(amount),
        channel: Channel::Cash,
    }
}

#[test]
fn replay_uses_the_recorded_state_config_and_other_ones_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let now = Arc::new(AtomicI64::new(T0));
    let mut tuning = Tuning {
        state: short_keys(),
        ..Tuning::default()
    };
    let c = now.clone();
    tuning.clock = Arc::new(move || Millis(c.load(Ordering::SeqCst)));
    let engine = Engine::open_with(config(dir.path()), tuning.clone()).unwrap();
    submit(&engine, "p", Command::UpsertProgram(Program::demo()));
    submit(
        &engine,
        "o",
        Command::OpenCard {
            card_id: CardId(42),
            program: "demo".into(),
            registered: true,
            birthday: None,
        },
    );
    assert!(matches!(
        submit(&engine, "t", top_up(10_000)),
        Outcome::Approved(_)
    ));
    // Within the TTL the key is taken; past it (1 s here, 24 h by default) it is a new request.
    assert!(matches!(
        submit(&engine, "t", top_up(20_000)),
        Outcome::Rejected(Rejection::IdempotencyKeyReused)
    ));
    now.store(T0 + 2_000, Ordering::SeqCst);
    assert!(matches!(
        submit(&engine, "t", top_up(20_000)),
        Outcome::Approved(_)
    ));
    let live = engine.digest().unwrap();
    let float = engine.float();
    engine.shutdown();

    let text = std::fs::read_to_string(dir.path().join(meta::META_FILE)).unwrap();
    assert!(text.contains("state.idempotency_ttl_ms=1000"), "{text}");

    // Offline replay with no config given reaches the live state: it reads meta's.
    let report = replay(dir.path(), &ReplayOptions::default()).unwrap();
    assert_eq!(report.float, float, "replay used another state config");
    assert_eq!(report.digest, live);

    // Opening with the defaults is refused, naming what differs; with the recorded ones it opens.
    let err = Engine::open(config(dir.path()))
        .err()
        .expect("opened with other settings");
    let msg = err.to_string();
    assert!(
        msg.contains("idempotency_ttl_ms") && msg.contains("history_per_card_max"),
        "{msg}"
    );
    let again = Engine::open_with(config(dir.path()), tuning).unwrap();
    assert_eq!(again.digest().unwrap(), live);
    again.shutdown();
}

#[test]
fn a_directory_from_before_the_state_config_opens_with_the_defaults_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path())).unwrap();
    submit(&engine, "p", Command::UpsertProgram(Program::demo()));
    let live = engine.digest().unwrap();
    engine.shutdown();
    // The meta file as it was written before the state config was recorded.
    std::fs::write(dir.path().join(meta::META_FILE), "format=1\nshards=1\n").unwrap();
    assert_eq!(
        meta::read(dir.path()).unwrap().unwrap().state,
        None,
        "an old meta has no state config"
    );
    // Replay reads it as the defaults and leaves it alone.
    assert_eq!(
        replay(dir.path(), &ReplayOptions::default())
            .unwrap()
            .digest,
        live
    );
    assert_eq!(meta::read(dir.path()).unwrap().unwrap().state, None);
    // Opening it records the defaults explicitly.
    let engine = Engine::open(config(dir.path())).unwrap();
    assert_eq!(engine.digest().unwrap(), live);
    engine.shutdown();
    assert_eq!(
        meta::read(dir.path()).unwrap().unwrap().state,
        Some(StateConfig::default())
    );
    // An old directory opened with other settings is refused, not silently migrated.
    std::fs::write(dir.path().join(meta::META_FILE), "format=1\nshards=1\n").unwrap();
    let err = Engine::open_with(
        config(dir.path()),
        Tuning {
            state: short_keys(),
            ..Tuning::default()
        },
    )
    .err()
    .expect("opened an old directory with other settings");
    assert!(err.to_string().contains("idempotency_ttl_ms"), "{err}");
}
