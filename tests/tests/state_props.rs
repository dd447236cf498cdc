//! Property tests of the state machine over random operation sequences on many cards:
//! balances never negative, held within the total, the money on the cards equals the journal
//! of the replies, the float equals the sum over cards, replay and snapshot/restore reach the
//! same digest, and sending every request twice changes nothing.

use proptest::prelude::*;
use svault_core::command::{
    CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, Query, Request, TxnId,
};
use svault_core::money::Amount;
use svault_core::outcome::{Event, EventKind, Outcome, Reply, TxnKind};
use svault_core::program::{Program, ProgramSpec};
use svault_core::state::{QueryAnswer, State, StateConfig};

const CARDS: u64 = 12;
/// Stores spends name; `fast` denies `s9`.
const STORES: [Option<&str>; 3] = [None, Some("s1"), Some("s9")];
const T0: i64 = 1_704_081_600_000;

#[derive(Debug, Clone)]
enum Op {
    Open(u64, bool, bool),
    TopUp(u64, i64),
    /// card, amount, allow_partial, store (index into `STORES`).
    Spend(u64, i64, bool, usize),
    Hold(u64, i64, u32, bool),
    Increment(usize, i64, Option<u32>),
    Capture(usize, Option<i64>),
    Void(usize),
    Refund(usize, i64),
    CashOut(u64, u8),
    Reverse(usize),
    ReverseFuture(u8),
    Redeem(u64, u64),
    Grant(u64, i64, u64),
    Freeze(u64),
    Unfreeze(u64),
    Close(u64),
    Retry(usize),
    Tick,
    Advance(i64),
}

fn op() -> impl Strategy<Value = Op> {
    let card = 0..CARDS;
    let amt = prop_oneof![1i64..2_000, 1i64..60_000, Just(10_000i64)];
    prop_oneof![
        1 => (card.clone(), any::<bool>(), any::<bool>()).prop_map(|(c, r, p)| Op::Open(c, r, p)),
        24 => (card.clone(), amt.clone()).prop_map(|(c, a)| Op::TopUp(c, a)),
        32 => (card.clone(), prop_oneof![3 => 1i64..2_000, 1 => amt.clone()], any::<bool>(), 0..STORES.len())
            .prop_map(|(c, a, p, s)| Op::Spend(c, a, p, s)),
        12 => (card.clone(), amt.clone(), 0u32..400, any::<bool>()).prop_map(|(c, a, t, p)| Op::Hold(c, a, t, p)),
        8 => (any::<usize>(), 1i64..20_000, proptest::option::of(1u32..400))
            .prop_map(|(h, a, t)| Op::Increment(h, a, t)),
        12 => (any::<usize>(), proptest::option::of(1i64..30_000)).prop_map(|(h, a)| Op::Capture(h, a)),
        4 => any::<usize>().prop_map(Op::Void),
        12 => (any::<usize>(), 1i64..30_000).prop_map(|(t, a)| Op::Refund(t, a)),
        1 => (card.clone(), 0u8..3).prop_map(|(c, r)| Op::CashOut(c, r)),
        8 => any::<usize>().prop_map(Op::Reverse),
        4 => (1u8..4).prop_map(Op::ReverseFuture),
        4 => (card.clone(), 1u64..500).prop_map(|(c, p)| Op::Redeem(c, p)),
        4 => (card.clone(), 0i64..3_000, 0u64..300).prop_map(|(c, b, p)| Op::Grant(c, b, p)),
        4 => card.clone().prop_map(Op::Freeze),
        4 => card.clone().prop_map(Op::Unfreeze),
        1 => card.clone().prop_map(Op::Close),
        8 => any::<usize>().prop_map(Op::Retry),
        8 => Just(Op::Tick),
        12 => prop_oneof![0i64..120_000, 0i64..3 * 86_400_000, Just(40 * 86_400_000i64)].prop_map(Op::Advance),
    ]
}

fn second_program() -> Program {
    let spec: ProgramSpec = serde_json::from_str(
        r#"{"id":"fast","currency":"CNY","utc_offset":"-05:00",
        "top_up":{"max_single":"400","max_daily":"600","max_balance":"900","max_balance_anonymous":"300"},
        "bonus_ladder":[{"nth":1,"bonus":"3.33"},{"nth":2,"min":"10","rate":"0.125"}],
        "bonus_expiry_days":2,"spend_order":"bonus_first",
        "points":{"earn_per_unit":"2.5","redeem_rate":"7"},
        "tiers":[{"name":"t1","lifetime_top_up":"50","points_multiplier":"1.5","discount":"0.03"}],
        "discount_windows":[{"from":"22:00","to":"02:00","rate":"0.07"}],
        "velocity":{"max_spends_per_minute":3,"max_daily_spend":"700"},
        "refund_lock_days":1,"reminders":{"low_balance":"5","bonus_expiring_days":1},
        "spend":{"max_single":"350","max_daily_count":6,"stores_deny":["s9"]}}"#,
    )
    .unwrap();
    Program::from_spec(&spec).unwrap()
}

/// Turns ops into concrete timed requests, answering references from earlier replies.
struct Driver {
    st: State,
    now: i64,
    n: usize,
    requests: Vec<(Request, Millis)>,
    replies: Vec<Reply>,
    holds: Vec<TxnId>,
    txns: Vec<TxnId>,
    keyed: Vec<Request>,
    /// Σ(principal + bonus) the replies say the cards should hold.
    journal: i64,
    /// Transactions already in the journal: a second reversal of a request answers with the
    /// first reversal's transaction again, which moved money once.
    counted: std::collections::HashSet<TxnId>,
    events: Vec<Event>,
}

impl Driver {
    fn new() -> Driver {
        let mut d = Driver {
            st: State::new(StateConfig {
                history_per_card_max: 16,
                ..StateConfig::default()
            }),
            now: T0,
            n: 0,
            requests: Vec::new(),
            replies: Vec::new(),
            holds: Vec::new(),
            txns: Vec::new(),
            keyed: Vec::new(),
            journal: 0,
            counted: std::collections::HashSet::new(),
            events: Vec::new(),
        };
        d.send(None, Command::UpsertProgram(Program::demo()));
        d.send(None, Command::UpsertProgram(second_program()));
        // Most cards exist from the start; a few are opened (or refused) by the ops.
        for c in 0..CARDS - 2 {
            d.run(&Op::Open(c, c % 3 != 0, c % 2 == 0));
        }
        d
    }

    fn send(&mut self, key: Option<String>, command: Command) -> Reply {
        let req = Request {
            idempotency_key: key,
            command,
        };
        let mut ev = Vec::new();
        let reply = self.st.apply(&req, Millis(self.now), &mut ev);
        for e in &ev {
            if let EventKind::BonusExpired { amount } = e.kind {
                self.journal -= amount.0;
            }
        }
        self.events.extend(ev);
        if !reply.replayed {
            let again = match &reply.outcome {
                Outcome::Approved(a) => a.txn_id.is_some_and(|t| !self.counted.insert(t)),
                _ => false,
            };
            if again {
                assert!(
                    matches!(&reply.outcome, Outcome::Approved(a) if a.kind == TxnKind::Reversal),
                    "only a second reversal answers with an earlier transaction: {reply:?}"
                );
            }
            if let (false, Outcome::Approved(a)) = (again, &reply.outcome) {
                let (p, b) = (a.principal.0, a.bonus.0);
                self.journal += match a.kind {
                    TxnKind::TopUp
                    | TxnKind::Refund
                    | TxnKind::Redeem
                    | TxnKind::Grant
                    | TxnKind::Reversal => p + b,
                    TxnKind::Spend | TxnKind::Capture | TxnKind::CashOut | TxnKind::Close => {
                        -(p + b)
                    }
                    _ => 0,
                };
                if let Some(t) = a.txn_id {
                    match a.kind {
                        TxnKind::Hold => self.holds.push(t),
                        TxnKind::Spend | TxnKind::Capture => self.txns.push(t),
                        _ => {}
                    }
                }
            }
        }
        if req.idempotency_key.is_some() {
            self.keyed.push(req.clone());
        }
        self.requests.push((req, Millis(self.now)));
        self.replies.push(reply.clone());
        reply
    }

    fn key(&mut self) -> Option<String> {
        self.n += 1;
        Some(format!("k{}", self.n))
    }

    fn run(&mut self, op: &Op) {
        let id = |c: u64| CardId(1000 + c);
        let pick = |v: &Vec<TxnId>, i: usize| {
            if v.is_empty() {
                TxnId {
                    card: id(0),
                    seq: 99,
                }
            } else {
                v[i % v.len()]
            }
        };
        let cmd = match op {
            Op::Open(c, registered, p) => Command::OpenCard {
                card_id: id(*c),
                program: if *p { "demo" } else { "fast" }.to_string(),
                registered: *registered,
                birthday: None,
            },
            Op::TopUp(c, a) => Command::TopUp {
                card_id: id(*c),
                amount: Amount(*a),
                channel: Channel::Unionpay,
            },
            Op::Spend(c, a, p, s) => Command::Spend {
                card_id: id(*c),
                amount: Amount(*a),
                method: Method::Qr,
                store: STORES[*s].map(str::to_string),
                allow_partial: *p,
            },
            Op::Hold(c, a, t, p) => Command::Hold {
                card_id: id(*c),
                amount: Amount(*a),
                ttl_seconds: *t,
                method: Method::Card,
                store: None,
                allow_partial: *p,
            },
            Op::Increment(h, a, t) => Command::IncrementHold {
                hold_id: pick(&self.holds, *h),
                amount: Amount(*a),
                ttl_seconds: *t,
            },
            Op::Capture(h, a) => Command::Capture {
                hold_id: pick(&self.holds, *h),
                amount: a.map(Amount),
            },
            Op::Void(h) => Command::Void {
                hold_id: pick(&self.holds, *h),
            },
            Op::Refund(t, a) => Command::Refund {
                txn_id: pick(&self.txns, *t),
                amount: Amount(*a),
            },
            Op::CashOut(c, r) => Command::CashOut {
                card_id: id(*c),
                reason: CashOutReason::ALL[*r as usize],
            },
            Op::Reverse(i) => {
                let (card_id, key) = match self.keyed.get(i % self.keyed.len().max(1)) {
                    None => (id(0), "none".to_string()),
                    Some(r) => (
                        card_of(&r.command),
                        r.idempotency_key.clone().unwrap_or_default(),
                    ),
                };
                Command::Reversal { card_id, key }
            }
            Op::ReverseFuture(d) => Command::Reversal {
                card_id: id(u64::from(*d) % CARDS),
                key: format!("k{}", self.n + 1 + *d as usize),
            },
            Op::Redeem(c, p) => Command::RedeemPoints {
                card_id: id(*c),
                points: *p,
            },
            Op::Grant(c, b, p) => Command::Grant {
                card_id: id(*c),
                bonus: (*b > 0).then_some(Amount(*b)),
                points: (*p > 0).then_some(*p),
                reason: GrantReason::Campaign,
            },
            Op::Freeze(c) => Command::Freeze { card_id: id(*c) },
            Op::Unfreeze(c) => Command::Unfreeze { card_id: id(*c) },
            Op::Close(c) => Command::Close { card_id: id(*c) },
            Op::Retry(i) => {
                if self.keyed.is_empty() {
                    return;
                }
                let r = self.keyed[i % self.keyed.len()].clone();
                self.send(r.idempotency_key, r.command);
                return;
            }
            Op::Tick => {
                self.send(None, Command::Tick);
                return;
            }
            Op::Advance(ms) => {
                self.now += ms;
                if self.st.tick_due(Millis(self.now)) {
                    self.send(None, Command::Tick);
                }
                return;
            }
        };
        let key = self.key();
        self.send(key, cmd);
    }

    fn check(&self) {
        let mut sum = 0;
        for c in 0..CARDS {
            if let QueryAnswer::Card(Some(v)) = self.st.query(
                &Query::Card {
                    card_id: CardId(1000 + c),
                },
                Millis(self.now),
            ) {
                assert!(
                    v.principal.0 >= 0 && v.bonus.0 >= 0 && v.held.0 >= 0,
                    "{v:?}"
                );
                assert!(v.held <= v.principal + v.bonus, "{v:?}");
                assert_eq!(v.available, v.principal + v.bonus - v.held);
                sum += v.principal.0 + v.bonus.0;
            }
        }
        assert_eq!(sum, self.journal, "cards hold what the replies say");
        assert_eq!(self.st.float(), self.st.float_recomputed());
        let t = self.st.float_total();
        assert_eq!(t.principal.0 + t.bonus.0, sum);
    }
}

fn replay(requests: &[(Request, Millis)], twice: bool) -> (State, Vec<Reply>) {
    let mut st = State::new(StateConfig {
        history_per_card_max: 16,
        ..StateConfig::default()
    });
    let mut replies = Vec::new();
    for (r, now) in requests {
        replies.push(st.apply(r, *now, &mut Vec::new()));
        if twice {
            let again = st.apply(r, *now, &mut Vec::new());
            if r.idempotency_key.is_some() {
                assert!(
                    again.replayed || matches!(again.outcome, Outcome::Rejected(_)),
                    "{r:?} ⇒ {again:?}"
                );
            }
        }
    }
    (st, replies)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant(ops in proptest::collection::vec(op(), 1..160), cut in 0usize..160) {
        let mut d = Driver::new();
        let mut restored: Option<State> = None;
        let mut frozen = None;
        let mut cut_at = 0;
        for (i, op) in ops.iter().enumerate() {
            d.run(op);
            d.check();
            if i == cut.min(ops.len() - 1) {
                let snap = d.st.snapshot();
                let r = State::restore(&snap, StateConfig { history_per_card_max: 16, ..StateConfig::default() }).unwrap();
                prop_assert_eq!(r.digest(), d.st.digest());
                restored = Some(r);
                frozen = Some((d.st.freeze(), snap));
                cut_at = d.requests.len();
            }
        }
        // a frozen state serialises to the snapshot of its instant, whatever happened after
        if let Some((f, snap)) = frozen {
            prop_assert!(f.to_bytes() == snap, "frozen state changed after the freeze");
        }
        // same requests into a fresh state ⇒ same replies, same digest
        let (fresh, replies) = replay(&d.requests, false);
        prop_assert_eq!(fresh.digest(), d.st.digest());
        prop_assert_eq!(&replies, &d.replies);
        // a restored snapshot fed the rest of the log ⇒ same digest
        if let Some(mut r) = restored {
            for (req, now) in &d.requests[cut_at..] {
                r.apply(req, *now, &mut Vec::new());
            }
            prop_assert_eq!(r.digest(), d.st.digest());
        }
        // every request sent twice ⇒ the same state as once
        let (twice, _) = replay(&d.requests, true);
        prop_assert_eq!(twice.digest(), d.st.digest());
    }
}

#[test]
fn thousands_of_ops_over_many_cards() {
    // One long deterministic run (a cheap LCG picks ops), checked at the end.
    let mut d = Driver::new();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |m: u64| {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) % m
    };
    for _ in 0..20_000 {
        let c = next(CARDS);
        let op = match next(13) {
            0 | 1 => Op::TopUp(c, 1 + next(40_000) as i64),
            2..=4 => Op::Spend(
                c,
                1 + next(8_000) as i64,
                next(2) == 0,
                next(STORES.len() as u64) as usize,
            ),
            5 => Op::Hold(c, 1 + next(5_000) as i64, next(300) as u32, next(2) == 0),
            // An increment of the newest hold (most older ones are closed by now).
            12 => Op::Increment(d.holds.len().wrapping_sub(1), 1 + next(3_000) as i64, None),
            6 => Op::Capture(next(1 << 20) as usize, None),
            7 => Op::Refund(next(1 << 20) as usize, 1 + next(3_000) as i64),
            8 => Op::Reverse(next(1 << 20) as usize),
            9 => Op::Retry(next(1 << 20) as usize),
            10 => Op::Advance(next(4 * 3_600_000) as i64),
            _ => Op::Grant(c, next(500) as i64, next(50)),
        };
        d.run(&op);
    }
    d.check();
    let (fresh, _) = replay(&d.requests, false);
    assert_eq!(fresh.digest(), d.st.digest());
    let approvals = d
        .replies
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Approved(_)))
        .count();
    assert!(
        approvals > 5_000,
        "the run exercises approvals ({approvals})"
    );
    let approved = |k: TxnKind, partial: bool| {
        d.replies
            .iter()
            .filter(|r| matches!(&r.outcome, Outcome::Approved(a) if a.kind == k && a.partial == partial))
            .count()
    };
    assert!(
        approved(TxnKind::Spend, true) > 10 && approved(TxnKind::Increment, false) > 100,
        "the run exercises partial approvals ({}) and increments ({})",
        approved(TxnKind::Spend, true),
        approved(TxnKind::Increment, false)
    );
}

#[test]
fn a_frozen_state_keeps_its_instant_while_the_live_state_moves_on() {
    // Enough cards for several copy-on-write chunks; writes after the freeze touch some chunks,
    // push cards into the shared last chunk and open new chunks.
    let mut d = Driver::new();
    let first = 20_000u64;
    for c in 0..9_000 {
        d.send(None, open_cmd(first + c));
        let k = d.key();
        d.send(k, top_up_cmd(first + c, 10_000));
    }
    let before = d.st.snapshot();
    let frozen = d.st.freeze();
    assert_eq!(frozen.cards(), 9_000 + (CARDS - 2) as usize);
    for c in (0..9_000).step_by(7) {
        let k = d.key();
        d.send(k, spend_cmd(first + c, 2_500));
    }
    for c in 9_000..14_000 {
        d.send(None, open_cmd(first + c));
    }
    let live = d.st.snapshot();
    assert_ne!(live, before, "the live state moved on");
    let from_frozen = frozen.to_bytes();
    assert!(from_frozen == before, "the frozen state kept its instant");
    drop(frozen);
    // Live state unaffected by the copies: a fresh replay of every request reaches it.
    let (fresh, _) = replay(&d.requests, false);
    assert_eq!(fresh.digest(), d.st.digest());
    // And a second freeze after the first was dropped sees the new instant.
    assert!(d.st.freeze().to_bytes() == live);
}

fn open_cmd(c: u64) -> Command {
    Command::OpenCard {
        card_id: CardId(c),
        program: "demo".to_string(),
        registered: true,
        birthday: None,
    }
}

fn top_up_cmd(c: u64, amount: i64) -> Command {
    Command::TopUp {
        card_id: CardId(c),
        amount: Amount(amount),
        channel: Channel::Unionpay,
    }
}

fn spend_cmd(c: u64, amount: i64) -> Command {
    Command::Spend {
        card_id: CardId(c),
        amount: Amount(amount),
        method: Method::Qr,
        store: None,
        allow_partial: false,
    }
}

/// The card a request's idempotency key is scoped to (a reversal names it).
fn card_of(command: &Command) -> CardId {
    match command {
        Command::OpenCard { card_id, .. }
        | Command::TopUp { card_id, .. }
        | Command::Spend { card_id, .. }
        | Command::Hold { card_id, .. }
        | Command::CashOut { card_id, .. }
        | Command::RedeemPoints { card_id, .. }
        | Command::Grant { card_id, .. }
        | Command::Freeze { card_id }
        | Command::Unfreeze { card_id }
        | Command::Close { card_id }
        | Command::Reversal { card_id, .. } => *card_id,
        Command::Capture { hold_id, .. }
        | Command::Void { hold_id }
        | Command::IncrementHold { hold_id, .. } => hold_id.card,
        Command::Refund { txn_id, .. } => txn_id.card,
        Command::UpsertProgram(_) | Command::Tick => CardId(0),
    }
}
