//! Replay: same log ⇒ same digest (live engine, restart, `svault replay`), point-in-time replay
//! by LSN and by time against a model, and snapshot + WAL equals WAL-only.

use runtime::recovery::Until;
use runtime::replay::{replay, ReplayOptions};
use runtime::{Durability, Engine, EngineConfig, Scope, Tuning};
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use svault_core::command::{CardId, Channel, Command, Method, Millis, Request};
use svault_core::money::Amount;
use svault_core::outcome::Outcome;
use svault_core::program::Program;

/// 2026-01-05T02:00:00Z: a Monday, 10:00 in +08:00 (outside the demo's discount window).
const T0: i64 = 1_767_578_400_000;

fn config(dir: &Path, shards: usize) -> EngineConfig {
    EngineConfig {
        data_dir: dir.into(),
        shards: Some(shards),
        durability: Durability::Group,
    }
}

fn manual_clock(tuning: &mut Tuning) -> Arc<AtomicI64> {
    let now = Arc::new(AtomicI64::new(T0));
    let c = now.clone();
    tuning.clock = Arc::new(move || Millis(c.load(Ordering::SeqCst)));
    now
}

fn req(key: String, command: Command) -> Request {
    Request {
        idempotency_key: Some(key),
        command,
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A mixed workload over `cards` cards: opens, top-ups, spends, holds.
fn workload(cards: u64, rounds: u64) -> Vec<Request> {
    let mut v = vec![req(
        "program".into(),
        Command::UpsertProgram(Program::demo()),
    )];
    for c in 0..cards {
        v.push(req(
            format!("open-{c}"),
            Command::OpenCard {
                card_id: CardId(10_000 + c),
                program: "demo".into(),
                registered: true,
                birthday: None,
            },
        ));
    }
    for r in 0..rounds {
        for c in 0..cards {
            let card_id = CardId(10_000 + c);
            let amount = Amount(((r * 7 + c * 13) % 50 + 1) as i64 * 1_000);
            let command = match (r + c) % 4 {
                0 | 1 => Command::TopUp {
                    card_id,
                    amount,
                    channel: Channel::Unionpay,
                },
                2 => Command::Spend {
                    card_id,
                    amount: Amount(amount.0 / 3 + 1),
                    method: Method::Qr,
                    store: None,
                    allow_partial: false,
                },
                _ => Command::Hold {
                    card_id,
                    amount: Amount(amount.0 / 5 + 1),
                    ttl_seconds: 3_600,
                    method: Method::Card,
                    store: None,
                    allow_partial: false,
                },
            };
            v.push(req(format!("w-{r}-{c}"), command));
        }
    }
    v
}

#[test]
fn digest_is_the_same_live_after_restart_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let rt = rt();
    let engine = Engine::open(config(dir.path(), 2)).unwrap();
    assert!(engine.created_new());
    rt.block_on(async {
        for chunk in workload(40, 30).chunks(100) {
            for r in engine.submit_batch(chunk.to_vec(), &Scope::All).await {
                r.unwrap();
            }
        }
    });
    let live = engine.digest().unwrap();
    let float_live = engine.float();
    engine.shutdown();

    let reopened = Engine::open(EngineConfig {
        shards: None,
        ..config(dir.path(), 2)
    })
    .unwrap();
    assert!(!reopened.created_new());
    assert_eq!(
        reopened.digest().unwrap(),
        live,
        "restart changed the state"
    );
    assert_eq!(reopened.float(), float_live);
    reopened.shutdown();

    let report = replay(
        dir.path(),
        &ReplayOptions {
            verify: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        report.digest, live,
        "svault replay disagrees with the live engine"
    );
    assert_eq!(report.float, float_live);
    assert!(report.verified_ok());
    assert!(report.records >= 1 + 40 + 40 * 30);

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_svault-under-test"))
        .args(["replay", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains(&format!("digest: {live:016x}")), "{text}");
    assert!(text.contains("records/s"), "{text}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_svault-under-test"))
        .args(["inspect", "--data"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("shard 0") && text.contains("shard 1"),
        "{text}"
    );
}

#[test]
fn point_in_time_by_lsn_and_by_time_match_a_model() {
    // One shard, one card, a clock we move by hand: LSN n is the n-th request, and request n
    // is applied at T0 + n seconds.
    let dir = tempfile::tempdir().unwrap();
    let mut tuning = Tuning::default();
    let clock = manual_clock(&mut tuning);
    let engine = Engine::open_with(config(dir.path(), 1), tuning).unwrap();
    let card = CardId(77);
    let mut requests = vec![
        req("p".into(), Command::UpsertProgram(Program::demo())),
        req(
            "o".into(),
            Command::OpenCard {
                card_id: card,
                program: "demo".into(),
                registered: true,
                birthday: None,
            },
        ),
    ];
    for i in 0..20 {
        requests.push(req(
            format!("t{i}"),
            Command::TopUp {
                card_id: card,
                amount: Amount(1_000 + i * 100),
                channel: Channel::Cash,
            },
        ));
    }
    // model[n] = (principal, bonus) after LSN n.
    let mut model = vec![(0i64, 0i64)];
    let rt = rt();
    rt.block_on(async {
        for (n, r) in requests.into_iter().enumerate() {
            clock.store(T0 + (n as i64 + 1) * 1_000, Ordering::SeqCst);
            let reply = engine.submit(r, &Scope::All).await.unwrap();
            let (p, b) = match &reply.outcome {
                Outcome::Approved(a) => a
                    .card
                    .as_ref()
                    .map(|c| (c.principal.0, c.bonus.0))
                    .unwrap_or(*model.last().unwrap()),
                other => panic!("unexpected {other:?}"),
            };
            model.push((p, b));
        }
    });
    let total = engine.digest().unwrap();
    engine.shutdown();
    let full = replay(dir.path(), &ReplayOptions::default()).unwrap();
    assert_eq!(full.digest, total);
    assert_eq!(
        full.records as usize,
        model.len() - 1,
        "no tick records expected in this log"
    );

    for n in [2u64, 3, 9, 17, 22] {
        let r = replay(
            dir.path(),
            &ReplayOptions {
                until: Until::Lsn(n),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r.shards[0].last_lsn, n);
        let f = r.float.iter().find(|(p, _)| p == "demo").unwrap().1;
        assert_eq!((f.principal.0, f.bonus.0), model[n as usize], "at lsn {n}");
        // The same point by time: records at T0 + k s for k ≤ n, stop at T0 + n s + 0.5 s.
        let t = Millis(T0 + n as i64 * 1_000 + 500);
        let r2 = replay(
            dir.path(),
            &ReplayOptions {
                until: Until::Time(t),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(r2.digest, r.digest, "time and lsn disagree at {n}");
    }
}

#[test]
fn snapshot_plus_wal_equals_wal_only() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        snapshot_every_records: 150,
        remove_covered_segments: false,
        ..Tuning::default()
    };
    let engine = Engine::open_with(config(dir.path(), 2), tuning.clone()).unwrap();
    let rt = rt();
    rt.block_on(async {
        for chunk in workload(30, 40).chunks(20) {
            for r in engine.submit_batch(chunk.to_vec(), &Scope::All).await {
                r.unwrap();
            }
        }
    });
    let live = engine.digest().unwrap();
    engine.shutdown();
    let with = replay(dir.path(), &ReplayOptions::default()).unwrap();
    assert!(
        with.shards.iter().all(|s| s.snapshot_lsn > 0),
        "no snapshot was taken: {:?}",
        with.shards
    );
    let without = replay(
        dir.path(),
        &ReplayOptions {
            ignore_snapshots: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(without.shards.iter().all(|s| s.snapshot_lsn == 0));
    assert_eq!(
        with.digest, without.digest,
        "snapshot + WAL differs from WAL only"
    );
    assert_eq!(with.digest, live);
    assert!(without.records > with.records);

    // Restart restores the snapshot and replays only what follows it.
    let reopened = Engine::open_with(config(dir.path(), 2), tuning).unwrap();
    assert!(reopened
        .recovery_reports()
        .iter()
        .all(|r| r.snapshot_lsn > 0));
    assert_eq!(reopened.digest().unwrap(), live);
    reopened.shutdown();
}

/// Background writes throttled to 1 byte a second would take days: a server that stops must
/// hurry the snapshot being written (and the log its segment fills), or this never ends.
#[test]
fn a_stopping_server_finishes_a_throttled_snapshot_at_full_speed() {
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        snapshot_every_records: 150,
        remove_covered_segments: false,
        wal: wal::WalOptions {
            segment_size_bytes: 16 * 4096,
            background_bytes_per_sec: 1,
            ..wal::WalOptions::default()
        },
        ..Tuning::default()
    };
    let engine = Engine::open_with(config(dir.path(), 2), tuning).unwrap();
    rt().block_on(async {
        for chunk in workload(30, 40).chunks(20) {
            for r in engine.submit_batch(chunk.to_vec(), &Scope::All).await {
                r.unwrap();
            }
        }
    });
    let live = engine.digest().unwrap();
    let (stopped_tx, stopped) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        engine.shutdown();
        let _ = stopped_tx.send(());
    });
    assert!(
        stopped
            .recv_timeout(std::time::Duration::from_secs(60))
            .is_ok(),
        "the server waited for its throttled snapshot"
    );
    let with = replay(dir.path(), &ReplayOptions::default()).unwrap();
    assert!(
        with.shards.iter().all(|s| s.snapshot_lsn > 0),
        "no snapshot was written: {:?}",
        with.shards
    );
    assert_eq!(with.digest, live);
}

/// Runs the workload with a clock that advances one second per batch of 20 requests; returns
/// the live digest.
fn run_timed(dir: &Path, tuning: &Tuning) -> u64 {
    let mut tuning = tuning.clone();
    let now = manual_clock(&mut tuning);
    let engine = Engine::open_with(config(dir, 2), tuning).unwrap();
    let rt = rt();
    rt.block_on(async {
        for chunk in workload(30, 40).chunks(20) {
            now.fetch_add(1_000, Ordering::SeqCst);
            for r in engine.submit_batch(chunk.to_vec(), &Scope::All).await {
                r.unwrap();
            }
        }
    });
    let live = engine.digest().unwrap();
    engine.shutdown();
    live
}

#[test]
fn archived_segments_keep_every_instant_reachable() {
    let small_segments = wal::WalOptions {
        segment_size_bytes: 16 * 4096,
        ..wal::WalOptions::default()
    };
    let archiving = Tuning {
        snapshot_every_records: 100,
        wal: small_segments.clone(),
        ..Tuning::default()
    };
    let keeping = Tuning {
        remove_covered_segments: false,
        wal: small_segments,
        ..Tuning::default()
    };
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let live_a = run_timed(a.path(), &archiving);
    let live_b = run_timed(b.path(), &keeping);
    assert_eq!(live_a, live_b);
    for k in 0..2 {
        let archive = a.path().join(format!("shard-{k}/archive"));
        let archived = std::fs::read_dir(&archive).map(|d| d.count()).unwrap_or(0);
        assert!(archived > 0, "shard {k}: nothing archived");
        let first_live = std::fs::read_dir(a.path().join(format!("shard-{k}/wal")))
            .unwrap()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let n = e.file_name().to_string_lossy().into_owned();
                n.strip_suffix(".wal")
                    .and_then(|n| n.split_once('-'))
                    .and_then(|(_, lsn)| lsn.parse::<u64>().ok())
            })
            .min()
            .unwrap();
        assert!(
            first_live > 1,
            "shard {k}: the live log still starts at lsn 1"
        );
    }
    // Every instant, including those before the oldest snapshot, is reachable and equal to
    // the same instant of a log that never moved a segment.
    for secs in [1, 5, 20, 40, 61, 1_000] {
        let until = Until::Time(Millis(T0 + secs * 1_000 + 500));
        let options = ReplayOptions {
            until,
            ..Default::default()
        };
        let ra = replay(a.path(), &options).unwrap();
        let rb = replay(b.path(), &options).unwrap();
        assert_eq!(ra.digest, rb.digest, "at {secs} s");
        assert_eq!(ra.float, rb.float, "at {secs} s");
    }
    let whole = replay(
        a.path(),
        &ReplayOptions {
            ignore_snapshots: true,
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(whole.digest, live_a);
    // inspect lists the archive, without gaps.
    let shards = runtime::inspect::inspect(a.path()).unwrap();
    assert!(shards.iter().all(|s| !s.archive.segments.is_empty()));
    let (text, bad) = runtime::inspect::render(&shards);
    assert!(!bad, "{text}");
    assert!(text.contains("archive: segments:"), "{text}");
}

/// Every file under `dir` with its bytes.
fn every_file(dir: &Path) -> std::collections::BTreeMap<std::path::PathBuf, Vec<u8>> {
    let mut out = std::collections::BTreeMap::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).unwrap();
                out.insert(path, bytes);
            }
        }
    }
    out
}

/// A one-shard directory after the workload, stopped cleanly; returns the live digest and the
/// path and bytes of its newest segment.
fn stopped_log(dir: &Path) -> (u64, std::path::PathBuf, Vec<u8>) {
    let engine = Engine::open(config(dir, 1)).unwrap();
    rt().block_on(async {
        for chunk in workload(20, 10).chunks(50) {
            for r in engine.submit_batch(chunk.to_vec(), &Scope::All).await {
                r.unwrap();
            }
        }
    });
    let live = engine.digest().unwrap();
    engine.shutdown();
    let history = wal::History::open(&[&dir.join("shard-0/wal")]).unwrap();
    let last = history.segments.last().unwrap();
    let path = last.dir.join(&last.file_name);
    let bytes = std::fs::read(&path).unwrap();
    (live, path, bytes)
}

/// Replay reads the log in place: it writes nothing under the data directory, reports the torn
/// tail a restart would cut (and leaves it), and reaches the digest the restart reaches.
#[test]
fn replay_reads_the_log_in_place_and_leaves_a_torn_tail_to_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (live, segment, bytes) = stopped_log(dir.path());
    let header = wal::decode::SegmentHeader::decode(&bytes).unwrap();
    let scan = wal::decode::scan_segment(&bytes, header.epoch, header.first_lsn);
    // Half a batch after the last one, as a crash in the middle of a write leaves it.
    let mut torn = bytes.clone();
    torn[scan.end as usize..scan.end as usize + 100].fill(0xab);
    std::fs::write(&segment, &torn).unwrap();
    let before = every_file(dir.path());

    let report = replay(dir.path(), &ReplayOptions::default()).unwrap();
    assert_eq!(report.digest, live);
    let said = report.shards[0]
        .torn_tail
        .clone()
        .expect("torn tail reported");
    assert!(said.contains(&format!("offset {}", scan.end)), "{said}");
    assert!(
        every_file(dir.path()) == before,
        "svault replay changed the data directory"
    );

    // The restart cuts what replay only reported, and agrees on the state.
    let engine = Engine::open(config(dir.path(), 1)).unwrap();
    assert_eq!(engine.digest().unwrap(), live);
    engine.shutdown();
}

/// Damage before the last batch is refused by replay as by a restart, naming the segment.
#[test]
fn replay_refuses_damage_in_the_middle_of_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let (_, segment, mut bytes) = stopped_log(dir.path());
    // A payload byte of the first record: later batches vouch for it.
    bytes[wal::SEGMENT_HEADER_BYTES as usize + 20] ^= 0x01;
    std::fs::write(&segment, &bytes).unwrap();
    let err =
        replay(dir.path(), &ReplayOptions::default()).expect_err("replay refuses a damaged log");
    let text = err.to_string();
    assert!(
        text.contains(&segment.display().to_string()),
        "not named: {text}"
    );
    let restart = Engine::open(config(dir.path(), 1))
        .err()
        .expect("a restart refuses it too");
    assert!(restart.to_string().contains("corrupt"), "{restart}");
}
