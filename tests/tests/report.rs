//! `svault report` over a scripted history with known totals: two programs (+08:00 and
//! +00:00), four channels, stores, tiers, ladder steps, the evening window, a refund, a
//! reversal, a hold expiry, a bonus expiry, a cash-out, a grant, a redeem, a decline and an
//! idempotent replay, from January to April. Every figure is checked to the fen; table, JSON
//! and CSV must say the same; the same history with snapshots, archiving and restarts gives
//! the same report; `--parquet` writes a journal and events that add up to the report.

use parquet::file::reader::{FileReader, SerializedFileReader};
use parquet::record::Field;
use runtime::report::tally::Sum;
use runtime::report::{figures, journal, time, ReportOptions};
use runtime::{Durability, Engine, EngineConfig, Scope, Tuning};
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use svault_core::command::{
    CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, Query, Request,
};
use svault_core::money::Amount;
use svault_core::outcome::{Approval, CardView, Outcome};
use svault_core::program::{Program, ProgramSpec};
use svault_core::state::QueryAnswer;

/// 2026-01-05T02:00:00Z: 10:00 in +08:00, 02:00 in +00:00.
const T0: i64 = 1_767_578_400_000;
const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
/// 2026-04-10T02:00:00Z: 10:00 on 10 April in +08:00.
const APRIL: i64 = 1_775_786_400_000;
/// 2026-04-11T00:00:00+08:00.
const TO: i64 = 1_775_836_800_000;

const A: CardId = CardId(1001);
const B: CardId = CardId(1002);
const C: CardId = CardId(1003);
const G: CardId = CardId(2001);
const H: CardId = CardId(2002);

fn gym() -> Program {
    let spec: ProgramSpec = serde_json::from_str(
        r#"{"id":"gym","currency":"CNY","utc_offset":"+00:00",
            "bonus_ladder":[{"nth":1,"min":"50","bonus":"5"}],"bonus_expiry_days":1}"#,
    )
    .unwrap();
    Program::from_spec(&spec).unwrap()
}

/// What the live engine answered, kept to check the report against.
#[derive(Default)]
struct Live {
    approvals: Vec<(String, Approval)>,
    float_at_april: Vec<(String, svault_core::outcome::FloatTotals)>,
    float_end: Vec<(String, svault_core::outcome::FloatTotals)>,
    cards: BTreeMap<u64, CardView>,
    /// The events feed at the end (every event of the script: far fewer than the ring keeps).
    events: Vec<(u64, svault_core::outcome::Event)>,
}

struct Driver<'a> {
    engine: Engine,
    clock: Arc<AtomicI64>,
    rt: tokio::runtime::Runtime,
    live: Live,
    dir: &'a Path,
    tuning: Tuning,
    restart_every: Option<usize>,
    ops: usize,
}

impl Driver<'_> {
    fn at(&self, t: i64) {
        self.clock.store(t, Ordering::SeqCst);
    }

    fn restart_maybe(&mut self) {
        self.ops += 1;
        if self
            .restart_every
            .is_some_and(|n| self.ops.is_multiple_of(n))
        {
            self.engine.shutdown();
            let e = Engine::open_with(config(self.dir), self.tuning.clone()).unwrap();
            self.engine = e;
        }
    }

    fn send(&mut self, key: &str, command: Command) -> Outcome {
        let program = match &command {
            Command::UpsertProgram(p) => p.id.clone(),
            _ => String::new(),
        };
        let r = self
            .rt
            .block_on(self.engine.submit(
                Request {
                    idempotency_key: Some(key.to_string()),
                    command,
                },
                &Scope::All,
            ))
            .unwrap();
        if let (Outcome::Approved(a), false) = (&r.outcome, r.replayed) {
            let p = a
                .card
                .as_ref()
                .map(|c| c.program.to_string())
                .unwrap_or(program);
            self.live.approvals.push((p, (**a).clone()));
        }
        self.restart_maybe();
        r.outcome
    }

    fn ok(&mut self, key: &str, command: Command) -> Approval {
        match self.send(key, command) {
            Outcome::Approved(a) => *a,
            other => panic!("{key}: {other:?}"),
        }
    }

    fn card(&self, id: CardId) -> CardView {
        match self
            .rt
            .block_on(self.engine.query(Query::Card { card_id: id }, &Scope::All))
            .unwrap()
        {
            QueryAnswer::Card(Some(c)) => c,
            other => panic!("{other:?}"),
        }
    }
}

fn config(dir: &Path) -> EngineConfig {
    EngineConfig {
        data_dir: dir.into(),
        shards: Some(2),
        durability: Durability::Group,
    }
}

fn yuan(y: i64) -> Amount {
    Amount(y * 100)
}

fn open(card_id: CardId, program: &str) -> Command {
    Command::OpenCard {
        card_id,
        program: program.into(),
        registered: true,
        birthday: None,
    }
}

fn top_up(card_id: CardId, y: i64, channel: Channel) -> Command {
    Command::TopUp {
        card_id,
        amount: yuan(y),
        channel,
    }
}

fn spend(card_id: CardId, y: i64, method: Method, store: Option<&str>) -> Command {
    Command::Spend {
        card_id,
        amount: yuan(y),
        method,
        store: store.map(String::from),
        allow_partial: false,
    }
}

/// Plays the script; `restart_every` restarts the engine after every N requests.
fn script(dir: &Path, tuning: Tuning, restart_every: Option<usize>) -> Live {
    let clock = Arc::new(AtomicI64::new(T0));
    let c = clock.clone();
    let tuning = Tuning {
        idle_tick_ms: 2,
        clock: Arc::new(move || Millis(c.load(Ordering::SeqCst))),
        ..tuning
    };
    let engine = Engine::open_with(config(dir), tuning.clone()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut d = Driver {
        engine,
        clock,
        rt,
        live: Live::default(),
        dir,
        tuning,
        restart_every,
        ops: 0,
    };
    d.at(T0);
    d.ok("p-demo", Command::UpsertProgram(Program::demo()));
    d.ok("p-gym", Command::UpsertProgram(gym()));
    for (id, p) in [
        (A, "demo"),
        (B, "demo"),
        (C, "demo"),
        (G, "gym"),
        (H, "gym"),
    ] {
        d.ok(&format!("open-{}", id.0), open(id, p));
    }
    d.ok("a1", top_up(A, 200, Channel::Wechat));
    d.ok("a2", top_up(A, 100, Channel::Alipay));
    d.ok("b1", top_up(B, 1_000, Channel::Unionpay));
    // An idempotent replay and a decline count for nothing.
    assert!(matches!(
        d.send("a1", top_up(A, 200, Channel::Wechat)),
        Outcome::Approved(_)
    ));
    assert!(matches!(
        d.send("b-big", spend(B, 4_000, Method::Qr, None)),
        Outcome::Declined { .. }
    ));
    d.ok("a3", spend(A, 50, Method::Qr, Some("s1")));
    d.ok("g1", top_up(G, 60, Channel::Cash));
    d.ok("g2", spend(G, 10, Method::Card, Some("g1")));

    d.at(T0 + 11 * HOUR); // 21:00 in +08:00: the demo's evening window
    let evening = d.ok("a4", spend(A, 100, Method::Voice, Some("s2")));
    let hold = d.ok(
        "b2",
        Command::Hold {
            card_id: B,
            amount: yuan(100),
            ttl_seconds: 3_600,
            method: Method::Card,
            store: Some("s1".into()),
            allow_partial: false,
        },
    );
    d.ok(
        "b3",
        Command::Capture {
            hold_id: hold.txn_id.unwrap(),
            amount: None,
        },
    );
    d.ok("b4", spend(B, 20, Method::Qr, None));

    d.at(T0 + DAY); // 6 January
    d.ok(
        "a5",
        Command::Refund {
            txn_id: evening.txn_id.unwrap(),
            amount: yuan(45),
        },
    );
    d.ok("b5", top_up(B, 4_000, Channel::Wechat)); // second top-up: 10 %; gold from here
    d.ok("b6", spend(B, 100, Method::Qr, Some("s1"))); // gold: 5 % off
    d.ok("h1", top_up(H, 100, Channel::Wechat));
    d.ok(
        "h1-rev",
        Command::Reversal {
            card_id: H,
            key: "h1".into(),
        },
    );
    d.ok(
        "g3",
        Command::CashOut {
            card_id: G,
            reason: CashOutReason::Consumer,
        },
    );
    d.at(T0 + DAY + 60_000);
    d.ok("h2", top_up(H, 80, Channel::Alipay)); // the first top-up again after the reversal
    let short = d.ok(
        "a6",
        Command::Hold {
            card_id: A,
            amount: yuan(10),
            ttl_seconds: 60,
            method: Method::Qr,
            store: None,
            allow_partial: false,
        },
    );
    assert!(short.txn_id.is_some());

    // The hold expires, then H's bonus (one day after the local day it was credited), each by a
    // logged tick.
    d.at(T0 + DAY + 2 * HOUR);
    while d.card(A).held.0 != 0 {
        std::thread::yield_now();
    }
    d.at(T0 + 4 * DAY);
    while d.card(H).bonus.0 != 0 {
        std::thread::yield_now();
    }
    d.live.float_at_april = d.engine.float();

    d.at(APRIL);
    d.ok("a7", spend(A, 10, Method::Qr, Some("s1")));
    d.ok(
        "a8",
        Command::RedeemPoints {
            card_id: A,
            points: 100,
        },
    );
    d.ok(
        "b7",
        Command::Grant {
            card_id: B,
            bonus: Some(yuan(5)),
            points: Some(50),
            reason: GrantReason::Campaign,
        },
    );
    d.live.float_end = d.engine.float();
    for id in [A, B, C, G, H] {
        let view = d.card(id);
        d.live.cards.insert(id.0, view);
    }
    d.live.events = d.rt.block_on(d.engine.events(0, 100_000));
    d.engine.shutdown();
    d.live
}

fn options() -> ReportOptions {
    ReportOptions {
        from: Some(Millis(T0)),
        to: Some(Millis(TO)),
        ..ReportOptions::default()
    }
}

fn money(a: i64) -> String {
    figures::money(i128::from(a), 2)
}

fn float_of(
    f: &[(String, svault_core::outcome::FloatTotals)],
    p: &str,
) -> svault_core::outcome::FloatTotals {
    f.iter()
        .find(|(id, _)| id == p)
        .map(|(_, f)| *f)
        .unwrap_or_default()
}

/// Every figure of both programs, as the report must print it.
fn expected(live: &Live) -> BTreeMap<(String, String), String> {
    let mut e = BTreeMap::new();
    let mut put = |p: &str, k: &str, v: &str| {
        e.insert((p.to_string(), k.to_string()), v.to_string());
    };
    let sum_live = |p: &str, f: &dyn Fn(&Approval) -> i64| -> i64 {
        live.approvals
            .iter()
            .filter(|(id, _)| id == p)
            .map(|(_, a)| f(a))
            .sum()
    };
    let card = |id: CardId| &live.cards[&id.0];

    // demo: top-ups
    put("demo", "currency", "CNY");
    put("demo", "utc_offset", "+08:00");
    put("demo", "from", "2026-01-05T10:00:00.000+08:00");
    put("demo", "to", "2026-04-11T00:00:00.000+08:00");
    put("demo", "top_ups.count", "4");
    put("demo", "top_ups.amount", "5300.00");
    put("demo", "top_ups.bonus_given", "440.00");
    for (ch, n, amt, share) in [
        ("wechat", "2", "4200.00", "0.7925"),
        ("alipay", "1", "100.00", "0.0189"),
        ("unionpay", "1", "1000.00", "0.1887"),
        ("cash", "0", "0.00", "0.0000"),
    ] {
        put("demo", &format!("top_ups.by_channel.{ch}.count"), n);
        put("demo", &format!("top_ups.by_channel.{ch}.amount"), amt);
        put(
            "demo",
            &format!("top_ups.by_channel.{ch}.share_of_amount"),
            share,
        );
    }
    put("demo", "top_ups.by_local_day.2026-01-05.count", "3");
    put("demo", "top_ups.by_local_day.2026-01-05.amount", "1300.00");
    put("demo", "top_ups.by_local_day.2026-01-06.count", "1");
    put("demo", "top_ups.by_local_day.2026-01-06.amount", "4000.00");
    put("demo", "top_ups.bonus_by_ladder_step.1.top_ups", "2");
    put("demo", "top_ups.bonus_by_ladder_step.1.bonus", "30.00");
    put("demo", "top_ups.bonus_by_ladder_step.2.top_ups", "2");
    put("demo", "top_ups.bonus_by_ladder_step.2.bonus", "410.00");
    put("demo", "top_ups.first_top_up_conversion.cards_opened", "3");
    put(
        "demo",
        "top_ups.first_top_up_conversion.cards_with_a_top_up",
        "2",
    );
    put("demo", "top_ups.first_top_up_conversion.rate", "0.6667");
    // spends: 50 + 90 (window) + 90 (capture, window) + 18 (window) + 95 (gold) + 10
    put("demo", "spends.count", "6");
    put("demo", "spends.amount", "353.00");
    for h in 0..24 {
        let (n, a) = match h {
            10 => ("3", "155.00"),
            21 => ("3", "198.00"),
            _ => ("0", "0.00"),
        };
        put("demo", &format!("spends.by_local_hour.{h:02}.count"), n);
        put("demo", &format!("spends.by_local_hour.{h:02}.amount"), a);
    }
    put("demo", "spends.after_8pm.count", "3");
    put("demo", "spends.after_8pm.amount", "198.00");
    put("demo", "spends.after_8pm.share_of_amount", "0.5609");
    put("demo", "spends.by_method.qr.count", "4");
    put("demo", "spends.by_method.qr.amount", "173.00");
    put("demo", "spends.by_method.voice.count", "1");
    put("demo", "spends.by_method.voice.amount", "90.00");
    put("demo", "spends.by_method.card.count", "1");
    put("demo", "spends.by_method.card.amount", "90.00");
    put("demo", "spends.by_store.s1.count", "4");
    put("demo", "spends.by_store.s1.amount", "245.00");
    put("demo", "spends.by_store.s2.count", "1");
    put("demo", "spends.by_store.s2.amount", "90.00");
    put("demo", "spends.by_store.none.count", "1");
    put("demo", "spends.by_store.none.amount", "18.00");
    put("demo", "spends.discounts.total", "27.00");
    put("demo", "spends.discounts.by_tier.gold.count", "1");
    put("demo", "spends.discounts.by_tier.gold.amount", "5.00");
    put("demo", "spends.discounts.by_window.20:00-24:00.count", "3");
    put(
        "demo",
        "spends.discounts.by_window.20:00-24:00.amount",
        "22.00",
    );
    put("demo", "spends.refunds.count", "1");
    put("demo", "spends.refunds.amount", "45.00");
    put("demo", "spends.cash_outs.count", "0");
    put("demo", "spends.cash_outs.amount", "0.00");
    put("demo", "spends.cash_outs.bonus_forfeited", "0.00");
    put("demo", "spends.bonus_expired.count", "0");
    put("demo", "spends.bonus_expired.amount", "0.00");
    put("demo", "spends.holds_expired.count", "1");
    put("demo", "spends.holds_expired.amount", "10.00");
    put("demo", "spends.grants.count", "1");
    put("demo", "spends.grants.amount", "5.00");
    // points
    let issued = sum_live("demo", &|a| a.points_earned as i64);
    let outstanding = card(A).points + card(B).points + card(C).points;
    put("demo", "points.issued", &issued.to_string());
    put("demo", "points.redeemed", "100");
    put("demo", "points.outstanding", &outstanding.to_string());
    put("demo", "points.redeem_rate", "100 points = 1");
    put("demo", "points.liability_value", &money(outstanding as i64));
    put(
        "demo",
        "points.liability_formula",
        &format!(
            "{outstanding} points ÷ 100 points per 1 = {}",
            money(outstanding as i64)
        ),
    );
    put(
        "demo",
        "points.issue_to_redeem_ratio",
        &figures::ratio(100, i128::from(issued as i32)),
    );
    put(
        "demo",
        "points.issue_to_redeem_formula",
        "points redeemed ÷ points issued in the window",
    );
    // channels: A wechat + alipay, B unionpay + wechat
    for (ch, value_share, cards, card_share, repeat_rate) in [
        ("wechat", "0.7925", "2", "0.5000", "0.0000"),
        ("alipay", "0.0189", "1", "0.2500", "0.0000"),
        ("unionpay", "0.1887", "1", "0.2500", "0.0000"),
        ("cash", "0.0000", "0", "0.0000", "n/a"),
    ] {
        put(
            "demo",
            &format!("channels.{ch}.share_of_top_up_value"),
            value_share,
        );
        put("demo", &format!("channels.{ch}.active_cards"), cards);
        put(
            "demo",
            &format!("channels.{ch}.share_of_active_cards"),
            card_share,
        );
        put("demo", &format!("channels.{ch}.repeat_cards"), "0");
        put(
            "demo",
            &format!("channels.{ch}.repeat_top_up_rate"),
            repeat_rate,
        );
    }
    // users: A and B active; cohort January: 3 cards, A and B in January, A in April
    put("demo", "users.active_cards", "2");
    put("demo", "users.monthly_cohort_retention.2026-01.cards", "3");
    put(
        "demo",
        "users.monthly_cohort_retention.2026-01.month_0",
        "0.6667",
    );
    put(
        "demo",
        "users.monthly_cohort_retention.2026-01.month_1",
        "0.0000",
    );
    put(
        "demo",
        "users.monthly_cohort_retention.2026-01.month_2",
        "0.0000",
    );
    put(
        "demo",
        "users.monthly_cohort_retention.2026-01.month_3",
        "0.3333",
    );
    put("demo", "users.churn.days", "30");
    put("demo", "users.churn.cards_ever_active", "2");
    put("demo", "users.churn.churned", "1"); // B: last activity on 6 January
    put("demo", "users.churn.rate", "0.5000");
    let consumed = card(A).consumed.0 + card(B).consumed.0;
    put("demo", "users.lifetime_value.paying_cards", "2");
    put("demo", "users.lifetime_value.consumed", &money(consumed));
    put(
        "demo",
        "users.lifetime_value.average",
        &figures::money(figures::div_half_even(i128::from(consumed), 2), 2),
    );
    put("demo", "users.tiers.none", "2");
    put("demo", "users.tiers.gold", "1");
    // float, custody, payback
    let f = float_of(&live.float_end, "demo");
    put("demo", "float.at", "2026-04-11T00:00:00.000+08:00");
    put("demo", "float.principal", &money(f.principal.0));
    put("demo", "float.bonus", &money(f.bonus.0));
    put("demo", "float.held", &money(f.held.0));
    put("demo", "float.total", &money(f.principal.0 + f.bonus.0));
    put("demo", "float.cards", "3");
    let q = float_of(&live.float_at_april, "demo").principal.0;
    let floor = figures::div_half_even(i128::from(q) * 4, 10);
    put(
        "demo",
        "custody_floor.quarter_end",
        "2026-04-01T00:00:00.000+08:00",
    );
    put("demo", "custody_floor.principal_outstanding", &money(q));
    put("demo", "custody_floor.ratio", "0.4");
    put("demo", "custody_floor.amount", &figures::money(floor, 2));
    put("demo", "payback_period.top_ups", "5300.00");
    put("demo", "payback_period.factor", "0.3");
    put("demo", "payback_period.spends", "353.00");
    put("demo", "payback_period.days", "95.5833");
    put("demo", "payback_period.average_daily_spend", "3.69");
    put("demo", "payback_period.period_days", "430.53");
    put(
        "demo",
        "payback_period.formula",
        "5300.00 top-ups × 0.3 ÷ 3.69 average daily spend = 430.53 days",
    );

    // gym (+00:00): G 60 cash, H 100 wechat (reversed), H 80 alipay
    put("gym", "utc_offset", "+00:00");
    put("gym", "from", "2026-01-05T02:00:00.000+00:00");
    put("gym", "top_ups.count", "3");
    put("gym", "top_ups.amount", "240.00");
    put("gym", "top_ups.bonus_given", "15.00");
    put("gym", "top_ups.by_channel.cash.amount", "60.00");
    put("gym", "top_ups.by_channel.cash.share_of_amount", "0.2500");
    put("gym", "top_ups.by_channel.wechat.share_of_amount", "0.4167");
    put("gym", "top_ups.by_channel.alipay.share_of_amount", "0.3333");
    put("gym", "top_ups.by_local_day.2026-01-05.amount", "60.00");
    put("gym", "top_ups.by_local_day.2026-01-06.count", "2");
    put("gym", "top_ups.by_local_day.2026-01-06.amount", "180.00");
    put("gym", "top_ups.bonus_by_ladder_step.1.top_ups", "3");
    put("gym", "top_ups.bonus_by_ladder_step.1.bonus", "15.00");
    put("gym", "top_ups.first_top_up_conversion.rate", "1.0000");
    put("gym", "spends.count", "1");
    put("gym", "spends.amount", "10.00");
    put("gym", "spends.by_local_hour.02.amount", "10.00");
    put("gym", "spends.after_8pm.share_of_amount", "0.0000");
    put("gym", "spends.by_method.card.amount", "10.00");
    put("gym", "spends.by_store.g1.amount", "10.00");
    put("gym", "spends.discounts.total", "0.00");
    put("gym", "spends.reversals.top_up.count", "1");
    put("gym", "spends.reversals.top_up.amount", "-105.00");
    let cash_out = live
        .approvals
        .iter()
        .find(|(_, a)| a.kind == svault_core::outcome::TxnKind::CashOut)
        .map(|(_, a)| a.clone())
        .unwrap();
    put("gym", "spends.cash_outs.count", "1");
    put("gym", "spends.cash_outs.amount", &money(cash_out.amount.0));
    put(
        "gym",
        "spends.cash_outs.bonus_forfeited",
        &money(cash_out.forfeited.0),
    );
    put("gym", "spends.bonus_expired.count", "1");
    put("gym", "spends.bonus_expired.amount", "5.00");
    put("gym", "points.issued", "0");
    put("gym", "points.issue_to_redeem_ratio", "n/a");
    for ch in ["cash", "wechat", "alipay"] {
        put("gym", &format!("channels.{ch}.active_cards"), "1");
        put(
            "gym",
            &format!("channels.{ch}.share_of_active_cards"),
            "0.3333",
        );
    }
    put("gym", "users.active_cards", "2");
    put("gym", "users.monthly_cohort_retention.2026-01.cards", "2");
    put(
        "gym",
        "users.monthly_cohort_retention.2026-01.month_0",
        "1.0000",
    );
    put(
        "gym",
        "users.monthly_cohort_retention.2026-01.month_3",
        "0.0000",
    );
    put("gym", "users.churn.churned", "2");
    put("gym", "users.churn.rate", "1.0000");
    put("gym", "users.tiers.none", "2");
    let f = float_of(&live.float_end, "gym");
    put("gym", "float.principal", &money(f.principal.0));
    put("gym", "float.bonus", &money(f.bonus.0));
    let q = float_of(&live.float_at_april, "gym").principal.0;
    put(
        "gym",
        "custody_floor.quarter_end",
        "2026-04-01T00:00:00.000+00:00",
    );
    put("gym", "custody_floor.principal_outstanding", &money(q));
    put("gym", "payback_period.average_daily_spend", "0.10");
    put("gym", "payback_period.period_days", "688.20");
    e
}

/// `program,figure` → value from each of the three forms.
fn parse_csv(csv: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("program,figure,value"));
    for line in lines {
        // Only the value may be quoted (formulas never contain a comma in these figures).
        let mut parts = line.splitn(3, ',');
        let (p, k, v) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        let v = v.trim_matches('"').replace("\"\"", "\"");
        out.insert((p.to_string(), k.to_string()), v);
    }
    out
}

fn flatten_json(prefix: &str, v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten_json(&path, v, out);
            }
        }
        serde_json::Value::String(s) => out.push((prefix.to_string(), s.clone())),
        other => out.push((prefix.to_string(), other.to_string())),
    }
}

fn parse_json(json: &str) -> BTreeMap<(String, String), String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    let mut out = BTreeMap::new();
    for (p, figures) in v["programs"].as_object().unwrap() {
        let mut rows = Vec::new();
        flatten_json("", figures, &mut rows);
        for (k, v) in rows {
            out.insert((p.clone(), k), v);
        }
    }
    out
}

/// The table indents groups by two spaces per level; a figure is `name: value`.
fn parse_table(table: &str) -> BTreeMap<(String, String), String> {
    let mut out = BTreeMap::new();
    let mut program = String::new();
    let mut path: Vec<String> = Vec::new();
    for line in table.lines() {
        if let Some(p) = line
            .strip_prefix("== program ")
            .and_then(|l| l.strip_suffix(" =="))
        {
            program = p.to_string();
            path.clear();
            continue;
        }
        let depth = (line.len() - line.trim_start().len()) / 2;
        if depth == 0 {
            continue;
        }
        path.truncate(depth - 1);
        let body = line.trim_start();
        match body.split_once(": ") {
            Some((k, v)) if !body.ends_with(':') => {
                let mut key = path.clone();
                key.push(k.to_string());
                out.insert((program.clone(), key.join(".")), v.trim().to_string());
            }
            _ => path.push(body.trim_end_matches(':').to_string()),
        }
    }
    out
}

fn check_all(live: &Live, dir: &Path) -> String {
    let r = runtime::report::run(dir, &options()).unwrap();
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    let json = parse_json(&figures::json(&r));
    let csv = parse_csv(&figures::csv(&r));
    let table = parse_table(&figures::table(&r));
    assert_eq!(json, csv, "JSON and CSV differ");
    assert_eq!(json, table, "JSON and table differ");
    let mut wrong = Vec::new();
    for (k, v) in expected(live) {
        match json.get(&k) {
            Some(got) if got == &v => {}
            got => wrong.push(format!("{}.{}: expected {v}, got {got:?}", k.0, k.1)),
        }
    }
    assert!(wrong.is_empty(), "wrong figures:\n{}", wrong.join("\n"));
    figures::json(&r)
}

#[test]
fn every_figure_of_a_scripted_history_to_the_fen_in_every_form() {
    let dir = tempfile::tempdir().unwrap();
    let live = script(dir.path(), Tuning::default(), None);
    let unbroken = check_all(&live, dir.path());

    // The same history, with snapshots every few records (segments archived) and a restart
    // every seven requests: the same report.
    let other = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        snapshot_every_records: 3,
        wal: wal::WalOptions {
            segment_size_bytes: 4 * 4096,
            ..wal::WalOptions::default()
        },
        ..Tuning::default()
    };
    let live2 = script(other.path(), tuning, Some(7));
    let archived: usize = (0..2)
        .map(|k| {
            std::fs::read_dir(other.path().join(format!("shard-{k}/archive")))
                .map(|d| d.count())
                .unwrap_or(0)
        })
        .sum();
    assert!(archived > 0, "nothing was archived");
    let broken = check_all(&live2, other.path());
    assert_eq!(unbroken, broken);
}

/// One row of a Parquet table: column → value.
type Row = BTreeMap<String, Field>;

/// Every row of `out/TABLE/day=*/part-*.parquet`, with the day its directory names.
fn read_table(out: &Path, table: &str) -> Vec<(String, Row)> {
    let mut rows = Vec::new();
    let mut days: Vec<_> = std::fs::read_dir(out.join(table))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    days.sort();
    for day_dir in days {
        let name = day_dir.file_name().unwrap().to_string_lossy().into_owned();
        let day = name
            .strip_prefix("day=")
            .unwrap_or_else(|| panic!("{name}: not a day=YYYY-MM-DD directory"))
            .to_string();
        for f in std::fs::read_dir(&day_dir).unwrap() {
            let path = f.unwrap().path();
            assert_eq!(
                path.extension().and_then(|e| e.to_str()),
                Some("parquet"),
                "{path:?}: only complete Parquet files are left"
            );
            let reader = SerializedFileReader::new(std::fs::File::open(&path).unwrap()).unwrap();
            for row in reader.get_row_iter(None).unwrap() {
                rows.push((
                    day.clone(),
                    row.unwrap().into_columns().into_iter().collect(),
                ));
            }
        }
    }
    rows
}

fn long(r: &Row, k: &str) -> i64 {
    match &r[k] {
        Field::Long(v) | Field::TimestampMillis(v) => *v,
        other => panic!("{k}: {other:?}"),
    }
}

fn ulong(r: &Row, k: &str) -> u64 {
    match &r[k] {
        Field::ULong(v) => *v,
        other => panic!("{k}: {other:?}"),
    }
}

fn text(r: &Row, k: &str) -> Option<String> {
    match &r[k] {
        Field::Str(s) => Some(s.clone()),
        Field::Null => None,
        other => panic!("{k}: {other:?}"),
    }
}

fn local_day(r: &Row) -> i64 {
    match &r["local_date"] {
        Field::Date(d) => i64::from(*d),
        other => panic!("local_date: {other:?}"),
    }
}

fn add(s: &mut Sum, amount: i64) {
    s.count += 1;
    s.amount += i128::from(amount);
}

/// An approval the journal must hold: it has a transaction and moved money or points.
fn moved(a: &Approval) -> bool {
    a.card.is_some()
        && a.txn_id.is_some()
        && ([
            a.amount,
            a.principal,
            a.bonus,
            a.bonus_granted,
            a.discount,
            a.released,
            a.forfeited,
        ]
        .iter()
        .any(|m| m.0 != 0)
            || a.points_earned != 0
            || a.points_spent != 0)
}

/// `--parquet`: the journal and the events read back with the parquet crate's reader add up to
/// the report's figures to the fen (top-ups per local day, spends by method and store, bonus,
/// refunds, cash-outs, grants, expiries, redeems); every approval that moved money is one row
/// with the figures the engine answered; the events are the live feed's, seq for seq;
/// `--program` and `--from` select as the report does. A dropped or doubled row fails.
#[test]
fn parquet_journal_and_events_add_up_to_the_report_to_the_fen() {
    let dir = tempfile::tempdir().unwrap();
    let live = script(dir.path(), Tuning::default(), None);
    let export = tempfile::tempdir().unwrap();
    let out = export.path().join("all");
    let r = runtime::report::run(
        dir.path(),
        &ReportOptions {
            parquet: Some(out.clone()),
            ..options()
        },
    )
    .unwrap();
    let journal = read_table(&out, "journal");
    let events = read_table(&out, "events");
    let counts = r.parquet.unwrap();
    assert_eq!(counts.journal_rows, journal.len() as u64);
    assert_eq!(counts.event_rows, events.len() as u64);
    for (day, row) in journal.iter().chain(&events) {
        assert_eq!(&time::day_label(local_day(row)), day, "{row:?}");
        assert_eq!(text(row, "currency").as_deref(), Some("CNY"));
    }

    for p in &r.programs {
        let id = p.program.id.as_str();
        let t = &p.tally;
        let rows = |kinds: &[&str]| -> Vec<&Row> {
            journal
                .iter()
                .map(|(_, r)| r)
                .filter(|r| text(r, "program").as_deref() == Some(id))
                .filter(|r| kinds.contains(&text(r, "kind").unwrap().as_str()))
                .collect()
        };
        let sum = |rows: &[&Row], col: &str| {
            let mut s = Sum::default();
            for r in rows {
                add(&mut s, long(r, col));
            }
            s
        };
        let top_ups = rows(&["top_up"]);
        let mut by_day: BTreeMap<i64, Sum> = BTreeMap::new();
        for r in &top_ups {
            add(by_day.entry(local_day(r)).or_default(), long(r, "amount"));
        }
        assert_eq!(by_day, t.top_ups_by_day, "{id}: top-ups by local day");
        assert_eq!(sum(&top_ups, "amount"), t.top_ups, "{id}: top-ups");
        assert_eq!(
            sum(&top_ups, "bonus_granted").amount,
            t.top_up_bonus,
            "{id}: ladder bonus"
        );
        let spends = rows(&["spend", "capture"]);
        assert_eq!(sum(&spends, "amount"), t.spends, "{id}: spends");
        let (mut by_method, mut by_store) = (BTreeMap::new(), BTreeMap::new());
        for r in &spends {
            let m = text(r, "method").unwrap_or_else(|| "unknown".into());
            add(by_method.entry(m).or_default(), long(r, "amount"));
            let s = text(r, "store").unwrap_or_else(|| "none".into());
            add(by_store.entry(s).or_default(), long(r, "amount"));
        }
        assert_eq!(by_method, t.spends_by_method, "{id}: spends by method");
        assert_eq!(by_store, t.spends_by_store, "{id}: spends by store");
        assert_eq!(
            sum(&rows(&["refund"]), "amount"),
            t.refunds,
            "{id}: refunds"
        );
        let cash_outs = rows(&["cash_out"]);
        assert_eq!(sum(&cash_outs, "amount"), t.cash_outs, "{id}: cash-outs");
        assert_eq!(
            sum(&cash_outs, "forfeited").amount,
            t.cash_out_forfeited,
            "{id}: bonus forfeited"
        );
        let grants: Vec<&Row> = rows(&["grant"])
            .into_iter()
            .filter(|r| long(r, "bonus_granted") > 0)
            .collect();
        assert_eq!(
            sum(&grants, "bonus_granted"),
            t.grants_bonus,
            "{id}: grants"
        );
        assert_eq!(
            sum(&rows(&["bonus_expired"]), "amount"),
            t.bonus_expired,
            "{id}: bonus expired"
        );
        assert_eq!(
            sum(&rows(&["hold_expired"]), "amount"),
            t.holds_expired,
            "{id}: holds expired"
        );
        let redeemed: i64 = rows(&["redeem"]).iter().map(|r| -long(r, "points")).sum();
        assert_eq!(redeemed as u64, t.points_redeemed, "{id}: points redeemed");
    }
    assert!(
        r.programs.iter().all(|p| p.tally.top_ups.count > 0),
        "the script tops up in every program"
    );

    // Every approval that moved money, once, with what the engine answered; plus the script's
    // one hold expiry and one bonus expiry.
    let want: BTreeMap<String, (String, i64, i64, i64, i64, String)> = live
        .approvals
        .iter()
        .filter(|(_, a)| moved(a))
        .map(|(p, a)| {
            (
                a.txn_id.unwrap().to_string(),
                (
                    a.kind.as_str().to_string(),
                    a.amount.0,
                    a.principal.0,
                    a.bonus.0,
                    a.discount.0,
                    p.clone(),
                ),
            )
        })
        .collect();
    let mut got = BTreeMap::new();
    let mut expiries = Vec::new();
    for (_, row) in &journal {
        let kind = text(row, "kind").unwrap();
        if kind == "hold_expired" || kind == "bonus_expired" {
            expiries.push(kind);
            continue;
        }
        let txn = text(row, "txn_id").unwrap();
        let v = (
            kind,
            long(row, "amount"),
            long(row, "principal"),
            long(row, "bonus"),
            long(row, "discount"),
            text(row, "program").unwrap(),
        );
        assert!(got.insert(txn.clone(), v).is_none(), "{txn} twice");
    }
    assert_eq!(got, want);
    expiries.sort();
    assert_eq!(expiries, ["bonus_expired", "hold_expired"]);

    // The events are the live feed's, seq for seq.
    let feed: Vec<(u64, String, u64)> = live
        .events
        .iter()
        .map(|(seq, e)| (*seq, e.kind.as_str().to_string(), e.card_id.0))
        .collect();
    let mut exported: Vec<(u64, String, u64)> = events
        .iter()
        .map(|(_, r)| {
            (
                ulong(r, "seq"),
                text(r, "kind").unwrap(),
                ulong(r, "card_id"),
            )
        })
        .collect();
    exported.sort();
    assert!(feed.len() >= 2, "{feed:?}");
    assert_eq!(exported, feed);

    // --program and --from select rows as the report counts them.
    let from = T0 + DAY;
    let gym_out = export.path().join("gym");
    runtime::report::run(
        dir.path(),
        &ReportOptions {
            program: Some("gym".into()),
            from: Some(Millis(from)),
            parquet: Some(gym_out.clone()),
            ..options()
        },
    )
    .unwrap();
    let ids = |rows: &[(String, Row)]| -> Vec<String> {
        let mut v: Vec<String> = rows
            .iter()
            .map(|(_, r)| text(r, "txn_id").unwrap())
            .collect();
        v.sort();
        v
    };
    let selected: Vec<(String, Row)> = journal
        .iter()
        .filter(|(_, r)| text(r, "program").as_deref() == Some("gym") && long(r, "at") >= from)
        .cloned()
        .collect();
    assert!(!selected.is_empty() && selected.len() < journal.len());
    assert_eq!(ids(&read_table(&gym_out, "journal")), ids(&selected));

    // A directory that holds an earlier export is refused, not mixed into.
    let again = runtime::report::run(
        dir.path(),
        &ReportOptions {
            parquet: Some(out),
            ..options()
        },
    );
    assert!(matches!(
        again,
        Err(runtime::report::ReportError::ParquetDir { .. })
    ));
}

/// README's "For finance and marketing" documents every Parquet column with its type, in the
/// files' order.
#[test]
fn readme_documents_every_parquet_column() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    for table in [&journal::JOURNAL, &journal::EVENTS] {
        let mut at = 0;
        for c in table.columns {
            let line = format!(
                "| `{}` | {}{} |",
                c.name,
                c.kind.doc(),
                if c.nullable { ", null" } else { "" }
            );
            match readme[at..].find(&line) {
                Some(i) => at += i + line.len(),
                None => panic!(
                    "README does not document {}.{} as {line:?} (in order)",
                    table.name, c.name
                ),
            }
        }
    }
}

/// Two callers may send the same idempotency key for the same card: keys are namespaced by
/// caller, so the server applies both. The report must replay each record as its caller (and
/// under the rules it was logged with), or it would take the second for a replay of the first
/// and count one top-up where the cards hold two.
#[test]
fn the_same_key_from_two_callers_is_two_top_ups_in_the_report() {
    use svault_core::command::CallerId;
    let dir = tempfile::tempdir().unwrap();
    let tuning = Tuning {
        clock: Arc::new(|| Millis(T0)),
        ..Tuning::default()
    };
    let engine = Engine::open_with(config(dir.path()), tuning).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let send = |key: &str, command: Command, caller: u64| {
        let request = Request {
            idempotency_key: Some(key.to_string()),
            command,
        };
        rt.block_on(engine.submit_as(request, &Scope::All, CallerId(caller)))
            .unwrap()
    };
    send("p", Command::UpsertProgram(Program::demo()), 1);
    send("o", open(A, "demo"), 1);
    for caller in [1, 2] {
        let r = send("same-key", top_up(A, 100, Channel::Wechat), caller);
        assert!(!r.replayed, "caller {caller}: a key of its own, applied");
        assert!(matches!(r.outcome, Outcome::Approved(_)), "{:?}", r.outcome);
    }
    engine.shutdown();
    let report = runtime::report::run(dir.path(), &ReportOptions::default()).unwrap();
    let demo = report
        .programs
        .iter()
        .find(|p| p.program.id == "demo")
        .unwrap();
    assert_eq!(demo.tally.top_ups.count, 2);
    assert_eq!(demo.tally.top_ups.amount, 2 * i128::from(yuan(100).0));
}
