//! What one shard's history adds up to: sums and counts per program, fed one applied record
//! at a time (request, answer, events), plus the per-card facts cohorts, churn and lifetime
//! value need (O(cards), never O(records)).
//!
//! Every figure here is a sum or a count, so the tallies of several shards merge by addition
//! (`ProgramTally::merge`); ratios are computed only once, from the merged sums
//! (`report::figures`).

use super::time;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use svault_core::command::{CardId, Command, Millis, Query, Request, TxnId};
use svault_core::money::{Amount, Rate};
use svault_core::outcome::{CardView, Event, EventKind, Outcome, Reply, TxnKind};
use svault_core::state::{IdBuild, QueryAnswer, State};

/// A count and an amount in minor units (i128: sums over any history cannot overflow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Sum {
    pub count: u64,
    pub amount: i128,
}

impl Sum {
    fn add(&mut self, a: Amount) {
        self.count += 1;
        self.amount += i128::from(a.0);
    }
    fn merge(&mut self, o: &Sum) {
        self.count += o.count;
        self.amount += o.amount;
    }
}

fn merge_map<K: Ord + Clone>(into: &mut BTreeMap<K, Sum>, from: &BTreeMap<K, Sum>) {
    for (k, v) in from {
        into.entry(k.clone()).or_default().merge(v);
    }
}

fn merge_counts<K: Ord + Clone>(into: &mut BTreeMap<K, u64>, from: &BTreeMap<K, u64>) {
    for (k, v) in from {
        *into.entry(k.clone()).or_default() += v;
    }
}

/// Sums and counts of one program.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProgramTally {
    // top-ups (principal credited; bonus from the ladder)
    pub top_ups: Sum,
    pub top_up_bonus: i128,
    pub top_ups_by_channel: BTreeMap<String, Sum>,
    pub top_ups_by_day: BTreeMap<i64, Sum>,
    /// Key: the ladder step's `nth` (`"none"` when no bonus was given); amount: bonus.
    pub bonus_by_step: BTreeMap<String, Sum>,
    pub cards_opened: u64,
    /// Of the cards opened in the window, those with a first top-up by `--to`.
    pub cards_converted: u64,
    // spends (spends and captures: what was charged, after discount)
    pub spends: Sum,
    pub spends_by_hour: BTreeMap<u32, Sum>,
    pub spends_by_method: BTreeMap<String, Sum>,
    pub spends_by_store: BTreeMap<String, Sum>,
    pub discount_by_tier: BTreeMap<String, Sum>,
    pub discount_by_window: BTreeMap<String, Sum>,
    pub refunds: Sum,
    /// Key: the kind undone; amount: principal + bonus taken back (negative for top-ups).
    pub reversals: BTreeMap<String, Sum>,
    pub cash_outs: Sum,
    pub cash_out_forfeited: i128,
    pub bonus_expired: Sum,
    pub holds_expired: Sum,
    pub grants_bonus: Sum,
    // points
    pub points_issued: u64,
    pub points_redeemed: u64,
    /// Points on the cards at `--to`.
    pub points_outstanding: u64,
    // channels: cards with ≥ 1 / ≥ 2 top-ups through the channel in the window
    pub channel_cards: BTreeMap<String, u64>,
    pub channel_repeat_cards: BTreeMap<String, u64>,
    // users
    pub active_cards: u64,
    /// Cohort month → cards opened that month (in the window).
    pub cohort_size: BTreeMap<i64, u64>,
    /// (cohort month, months after) → cards of the cohort active that month.
    pub cohort_active: BTreeMap<(i64, u32), u64>,
    /// Cards with any activity by `--to`, and those without activity in the last N days.
    pub churn_base: u64,
    pub churned: u64,
    /// Cards that ever topped up, and their lifetime value consumed (face value) at `--to`.
    pub paying_cards: u64,
    pub paying_consumed: i128,
    pub tiers: BTreeMap<String, u64>,
    // float
    pub float_principal: i128,
    pub float_bonus: i128,
    pub float_held: i128,
    pub float_cards: u64,
    /// Outstanding principal at the last quarter end at or before `--to`.
    pub quarter_end_principal: i128,
}

impl ProgramTally {
    /// Adds another shard's tally of the same program.
    pub fn merge(&mut self, o: &ProgramTally) {
        self.top_ups.merge(&o.top_ups);
        self.top_up_bonus += o.top_up_bonus;
        merge_map(&mut self.top_ups_by_channel, &o.top_ups_by_channel);
        merge_map(&mut self.top_ups_by_day, &o.top_ups_by_day);
        merge_map(&mut self.bonus_by_step, &o.bonus_by_step);
        self.cards_opened += o.cards_opened;
        self.cards_converted += o.cards_converted;
        self.spends.merge(&o.spends);
        merge_map(&mut self.spends_by_hour, &o.spends_by_hour);
        merge_map(&mut self.spends_by_method, &o.spends_by_method);
        merge_map(&mut self.spends_by_store, &o.spends_by_store);
        merge_map(&mut self.discount_by_tier, &o.discount_by_tier);
        merge_map(&mut self.discount_by_window, &o.discount_by_window);
        self.refunds.merge(&o.refunds);
        merge_map(&mut self.reversals, &o.reversals);
        self.cash_outs.merge(&o.cash_outs);
        self.cash_out_forfeited += o.cash_out_forfeited;
        self.bonus_expired.merge(&o.bonus_expired);
        self.holds_expired.merge(&o.holds_expired);
        self.grants_bonus.merge(&o.grants_bonus);
        self.points_issued += o.points_issued;
        self.points_redeemed += o.points_redeemed;
        self.points_outstanding += o.points_outstanding;
        merge_counts(&mut self.channel_cards, &o.channel_cards);
        merge_counts(&mut self.channel_repeat_cards, &o.channel_repeat_cards);
        self.active_cards += o.active_cards;
        merge_counts(&mut self.cohort_size, &o.cohort_size);
        merge_counts(&mut self.cohort_active, &o.cohort_active);
        self.churn_base += o.churn_base;
        self.churned += o.churned;
        self.paying_cards += o.paying_cards;
        self.paying_consumed += o.paying_consumed;
        merge_counts(&mut self.tiers, &o.tiers);
        self.float_principal += o.float_principal;
        self.float_bonus += o.float_bonus;
        self.float_held += o.float_held;
        self.float_cards += o.float_cards;
        self.quarter_end_principal += o.quarter_end_principal;
    }
}

/// What the report needs to know of one card beyond the window's sums.
#[derive(Debug, Clone)]
struct CardFacts {
    program: Arc<str>,
    /// Opened inside the scanned history (`false` when the scan started from a snapshot).
    opened_at: Option<Millis>,
    /// Approved top-ups not reversed: the `nth` of the next one (mirrors the state).
    top_ups: u32,
    ever_topped_up: bool,
    last_active: Option<Millis>,
    cohort_month: i64,
    /// Bit k: active in the k-th month after the cohort month (k < 64).
    active_months: u64,
    active_in_window: bool,
    /// Top-ups in the window per channel (index of `Channel::ALL`).
    channel_top_ups: [u16; 4],
    points: u64,
    tier: Option<Arc<str>>,
    consumed: Amount,
}

/// What a hold needs to be reported when it is captured.
#[derive(Debug, Clone)]
struct HoldFacts {
    method: &'static str,
    store: String,
    /// `Some(window label)` when the window's rate beat the tier's.
    window: Option<String>,
    /// What the hold took (after discount) and the discount it was given: a capture of part
    /// of it was given that share of the discount (the rate is fixed when the hold is placed).
    held: Amount,
    discount: Amount,
}

/// The window and the filters.
#[derive(Debug, Clone)]
pub struct Window {
    pub from: Millis,
    pub to: Millis,
    pub program: Option<String>,
    pub churn_days: u32,
}

/// One shard's running tally.
pub struct ShardTally {
    window: Window,
    /// Keyed with the card index's hasher: one lookup per record, so SipHash showed.
    cards: HashMap<CardId, CardFacts, IdBuild>,
    holds: HashMap<TxnId, HoldFacts, IdBuild>,
    programs: BTreeMap<String, ProgramTally>,
    /// Latest quarter start crossed per program and the principal outstanding just before it.
    quarter: HashMap<String, (Millis, i128)>,
    next_quarter_check: Millis,
}

fn channel_index(c: svault_core::command::Channel) -> usize {
    svault_core::command::Channel::ALL
        .iter()
        .position(|x| *x == c)
        .unwrap_or(0)
}

/// `20:00-24:00`
pub fn window_label(from_minute: u16, to_minute: u16) -> String {
    format!(
        "{:02}:{:02}-{:02}:{:02}",
        from_minute / 60,
        from_minute % 60,
        to_minute / 60,
        to_minute % 60
    )
}

impl ShardTally {
    /// An empty tally that counts what `window` selects; feed it the shard's records in log order
    /// ([`ShardTally::before`], then [`ShardTally::observe`]).
    pub fn new(window: Window) -> ShardTally {
        ShardTally {
            window,
            cards: HashMap::default(),
            holds: HashMap::default(),
            programs: BTreeMap::new(),
            quarter: HashMap::new(),
            next_quarter_check: Millis(i64::MIN),
        }
    }

    fn counted(&self, program: &str) -> bool {
        self.window.program.as_deref().is_none_or(|p| p == program)
    }

    fn tally(&mut self, program: &str) -> &mut ProgramTally {
        entry_of(&mut self.programs, program)
    }

    /// Called before a record at `now` is applied: remembers the principal outstanding at
    /// each local quarter start the history crosses.
    pub fn before(&mut self, now: Millis, state: &State) {
        if now < self.next_quarter_check {
            return;
        }
        let float = state.float();
        let mut next = Millis(i64::MAX);
        for p in state.programs() {
            let start = time::quarter_start_at_or_before(now, p.utc_offset_minutes);
            let principal = float
                .iter()
                .find(|(id, _)| id == &p.id)
                .map_or(0, |(_, f)| i128::from(f.principal.0));
            let seen = self.quarter.get(&p.id).map(|q| q.0);
            if seen != Some(start) {
                self.quarter.insert(p.id.clone(), (start, principal));
            }
            next = next.min(time::next_quarter_start(now, p.utc_offset_minutes));
        }
        self.next_quarter_check = next;
    }

    /// Takes one applied record into account.
    pub fn observe(
        &mut self,
        now: Millis,
        request: &Request,
        reply: &Reply,
        events: &[Event],
        state: &State,
    ) {
        if let Command::UpsertProgram(_) = request.command {
            // A new program (or offset) may bring a nearer quarter start.
            self.next_quarter_check = Millis(i64::MIN);
        }
        let in_window = now >= self.window.from && now < self.window.to;
        for e in events {
            self.observe_event(e, in_window, state);
        }
        if reply.replayed {
            return;
        }
        let Outcome::Approved(a) = &reply.outcome else {
            return;
        };
        // Program changes and reversals of nothing carry no card: nothing moved.
        let Some(card) = &a.card else {
            return;
        };
        // Borrowed, not cloned: this runs for every record of the history, and the clone of
        // the program (and of its name's `Arc`) showed in a report's profile.
        let program: &Arc<str> = &card.program;
        let Some(p) = state.program(program) else {
            return;
        };
        let offset = p.utc_offset_minutes;
        if a.kind == TxnKind::Open {
            self.cards.insert(
                card.card_id,
                CardFacts {
                    program: program.clone(),
                    opened_at: Some(now),
                    top_ups: 0,
                    ever_topped_up: false,
                    last_active: None,
                    cohort_month: time::local_month(now, offset),
                    active_months: 0,
                    active_in_window: false,
                    channel_top_ups: [0; 4],
                    points: card.points,
                    tier: card.tier.clone(),
                    consumed: card.consumed,
                },
            );
        }
        let facts = self.cards.entry(card.card_id).or_insert_with(|| CardFacts {
            program: program.clone(),
            opened_at: None,
            top_ups: 0,
            ever_topped_up: false,
            last_active: None,
            cohort_month: time::local_month(now, offset),
            active_months: 0,
            active_in_window: false,
            channel_top_ups: [0; 4],
            points: 0,
            tier: None,
            consumed: Amount(0),
        });
        update_card(facts, card);
        let active = matches!(
            a.kind,
            TxnKind::TopUp
                | TxnKind::Spend
                | TxnKind::Hold
                | TxnKind::Capture
                | TxnKind::Redeem
                | TxnKind::CashOut
        );
        if active {
            facts.last_active = Some(now);
            let k = time::local_month(now, offset) - facts.cohort_month;
            if (0..64).contains(&k) {
                facts.active_months |= 1 << k;
            }
            if in_window {
                facts.active_in_window = true;
            }
        }
        let mut nth = 0;
        if a.kind == TxnKind::TopUp {
            facts.top_ups = facts.top_ups.saturating_add(1);
            facts.ever_topped_up = true;
            nth = facts.top_ups;
            if let (true, Command::TopUp { channel, .. }) = (in_window, &request.command) {
                let i = channel_index(*channel);
                if let Some(c) = facts.channel_top_ups.get_mut(i) {
                    *c = c.saturating_add(1);
                }
            }
        }
        // Reversals: find what was undone (the card's recent history holds it).
        let mut reversed_kind = None;
        if a.kind == TxnKind::Reversal {
            if let Some(t) = a.reversed_txn {
                reversed_kind = reversed_kind_of(state, t, now);
                match reversed_kind {
                    Some(TxnKind::TopUp) => facts.top_ups = facts.top_ups.saturating_sub(1),
                    Some(TxnKind::Hold) => {
                        self.holds.remove(&t);
                    }
                    _ => {}
                }
            }
        }
        // Holds: remember how they were presented, to report their captures.
        match (&request.command, a.kind) {
            (Command::Hold { method, store, .. }, TxnKind::Hold) => {
                if let Some(id) = a.txn_id {
                    let window = discount_window(p, card, now);
                    self.holds.insert(
                        id,
                        HoldFacts {
                            method: method.as_str(),
                            store: store.clone().unwrap_or_else(|| "none".into()),
                            window,
                            held: a.amount,
                            discount: a.discount,
                        },
                    );
                }
            }
            (Command::Void { hold_id }, TxnKind::Void) => {
                self.holds.remove(hold_id);
            }
            (Command::IncrementHold { hold_id, .. }, TxnKind::Increment) => {
                if let Some(h) = self.holds.get_mut(hold_id) {
                    h.held += a.amount;
                    h.discount += a.discount;
                }
            }
            _ => {}
        }
        if !in_window || !self.counted(program) {
            if let (Command::Capture { hold_id, .. }, TxnKind::Capture) = (&request.command, a.kind)
            {
                self.holds.remove(hold_id);
            }
            return;
        }
        let local = time::local(now, offset);
        let day = time::local_day(now, offset);
        let captured_hold = match (&request.command, a.kind) {
            (Command::Capture { hold_id, .. }, TxnKind::Capture) => self.holds.remove(hold_id),
            _ => None,
        };
        let t = self.tally(program);
        t.points_issued += a.points_earned;
        match a.kind {
            TxnKind::Open => t.cards_opened += 1,
            TxnKind::TopUp => {
                t.top_ups.add(a.amount);
                t.top_up_bonus += i128::from(a.bonus_granted.0);
                if let Command::TopUp { channel, .. } = &request.command {
                    entry_of(&mut t.top_ups_by_channel, channel.as_str()).add(a.amount);
                }
                t.top_ups_by_day.entry(day).or_default().add(a.amount);
                let step = match p.ladder_step(nth) {
                    Some(s) if a.bonus_granted.0 > 0 => s.nth.to_string(),
                    _ => "none".to_string(),
                };
                entry_of(&mut t.bonus_by_step, &step).add(a.bonus_granted);
            }
            TxnKind::Spend | TxnKind::Capture => {
                // Borrowed where they can be: a spend's method and store are looked up, and a
                // key is allocated only the first time it is seen.
                let (method, store, window, discount): (&str, Cow<str>, _, _) =
                    match (&request.command, captured_hold) {
                        (Command::Spend { method, store, .. }, _) => (
                            method.as_str(),
                            Cow::Borrowed(store.as_deref().unwrap_or("none")),
                            discount_window(p, card, now),
                            a.discount,
                        ),
                        (_, Some(h)) => {
                            let share = if a.discount.0 > 0 || h.held.0 <= 0 {
                                a.discount
                            } else {
                                Amount(svault_core::money::mul_div_half_even(
                                    h.discount.0,
                                    a.amount.0,
                                    h.held.0,
                                ))
                            };
                            (h.method, Cow::Owned(h.store), h.window, share)
                        }
                        _ => ("unknown", Cow::Borrowed("unknown"), None, a.discount),
                    };
                t.spends.add(a.amount);
                t.spends_by_hour
                    .entry(local.hour)
                    .or_default()
                    .add(a.amount);
                entry_of(&mut t.spends_by_method, method).add(a.amount);
                entry_of(&mut t.spends_by_store, &store).add(a.amount);
                if discount.0 > 0 {
                    match window {
                        Some(w) => entry_of(&mut t.discount_by_window, &w).add(discount),
                        None => entry_of(
                            &mut t.discount_by_tier,
                            card.tier.as_deref().unwrap_or("none"),
                        )
                        .add(discount),
                    }
                }
            }
            TxnKind::Refund => t.refunds.add(a.amount),
            TxnKind::CashOut => {
                t.cash_outs.add(a.amount);
                t.cash_out_forfeited += i128::from(a.forfeited.0);
            }
            TxnKind::Redeem => t.points_redeemed += a.points_spent,
            TxnKind::Grant if a.bonus_granted.0 > 0 => t.grants_bonus.add(a.bonus_granted),
            TxnKind::Reversal => {
                let kind = reversed_kind.map_or("unknown", |k| k.as_str());
                entry_of(&mut t.reversals, kind)
                    .add(Amount(a.principal.0.saturating_add(a.bonus.0)));
            }
            _ => {}
        }
    }

    fn observe_event(&mut self, e: &Event, in_window: bool, state: &State) {
        if let EventKind::HoldExpired { hold_id, .. } = &e.kind {
            self.holds.remove(hold_id);
        }
        if !in_window {
            return;
        }
        let Some(program) = state.program_of(e.card_id) else {
            return;
        };
        if !self.counted(program) {
            return;
        }
        let t = self.tally(program);
        match &e.kind {
            EventKind::BonusExpired { amount } => t.bonus_expired.add(*amount),
            EventKind::HoldExpired { amount, .. } => t.holds_expired.add(*amount),
            _ => {}
        }
    }

    /// The tallies per program once the history up to `--to` was applied to `state`.
    /// `to` is the report's end (the last record's time + 1 ms when `--to` was not given).
    pub fn finish(mut self, state: &State, to: Millis) -> BTreeMap<String, ProgramTally> {
        let mut w = self.window.clone();
        w.to = to;
        let churn_before = Millis(w.to.0 - i64::from(w.churn_days) * 86_400_000);
        let float = state.float();
        for p in state.programs() {
            if !self.counted(&p.id) {
                continue;
            }
            let quarter_start = time::quarter_start_at_or_before(w.to, p.utc_offset_minutes);
            let f = float
                .iter()
                .find(|(id, _)| id == &p.id)
                .map(|(_, f)| *f)
                .unwrap_or_default();
            // A quarter start crossed by a record: the principal just before it; otherwise no
            // record came after the quarter start, and the final principal is the one it had.
            let at_quarter = match self.quarter.get(&p.id) {
                Some((start, principal)) if *start == quarter_start => *principal,
                _ => i128::from(f.principal.0),
            };
            let t = self.tally(&p.id);
            t.float_principal = i128::from(f.principal.0);
            t.float_bonus = i128::from(f.bonus.0);
            t.float_held = i128::from(f.held.0);
            t.float_cards = f.cards;
            t.quarter_end_principal = at_quarter;
        }
        let cards = std::mem::take(&mut self.cards);
        for facts in cards.values() {
            if !self.counted(&facts.program) {
                continue;
            }
            let t = self.tally(&facts.program);
            let opened_in_window = facts.opened_at.is_some_and(|o| o >= w.from && o < w.to);
            if opened_in_window {
                if facts.ever_topped_up {
                    t.cards_converted += 1;
                }
                *t.cohort_size.entry(facts.cohort_month).or_default() += 1;
                for k in 0..64u32 {
                    if facts.active_months & (1 << k) != 0 {
                        *t.cohort_active.entry((facts.cohort_month, k)).or_default() += 1;
                    }
                }
            }
            if facts.active_in_window {
                t.active_cards += 1;
            }
            for (i, ch) in svault_core::command::Channel::ALL.iter().enumerate() {
                let n = facts.channel_top_ups.get(i).copied().unwrap_or(0);
                if n >= 1 {
                    *t.channel_cards.entry(ch.as_str().to_string()).or_default() += 1;
                }
                if n >= 2 {
                    *t.channel_repeat_cards
                        .entry(ch.as_str().to_string())
                        .or_default() += 1;
                }
            }
            if let Some(last) = facts.last_active {
                t.churn_base += 1;
                if last < churn_before {
                    t.churned += 1;
                }
            }
            if facts.ever_topped_up {
                t.paying_cards += 1;
                t.paying_consumed += i128::from(facts.consumed.0);
            }
            t.points_outstanding += facts.points;
            *t.tiers
                .entry(facts.tier.as_deref().unwrap_or("none").to_string())
                .or_default() += 1;
        }
        self.programs
    }
}

fn update_card(facts: &mut CardFacts, card: &CardView) {
    facts.points = card.points;
    // The tier rarely changes: compare before cloning its name (an atomic count each time).
    if facts.tier.as_ref().map(Arc::as_ptr) != card.tier.as_ref().map(Arc::as_ptr) {
        facts.tier = card.tier.clone();
    }
    facts.consumed = card.consumed;
}

/// The value under `key`, added on first use: looked up by `&str`, so the key is allocated
/// once, not for every record that adds to it.
fn entry_of<'m, V: Default>(m: &'m mut BTreeMap<String, V>, key: &str) -> &'m mut V {
    if !m.contains_key(key) {
        m.insert(key.to_string(), V::default());
    }
    // Inserted just above.
    m.get_mut(key).unwrap_or_else(|| unreachable!())
}

/// The label of the discount window that set a spend's or hold's rate, if a window's rate beat
/// the tier's (the state applies the larger of the two; see `state::marketing`).
fn discount_window(
    p: &svault_core::program::Program,
    card: &CardView,
    now: Millis,
) -> Option<String> {
    let tier = p.tier_for(card.paid_in).map_or(Rate::ZERO, |t| t.discount);
    let l = time::local(now, p.utc_offset_minutes);
    let minute = (l.hour * 60 + l.minute) as u16;
    p.discount_windows
        .iter()
        .filter(|w| w.contains(minute))
        .max_by_key(|w| w.rate)
        .filter(|w| w.rate > tier)
        .map(|w| window_label(w.from_minute, w.to_minute))
}

/// The kind of a transaction a reversal undid, from the card's history.
fn reversed_kind_of(state: &State, t: TxnId, now: Millis) -> Option<TxnKind> {
    let q = Query::Transactions {
        card_id: t.card,
        limit: 1,
        before: Some(t.seq.saturating_add(1)),
    };
    match state.query(&q, now) {
        QueryAnswer::Transactions(Some(list)) => list
            .iter()
            .find(|r| r.txn_id == t && r.kind != TxnKind::Reversal)
            .map(|r| r.kind),
        _ => None,
    }
}
