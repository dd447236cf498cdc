//! SPEC's money rules where an earlier reading differed (balance caps, `merchant_fault`
//! cash-outs, reminders, holds in merchant amounts, capture reversals, discount sources, signed
//! answers), and proof that records written under the original rules still decide as they did.

use super::*;

/// 20:30 at +08:00 on the day of `T0`: inside demo's 20:00–24:00 10 % window.
const EVENING: i64 = T0 + 8 * HOUR + 30 * 60_000;

impl T {
    /// Applies `cmd` (with `key`, if any) under the original rules, as a replayed old log would.
    fn original(&mut self, key: Option<&str>, cmd: Command) -> Outcome {
        self.st
            .apply_under(
                &Request {
                    idempotency_key: key.map(str::to_string),
                    command: cmd,
                },
                Millis(self.now),
                Rules::Original,
                &mut self.ev,
            )
            .outcome
    }
    fn top_up_no(&mut self, c: CardId, a: Amount) -> DeclineCode {
        self.no(Command::TopUp {
            card_id: c,
            amount: a,
            channel: Channel::Wechat,
        })
    }
    fn capture(&mut self, hold: TxnId, amount: Option<Amount>) -> Outcome {
        self.run(Command::Capture {
            hold_id: hold,
            amount,
        })
    }
    fn reverse(&mut self, card_id: CardId, key: &str, of: &str) -> Outcome {
        self.keyed(
            key,
            Command::Reversal {
                card_id,
                key: of.into(),
            },
        )
        .outcome
    }
    fn low_balances(&self, c: CardId) -> Vec<Amount> {
        self.ev
            .iter()
            .filter(|e| e.card_id == c)
            .filter_map(|e| match e.kind {
                EventKind::LowBalance { available } => Some(available),
                _ => None,
            })
            .collect()
    }
}

fn spend_cmd(c: CardId, a: Amount) -> Command {
    Command::Spend {
        card_id: c,
        amount: a,
        method: Method::Qr,
        store: None,
        allow_partial: false,
    }
}

fn hold_cmd(c: CardId, a: Amount, ttl: u32) -> Command {
    Command::Hold {
        card_id: c,
        amount: a,
        ttl_seconds: ttl,
        method: Method::Card,
        store: None,
        allow_partial: false,
    }
}

#[test]
fn balance_caps_limit_principal_and_never_bonus() {
    let mut t = T::new();
    // An empty registered card takes exactly the cap; its own 15.00 bonus does not count.
    let a = t.open(1);
    t.top_up(a, y(5000));
    let v = t.view(a);
    assert_eq!((v.principal, v.bonus), (y(5000), y(15)));
    assert_eq!(t.top_up_no(a, y(1)), DeclineCode::OverBalanceCap);
    // 100 + 15 bonus, then 4900: principal exactly 5000 is approved; one fen more is not.
    let b = t.open(2);
    t.top_up(b, y(100));
    assert_eq!(t.top_up_no(b, Amount(490_001)), DeclineCode::OverBalanceCap);
    t.top_up(b, y(4900));
    let v = t.view(b);
    assert_eq!((v.principal, v.bonus), (y(5000), y(15 + 490)));
    // Anonymous cards: 1000 of principal.
    let c = t.open_in(3, "demo", false);
    t.top_up(c, y(1000));
    assert_eq!(t.view(c).principal, y(1000));
    assert_eq!(t.top_up_no(c, y(1)), DeclineCode::OverBalanceCap);
    t.check_float();
}

#[test]
fn merchant_fault_cash_out_is_proportional_whatever_the_spend_order() {
    // 100 paid + 15 bonus, 30 spent ⇒ 100 − 30 × 100/115 = 73.91, in every spend order.
    for (order, principal, bonus) in [
        ("proportional", Amount(7391), Amount(1109)),
        ("bonus_first", y(85), Amount::ZERO),
        ("principal_first", y(70), y(15)),
    ] {
        let spec = format!(
            r#"{{"id":"p","currency":"CNY","spend_order":"{order}","bonus_ladder":[{{"nth":1,"min":"100","bonus":"15"}}]}}"#
        );
        let mut t = T::with(&spec);
        let c = t.open_in(1, "p", true);
        t.top_up(c, y(100));
        approved(t.spend(c, y(30)));
        let v = t.view(c);
        assert_eq!((v.principal, v.bonus), (principal, bonus), "{order}");
        let a = t.ok(Command::CashOut {
            card_id: c,
            reason: CashOutReason::MerchantFault,
        });
        assert_eq!(a.amount, Amount(7391), "{order}");
        // What left the card: paid + principal retained + bonus forfeited.
        assert_eq!(
            a.amount + a.retained + a.forfeited,
            principal + bonus,
            "{order}"
        );
        assert_eq!(t.view(c).status, CardStatus::Closed);
        t.check_float();
    }
}

#[test]
fn low_balance_fires_once_on_every_path_that_crosses_the_threshold() {
    let mut t = T::new();
    // spend: 30 → 15 fires once; a further spend below does not fire again.
    let c = t.open(1);
    t.top_up(c, y(30));
    approved(t.spend(c, y(15)));
    approved(t.spend(c, y(1)));
    assert_eq!(t.low_balances(c), vec![y(15)]);
    // hold alone: 30 → 15 available.
    let c = t.open(2);
    t.top_up(c, y(30));
    approved(t.hold(c, y(15), 600));
    assert_eq!(t.low_balances(c), vec![y(15)]);
    // hold + capture: the hold crosses, the capture (available unchanged) does not again.
    let c = t.open(3);
    t.top_up(c, y(30));
    let h = approved(t.hold(c, y(15), 600)).txn_id.unwrap();
    approved(t.capture(h, None));
    assert_eq!(t.low_balances(c), vec![y(15)]);
    // a top-up reversal: 15 + 10 = 25 → 15.
    let c = t.open(4);
    t.top_up(c, y(15));
    approved(
        t.keyed(
            "tu-4",
            Command::TopUp {
                card_id: c,
                amount: y(10),
                channel: Channel::Cash,
            },
        )
        .outcome,
    );
    assert!(t.low_balances(c).is_empty());
    approved(t.reverse(c, "rev-4", "tu-4"));
    assert_eq!(t.low_balances(c), vec![y(15)]);
    // a refund reversal: spend 25 of 40 (fires), refund it (40), reverse the refund ⇒ 15.
    let c = t.open(5);
    t.top_up(c, y(40));
    let s = approved(t.spend(c, y(25))).txn_id.unwrap();
    t.ev.clear();
    approved(
        t.keyed(
            "rf-5",
            Command::Refund {
                txn_id: s,
                amount: y(25),
            },
        )
        .outcome,
    );
    approved(t.reverse(c, "rev-5", "rf-5"));
    assert_eq!(t.low_balances(c), vec![y(15)]);
    // a cash-out: 100 + 15 → 0 (the card closes with nothing available).
    let c = t.open(6);
    t.top_up(c, y(100));
    t.now += 8 * DAY;
    t.ok(Command::CashOut {
        card_id: c,
        reason: CashOutReason::Consumer,
    });
    assert_eq!(t.low_balances(c), vec![Amount::ZERO]);
    // bonus expiry: 100 + 15, spend 93 ⇒ 19.13 + 2.87 = 22.00; the bonus expires ⇒ 19.13.
    let c = t.open(7);
    t.top_up(c, y(100));
    approved(t.spend(c, y(93)));
    assert!(t.low_balances(c).is_empty());
    t.now += 400 * DAY;
    t.ok(Command::Tick);
    assert_eq!(t.view(c).available, Amount(1913));
    assert_eq!(t.low_balances(c), vec![Amount(1913)]);
    t.check_float();
}

#[test]
fn holds_and_captures_are_merchant_amounts_at_the_rate_of_the_hold() {
    let mut t = T::new();
    t.now = EVENING;
    let c = t.open(1);
    t.top_up(c, y(300));
    // hold 100 in the 10 % window holds 90; capturing 100 charges 90, nothing left over.
    let h = approved(t.hold(c, y(100), 3600));
    assert_eq!((h.amount, h.discount), (y(90), y(10)));
    let cap = approved(t.capture(h.txn_id.unwrap(), Some(y(100))));
    assert_eq!((cap.amount, cap.released), (y(90), Amount::ZERO));
    // capturing 50 of a 100 hold charges 45 and releases the rest.
    let h = approved(t.hold(c, y(100), 3600)).txn_id.unwrap();
    let cap = approved(t.capture(h, Some(y(50))));
    assert_eq!((cap.amount, cap.released), (y(45), y(45)));
    // more than the merchant amount held is over_capture.
    let h = approved(t.hold(c, y(10), 6 * 3600)).txn_id.unwrap();
    assert_eq!(
        declined(t.capture(h, Some(Amount(1001)))),
        DeclineCode::OverCapture
    );
    // the rate is the hold's: after the window closed (00:30 local) 5.00 still charges 4.50.
    t.now = EVENING + 4 * HOUR;
    assert_eq!(
        marketing::discount_rate(&Program::demo(), Amount::ZERO, t.now),
        Rate::ZERO
    );
    let cap = approved(t.capture(h, Some(y(5))));
    assert_eq!((cap.amount, cap.released), (Amount(450), Amount(450)));
    assert_eq!(t.view(c).held, Amount::ZERO);
    t.check_float();
}

#[test]
fn reversing_a_capture_reopens_its_hold_and_a_second_reversal_answers_the_same() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(100));
    let h = approved(t.keyed("h", hold_cmd(c, y(50), 600)).outcome)
        .txn_id
        .unwrap();
    let cap = approved(
        t.keyed(
            "cap",
            Command::Capture {
                hold_id: h,
                amount: Some(y(30)),
            },
        )
        .outcome,
    );
    assert_eq!(t.view(c).available, y(85));
    let first = approved(t.reverse(c, "rev-1", "cap"));
    assert_eq!(first.reversed_txn, cap.txn_id);
    assert_eq!(first.amount, y(30));
    // The hold is open again for what it held, and can be captured or voided.
    let v = t.view(c);
    assert_eq!(
        (v.held, v.available, v.principal + v.bonus),
        (y(50), y(65), y(115))
    );
    // A second reversal (another key) answers exactly what the first did.
    let second = approved(t.reverse(c, "rev-2", "cap"));
    assert_eq!(
        Approval {
            card: None,
            ..second
        },
        Approval {
            card: None,
            ..first.clone()
        }
    );
    assert_eq!(t.view(c).held, y(50));
    let again = approved(t.capture(h, Some(y(50))));
    assert_eq!(again.amount, y(50));
    t.check_float();

    // Past the hold's ttl the reversal returns the money and the hold stays released.
    let d = t.open(2);
    t.top_up(d, y(100));
    let h = approved(t.keyed("h2", hold_cmd(d, y(50), 60)).outcome)
        .txn_id
        .unwrap();
    approved(
        t.keyed(
            "cap2",
            Command::Capture {
                hold_id: h,
                amount: None,
            },
        )
        .outcome,
    );
    t.now += 120_000;
    approved(t.reverse(d, "rev-3", "cap2"));
    let v = t.view(d);
    assert_eq!((v.held, v.available), (Amount::ZERO, y(115)));
    assert_eq!(declined(t.capture(h, None)), DeclineCode::HoldExpired);
    t.check_float();
}

#[test]
fn discount_source_says_tier_or_window() {
    let mut t = T::new();
    let c = t.open(1);
    t.top_up(c, y(5000)); // gold: 5 % off
    let noon = approved(t.spend(c, y(100)));
    assert_eq!(
        (noon.discount, noon.discount_source),
        (y(5), Some(crate::outcome::DiscountSource::Tier))
    );
    t.now = EVENING; // the window's 10 % is larger; they do not stack
    let evening = approved(t.spend(c, y(100)));
    assert_eq!(
        (evening.discount, evening.discount_source),
        (y(10), Some(crate::outcome::DiscountSource::Window))
    );
    let h = approved(t.hold(c, y(100), 60));
    assert_eq!(
        h.discount_source,
        Some(crate::outcome::DiscountSource::Window)
    );
    t.now = T0 + DAY; // noon, no tier: no discount
    let d = t.open(2);
    t.top_up(d, y(100));
    assert_eq!(approved(t.spend(d, y(10))).discount_source, None);
}

#[test]
fn answers_carry_the_signed_change_to_the_card() {
    let mut t = T::new();
    // A reversed top-up takes 100 + 15 back: every figure negative.
    let c = t.open(1);
    approved(
        t.keyed(
            "tu",
            Command::TopUp {
                card_id: c,
                amount: y(100),
                channel: Channel::Wechat,
            },
        )
        .outcome,
    );
    let r = approved(t.reverse(c, "rev-tu", "tu"));
    assert_eq!((r.amount, r.principal, r.bonus), (y(-115), y(-100), y(-15)));
    let hist = match t.st.query(
        &Query::Transactions {
            card_id: c,
            limit: 1,
            before: None,
        },
        Millis(t.now),
    ) {
        QueryAnswer::Transactions(Some(h)) => h,
        a => panic!("{a:?}"),
    };
    assert_eq!(hist[0].amount, y(-115));

    // A consumer cash-out of 100 + 15 after spending 30 pays 70.00; the bonus left (11.09)
    // is forfeited and the principal kept back (73.91 − 70.00) is retained.
    let c = t.open(2);
    t.top_up(c, y(100));
    approved(t.spend(c, y(30)));
    t.now += 8 * DAY;
    let a = t.ok(Command::CashOut {
        card_id: c,
        reason: CashOutReason::Consumer,
    });
    assert_eq!(
        (a.amount, a.forfeited, a.retained),
        (y(70), Amount(1109), Amount(391))
    );

    // Points: a refund takes points back (spent); its reversal gives them back (earned).
    let c = t.open(3);
    t.top_up(c, y(100));
    let s = approved(t.spend(c, y(30)));
    assert_eq!(s.points_earned, 30);
    let rf = approved(
        t.keyed(
            "rf",
            Command::Refund {
                txn_id: s.txn_id.unwrap(),
                amount: y(30),
            },
        )
        .outcome,
    );
    assert_eq!((rf.points_earned, rf.points_spent), (0, 30));
    let r = approved(t.reverse(c, "rev-rf", "rf"));
    assert_eq!((r.points_earned, r.points_spent), (30, 0));
    assert_eq!(r.amount, y(-30));
    assert_eq!(t.view(c).points, 30);
    // A spend's reversal takes its points back.
    let s = approved(t.keyed("sp", spend_cmd(c, y(10))).outcome);
    let r = approved(t.reverse(c, "rev-sp", "sp"));
    assert_eq!((r.points_earned, r.points_spent), (0, s.points_earned));
    assert_eq!(r.amount, y(10));
    t.check_float();
}

/// Records written before these rules (log record versions 1 and 2) decide as they did, so
/// an old log replays to the balances it gave then.
#[test]
fn original_rules_decide_as_before() {
    let mut t = T::new();
    let top_up = |c, a| Command::TopUp {
        card_id: c,
        amount: a,
        channel: Channel::Wechat,
    };
    // Cap over principal + bonus: 100 + 15, then 4900 was refused.
    let c = t.open(1);
    approved(t.original(None, top_up(c, y(100))));
    assert_eq!(
        declined(t.original(None, top_up(c, y(4900)))),
        DeclineCode::OverBalanceCap
    );
    // merchant_fault paid the principal left: 85.00 under bonus_first.
    let mut b = T::with(
        r#"{"id":"p","currency":"CNY","spend_order":"bonus_first","bonus_ladder":[{"nth":1,"min":"100","bonus":"15"}]}"#,
    );
    let d = b.open_in(1, "p", true);
    approved(b.original(None, top_up(d, y(100))));
    approved(b.original(None, spend_cmd(d, y(30))));
    let a = approved(b.original(
        None,
        Command::CashOut {
            card_id: d,
            reason: CashOutReason::MerchantFault,
        },
    ));
    assert_eq!(a.amount, y(85));
    // A hold crossing the threshold reminded nobody; captures were held amounts.
    t.now = EVENING;
    let e = t.open(2);
    approved(t.original(None, top_up(e, y(30))));
    let h = approved(t.original(Some("oh"), hold_cmd(e, y(20), 600)));
    assert_eq!(h.amount, y(18));
    assert!(t.low_balances(e).is_empty());
    assert_eq!(
        declined(t.original(
            None,
            Command::Capture {
                hold_id: h.txn_id.unwrap(),
                amount: Some(y(20)),
            }
        )),
        DeclineCode::OverCapture
    );
    // A hold placed under the original rules keeps its capture semantics under the new ones.
    let cap = approved(t.capture(h.txn_id.unwrap(), Some(y(5))));
    assert_eq!(cap.amount, y(5));
    // A reversed capture left its hold captured; a second reversal answered nothing.
    let h = approved(t.original(Some("oh2"), hold_cmd(e, y(10), 600)));
    approved(t.original(
        Some("oc2"),
        Command::Capture {
            hold_id: h.txn_id.unwrap(),
            amount: None,
        },
    ));
    approved(t.original(
        Some("or1"),
        Command::Reversal {
            card_id: e,
            key: "oc2".into(),
        },
    ));
    assert_eq!(t.view(e).held, Amount::ZERO);
    let second = approved(t.original(
        Some("or2"),
        Command::Reversal {
            card_id: e,
            key: "oc2".into(),
        },
    ));
    assert_eq!((second.txn_id, second.amount), (None, Amount::ZERO));
    t.check_float();
}
