//! Logs written by earlier versions of svault still replay to the balances they had.
//!
//! `tests/fixtures/log-v1` was written by the engine at record version 1 (before
//! `Command::UpsertProgram` was archived out of line), `tests/fixtures/log-v2` at record
//! version 2, `tests/fixtures/log-v4` at record version 4 (callers logged, reversals on their
//! card), `tests/fixtures/log-v5` at record version 5 (partial approvals, incremental holds,
//! spend limits and store lists: [`run_script_v5`]); all by [`write_fixture`] below, run in a checkout of that version:
//!
//! ```text
//! SVAULT_FIXTURE_OUT=/tmp/log-vN cargo test -p svault-tests --test log_fixtures \
//!     write_fixture -- --ignored
//! ```
//!
//! Each directory holds the data directory (`meta`, `shard-K/wal`, no snapshot: replay reads
//! every record) and `expected.txt`: every card and the float as the engine that wrote the
//! log saw them after a restart. A change to the record layout, to decoding or to a money rule
//! that would replay an old log differently fails here. The state digest is pinned too
//! ([`DIGESTS`]): it hashes the snapshot layout, so a deliberate snapshot layout change updates
//! it there.

use runtime::replay::{replay, ReplayOptions};
use runtime::{Durability, Engine, EngineConfig, Scope, Tuning};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use svault_core::command::{
    CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, MonthDay, Query, Request,
    TxnId,
};
use svault_core::money::Amount;
use svault_core::outcome::{CardView, Outcome};
use svault_core::program::{Program, ProgramSpec};
use svault_core::state::QueryAnswer;

/// The state digest each fixture replays to under today's snapshot layout
/// (`svault_core::state::SNAPSHOT_VERSION` 4: key fingerprints hash the command's archive).
/// One place to update on a deliberate layout change.
const DIGESTS: [(&str, u64); 4] = [
    ("log-v1", 0x0eb8_914a_9756_01f6),
    ("log-v2", 0x0eb8_914a_9756_01f6),
    ("log-v4", 0xae91_fb21_9d7c_6250),
    ("log-v5", 0xd926_08a6_361a_e237),
];

/// 2026-01-05T02:00:00Z, 10:00 at +08:00.
const T0: i64 = 1_767_578_400_000;
const CARDS: [u64; 8] = [11, 12, 13, 14, 21, 22, 23, 24];

fn fixture_program() -> Program {
    let spec: ProgramSpec = serde_json::from_str(
        r#"{"id":"fixture","currency":"CNY","utc_offset":"-05:00",
        "top_up":{"min":"1","max_single":"900","max_daily":"1500","max_balance":"2000","max_balance_anonymous":"500"},
        "bonus_ladder":[{"nth":1,"bonus":"3.33"},{"nth":2,"min":"10","rate":"0.125"}],
        "bonus_expiry_days":2,"spend_order":"bonus_first",
        "points":{"earn_per_unit":"2.5","redeem_rate":"7"},
        "tiers":[{"name":"t1","lifetime_top_up":"50","points_multiplier":"1.5","discount":"0.03"}],
        "discount_windows":[{"from":"22:00","to":"02:00","rate":"0.07"}],
        "velocity":{"max_spends_per_minute":3,"max_daily_spend":"700"},
        "refund_lock_days":1,"reminders":{"low_balance":"5","bonus_expiring_days":1}}"#,
    )
    .expect("fixture program");
    Program::from_spec(&spec).expect("fixture program")
}

/// Drives an engine through a fixed script that touches every command.
struct Script {
    engine: Engine,
    clock: Arc<AtomicI64>,
    n: u32,
    rt: tokio::runtime::Runtime,
}

impl Script {
    fn send(&mut self, command: Command) -> Outcome {
        self.n += 1;
        self.send_keyed(format!("fx-{}", self.n), command)
    }
    fn send_keyed(&mut self, key: String, command: Command) -> Outcome {
        let request = Request {
            idempotency_key: Some(key),
            command,
        };
        self.rt
            .block_on(self.engine.submit(request, &Scope::All))
            .expect("submitted")
            .outcome
    }
    fn txn(&mut self, command: Command) -> Option<TxnId> {
        match self.send(command) {
            Outcome::Approved(a) => a.txn_id,
            _ => None,
        }
    }
    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }
}

fn top_up(c: u64, fen: i64, channel: Channel) -> Command {
    Command::TopUp {
        card_id: CardId(c),
        amount: Amount(fen),
        channel,
    }
}

fn spend(c: u64, fen: i64) -> Command {
    Command::Spend {
        card_id: CardId(c),
        amount: Amount(fen),
        method: Method::Qr,
        store: Some("store-9".into()),
        allow_partial: false,
    }
}

fn hold(c: u64, fen: i64, ttl_seconds: u32) -> Command {
    Command::Hold {
        card_id: CardId(c),
        amount: Amount(fen),
        ttl_seconds,
        method: Method::Card,
        store: None,
        allow_partial: false,
    }
}

fn run_script(s: &mut Script) {
    s.send_keyed(
        "program-demo".into(),
        Command::UpsertProgram(Program::demo()),
    );
    s.send_keyed(
        "program-fixture".into(),
        Command::UpsertProgram(fixture_program()),
    );
    for (i, c) in CARDS.iter().enumerate() {
        s.send(Command::OpenCard {
            card_id: CardId(*c),
            program: if *c < 20 { "demo" } else { "fixture" }.into(),
            registered: i % 3 != 2,
            birthday: (i == 1).then_some(MonthDay { month: 2, day: 29 }),
        });
    }
    for (i, c) in CARDS.iter().enumerate() {
        let channel = Channel::ALL[i % Channel::ALL.len()];
        s.send(top_up(*c, 10_000 + 2_500 * i as i64, channel));
        s.advance(1_000);
    }
    for c in CARDS {
        s.send(top_up(c, 20_000, Channel::Wechat));
    }
    let spent: Vec<Option<TxnId>> = CARDS.iter().map(|c| s.txn(spend(*c, 3_333))).collect();
    s.advance(60_000);
    let holds: Vec<Option<TxnId>> = CARDS.iter().map(|c| s.txn(hold(*c, 4_000, 600))).collect();
    // Capture part of one hold, all of another, void a third, let the rest expire.
    if let Some(h) = holds[0] {
        s.send(Command::Capture {
            hold_id: h,
            amount: Some(Amount(2_500)),
        });
    }
    if let Some(h) = holds[4] {
        s.send(Command::Capture {
            hold_id: h,
            amount: None,
        });
    }
    if let Some(h) = holds[1] {
        s.send(Command::Void { hold_id: h });
    }
    for t in spent.iter().take(3).flatten() {
        s.send(Command::Refund {
            txn_id: *t,
            amount: Amount(1_111),
        });
    }
    // Reversals: a top-up (fx-11, card 13), a spend (fx-28, card 14), and a key never seen
    // (the request arriving later is declined).
    s.send_keyed(
        "late".into(),
        Command::Reversal {
            card_id: CardId(13),
            key: "fx-90001".into(),
        },
    );
    s.send(Command::Reversal {
        card_id: CardId(13),
        key: "fx-11".into(),
    });
    s.send(Command::Reversal {
        card_id: CardId(14),
        key: "fx-28".into(),
    });
    s.send_keyed("fx-90001".into(), top_up(13, 5_000, Channel::Cash));
    // A retry of the same key and body answers the first response again.
    s.send_keyed("fx-10".into(), top_up(12, 12_500, Channel::Alipay));
    s.send(Command::RedeemPoints {
        card_id: CardId(11),
        points: 100,
    });
    s.send(Command::RedeemPoints {
        card_id: CardId(21),
        points: 14,
    });
    s.send(Command::Grant {
        card_id: CardId(12),
        bonus: Some(Amount(888)),
        points: Some(77),
        reason: GrantReason::Birthday,
    });
    s.send(Command::Freeze {
        card_id: CardId(14),
    });
    s.send(spend(14, 100));
    s.send(Command::Unfreeze {
        card_id: CardId(14),
    });
    s.send(Command::CashOut {
        card_id: CardId(24),
        reason: CashOutReason::CoolingOff,
    });
    s.send(Command::CashOut {
        card_id: CardId(23),
        reason: CashOutReason::MerchantFault,
    });
    // Holds expire, bonus lots of the fixture program (2 days) expire.
    s.advance(3 * 86_400_000);
    for c in CARDS {
        s.send(spend(c, 777));
    }
    s.send(Command::CashOut {
        card_id: CardId(22),
        reason: CashOutReason::Consumer,
    });
    s.send(Command::Close {
        card_id: CardId(21),
    });
    run_script_v5(s);
}

/// The commands record version 5 added: partial approvals of spends and holds, an
/// incremental authorization (raised, declined, captured), and a program change with a
/// `spend` block (single-spend cap, daily count, store lists) that later spends run into.
fn run_script_v5(s: &mut Script) {
    s.advance(86_400_000);
    let spend_at = |c: u64, fen: i64, store: &str, allow_partial: bool| Command::Spend {
        card_id: CardId(c),
        amount: Amount(fen),
        method: Method::Voice,
        store: Some(store.into()),
        allow_partial,
    };
    s.send(spend_at(11, 9_999_900, "store-1", true));
    s.send(top_up(11, 30_000, Channel::Cash));
    if let Some(h) = s.txn(hold(12, 2_000, 900)) {
        s.send(Command::IncrementHold {
            hold_id: h,
            amount: Amount(1_500),
            ttl_seconds: Some(1_200),
        });
        s.send(Command::IncrementHold {
            hold_id: h,
            amount: Amount(9_999_900),
            ttl_seconds: None,
        });
        s.send(Command::Capture {
            hold_id: h,
            amount: Some(Amount(3_000)),
        });
    }
    s.send(Command::Hold {
        card_id: CardId(13),
        amount: Amount(9_999_900),
        ttl_seconds: 300,
        method: Method::Qr,
        store: None,
        allow_partial: true,
    });
    let mut spec: serde_json::Value =
        serde_json::to_value(Program::demo().to_spec()).expect("demo spec");
    spec["spend"] = serde_json::json!({
        "max_single": "60", "max_daily_count": 4,
        "stores_allow": ["store-9", "store-10"], "stores_deny": ["store-10"]
    });
    let spec: ProgramSpec = serde_json::from_value(spec).expect("v5 demo spec");
    s.send_keyed(
        "program-demo-v5".into(),
        Command::UpsertProgram(Program::from_spec(&spec).expect("v5 demo program")),
    );
    s.send(spend_at(14, 6_001, "store-9", false));
    s.send(spend_at(14, 500, "store-77", true));
    s.send(spend_at(14, 500, "store-10", true));
    for _ in 0..5 {
        s.send(spend(14, 100));
        s.advance(30_000);
    }
}

fn card_line(v: &CardView) -> String {
    format!(
        "card {} principal={} bonus={} held={} available={} points={} paid_in={} bonus_given={} consumed={} status={:?}",
        v.card_id.0,
        v.principal.0,
        v.bonus.0,
        v.held.0,
        v.available.0,
        v.points,
        v.paid_in.0,
        v.bonus_given.0,
        v.consumed.0,
        v.status
    )
}

/// Every card and the float, one per line, as the engine holding `dir` sees them.
fn balances(engine: &Engine, rt: &tokio::runtime::Runtime) -> String {
    let mut out = String::new();
    for c in CARDS {
        let q = Query::Card { card_id: CardId(c) };
        match rt.block_on(engine.query(q, &Scope::All)) {
            Ok(QueryAnswer::Card(Some(v))) => writeln!(out, "{}", card_line(&v)).unwrap(),
            other => writeln!(out, "card {c} missing: {other:?}").unwrap(),
        }
    }
    for (program, f) in engine.float() {
        writeln!(
            out,
            "float {program} principal={} bonus={} held={} cards={}",
            f.principal.0, f.bonus.0, f.held.0, f.cards
        )
        .unwrap();
    }
    out
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.into(),
        shards: Some(2),
        durability: Durability::Sync,
    }
}

/// Writes a fixture data directory (see the module docs). Ignored: run by hand in a checkout
/// of the version whose format the fixture is to keep.
#[test]
#[ignore]
fn write_fixture() {
    let out = PathBuf::from(std::env::var("SVAULT_FIXTURE_OUT").expect("SVAULT_FIXTURE_OUT"));
    assert!(!out.exists(), "{} exists", out.display());
    let data = out.join("data");
    let clock = Arc::new(AtomicI64::new(T0));
    let mut tuning = Tuning::default();
    let c = clock.clone();
    tuning.clock = Arc::new(move || Millis(c.load(Ordering::SeqCst)));
    tuning.snapshot_every_records = u64::MAX;
    tuning.snapshot_every_secs = 1 << 30;
    tuning.wal.segment_size_bytes = 32 << 10;
    // Ticks checked on every wake while the script runs (so expiries are logged), never while
    // the result is read back.
    tuning.idle_tick_ms = 1;
    let engine = Engine::open_with(config(&data), tuning.clone()).unwrap();
    let mut s = Script {
        engine,
        clock,
        n: 0,
        rt: rt(),
    };
    run_script(&mut s);
    s.engine.shutdown();
    drop(s.engine);
    // What a restart sees, and what replay says.
    tuning.idle_tick_ms = 1 << 40;
    let engine = Engine::open_with(config(&data), tuning).unwrap();
    let mut expected = balances(&engine, &s.rt);
    engine.shutdown();
    drop(engine);
    let report = replay(&data, &ReplayOptions::default()).unwrap();
    writeln!(
        expected,
        "records {}\ndigest-when-written {:016x}",
        report.records, report.digest
    )
    .unwrap();
    std::fs::write(out.join("expected.txt"), expected).unwrap();
}

/// Copies a fixture's data directory to a scratch place: opening a log may cut a torn tail, and
/// the committed fixture must never change.
fn scratch_copy(name: &str) -> (tempfile::TempDir, PathBuf) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .join("data");
    let tmp = tempfile::tempdir().unwrap();
    let dst = tmp.path().join("data");
    copy_tree(&src, &dst);
    (tmp, dst)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

fn expected(name: &str) -> (String, u64) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name)
        .join("expected.txt");
    let text = std::fs::read_to_string(path).unwrap();
    let balances: String = text
        .lines()
        .filter(|l| l.starts_with("card ") || l.starts_with("float "))
        .map(|l| format!("{l}\n"))
        .collect();
    let records = text
        .lines()
        .find_map(|l| l.strip_prefix("records "))
        .and_then(|n| n.parse().ok())
        .expect("records line");
    (balances, records)
}

/// Replays fixture `name` offline and through a restart; both must give the balances the
/// writing engine saw, and the pinned digest.
fn replays_as_written(name: &str) {
    let (want, records) = expected(name);
    let (_tmp, data) = scratch_copy(name);
    let report = replay(
        &data,
        &ReplayOptions {
            verify: true,
            ignore_snapshots: true,
            ..Default::default()
        },
    )
    .unwrap_or_else(|e| panic!("{name} does not replay: {e}"));
    assert_eq!(report.records, records, "{name}: records replayed");
    assert!(report.verified_ok(), "{name}: invariants after replay");
    let pinned = DIGESTS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, d)| *d)
        .unwrap();
    assert_eq!(
        report.digest, pinned,
        "{name}: digest {:016x}; if the snapshot layout changed on purpose, update DIGESTS",
        report.digest
    );
    let rt = rt();
    // A clock at the fixture's own time and no idle ticks: reading must not move the state.
    let tuning = Tuning {
        clock: Arc::new(|| Millis(T0)),
        idle_tick_ms: 1 << 40,
        ..Tuning::default()
    };
    let engine = Engine::open_with(
        EngineConfig {
            shards: None,
            ..config(&data)
        },
        tuning,
    )
    .unwrap_or_else(|e| panic!("{name} does not open: {e}"));
    let got = balances(&engine, &rt);
    assert_eq!(
        engine.digest().unwrap(),
        report.digest,
        "{name}: restart vs replay"
    );
    engine.shutdown();
    assert_eq!(
        got, want,
        "{name}: balances differ from what the writing engine saw"
    );
}

#[test]
fn a_log_of_record_version_1_replays_to_its_balances() {
    replays_as_written("log-v1");
}

#[test]
fn a_log_of_record_version_2_replays_to_its_balances() {
    replays_as_written("log-v2");
}

#[test]
fn a_log_of_record_version_4_replays_to_its_balances() {
    replays_as_written("log-v4");
}

#[test]
fn a_log_of_record_version_5_replays_to_its_balances() {
    replays_as_written("log-v5");
}
