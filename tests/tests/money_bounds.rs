//! Property tests at the edge of the money bound (SPEC "Money": arithmetic is checked, no figure
//! passes 10^12). Random operations with amounts near 10^12 on a program without caps: every
//! balance, lifetime total, the points and the float stay within the bound, a request refused
//! `over_amount_limit` changes nothing, an approved one moves exactly the money it says (no
//! wrap, no saturation), money is conserved, and replay reaches the same digest.

use proptest::prelude::*;
use svault_core::command::{
    CardId, Channel, Command, GrantReason, Method, Millis, Query, Request, TxnId,
};
use svault_core::money::{Amount, Currency, POINTS_MAX};
use svault_core::outcome::{CardView, DeclineCode, Outcome, TxnKind};
use svault_core::program::{Program, ProgramSpec};
use svault_core::state::{QueryAnswer, State, StateConfig};

const T0: i64 = 1_704_081_600_000;
const CARDS: u64 = 3;

fn max() -> i64 {
    Currency::Cny.max_amount().0
}

/// No caps, a ladder bonus on every top-up, a point per fen-unit earned and redeemed 1:1, and
/// a tier that doubles points: every figure can be driven to the bound.
fn uncapped() -> Program {
    let spec: ProgramSpec = serde_json::from_str(
        r#"{"id":"big","currency":"CNY","utc_offset":"+08:00",
        "bonus_ladder":[{"nth":1,"rate":"0.5"}],
        "points":{"earn_per_unit":"1","redeem_rate":"1"},
        "tiers":[{"name":"top","lifetime_top_up":"500000000000","points_multiplier":"2"}]}"#,
    )
    .unwrap();
    Program::from_spec(&spec).unwrap()
}

#[derive(Debug, Clone)]
enum Op {
    TopUp(u64, i64),
    Spend(u64, i64),
    Hold(u64, i64),
    Capture(usize),
    Refund(usize, i64),
    Reverse(usize),
    Grant(u64, i64, u64),
    Redeem(u64, u64),
}

/// Amounts a request may carry (1 fen ..= 10^12 major), clustered at the bound.
fn amount() -> impl Strategy<Value = i64> {
    let m = max();
    prop_oneof![
        4 => (m - 1_000)..=m,
        2 => (m / 2 - 1_000)..=(m / 2 + 1_000),
        2 => Just(m / 3),
        1 => 1i64..100_000,
    ]
}

fn points() -> impl Strategy<Value = u64> {
    prop_oneof![
        (POINTS_MAX - 1_000)..=POINTS_MAX,
        (POINTS_MAX / 2)..=(POINTS_MAX / 2 + 10),
        1u64..1_000,
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let card = 0..CARDS;
    prop_oneof![
        6 => (card.clone(), amount()).prop_map(|(c, a)| Op::TopUp(c, a)),
        4 => (card.clone(), amount()).prop_map(|(c, a)| Op::Spend(c, a)),
        2 => (card.clone(), amount()).prop_map(|(c, a)| Op::Hold(c, a)),
        2 => any::<usize>().prop_map(Op::Capture),
        3 => (any::<usize>(), amount()).prop_map(|(t, a)| Op::Refund(t, a)),
        3 => any::<usize>().prop_map(Op::Reverse),
        3 => (card.clone(), prop_oneof![Just(0i64), amount()], prop_oneof![Just(0u64), points()])
            .prop_map(|(c, b, p)| Op::Grant(c, b, p)),
        2 => (card, points()).prop_map(|(c, p)| Op::Redeem(c, p)),
    ]
}

struct Driver {
    st: State,
    n: u64,
    requests: Vec<Request>,
    holds: Vec<TxnId>,
    txns: Vec<TxnId>,
    /// Every key sent, with the card its request touched (a reversal names both).
    keys: Vec<(CardId, String)>,
    /// Σ(principal + bonus) the approvals say the cards hold.
    journal: i64,
    /// Transactions already in the journal: a second reversal of a request answers with the
    /// first reversal's transaction again, which moved money once.
    counted: std::collections::HashSet<TxnId>,
    refused: usize,
}

fn card_id(c: u64) -> CardId {
    CardId(500 + c)
}

impl Driver {
    fn new() -> Driver {
        let mut d = Driver {
            st: State::new(StateConfig::default()),
            n: 0,
            requests: Vec::new(),
            holds: Vec::new(),
            txns: Vec::new(),
            keys: Vec::new(),
            journal: 0,
            counted: std::collections::HashSet::new(),
            refused: 0,
        };
        d.send(Command::UpsertProgram(uncapped()));
        for c in 0..CARDS {
            d.send(Command::OpenCard {
                card_id: card_id(c),
                program: "big".into(),
                registered: true,
                birthday: None,
            });
        }
        d
    }

    fn view(&self, id: CardId) -> Option<CardView> {
        match self.st.query(&Query::Card { card_id: id }, Millis(T0)) {
            QueryAnswer::Card(v) => v,
            _ => None,
        }
    }

    fn send(&mut self, command: Command) -> Outcome {
        self.n += 1;
        let key = format!("k{}", self.n);
        let target = match &command {
            Command::TopUp { card_id, .. }
            | Command::Spend { card_id, .. }
            | Command::Hold { card_id, .. }
            | Command::Grant { card_id, .. }
            | Command::RedeemPoints { card_id, .. } => Some(*card_id),
            Command::Capture { hold_id: t, .. } | Command::Refund { txn_id: t, .. } => Some(t.card),
            _ => None,
        };
        let before = target.and_then(|c| self.view(c));
        let request = Request {
            idempotency_key: Some(key.clone()),
            command,
        };
        let reply = self.st.apply(&request, Millis(T0), &mut Vec::new());
        self.requests.push(request.clone());
        self.keys.push((target.unwrap_or(CardId(0)), key));
        match &reply.outcome {
            Outcome::Approved(a) => {
                let moved = a.principal.0 + a.bonus.0;
                let first_time = a.txn_id.is_none_or(|t| self.counted.insert(t));
                self.journal += if !first_time {
                    0
                } else {
                    match a.kind {
                        TxnKind::TopUp
                        | TxnKind::Refund
                        | TxnKind::Redeem
                        | TxnKind::Grant
                        | TxnKind::Reversal => moved,
                        TxnKind::Spend | TxnKind::Capture => -moved,
                        _ => 0,
                    }
                };
                if let (Command::TopUp { amount, .. }, Some(b), Some(after)) =
                    (&request.command, &before, &a.card)
                {
                    // No saturation: the card moved by exactly what was topped up.
                    assert_eq!(after.principal.0, b.principal.0 + amount.0);
                    assert_eq!(after.paid_in.0, b.paid_in.0 + amount.0);
                }
                if let Some(t) = a.txn_id {
                    match a.kind {
                        TxnKind::Hold => self.holds.push(t),
                        TxnKind::Spend | TxnKind::Capture => self.txns.push(t),
                        _ => {}
                    }
                }
            }
            Outcome::Declined { code, .. } => {
                if *code == DeclineCode::OverAmountLimit {
                    self.refused += 1;
                    let after = target.and_then(|c| self.view(c));
                    assert_eq!(before, after, "a refused request changed the card");
                }
            }
            Outcome::Rejected(_) => {}
        }
        reply.outcome
    }

    fn run(&mut self, op: &Op) {
        let pick = |v: &Vec<TxnId>, i: usize| {
            v.get(i % v.len().max(1)).copied().unwrap_or(TxnId {
                card: card_id(0),
                seq: 99,
            })
        };
        let cmd = match *op {
            Op::TopUp(c, a) => Command::TopUp {
                card_id: card_id(c),
                amount: Amount(a),
                channel: Channel::Cash,
            },
            Op::Spend(c, a) => Command::Spend {
                card_id: card_id(c),
                amount: Amount(a),
                method: Method::Qr,
                store: None,
                allow_partial: false,
            },
            Op::Hold(c, a) => Command::Hold {
                card_id: card_id(c),
                amount: Amount(a),
                ttl_seconds: 3_600,
                method: Method::Card,
                store: None,
                allow_partial: false,
            },
            Op::Capture(h) => Command::Capture {
                hold_id: pick(&self.holds, h),
                amount: None,
            },
            Op::Refund(t, a) => Command::Refund {
                txn_id: pick(&self.txns, t),
                amount: Amount(a),
            },
            Op::Reverse(i) => {
                let (card_id, key) = self
                    .keys
                    .get(i % self.keys.len().max(1))
                    .cloned()
                    .unwrap_or((CardId(0), String::new()));
                Command::Reversal { card_id, key }
            }
            Op::Grant(c, b, p) => Command::Grant {
                card_id: card_id(c),
                bonus: (b > 0).then_some(Amount(b)),
                points: (p > 0).then_some(p),
                reason: GrantReason::Compensation,
            },
            Op::Redeem(c, p) => Command::RedeemPoints {
                card_id: card_id(c),
                points: p,
            },
        };
        self.send(cmd);
    }

    fn check(&self) {
        let m = max();
        let mut sum = 0i64;
        for c in 0..CARDS {
            let v = self.view(card_id(c)).unwrap();
            for (name, a) in [
                ("principal", v.principal),
                ("bonus", v.bonus),
                ("held", v.held),
                ("paid_in", v.paid_in),
                ("bonus_given", v.bonus_given),
                ("consumed", v.consumed),
            ] {
                assert!((0..=m).contains(&a.0), "{name} = {} on {v:?}", a.0);
            }
            assert!(v.points <= POINTS_MAX, "points {}", v.points);
            assert!(v.held <= v.principal + v.bonus);
            sum += v.principal.0 + v.bonus.0;
        }
        assert_eq!(
            sum, self.journal,
            "money conserved: cards hold what the replies say"
        );
        for (_, f) in self.st.float() {
            for a in [f.principal, f.bonus, f.held] {
                assert!((0..=m).contains(&a.0), "float {f:?}");
            }
        }
        assert_eq!(self.st.float(), self.st.float_recomputed());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn figures_near_the_bound_never_pass_it(ops in proptest::collection::vec(op(), 1..60)) {
        let mut d = Driver::new();
        for op in &ops {
            d.run(op);
            d.check();
        }
        let mut fresh = State::new(StateConfig::default());
        for r in &d.requests {
            fresh.apply(r, Millis(T0), &mut Vec::new());
        }
        prop_assert_eq!(fresh.digest(), d.st.digest());
    }
}

fn refused(o: &Outcome) -> bool {
    matches!(
        o,
        Outcome::Declined {
            code: DeclineCode::OverAmountLimit,
            ..
        }
    )
}

#[test]
fn the_bound_itself_is_reached_and_one_more_is_refused_changing_nothing() {
    let mut d = Driver::new();
    let m = max();
    let c = card_id(1);
    let top = |d: &mut Driver, a: i64| {
        d.send(Command::TopUp {
            card_id: c,
            amount: Amount(a),
            channel: Channel::Cash,
        })
    };
    let grant = |d: &mut Driver, b: i64, p: u64| {
        d.send(Command::Grant {
            card_id: c,
            bonus: (b > 0).then_some(Amount(b)),
            points: (p > 0).then_some(p),
            reason: GrantReason::Campaign,
        })
    };
    // Principal: exactly 10^12 is approved, one fen more is refused.
    assert!(matches!(top(&mut d, m / 2), Outcome::Approved(_)));
    assert!(matches!(top(&mut d, m - m / 2), Outcome::Approved(_)));
    let at_bound = d.view(c).unwrap();
    assert_eq!((at_bound.principal.0, at_bound.paid_in.0), (m, m));
    assert!(refused(&top(&mut d, 1)));
    assert_eq!(d.view(c).unwrap(), at_bound, "the refusal changed the card");
    // Bonus (ladder 50 %: m/2 so far) and lifetime bonus given, likewise.
    let bonus = at_bound.bonus.0;
    assert!(matches!(grant(&mut d, m - bonus, 0), Outcome::Approved(_)));
    assert_eq!(d.view(c).unwrap().bonus.0, m);
    assert!(refused(&grant(&mut d, 1, 0)));
    // Points.
    assert!(matches!(grant(&mut d, 0, POINTS_MAX), Outcome::Approved(_)));
    let full = d.view(c).unwrap();
    assert!(refused(&grant(&mut d, 0, 1)));
    assert_eq!(d.view(c).unwrap(), full);
    // The float of the program in this shard: a second card cannot add principal past it.
    let other = card_id(2);
    let o = d.send(Command::TopUp {
        card_id: other,
        amount: Amount(1),
        channel: Channel::Cash,
    });
    assert!(refused(&o), "the program's float is at the bound: {o:?}");
    assert_eq!(d.view(other).unwrap().principal, Amount::ZERO);
    d.check();
    assert_eq!(d.refused, 4);
}
