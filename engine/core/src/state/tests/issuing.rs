//! What card issuers' gateways expect: partial approval, incremental authorization, spend
//! limits and store lists in SPEC's check order, and the history lines finance reconciles.

use super::*;
use crate::outcome::TxnReason;

/// 20:30 at +08:00 on the day of `T0`: inside demo's 20:00–24:00 10 % window.
const EVENING: i64 = T0 + 8 * HOUR + 30 * 60_000;

fn spend_at(c: CardId, a: Amount, store: Option<&str>, allow_partial: bool) -> Command {
    Command::Spend {
        card_id: c,
        amount: a,
        method: Method::Qr,
        store: store.map(str::to_string),
        allow_partial,
    }
}

fn hold_at(c: CardId, a: Amount, store: Option<&str>, allow_partial: bool) -> Command {
    Command::Hold {
        card_id: c,
        amount: a,
        ttl_seconds: 172_800,
        method: Method::Card,
        store: store.map(str::to_string),
        allow_partial,
    }
}

fn inc(h: TxnId, a: Amount, ttl: Option<u32>) -> Command {
    Command::IncrementHold {
        hold_id: h,
        amount: a,
        ttl_seconds: ttl,
    }
}

impl T {
    fn history(&self, c: CardId, limit: u32, before: Option<u32>) -> Vec<TxnRecord> {
        match self.st.query(
            &Query::Transactions {
                card_id: c,
                limit,
                before,
            },
            Millis(self.now),
        ) {
            QueryAnswer::Transactions(Some(v)) => v,
            a => panic!("{a:?}"),
        }
    }
}

#[test]
fn a_partial_spend_approves_what_is_available_and_splits_it() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100)); // 100 principal + 15 bonus
    assert_eq!(
        t.no(spend_at(c, y(150), None, false)),
        DeclineCode::InsufficientFunds
    );
    let a = t.ok(spend_at(c, y(150), Some("s1"), true));
    assert!(a.partial);
    assert_eq!(a.requested, Some(y(150)));
    assert_eq!(a.amount, y(115));
    assert_eq!(
        (a.principal, a.bonus),
        (y(100), y(15)),
        "proportional split"
    );
    assert_eq!(a.points_earned, 115, "points on the approved amount");
    assert_eq!(t.view(c).available, Amount::ZERO);
    // Nothing left: partial approval needs funds short but not zero.
    assert_eq!(
        t.no(spend_at(c, y(1), None, true)),
        DeclineCode::InsufficientFunds
    );
    // A spend that fits is not partial.
    t.top_up(c, y(10));
    let full = t.ok(spend_at(c, y(5), None, true));
    assert!(!full.partial);
    assert_eq!(full.requested, None);
    t.check_float();
}

#[test]
fn a_partial_approval_in_a_discount_window_charges_exactly_the_available_balance() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    t.now = EVENING;
    let a = t.ok(spend_at(c, y(200), None, true));
    assert!(a.partial);
    assert_eq!(a.requested, Some(y(200)));
    assert_eq!(a.amount, y(115));
    // 127.78 before 10 % (12.78, half-even) is 115.00.
    assert_eq!(a.discount, Amount(1278));
    assert_eq!(
        a.discount_source,
        Some(crate::outcome::DiscountSource::Window)
    );
    assert_eq!(a.points_earned, 115);
}

#[test]
fn gross_within_finds_the_largest_merchant_amount_that_fits() {
    for rate in [0u32, 1, 30_000, 100_000, 333_333, 500_000, 999_000, 999_999] {
        let r = Rate(rate);
        for available in (1..400).chain([12_345, 99_999_999]) {
            let amount = Amount(available * 3 + 7);
            let price = |g: Amount| g - marketing::rate_of(r, g);
            if price(amount).0 <= available {
                continue;
            }
            let g = marketing::gross_within(r, amount, Amount(available));
            assert_eq!(
                price(g),
                Amount(available),
                "rate {rate} available {available}"
            );
            assert!(price(g + Amount(1)) > Amount(available) || g == amount);
        }
    }
}

#[test]
fn a_partial_hold_holds_what_is_available_and_captures_in_merchant_amounts() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    t.now = EVENING;
    let h = t.ok(hold_at(c, y(200), None, true));
    assert!(h.partial);
    assert_eq!((h.amount, h.requested), (y(115), Some(y(200))));
    assert_eq!(t.view(c).held, y(115));
    let id = h.txn_id.unwrap();
    // The hold's merchant amount is 127.78; a capture of more is over_capture.
    assert_eq!(
        t.no(Command::Capture {
            hold_id: id,
            amount: Some(Amount(12_779)),
        }),
        DeclineCode::OverCapture
    );
    let cap = t.ok(Command::Capture {
        hold_id: id,
        amount: Some(Amount(12_778)),
    });
    assert_eq!((cap.amount, cap.released), (y(115), Amount::ZERO));
    t.check_float();
}

#[test]
fn a_partial_approval_replays_and_reverses_like_any_spend() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    let first = t.keyed("p1", spend_at(c, y(150), None, true));
    let again = t.keyed("p1", spend_at(c, y(150), None, true));
    assert!(again.replayed);
    assert_eq!(again.outcome, first.outcome);
    let Outcome::Approved(a) = &again.outcome else {
        panic!("{again:?}")
    };
    assert_eq!((a.partial, a.requested), (true, Some(y(150))));
    // The same key without allow_partial is another request.
    assert_eq!(
        t.keyed("p1", spend_at(c, y(150), None, false)).outcome,
        Outcome::Rejected(Rejection::IdempotencyKeyReused)
    );
    let r = t
        .keyed(
            "rv",
            Command::Reversal {
                card_id: c,
                key: "p1".into(),
            },
        )
        .outcome;
    let r = approved(r);
    assert_eq!((r.principal, r.bonus), (y(100), y(15)));
    assert_eq!(t.view(c).available, y(115));
    t.check_float();
}

#[test]
fn an_increment_raises_the_hold_and_capture_sees_it() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    let h = approved(t.hold(c, y(50), 300));
    let id = h.txn_id.unwrap();
    let i = t.ok(inc(id, y(20), None));
    assert_eq!(i.kind, TxnKind::Increment);
    assert_eq!(i.amount, y(20));
    assert_eq!(i.hold, Some(id));
    assert_eq!(i.expires_at, h.expires_at, "no ttl: the expiry stays");
    let v = t.view(c);
    assert_eq!((v.held, v.available), (y(70), y(45)));
    assert_eq!(
        t.no(Command::Capture {
            hold_id: id,
            amount: Some(y(71)),
        }),
        DeclineCode::OverCapture
    );
    let cap = t.ok(Command::Capture {
        hold_id: id,
        amount: None,
    });
    assert_eq!(cap.amount, y(70));
    assert_eq!(t.view(c).held, Amount::ZERO);
    // A captured hold takes no more increments.
    assert!(matches!(
        t.rej(inc(id, y(1), None)),
        Rejection::Invalid { .. }
    ));
    t.check_float();
}

#[test]
fn a_declined_increment_leaves_the_hold_as_it_was() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    let id = approved(t.hold(c, y(50), 300)).txn_id.unwrap();
    let before = t.view(c);
    assert_eq!(t.no(inc(id, y(66), None)), DeclineCode::InsufficientFunds);
    assert_eq!(t.view(c), before);
    assert_eq!(
        t.no(Command::Capture {
            hold_id: id,
            amount: Some(y(51)),
        }),
        DeclineCode::OverCapture
    );
    t.ok(Command::Freeze { card_id: c });
    assert_eq!(t.no(inc(id, y(1), None)), DeclineCode::CardFrozen);
    t.ok(Command::Unfreeze { card_id: c });
    let cap = t.ok(Command::Capture {
        hold_id: id,
        amount: None,
    });
    assert_eq!(cap.amount, y(50));
    assert_eq!(
        t.rej(inc(TxnId { card: c, seq: 99 }, y(1), None)),
        Rejection::NotFound {
            what: NotFoundKind::Hold
        }
    );
}

#[test]
fn an_increment_extends_the_ttl_and_an_expired_hold_answers_hold_expired() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    let id = approved(t.hold(c, y(10), 60)).txn_id.unwrap();
    t.now += 30_000;
    let i = t.ok(inc(id, y(5), Some(120)));
    assert_eq!(i.expires_at, Some(Millis(t.now + 120_000)));
    // The old expiry passes: the tick leaves the hold.
    t.now = T0 + 60_000;
    t.ok(Command::Tick);
    assert_eq!(t.view(c).held, y(15));
    // A ttl shorter than what is left never shortens the hold.
    let j = t.ok(inc(id, y(1), Some(1)));
    assert_eq!(j.expires_at, i.expires_at);
    t.now = T0 + 30_000 + 120_000;
    assert_eq!(
        t.no(inc(id, y(1), None)),
        DeclineCode::HoldExpired,
        "before the tick"
    );
    t.ok(Command::Tick);
    assert_eq!(t.view(c).held, Amount::ZERO);
    assert_eq!(
        t.no(inc(id, y(1), None)),
        DeclineCode::HoldExpired,
        "after the tick"
    );
    t.check_float();
}

#[test]
fn an_increment_is_discounted_at_the_rate_fixed_by_its_hold() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(500));
    t.now = EVENING;
    let h = approved(t.hold(c, y(100), 6 * 3600));
    assert_eq!(h.amount, y(90));
    let id = h.txn_id.unwrap();
    // Past midnight local time: no window now, the hold's 10 % still applies.
    t.now = EVENING + 4 * HOUR;
    let i = t.ok(inc(id, y(50), None));
    assert_eq!((i.amount, i.discount), (y(45), y(5)));
    assert_eq!(t.view(c).held, y(135));
    let cap = t.ok(Command::Capture {
        hold_id: id,
        amount: Some(y(150)),
    });
    assert_eq!(cap.amount, y(135));
    t.check_float();
}

#[test]
fn a_reversed_increment_lowers_its_hold() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    let id = approved(t.hold(c, y(50), 300)).txn_id.unwrap();
    assert!(matches!(
        t.keyed("i1", inc(id, y(20), None)).outcome,
        Outcome::Approved(_)
    ));
    let r = approved(
        t.keyed(
            "rv",
            Command::Reversal {
                card_id: c,
                key: "i1".into(),
            },
        )
        .outcome,
    );
    assert_eq!(r.released, y(20));
    assert_eq!(t.view(c).held, y(50));
    assert_eq!(
        t.no(Command::Capture {
            hold_id: id,
            amount: Some(y(51)),
        }),
        DeclineCode::OverCapture
    );
    t.check_float();
}

const LIMITS: &str = r#"{"id":"lim","currency":"CNY","utc_offset":"+08:00",
    "spend":{"max_single":"300","max_daily_count":2,"stores_allow":["s1","s2"],"stores_deny":["s2"]}}"#;

#[test]
fn spend_limits_and_store_lists_decline_with_their_codes() {
    let mut t = T::with(LIMITS);
    let c = t.open_in(1, "lim", true);
    t.top_up(c, y(1000));
    assert_eq!(
        t.no(spend_at(c, y(10), Some("s3"), false)),
        DeclineCode::StoreNotAllowed,
        "outside the allow list"
    );
    assert_eq!(
        t.no(spend_at(c, y(10), Some("s2"), false)),
        DeclineCode::StoreNotAllowed,
        "on the deny list"
    );
    assert_eq!(
        t.no(spend_at(c, y(10), None, false)),
        DeclineCode::StoreNotAllowed,
        "an allow list needs a store"
    );
    assert_eq!(
        t.no(spend_at(c, Amount(30_001), Some("s1"), false)),
        DeclineCode::OverSingleSpend
    );
    assert_eq!(
        t.no(hold_at(c, Amount(30_001), Some("s1"), true)),
        DeclineCode::OverSingleSpend,
        "partial approval is for funds only"
    );
    t.ok(spend_at(c, y(300), Some("s1"), false));
    let h = t.ok(hold_at(c, y(10), Some("s1"), false)).txn_id.unwrap();
    assert_eq!(
        t.no(spend_at(c, y(1), Some("s1"), false)),
        DeclineCode::OverDailyCount
    );
    assert_eq!(t.no(inc(h, y(1), None)), DeclineCode::OverDailyCount);
    // The next local day counts afresh.
    t.now += DAY;
    t.ok(spend_at(c, y(1), Some("s1"), false));
    assert_eq!(
        t.no(inc(h, Amount(30_001), None)),
        DeclineCode::OverSingleSpend
    );
    t.ok(inc(h, y(1), None));
    t.check_float();
}

#[test]
fn the_new_checks_take_their_place_in_the_check_order() {
    // Each decline below is for a request that also breaks later rules: the first failing
    // check names it (card status → store → single cap → daily amount → daily count →
    // per-minute velocity → funds).
    let mut t = T::with(
        r#"{"id":"o","currency":"CNY","velocity":{"max_spends_per_minute":1,"max_daily_spend":"30"},
        "spend":{"max_single":"40","max_daily_count":2,"stores_deny":["bad"]}}"#,
    );
    let c = t.open_in(1, "o", true);
    t.top_up(c, y(20));
    t.ok(spend_at(c, y(5), None, false));
    t.now += 60_000;
    t.ok(spend_at(c, y(5), None, false)); // 2 today (10.00), 1 this minute, 10.00 left
    t.ok(Command::Freeze { card_id: c });
    assert_eq!(
        t.no(spend_at(c, y(100), Some("bad"), false)),
        DeclineCode::CardFrozen
    );
    t.ok(Command::Unfreeze { card_id: c });
    assert_eq!(
        t.no(spend_at(c, y(100), Some("bad"), false)),
        DeclineCode::StoreNotAllowed
    );
    assert_eq!(
        t.no(spend_at(c, y(100), None, false)),
        DeclineCode::OverSingleSpend
    );
    assert_eq!(
        t.no(spend_at(c, y(25), None, false)),
        DeclineCode::VelocityLimit,
        "daily amount before daily count"
    );
    assert_eq!(
        t.no(spend_at(c, y(15), None, true)),
        DeclineCode::OverDailyCount,
        "daily count before velocity and funds"
    );
    t.now += DAY;
    t.ok(spend_at(c, y(1), None, false));
    assert_eq!(
        t.no(spend_at(c, y(15), None, false)),
        DeclineCode::VelocityLimit,
        "per-minute velocity before funds"
    );
    t.now += 60_000;
    assert_eq!(
        t.no(spend_at(c, y(15), None, false)),
        DeclineCode::InsufficientFunds
    );
    let p = t.ok(spend_at(c, y(15), None, true));
    assert_eq!((p.amount, p.partial), (y(9), true));
}

#[test]
fn a_program_update_applies_to_later_requests_only() {
    let mut t = T::with(r#"{"id":"u","currency":"CNY"}"#);
    let c = t.open_in(1, "u", true);
    t.top_up(c, y(100));
    let s = t.ok(spend_at(c, y(10), Some("s9"), false));
    let h = t.ok(hold_at(c, y(10), Some("s9"), false)).txn_id.unwrap();
    t.ok(Command::UpsertProgram(
        Program::from_spec(
            &serde_json::from_str(
                r#"{"id":"u","currency":"CNY","spend":{"stores_deny":["s9"],"max_single":"5"}}"#,
            )
            .unwrap(),
        )
        .unwrap(),
    ));
    assert_eq!(
        t.no(spend_at(c, y(1), Some("s9"), false)),
        DeclineCode::StoreNotAllowed
    );
    assert_eq!(
        t.no(inc(h, y(1), None)),
        DeclineCode::StoreNotAllowed,
        "an increment is checked at its hold's store"
    );
    // What was approved before stays approved: the capture and refund go through.
    t.ok(Command::Capture {
        hold_id: h,
        amount: None,
    });
    t.ok(Command::Refund {
        txn_id: s.txn_id.unwrap(),
        amount: y(10),
    });
    t.check_float();
}

#[test]
fn history_lines_carry_what_finance_reconciles() {
    let mut t = T::new();
    let c = t.open(1);
    t.ok(Command::TopUp {
        card_id: c,
        amount: y(100),
        channel: Channel::Alipay,
    });
    t.now = EVENING;
    let s = t.ok(Command::Spend {
        card_id: c,
        amount: y(20),
        method: Method::Voice,
        store: Some("s-7".into()),
        allow_partial: false,
    });
    let r = t.ok(Command::Refund {
        txn_id: s.txn_id.unwrap(),
        amount: y(9),
    });
    t.ok(Command::Grant {
        card_id: c,
        bonus: Some(y(1)),
        points: Some(3),
        reason: GrantReason::Referral,
    });
    let h = t.ok(hold_at(c, y(10), Some("s-8"), false)).txn_id.unwrap();
    t.ok(inc(h, y(10), None));
    let cap = t.ok(Command::Capture {
        hold_id: h,
        amount: None,
    });
    let lines = t.history(c, 100, None);
    let kinds: Vec<TxnKind> = lines.iter().map(|l| l.kind).collect();
    assert_eq!(
        kinds,
        [
            TxnKind::Capture,
            TxnKind::Increment,
            TxnKind::Hold,
            TxnKind::Grant,
            TxnKind::Refund,
            TxnKind::Spend,
            TxnKind::TopUp,
            TxnKind::Open
        ]
    );
    let by = |k: TxnKind| lines.iter().find(|l| l.kind == k).unwrap();
    let top = by(TxnKind::TopUp);
    assert_eq!(
        (top.channel, top.method, top.bonus),
        (Some(Channel::Alipay), None, y(15))
    );
    let sp = by(TxnKind::Spend);
    assert_eq!(sp.method, Some(Method::Voice));
    assert_eq!(sp.store.as_deref(), Some("s-7"));
    assert_eq!((sp.amount, sp.discount, sp.points), (y(18), y(2), 18));
    assert_eq!(sp.refers_to, None);
    let rf = by(TxnKind::Refund);
    assert_eq!(rf.refers_to, s.txn_id);
    assert_eq!(
        rf.store.as_deref(),
        Some("s-7"),
        "a refund shows its spend's store"
    );
    assert_eq!(rf.points, r.points_earned as i64 - r.points_spent as i64);
    assert!(rf.points < 0);
    let g = by(TxnKind::Grant);
    assert_eq!(g.reason, Some(TxnReason::Grant(GrantReason::Referral)));
    assert_eq!(g.points, 3);
    let c_line = by(TxnKind::Capture);
    assert_eq!(c_line.refers_to, Some(h));
    assert_eq!(c_line.method, Some(Method::Card));
    assert_eq!(c_line.store.as_deref(), Some("s-8"));
    assert_eq!(c_line.amount, cap.amount);
    let i_line = by(TxnKind::Increment);
    assert_eq!((i_line.amount, i_line.discount), (y(9), y(1)));
    // Pages by cursor, newest first, through everything.
    let mut seen = Vec::new();
    let mut before = None;
    loop {
        let page = t.history(c, 3, before);
        if page.is_empty() {
            break;
        }
        before = page.last().map(|l| l.txn_id.seq);
        seen.extend(page);
    }
    assert_eq!(seen, lines);
    // A cash-out's reason.
    t.now += 8 * DAY;
    t.ok(Command::CashOut {
        card_id: c,
        reason: CashOutReason::MerchantFault,
    });
    assert_eq!(
        t.history(c, 1, None)[0].reason,
        Some(TxnReason::CashOut(CashOutReason::MerchantFault))
    );
}

#[test]
fn a_refund_of_a_trimmed_transaction_says_it_was_trimmed() {
    let mut t = T {
        st: State::new(StateConfig {
            history_per_card_max: 4,
            idempotency_ttl_ms: 1000,
            ..StateConfig::default()
        }),
        now: T0,
        ev: Vec::new(),
    };
    t.ok(Command::UpsertProgram(Program::demo()));
    let c = t.open(1);
    t.top_up(c, y(100));
    let s = approved(t.spend(c, y(1))).txn_id.unwrap();
    for _ in 0..10 {
        t.now += 2000;
        approved(t.spend(c, y(1)));
    }
    assert!(t.history(c, 100, None).iter().all(|l| l.txn_id != s));
    assert_eq!(
        t.rej(Command::Refund {
            txn_id: s,
            amount: y(1),
        }),
        Rejection::NotFound {
            what: NotFoundKind::TrimmedTxn
        }
    );
    assert_eq!(
        t.rej(Command::Refund {
            txn_id: TxnId { card: c, seq: 999 },
            amount: y(1),
        }),
        Rejection::NotFound {
            what: NotFoundKind::Txn
        }
    );
}
