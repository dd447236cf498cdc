//! The runtime's contract with the servers: bounded queues answer `Overloaded`, gateway scopes
//! answer `Forbidden`, the shard count is fixed per directory, broadcasts merge.

use runtime::{Durability, Engine, EngineConfig, EngineError, Scope, SubmitError, Tuning};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use svault_core::command::{CardId, Channel, Command, Query, Request};
use svault_core::money::Amount;
use svault_core::outcome::Outcome;
use svault_core::program::Program;
use svault_core::state::QueryAnswer;

fn config(dir: &Path, shards: Option<usize>) -> EngineConfig {
    EngineConfig {
        data_dir: dir.into(),
        shards,
        durability: Durability::Group,
    }
}

fn req(key: &str, command: Command) -> Request {
    Request {
        idempotency_key: Some(key.into()),
        command,
    }
}

fn open_card(card: u64, program: &str) -> Command {
    Command::OpenCard {
        card_id: CardId(card),
        program: program.into(),
        registered: true,
        birthday: None,
    }
}

/// The demo program (key `p`) and card `card` on it (key `o`).
async fn demo_program_and_card(engine: &Engine, card: u64) {
    let program = req("p", Command::UpsertProgram(Program::demo()));
    engine.submit(program, &Scope::All).await.unwrap();
    let open = req("o", open_card(card, "demo"));
    engine.submit(open, &Scope::All).await.unwrap();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn a_full_queue_answers_overloaded_and_does_not_grow() {
    let dir = tempfile::tempdir().unwrap();
    let queue_depth_max = 8;
    let tuning = Tuning {
        queue_depth_max,
        ..Tuning::default()
    };
    let engine = Engine::open_with(config(dir.path(), Some(1)), tuning).unwrap();
    let rt = rt();
    rt.block_on(demo_program_and_card(&engine, 5));
    // Park the shard thread inside a state call until released.
    let (release_tx, release_rx) = crossbeam_channel::bounded::<()>(0);
    let (parked_tx, parked_rx) = crossbeam_channel::bounded::<()>(1);
    let blocker = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            engine.with_states(move |_| {
                let _ = parked_tx.send(());
                let _ = release_rx.recv();
            })
        })
    };
    parked_rx.recv().unwrap();
    let results = rt.block_on(async {
        // Each submit is polled once: that first poll queues its message or refuses it, so
        // once the loop is done every submit has been queued or refused (no waiting).
        let mut handles = Vec::new();
        for i in 0..(queue_depth_max * 4) {
            let engine = engine.clone();
            let key = format!("t{i}");
            let mut submit = Box::pin(async move {
                let r = req(
                    &key,
                    Command::TopUp {
                        card_id: CardId(5),
                        amount: Amount(100),
                        channel: Channel::Cash,
                    },
                );
                engine.submit(r, &Scope::All).await
            });
            let first =
                std::future::poll_fn(|cx| std::task::Poll::Ready(submit.as_mut().poll(cx))).await;
            handles.push(match first {
                std::task::Poll::Ready(answer) => tokio::spawn(async move { answer }),
                std::task::Poll::Pending => tokio::spawn(submit),
            });
        }
        let mut m = String::new();
        engine.render_metrics(&mut m);
        assert!(
            m.contains(&format!(
                "svault_shard_queue_depth{{shard=\"0\"}} {queue_depth_max}"
            )),
            "{m}"
        );
        release_tx.send(()).unwrap();
        let mut out = Vec::new();
        for h in handles {
            out.push(h.await.unwrap());
        }
        out
    });
    blocker.join().unwrap().unwrap();
    let overloaded = results
        .iter()
        .filter(|r| matches!(r, Err(SubmitError::Overloaded)))
        .count();
    let served = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(served, queue_depth_max, "{results:?}");
    assert_eq!(overloaded, queue_depth_max * 3);
    engine.shutdown();
}

#[test]
fn gateway_scope_is_enforced_in_the_shard() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), Some(2))).unwrap();
    let mut other = Program::demo();
    other.id = "other".into();
    let demo_only = Scope::Programs(Arc::from(vec!["demo".to_string()]));
    let rt = rt();
    rt.block_on(async {
        engine
            .submit(
                req("p1", Command::UpsertProgram(Program::demo())),
                &Scope::All,
            )
            .await
            .unwrap();
        engine
            .submit(req("p2", Command::UpsertProgram(other)), &Scope::All)
            .await
            .unwrap();
        engine
            .submit(req("o1", open_card(1, "demo")), &demo_only)
            .await
            .unwrap();
        assert_eq!(
            engine
                .submit(req("o2", open_card(2, "other")), &demo_only)
                .await,
            Err(SubmitError::Forbidden)
        );
        engine
            .submit(req("o3", open_card(3, "other")), &Scope::All)
            .await
            .unwrap();
        let top_up = |card| Command::TopUp {
            card_id: CardId(card),
            amount: Amount(10_000),
            channel: Channel::Cash,
        };
        assert!(engine
            .submit(req("t1", top_up(1)), &demo_only)
            .await
            .is_ok());
        assert_eq!(
            engine.submit(req("t3", top_up(3)), &demo_only).await,
            Err(SubmitError::Forbidden)
        );
        assert_eq!(
            engine
                .query(Query::Card { card_id: CardId(3) }, &demo_only)
                .await,
            Err(SubmitError::Forbidden)
        );
        assert!(matches!(
            engine
                .query(Query::Card { card_id: CardId(1) }, &demo_only)
                .await,
            Ok(QueryAnswer::Card(Some(_)))
        ));
        // The refused requests changed nothing: card 3 has no money.
        let Ok(QueryAnswer::Card(Some(c3))) = engine
            .query(Query::Card { card_id: CardId(3) }, &Scope::All)
            .await
        else {
            panic!()
        };
        assert_eq!(c3.principal, Amount(0));
    });
    engine.shutdown();
}

#[test]
fn shard_count_is_fixed_per_directory() {
    let dir = tempfile::tempdir().unwrap();
    let e = Engine::open(config(dir.path(), None)).unwrap();
    assert_eq!(e.shards(), 2, "a new directory gets the default");
    e.shutdown();
    drop(e);
    match Engine::open(config(dir.path(), Some(3))) {
        Err(EngineError::Config(msg)) => assert!(msg.contains("2 shards"), "{msg}"),
        Err(other) => panic!("wrong error {other}"),
        Ok(_) => panic!("opened with another shard count"),
    }
    let e = Engine::open(config(dir.path(), Some(2))).unwrap();
    assert!(!e.created_new());
    e.shutdown();
}

#[test]
fn a_reversal_goes_to_its_cards_shard_and_names_what_it_undid() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), Some(4))).unwrap();
    let rt = rt();
    rt.block_on(async {
        demo_program_and_card(&engine, 42).await;
        let top = engine
            .submit(
                req(
                    "top",
                    Command::TopUp {
                        card_id: CardId(42),
                        amount: Amount(20_000),
                        channel: Channel::Cash,
                    },
                ),
                &Scope::All,
            )
            .await
            .unwrap();
        let Outcome::Approved(t) = top.outcome else {
            panic!("{top:?}")
        };
        let rev = engine
            .submit(
                req(
                    "rev",
                    Command::Reversal {
                        card_id: CardId(42),
                        key: "top".into(),
                    },
                ),
                &Scope::All,
            )
            .await
            .unwrap();
        let Outcome::Approved(a) = &rev.outcome else {
            panic!("{rev:?}")
        };
        assert_eq!(
            a.reversed_txn, t.txn_id,
            "the reversal must name what it undid"
        );
        let again = engine
            .submit(
                req(
                    "rev",
                    Command::Reversal {
                        card_id: CardId(42),
                        key: "top".into(),
                    },
                ),
                &Scope::All,
            )
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.outcome, rev.outcome);
    });
    engine.shutdown();
}

#[test]
fn shutdown_refuses_new_work() {
    let dir = tempfile::tempdir().unwrap();
    let engine = Engine::open(config(dir.path(), Some(1))).unwrap();
    engine.shutdown();
    let rt = rt();
    let r = rt.block_on(engine.submit(
        req("p", Command::UpsertProgram(Program::demo())),
        &Scope::All,
    ));
    assert_eq!(r, Err(SubmitError::ShuttingDown));
}

#[test]
fn every_durability_mode_recovers_what_it_acknowledged() {
    for durability in [Durability::Sync, Durability::Group, Durability::Async] {
        let dir = tempfile::tempdir().unwrap();
        let cfg = EngineConfig {
            data_dir: dir.path().into(),
            shards: Some(2),
            durability,
        };
        let engine = Engine::open(cfg.clone()).unwrap();
        let rt = rt();
        let n = rt.block_on(async {
            let mut reqs = vec![req("p", Command::UpsertProgram(Program::demo()))];
            for c in 0..20u64 {
                reqs.push(req(&format!("o{c}"), open_card(100 + c, "demo")));
                reqs.push(req(
                    &format!("t{c}"),
                    Command::TopUp {
                        card_id: CardId(100 + c),
                        amount: Amount(10_000 + c as i64),
                        channel: Channel::Cash,
                    },
                ));
            }
            let n = reqs.len();
            for r in engine.submit_batch(reqs, &Scope::All).await {
                assert!(matches!(r.unwrap().outcome, Outcome::Approved(_)));
            }
            n
        });
        if durability == Durability::Async {
            // The 10 ms timer commits without any further request.
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            while engine
                .shard_stats()
                .iter()
                .map(|s| s.committed_lsn)
                .sum::<u64>()
                < n as u64 + 1
            {
                assert!(
                    std::time::Instant::now() < deadline,
                    "async never committed: {:?}",
                    engine.shard_stats()
                );
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        if durability == Durability::Sync {
            // One sync per request (the program upsert is one record on each shard).
            let commits: u64 = engine.shard_stats().iter().map(|s| s.commits).sum();
            assert_eq!(commits, n as u64 + 1, "{:?}", engine.shard_stats());
        }
        let digest = engine.digest().unwrap();
        let float = engine.float();
        engine.shutdown();
        let reopened = Engine::open(cfg).unwrap();
        assert_eq!(reopened.digest().unwrap(), digest, "{durability:?}");
        assert_eq!(reopened.float(), float, "{durability:?}");
        reopened.shutdown();
    }
}

#[test]
fn corruption_in_the_middle_of_the_log_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = EngineConfig {
        data_dir: dir.path().into(),
        shards: Some(1),
        durability: Durability::Group,
    };
    let engine = Engine::open(cfg.clone()).unwrap();
    let rt = rt();
    rt.block_on(async {
        demo_program_and_card(&engine, 9).await;
        // One request per batch: every record sits in its own 4 KiB-padded commit.
        for i in 0..40 {
            let c = Command::TopUp {
                card_id: CardId(9),
                amount: Amount(100),
                channel: Channel::Cash,
            };
            engine
                .submit(req(&format!("t{i}"), c), &Scope::All)
                .await
                .unwrap();
        }
    });
    engine.shutdown();
    drop(engine);
    let wal_dir = dir.path().join("shard-0").join("wal");
    let segment = std::fs::read_dir(&wal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| std::fs::metadata(p).map(|m| m.len() > 0).unwrap_or(false))
        .min()
        .expect("a segment");
    let mut bytes = std::fs::read(&segment).unwrap();
    // Somewhere inside the tenth commit, well before the end of the log.
    let at = 10 * 4096 + 40;
    bytes[at] ^= 0x5a;
    std::fs::write(&segment, &bytes).unwrap();

    match Engine::open(cfg) {
        Err(EngineError::Wal(wal::WalError::Corruption {
            segment: s, offset, ..
        })) => {
            assert_eq!(s.file_name(), segment.file_name());
            assert!(
                offset as usize <= at,
                "offset {offset} after the damage at {at}"
            );
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("started over a corrupted log"),
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_svault-under-test"))
        .args(["replay", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corruption")
            && err.contains(&segment.file_name().unwrap().to_string_lossy().to_string()),
        "{err}"
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_svault-under-test"))
        .args(["inspect", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "inspect must flag the damage: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn idle_shard_logs_ticks_that_expire_holds_and_replay_reproduces_them() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use svault_core::command::{Method, Millis};
    use svault_core::outcome::EventKind;
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_767_578_400_000i64; // 2026-01-05T02:00:00Z
    let clock = Arc::new(AtomicI64::new(t0));
    let c = clock.clone();
    let tuning = Tuning {
        idle_tick_ms: 10,
        clock: Arc::new(move || Millis(c.load(Ordering::SeqCst))),
        ..Tuning::default()
    };
    let cfg = config(dir.path(), Some(1));
    let engine = Engine::open_with(cfg.clone(), tuning.clone()).unwrap();
    let rt = rt();
    let hold_id = rt.block_on(async {
        demo_program_and_card(&engine, 7).await;
        let top_up = Command::TopUp {
            card_id: CardId(7),
            amount: Amount(50_000),
            channel: Channel::Cash,
        };
        engine.submit(req("t", top_up), &Scope::All).await.unwrap();
        let hold = Command::Hold {
            card_id: CardId(7),
            amount: Amount(1_000),
            ttl_seconds: 1,
            method: Method::Card,
            store: None,
            allow_partial: false,
        };
        let r = engine.submit(req("h", hold), &Scope::All).await.unwrap();
        let Outcome::Approved(a) = r.outcome else {
            panic!("{r:?}")
        };
        a.txn_id.unwrap()
    });
    let expired = |e: &Engine| {
        e.events_after(0, 1_000)
            .into_iter()
            .filter(|(_, ev)| matches!(ev.kind, EventKind::HoldExpired { hold_id: h, .. } if h == hold_id))
            .count()
    };
    assert_eq!(expired(&engine), 0);
    // Past the hold's ttl. Ticks follow the runtime's clock: the next message the shard handles
    // (this read) checks `tick_due` first, and its answer leaves after the tick's commit.
    clock.store(t0 + 5_000, Ordering::SeqCst);
    let held = rt
        .block_on(engine.query(Query::Card { card_id: CardId(7) }, &Scope::All))
        .unwrap();
    let QueryAnswer::Card(Some(card)) = held else {
        panic!("{held:?}")
    };
    assert_eq!(card.held, Amount(0), "the tick released the hold");
    assert_eq!(expired(&engine), 1, "the tick logged the hold's expiry");
    let digest = engine.digest().unwrap();
    engine.shutdown();
    drop(engine);

    let reopened = Engine::open_with(cfg, tuning).unwrap();
    assert_eq!(reopened.digest().unwrap(), digest);
    assert_eq!(
        expired(&reopened),
        1,
        "replay produces the logged tick's event again"
    );
    reopened.shutdown();
}

/// A dying disk: the shard whose commit fails answers 503 for that batch and everything after,
/// the other shard keeps serving, and after a restart every acknowledged request is there while
/// the unacknowledged one is either wholly applied (its record reached the file) or absent: a
/// retry with its key then settles it exactly once.
#[test]
fn a_failed_commit_poisons_only_its_shard_and_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let engine = Engine::open(config(dir.path(), Some(2))).unwrap();
    let (a, b) = {
        let cards: Vec<u64> = (1..100).collect();
        let on = |k| {
            *cards
                .iter()
                .find(|&&c| runtime::router::shard_of(CardId(c), 2) == k)
                .unwrap()
        };
        (on(0), on(1))
    };
    let total = |engine: &Engine, card: u64| -> i64 {
        let answer = rt
            .block_on(engine.query(
                Query::Card {
                    card_id: CardId(card),
                },
                &Scope::All,
            ))
            .unwrap();
        let QueryAnswer::Card(Some(c)) = answer else {
            panic!("{answer:?}")
        };
        c.principal.0 + c.bonus.0
    };
    let spend = |card: u64| Command::Spend {
        card_id: CardId(card),
        amount: Amount(1_000),
        method: svault_core::command::Method::Qr,
        store: None,
        allow_partial: false,
    };
    rt.block_on(async {
        let mut setup = vec![req("p", Command::UpsertProgram(Program::demo()))];
        for c in [a, b] {
            setup.push(req(&format!("open-{c}"), open_card(c, "demo")));
            setup.push(req(
                &format!("top-{c}"),
                Command::TopUp {
                    card_id: CardId(c),
                    amount: Amount(10_000),
                    channel: Channel::Wechat,
                },
            ));
        }
        for r in setup {
            assert!(engine.submit(r, &Scope::All).await.is_ok());
        }
    });
    let (a_before, b_before) = (total(&engine, a), total(&engine, b));

    engine
        .inject(0, runtime::faults::Fault::CommitFails)
        .unwrap();
    let doomed = rt.block_on(engine.submit(req("doomed", spend(a)), &Scope::All));
    assert!(
        matches!(doomed, Err(SubmitError::Unavailable(_))),
        "the batch whose commit failed is not acknowledged: {doomed:?}"
    );
    let after = rt.block_on(engine.submit(req("after", spend(a)), &Scope::All));
    assert!(
        matches!(after, Err(SubmitError::Unavailable(_))),
        "a poisoned shard refuses until restart: {after:?}"
    );
    let other = rt
        .block_on(engine.submit(req("other", spend(b)), &Scope::All))
        .unwrap();
    assert!(matches!(other.outcome, Outcome::Approved(_)), "{other:?}");
    assert!(engine.shard_stats()[0].poisoned && !engine.shard_stats()[1].poisoned);
    engine.shutdown();
    drop(engine);

    let engine = Engine::open(config(dir.path(), Some(2))).unwrap();
    // Acknowledged on the healthy shard: there, and a retry is a replay.
    let again = rt
        .block_on(engine.submit(req("other", spend(b)), &Scope::All))
        .unwrap();
    let charged = |o: &Outcome| match o {
        Outcome::Approved(ap) => ap.amount.0,
        other => panic!("not approved: {other:?}"),
    };
    assert!(again.replayed);
    assert_eq!(total(&engine, b), b_before - charged(&again.outcome));
    // The unacknowledged spend is settled exactly once by its retry, whatever reached the disk.
    let mut settled = 0;
    for _ in 0..2 {
        let retry = rt
            .block_on(engine.submit(req("doomed", spend(a)), &Scope::All))
            .unwrap();
        settled = charged(&retry.outcome);
    }
    assert!(settled > 0);
    assert_eq!(total(&engine, a), a_before - settled);
    // The refused request after the failure was never applied.
    let late = rt
        .block_on(engine.submit(req("after", spend(a)), &Scope::All))
        .unwrap();
    assert!(
        !late.replayed,
        "a refused request must not have been applied"
    );
    let checks = engine
        .with_states(|s| {
            runtime::replay::verify_state(s, &svault_core::state::StateConfig::default())
        })
        .unwrap();
    assert!(checks.iter().all(Result::is_ok), "{checks:?}");
}

/// A server restarted more often than `snapshot_every_secs` still snapshots: the timer counts the
/// log time its replayed tail covers, so restarts do not replay an ever longer log (the soak's
/// restarts, every 30–60 s, used to replay everything since the first start, slower each round).
#[test]
fn restarts_more_often_than_the_snapshot_interval_still_snapshot() {
    use std::sync::atomic::{AtomicI64, Ordering};
    use std::time::{Duration, Instant};
    use svault_core::command::Millis;
    let dir = tempfile::tempdir().unwrap();
    let t0 = 1_767_578_400_000i64;
    let clock = Arc::new(AtomicI64::new(t0));
    let c = clock.clone();
    let tuning = Tuning {
        idle_tick_ms: 10,
        snapshot_every_records: u64::MAX,
        snapshot_every_secs: 600,
        clock: Arc::new(move || Millis(c.load(Ordering::SeqCst))),
        ..Tuning::default()
    };
    let cfg = config(dir.path(), Some(1));
    let rt = rt();
    let top_up = |engine: &Engine, key: &str| {
        let cmd = Command::TopUp {
            card_id: CardId(9),
            amount: Amount(1_000),
            channel: Channel::Cash,
        };
        let r = rt
            .block_on(engine.submit(req(key, cmd), &Scope::All))
            .unwrap();
        assert!(matches!(r.outcome, Outcome::Approved(_)), "{r:?}");
    };
    // Waits (liveness bound, nothing timed) until the shard has written a snapshot since open.
    let snapshot_taken = |engine: &Engine| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while engine.shard_stats()[0].snapshots == 0 {
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        true
    };

    // First life: a few records over ten minutes of log time, in a process that lives a
    // moment: no snapshot.
    let engine = Engine::open_with(cfg.clone(), tuning.clone()).unwrap();
    rt.block_on(demo_program_and_card(&engine, 9));
    clock.fetch_add(601_000, Ordering::SeqCst);
    top_up(&engine, "t1");
    assert_eq!(engine.shard_stats()[0].snapshots, 0);
    engine.shutdown();
    drop(engine);

    // Second life: the log, with no snapshot under it, covers more than the interval: due at
    // once.
    let engine = Engine::open_with(cfg.clone(), tuning.clone()).unwrap();
    assert!(
        snapshot_taken(&engine),
        "a restart that replayed 601 s of log with no snapshot under it took none"
    );
    let first = engine.shard_stats()[0].snapshot_lsn;
    // Ten minutes of log time pass in a process that lives a moment.
    clock.fetch_add(601_000, Ordering::SeqCst);
    top_up(&engine, "t2");
    engine.shutdown();
    drop(engine);

    // Third life: the tail covers more than the interval: due at once again.
    let engine = Engine::open_with(cfg, tuning).unwrap();
    assert!(
        snapshot_taken(&engine),
        "a restart that replayed 601 s of log past its snapshot took none"
    );
    assert!(engine.shard_stats()[0].snapshot_lsn > first);
    engine.shutdown();
}
