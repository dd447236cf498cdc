//! The card operations: top-up, spend, hold, increment, capture, void, refund, cash-out,
//! redeem, grant, freeze, unfreeze, close. Each checks in SPEC's order and, when approved,
//! changes the card and returns the history entry that describes it (`State::card_op` records
//! it).
//!
//! Spends, holds and increments share one authorization ([`Parts::authorize`]), in SPEC's
//! check order: card status → store rule → single cap → daily amount (`velocity_limit`) →
//! daily count → per-minute velocity → funds. With `allow_partial`, a shortfall (funds short
//! but not zero) approves what is available instead of declining: the largest merchant amount
//! whose price after discount fits, so the card is charged exactly its available balance.

use super::card::Card;
use super::history::{
    detail_of, TxnEntry, DISCOUNT_TIER, DISCOUNT_WINDOW, F_PARTIAL, F_REVERSED, HOLD_ACTIVE,
    HOLD_CAPTURED, HOLD_EXPIRED, HOLD_GROSS, HOLD_STATE_MASK, HOLD_VOIDED,
};
use super::marketing::{self, DAY_MS, MINUTE_MS};
use super::stores::Stores;
use super::timers::{Timer, Timers, T_HOLD, T_LOT, T_REMIND};
use super::{
    invalid, not_found, Fail, Hold, IdBuild, Rules, State, StateConfig, CHUNK, CHUNK_BITS,
};
use crate::command::{CashOutReason, Channel, Command, GrantReason, Method, Millis};
use crate::money::{Amount, Rate, POINTS_MAX};
use crate::outcome::{
    CardStatus, DeclineCode, DiscountSource, Event, EventKind, FloatTotals, NotFoundKind, TxnKind,
};
use crate::program::Program;
use std::collections::HashMap;

/// Cooling-off period of SPEC's `cooling_off` cash-out.
pub(crate) const COOLING_OFF_MS: i64 = 7 * DAY_MS;
/// A cash-out this soon after a top-up is reported as an anomaly.
const QUICK_CASH_OUT_MS: i64 = 10 * MINUTE_MS;

/// What a spend or hold of a merchant amount costs the card.
struct Priced {
    /// The amount after discount.
    charged: Amount,
    discount: Amount,
    /// The discount rate applied (fixed on a hold for its captures).
    rate: Rate,
    /// `DISCOUNT_TIER` / `DISCOUNT_WINDOW` for the entry (current rules), else 0.
    source_flags: u8,
    /// Approved for less than asked (`allow_partial` and funds short).
    partial: bool,
}

/// What a spend, hold or increment asks to authorize.
struct Ask<'s> {
    /// The merchant amount, before discount.
    amount: Amount,
    store: Option<&'s str>,
    /// The discount rate fixed by a hold (increments); `None` ⇒ the program's now.
    rate: Option<Rate>,
    /// Reserves (hold, increment) rather than charges at once.
    hold: bool,
    allow_partial: bool,
}

/// Mutable views of the parts of a `State` one card operation touches.
pub(crate) struct Parts<'a> {
    pub card: &'a mut Card,
    pub program: &'a Program,
    /// The float of the card's program in this shard, before the operation.
    pub float: &'a FloatTotals,
    pub timers: &'a mut Timers,
    pub holds: &'a mut HashMap<(u64, u32), Hold, IdBuild>,
    pub stores: &'a mut Stores,
    pub config: &'a StateConfig,
    /// The rules of the request being applied.
    pub rules: Rules,
}

impl State {
    pub(crate) fn parts(&mut self, slot: u32) -> Parts<'_> {
        let card = &mut Self::chunk_mut(&mut self.chunks, (slot >> CHUNK_BITS) as usize)
            [slot as usize & (CHUNK - 1)];
        let slot = &self.programs[card.program as usize];
        Parts {
            card,
            program: &slot.program,
            float: &slot.float,
            timers: &mut self.timers,
            holds: &mut self.holds,
            stores: &mut self.stores,
            config: &self.config,
            rules: self.rules,
        }
    }

    pub(crate) fn card_command(
        &mut self,
        cmd: &Command,
        slot: u32,
        now: Millis,
        events: &mut Vec<Event>,
    ) -> Result<TxnEntry, Fail> {
        let mut x = self.parts(slot);
        let now = now.0;
        match cmd {
            Command::TopUp {
                amount, channel, ..
            } => {
                let mut e = x.top_up(*amount, now)?;
                e.detail = detail_of(Channel::ALL, channel);
                Ok(e)
            }
            Command::Spend {
                amount,
                method,
                store,
                allow_partial,
                ..
            } => {
                let ask = Ask {
                    amount: *amount,
                    store: store.as_deref(),
                    rate: None,
                    hold: false,
                    allow_partial: *allow_partial,
                };
                x.spend(ask, *method, now, events)
            }
            Command::Hold {
                amount,
                ttl_seconds,
                method,
                store,
                allow_partial,
                ..
            } => {
                let ask = Ask {
                    amount: *amount,
                    store: store.as_deref(),
                    rate: None,
                    hold: true,
                    allow_partial: *allow_partial,
                };
                x.hold(ask, *ttl_seconds, *method, now, events)
            }
            Command::IncrementHold {
                hold_id,
                amount,
                ttl_seconds,
            } => x.increment(hold_id.seq, *amount, *ttl_seconds, now, events),
            Command::Capture { hold_id, amount } => x.capture(hold_id.seq, *amount, now, events),
            Command::Void { hold_id } => x.void(hold_id.seq, now, events),
            Command::Refund { txn_id, amount } => x.refund(txn_id.seq, *amount, now),
            Command::CashOut { reason, .. } => x.cash_out(*reason, now, events),
            Command::RedeemPoints { points, .. } => x.redeem(*points, now),
            Command::Grant {
                bonus,
                points,
                reason,
                ..
            } => {
                let mut e = x.grant(*bonus, *points, now)?;
                e.detail = detail_of(GrantReason::ALL, reason);
                Ok(e)
            }
            Command::Freeze { .. } => x.set_status(CardStatus::Frozen, TxnKind::Freeze, now),
            Command::Unfreeze { .. } => x.set_status(CardStatus::Active, TxnKind::Unfreeze, now),
            Command::Close { .. } => x.close(now),
            Command::UpsertProgram(_)
            | Command::OpenCard { .. }
            | Command::Reversal { .. }
            | Command::Tick => Err(not_found(NotFoundKind::Card)),
        }
    }
}

/// What an operation is about to add to a card's figures (and so to its program's float).
/// Only growth is bounded: a decrease cannot pass the bound.
#[derive(Default)]
pub(crate) struct Growth {
    pub principal: Amount,
    pub bonus: Amount,
    pub held: Amount,
    pub paid_in: Amount,
    pub bonus_given: Amount,
    pub consumed: Amount,
    pub top_up_today: Amount,
    pub spend_today: Amount,
    pub points: u64,
}

impl Parts<'_> {
    /// SPEC "Money": a request that would push any figure past 10^12 is refused. Called by
    /// every operation that adds to a figure, after its other checks and before it changes
    /// anything, so the decline `over_amount_limit` leaves the card as it was.
    pub(crate) fn room_for(&self, g: &Growth) -> Result<(), Fail> {
        let max = self.program.currency.max_amount();
        let fits = |now: Amount, add: Amount| now.checked_add(add).is_some_and(|s| s <= max);
        let (c, f) = (&*self.card, self.float);
        let ok = fits(c.principal, g.principal)
            && fits(c.bonus, g.bonus)
            && fits(c.held, g.held)
            && fits(c.paid_in, g.paid_in)
            && fits(c.bonus_given, g.bonus_given)
            && fits(c.consumed, g.consumed)
            && fits(c.top_up_today, g.top_up_today)
            && fits(c.spend_today, g.spend_today)
            && fits(f.principal, g.principal)
            && fits(f.bonus, g.bonus)
            && fits(f.held, g.held)
            && c.points
                .checked_add(g.points)
                .is_some_and(|p| p <= POINTS_MAX);
        if ok {
            Ok(())
        } else {
            Err(DeclineCode::OverAmountLimit.into())
        }
    }

    /// Top-ups, spends, holds, redeems, cash-outs: the card must be active.
    fn require_active(&self) -> Result<(), Fail> {
        match self.card.status {
            CardStatus::Active => Ok(()),
            CardStatus::Frozen => Err(DeclineCode::CardFrozen.into()),
            CardStatus::Closed => Err(DeclineCode::CardClosed.into()),
        }
    }

    /// Captures, voids, refunds, grants: the card must not be closed.
    fn require_open(&self) -> Result<(), Fail> {
        match self.card.status {
            CardStatus::Closed => Err(DeclineCode::CardClosed.into()),
            _ => Ok(()),
        }
    }

    /// Resets the daily counters when the local day changed.
    fn roll_day(&mut self, now: i64) {
        let day = marketing::local_day(self.program, now);
        if self.card.day != day {
            self.card.day = day;
            self.card.top_up_today = Amount::ZERO;
            self.card.spend_today = Amount::ZERO;
            self.card.spend_count_today = 0;
        }
    }

    /// Credits bonus into a lot expiring at `expires_at`, scheduling its expiry and reminder.
    pub(crate) fn add_bonus(&mut self, amount: Amount, expires_at: i64, now: i64) {
        if amount.0 <= 0 {
            return;
        }
        let new_lot = self.card.lots.add(amount, expires_at);
        self.card.bonus += amount;
        if expires_at == super::lots::NEVER || !(new_lot || expires_at <= now) {
            return;
        }
        let card = self.card.id.0;
        self.timers.push(Timer {
            at: expires_at,
            kind: T_LOT,
            card,
            seq: 0,
        });
        if let Some(days) = self.program.reminders.bonus_expiring_days {
            if expires_at > self.card.reminded_until {
                let at = expires_at.saturating_sub(i64::from(days) * DAY_MS);
                self.timers.push(Timer {
                    at,
                    kind: T_REMIND,
                    card,
                    seq: 0,
                });
            }
        }
    }

    /// The `low_balance` reminder: once when `available` went from at or above the program's
    /// threshold (`available_before`) to below it.
    pub(crate) fn remind_low_balance(
        &self,
        available_before: Amount,
        now: i64,
        events: &mut Vec<Event>,
    ) {
        if let Some(t) = self.program.reminders.low_balance {
            let after = self.card.available();
            if available_before >= t && after < t {
                events.push(Event {
                    at: Millis(now),
                    card_id: self.card.id,
                    kind: EventKind::LowBalance { available: after },
                });
            }
        }
    }

    /// Takes a spend's parts from the card; returns the expiry of the latest lot drawn.
    fn take(&mut self, principal: Amount, bonus: Amount) -> i64 {
        self.card.principal -= principal;
        let (taken, expiry) = self.card.lots.take_earliest(bonus);
        debug_assert_eq!(taken, bonus);
        self.card.bonus -= taken;
        expiry
    }

    fn top_up(&mut self, amount: Amount, now: i64) -> Result<TxnEntry, Fail> {
        let rules = &self.program.top_up;
        if rules.min.is_some_and(|m| amount < m) {
            return Err(invalid("amount", "below the program's top-up minimum"));
        }
        self.require_active()?;
        if rules.max_single.is_some_and(|m| amount > m) {
            return Err(DeclineCode::OverSingleTopUp.into());
        }
        self.roll_day(now);
        if rules
            .max_daily
            .is_some_and(|m| self.card.top_up_today + amount > m)
        {
            return Err(DeclineCode::OverDailyTopUp.into());
        }
        let cap = if self.card.registered {
            rules.max_balance
        } else {
            rules.max_balance_anonymous.or(rules.max_balance)
        };
        // SPEC: the cap limits principal; bonus (this top-up's own included) never counts.
        let capped = match self.rules {
            Rules::Original => self.card.total(),
            Rules::Current => self.card.principal,
        };
        if cap.is_some_and(|m| capped + amount > m) {
            return Err(DeclineCode::OverBalanceCap.into());
        }
        let nth = self.card.top_up_count.saturating_add(1);
        let bonus = marketing::ladder_bonus(self.program, nth, amount);
        self.room_for(&Growth {
            principal: amount,
            bonus,
            paid_in: amount,
            bonus_given: bonus,
            top_up_today: amount,
            ..Growth::default()
        })?;
        let expiry = marketing::lot_expiry(self.program, now);
        self.card.principal += amount;
        self.add_bonus(bonus, expiry, now);
        self.card.top_up_count = nth;
        self.card.paid_in += amount;
        self.card.bonus_given += bonus;
        self.card.top_up_today += amount;
        let mut e = TxnEntry::new(TxnKind::TopUp, Millis(now));
        e.amount = amount;
        e.principal = amount;
        e.bonus = bonus;
        e.extra = bonus;
        e.aux = expiry;
        Ok(e)
    }

    /// The checks spends, holds and increments share, in SPEC's order; returns the price.
    /// Counts the authorization (per minute, per day) when it is approved.
    fn authorize(
        &mut self,
        ask: Ask<'_>,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<Priced, Fail> {
        self.require_active()?;
        let limits = &self.program.spend;
        if !limits.store_allowed(ask.store) {
            return Err(DeclineCode::StoreNotAllowed.into());
        }
        self.roll_day(now);
        let minute = (now.div_euclid(MINUTE_MS)).clamp(0, i64::from(u32::MAX)) as u32;
        if self.card.minute != minute {
            self.card.minute = minute;
            self.card.spends_in_minute = 0;
        }
        let (rate, source) = match ask.rate {
            Some(r) => (r, None),
            None => marketing::discount_of(self.program, self.card.paid_in, now),
        };
        let amount = ask.amount;
        let discount = marketing::rate_of(rate, amount);
        let charged = amount - discount;
        let limits = &self.program.spend;
        if limits.max_single.is_some_and(|m| charged > m) {
            return Err(DeclineCode::OverSingleSpend.into());
        }
        let v = &self.program.velocity;
        let per_minute_exceeded = v
            .max_spends_per_minute
            .is_some_and(|m| u32::from(self.card.spends_in_minute) >= m);
        let breach = |card: &Card, events: &mut Vec<Event>| {
            events.push(Event {
                at: Millis(now),
                card_id: card.id,
                kind: EventKind::VelocityBreach,
            })
        };
        if v.max_daily_spend
            .is_some_and(|m| self.card.spend_today + charged > m)
        {
            // Both velocity rules decline `velocity_limit`; an attempt past the per-minute
            // count is a breach whichever of them is checked first.
            if per_minute_exceeded {
                breach(self.card, events);
            }
            return Err(DeclineCode::VelocityLimit.into());
        }
        if limits
            .max_daily_count
            .is_some_and(|m| self.card.spend_count_today >= m)
        {
            return Err(DeclineCode::OverDailyCount.into());
        }
        if per_minute_exceeded {
            breach(self.card, events);
            return Err(DeclineCode::VelocityLimit.into());
        }
        let available = self.card.available();
        let (charged, discount, partial) = if charged <= available {
            (charged, discount, false)
        } else if ask.allow_partial && available.0 > 0 {
            let gross = marketing::gross_within(rate, amount, available);
            let c = gross - marketing::rate_of(rate, gross);
            debug_assert!(c == available, "partial approval charges what is available");
            (c, gross - c, true)
        } else {
            return Err(DeclineCode::InsufficientFunds.into());
        };
        // A hold consumes (and earns points) when it is captured; it is bounded here as if it
        // were, and again at the capture.
        self.room_for(&Growth {
            held: if ask.hold { charged } else { Amount::ZERO },
            consumed: charged,
            spend_today: charged,
            points: marketing::points_earned(self.program, self.card.paid_in, charged),
            ..Growth::default()
        })?;
        self.card.spends_in_minute = self.card.spends_in_minute.saturating_add(1);
        self.card.spend_today += charged;
        self.card.spend_count_today = self.card.spend_count_today.saturating_add(1);
        // Current rules record where the discount came from (flags of the entry).
        let source_flags = match (self.rules, source) {
            (Rules::Current, Some(DiscountSource::Tier)) => DISCOUNT_TIER,
            (Rules::Current, Some(DiscountSource::Window)) => DISCOUNT_WINDOW,
            _ => 0,
        };
        Ok(Priced {
            charged,
            discount,
            rate,
            source_flags,
            partial,
        })
    }

    /// Charges `amount` (already authorized or held): split, points, low-balance reminder.
    fn charge(
        &mut self,
        amount: Amount,
        available_before: Amount,
        now: i64,
        events: &mut Vec<Event>,
    ) -> TxnEntry {
        let (p, b) = marketing::split(
            self.program.spend_order,
            self.card.principal,
            self.card.bonus,
            amount,
        );
        let expiry = self.take(p, b);
        let points = marketing::points_earned(self.program, self.card.paid_in, amount);
        self.card.points = self.card.points.saturating_add(points);
        self.card.consumed += amount;
        if self.rules == Rules::Original {
            // Current rules remind after every operation instead (`State::card_op`).
            self.remind_low_balance(available_before, now, events);
        }
        let mut e = TxnEntry::new(TxnKind::Spend, Millis(now));
        e.amount = amount;
        e.principal = p;
        e.bonus = b;
        e.aux = expiry;
        e.points = points;
        e
    }

    fn spend(
        &mut self,
        ask: Ask<'_>,
        method: Method,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<TxnEntry, Fail> {
        let before = self.card.available();
        let store = ask.store;
        let price = self.authorize(ask, now, events)?;
        let mut e = self.charge(price.charged, before, now, events);
        e.extra = price.discount;
        e.flags |= price.source_flags;
        if price.partial {
            e.flags |= F_PARTIAL;
        }
        e.detail = detail_of(Method::ALL, &method);
        e.refers_to = self.stores.slot_of(store);
        Ok(e)
    }

    fn hold(
        &mut self,
        ask: Ask<'_>,
        ttl_seconds: u32,
        method: Method,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<TxnEntry, Fail> {
        let store = ask.store;
        let Priced {
            charged,
            discount,
            rate,
            source_flags,
            partial,
        } = self.authorize(ask, now, events)?;
        let expires_at = now.saturating_add(i64::from(ttl_seconds) * 1000);
        let seq = self.card.next_seq();
        self.card.held += charged;
        self.holds.insert(
            (self.card.id.0, seq),
            Hold {
                amount: charged,
                expires_at,
            },
        );
        self.timers.push(Timer {
            at: expires_at,
            kind: T_HOLD,
            card: self.card.id.0,
            seq,
        });
        let mut e = TxnEntry::new(TxnKind::Hold, Millis(now));
        e.amount = charged;
        e.extra = discount;
        e.aux = expires_at;
        e.flags = HOLD_ACTIVE;
        if self.rules == Rules::Current {
            // Captures of this hold are merchant amounts at this rate (SPEC).
            e.flags |= HOLD_GROSS | source_flags;
            e.points = u64::from(rate.0);
        }
        if partial {
            e.flags |= F_PARTIAL;
        }
        e.detail = detail_of(Method::ALL, &method);
        e.refers_to = self.stores.slot_of(store);
        Ok(e)
    }

    /// The hold's terms now: the merchant amount it may capture (the hold's and its
    /// increments', before discount) and its expiry (as the increments extended it).
    pub(crate) fn hold_terms(&self, seq: u32) -> Option<(Amount, i64)> {
        let h = self.card.entry(seq).filter(|h| h.kind == TxnKind::Hold)?;
        let mut gross = h.amount + h.extra;
        let mut expires_at = h.aux;
        for (_, e) in self.card.entries_after(seq) {
            if e.kind == TxnKind::Increment && e.refers_to == seq && e.flags & F_REVERSED == 0 {
                gross += e.amount + e.extra;
                expires_at = expires_at.max(e.aux);
            }
        }
        Some((gross, expires_at))
    }

    /// Incremental authorization: raises active hold `seq` by the merchant amount `amount`
    /// (discounted at the hold's rate), checked like a spend of it at the hold's store; a
    /// decline leaves the hold as it was. `ttl_seconds` extends the hold to that long from now
    /// (never shortens it).
    fn increment(
        &mut self,
        seq: u32,
        amount: Amount,
        ttl_seconds: Option<u32>,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<TxnEntry, Fail> {
        let hold = self.active_hold(seq)?;
        self.require_active()?;
        if hold.expires_at <= now {
            return Err(DeclineCode::HoldExpired.into());
        }
        let (rate, store) = match self.card.entry(seq) {
            Some(h) if h.kind == TxnKind::Hold => {
                let rate = if h.flags & HOLD_GROSS != 0 {
                    Rate(u32::try_from(h.points).unwrap_or(0))
                } else {
                    Rate::ZERO
                };
                (rate, h.store_slot())
            }
            _ => (Rate::ZERO, None),
        };
        let store = store.and_then(|i| self.stores.get(i)).cloned();
        let ask = Ask {
            amount,
            store: store.as_deref(),
            rate: Some(rate),
            hold: true,
            allow_partial: false,
        };
        let price = self.authorize(ask, now, events)?;
        let expires_at = match ttl_seconds {
            Some(t) => hold.expires_at.max(now.saturating_add(i64::from(t) * 1000)),
            None => hold.expires_at,
        };
        self.card.held += price.charged;
        self.holds.insert(
            (self.card.id.0, seq),
            Hold {
                amount: hold.amount + price.charged,
                expires_at,
            },
        );
        if expires_at != hold.expires_at {
            // The timer at the old expiry finds the hold moved on and passes.
            self.timers.push(Timer {
                at: expires_at,
                kind: T_HOLD,
                card: self.card.id.0,
                seq,
            });
        }
        let mut e = TxnEntry::new(TxnKind::Increment, Millis(now));
        e.amount = price.charged;
        e.extra = price.discount;
        e.aux = expires_at;
        e.refers_to = seq;
        e.flags = price.source_flags;
        Ok(e)
    }

    /// Finds an active hold, or says why there is none.
    fn active_hold(&self, seq: u32) -> Result<Hold, Fail> {
        if let Some(h) = self.holds.get(&(self.card.id.0, seq)) {
            return Ok(*h);
        }
        match self.card.entry(seq) {
            Some(e) if e.kind == TxnKind::Hold => match e.flags & HOLD_STATE_MASK {
                HOLD_EXPIRED => Err(DeclineCode::HoldExpired.into()),
                HOLD_CAPTURED => Err(invalid("hold_id", "hold already captured")),
                _ => Err(invalid("hold_id", "hold already voided")),
            },
            _ => Err(not_found(NotFoundKind::Hold)),
        }
    }

    /// Releases an active hold, marking its entry with `state`.
    pub(crate) fn release_hold(&mut self, seq: u32, hold: Hold, state: u8) {
        self.holds.remove(&(self.card.id.0, seq));
        self.card.held -= hold.amount;
        if let Some(flags) = self.card.flags_mut(seq) {
            *flags = (*flags & !HOLD_STATE_MASK) | state;
        }
    }

    fn capture(
        &mut self,
        seq: u32,
        amount: Option<Amount>,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<TxnEntry, Fail> {
        let hold = self.active_hold(seq)?;
        self.require_open()?;
        if hold.expires_at <= now {
            return Err(DeclineCode::HoldExpired.into());
        }
        let amount = match (amount, self.card.entry(seq)) {
            (None, _) => hold.amount,
            (Some(gross), Some(h)) if h.flags & HOLD_GROSS != 0 => {
                // A merchant amount before discount, at the rate fixed by the hold: of a
                // 100.00 hold at 10 % (90.00 held), 50.00 charges 45.00. Increments add to
                // what may be captured; their discounts were rounded one by one, so the price
                // of the whole is capped at what is held.
                let limit = self.hold_terms(seq).map_or(h.amount + h.extra, |(g, _)| g);
                if gross > limit {
                    return Err(DeclineCode::OverCapture.into());
                }
                let rate = Rate(u32::try_from(h.points).unwrap_or(0));
                let price = gross - marketing::rate_of(rate, gross);
                if limit > h.amount + h.extra {
                    price.min(hold.amount)
                } else {
                    price
                }
            }
            (Some(a), _) => a,
        };
        if amount > hold.amount {
            return Err(DeclineCode::OverCapture.into());
        }
        self.room_for(&Growth {
            consumed: amount,
            points: marketing::points_earned(self.program, self.card.paid_in, amount),
            ..Growth::default()
        })?;
        let before = self.card.available();
        self.release_hold(seq, hold, HOLD_CAPTURED);
        let mut e = self.charge(amount, before, now, events);
        e.kind = TxnKind::Capture;
        e.extra = hold.amount - amount;
        e.refers_to = seq;
        self.expire_overdue(now, events);
        Ok(e)
    }

    fn void(&mut self, seq: u32, now: i64, events: &mut Vec<Event>) -> Result<TxnEntry, Fail> {
        let hold = self.active_hold(seq)?;
        self.require_open()?;
        self.release_hold(seq, hold, HOLD_VOIDED);
        let mut e = TxnEntry::new(TxnKind::Void, Millis(now));
        e.amount = hold.amount;
        e.extra = hold.amount;
        e.refers_to = seq;
        self.expire_overdue(now, events);
        Ok(e)
    }

    /// What has been refunded of spend/capture `seq` so far: (amount, principal, points).
    pub(crate) fn refunded(&self, seq: u32) -> (Amount, Amount, u64) {
        let mut r = (Amount::ZERO, Amount::ZERO, 0u64);
        for (_, e) in self.card.entries_after(seq) {
            let counts = match e.kind {
                TxnKind::Refund => e.flags & F_REVERSED == 0,
                TxnKind::Reversal => true,
                _ => false,
            };
            if counts && e.refers_to == seq {
                r.0 += e.amount;
                r.1 += e.principal;
                r.2 += e.points;
            }
        }
        r
    }

    /// Returns `amount` of spend/capture `seq` in the proportions it took. Cumulative
    /// half-even shares make the last refund return exactly the remainder.
    pub(crate) fn give_back(
        &mut self,
        seq: u32,
        orig: &TxnEntry,
        amount: Amount,
        kind: TxnKind,
        now: i64,
    ) -> Result<TxnEntry, Fail> {
        let (done, done_p, done_pts) = self.refunded(seq);
        let after = done + amount;
        let p_total = marketing::pro_rata(orig.principal.0, after.0, orig.amount.0);
        let p = Amount(p_total) - done_p;
        let b = amount - p;
        let pts_total = marketing::pro_rata(
            orig.points.min(i64::MAX as u64) as i64,
            after.0,
            orig.amount.0,
        ) as u64;
        let pts = pts_total.saturating_sub(done_pts);
        self.room_for(&Growth {
            principal: p,
            bonus: b,
            ..Growth::default()
        })?;
        self.card.principal += p;
        self.add_bonus(b, orig.aux, now);
        self.card.consumed -= amount;
        self.card.points = self.card.points.saturating_sub(pts);
        let mut e = TxnEntry::new(kind, Millis(now));
        e.amount = amount;
        e.principal = p;
        e.bonus = b;
        e.aux = orig.aux;
        e.points = pts;
        e.refers_to = seq;
        Ok(e)
    }

    fn refund(&mut self, seq: u32, amount: Amount, now: i64) -> Result<TxnEntry, Fail> {
        let orig = match self.card.entry(seq) {
            Some(e) if matches!(e.kind, TxnKind::Spend | TxnKind::Capture) => e,
            Some(_) => return Err(invalid("txn_id", "not a spend or a capture")),
            None if (1..self.card.hist_first_seq).contains(&seq) => {
                return Err(not_found(NotFoundKind::TrimmedTxn))
            }
            None => return Err(not_found(NotFoundKind::Txn)),
        };
        self.require_open()?;
        let (done, _, _) = self.refunded(seq);
        if done + amount > orig.amount {
            return Err(DeclineCode::OverRefund.into());
        }
        self.give_back(seq, &orig, amount, TxnKind::Refund, now)
    }

    /// Unused principal of top-ups made after `since` (consumption is attributed to the oldest
    /// principal first): min(principal, Σ their principal).
    /// `entries`: the card's history, unpacked.
    fn recent_principal(&self, entries: &[TxnEntry], since: i64) -> Amount {
        let sum = entries
            .iter()
            .rev()
            .take_while(|e| e.at > since)
            .filter(|e| e.kind == TxnKind::TopUp && e.flags & F_REVERSED == 0)
            .fold(Amount::ZERO, |s, e| s + e.principal);
        sum.min(self.card.principal)
    }

    fn cash_out(
        &mut self,
        reason: CashOutReason,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<TxnEntry, Fail> {
        self.require_active()?;
        if self.card.held.0 > 0 {
            return Err(invalid(
                "card_id",
                "card has active holds; capture or void them first",
            ));
        }
        let c = &*self.card;
        let principal = c.principal;
        let entries = c.history.to_vec();
        let pay = match reason {
            CashOutReason::CoolingOff => {
                let since = now - COOLING_OFF_MS;
                let any = entries
                    .iter()
                    .rev()
                    .take_while(|e| e.at > since)
                    .any(|e| e.kind == TxnKind::TopUp && e.flags & F_REVERSED == 0);
                if !any {
                    return Err(invalid("reason", "no top-up in the last 7 days"));
                }
                self.recent_principal(&entries, since)
            }
            CashOutReason::Consumer | CashOutReason::MerchantFault => {
                let lock = self.program.refund_lock_days;
                if lock > 0
                    && self
                        .recent_principal(&entries, now - i64::from(lock) * DAY_MS)
                        .0
                        > 0
                {
                    return Err(DeclineCode::RefundLocked.into());
                }
                match (reason, self.rules) {
                    (CashOutReason::Consumer, _) => {
                        (c.paid_in - c.consumed).max(Amount::ZERO).min(principal)
                    }
                    (_, Rules::Original) => principal,
                    (_, Rules::Current) => {
                        marketing::proportional_principal_left(c.paid_in, c.bonus_given, c.consumed)
                            .min(c.total())
                    }
                }
            }
        };
        let last_top_up = entries
            .iter()
            .rev()
            .find(|e| e.kind == TxnKind::TopUp)
            .map(|e| e.at);
        let bonus = self.card.bonus;
        self.card.lots.clear();
        self.card.bonus = Amount::ZERO;
        let keeps_card = reason == CashOutReason::CoolingOff && principal > pay;
        let removed = if keeps_card {
            self.card.paid_in -= pay;
            pay
        } else {
            self.card.status = CardStatus::Closed;
            principal
        };
        self.card.principal -= removed;
        if last_top_up.is_some_and(|t| now - t <= QUICK_CASH_OUT_MS) && pay.0 > 0 {
            events.push(Event {
                at: Millis(now),
                card_id: self.card.id,
                kind: EventKind::QuickCashOut { amount: pay },
            });
        }
        let mut e = TxnEntry::new(TxnKind::CashOut, Millis(now));
        e.amount = pay;
        e.principal = removed;
        e.bonus = bonus;
        e.extra = removed + bonus - pay;
        e.aux = reason as u8 as i64;
        Ok(e)
    }

    fn redeem(&mut self, points: u64, now: i64) -> Result<TxnEntry, Fail> {
        if self.program.points.redeem_rate == 0 {
            return Err(invalid("points", "this program does not redeem points"));
        }
        let value = marketing::redeem_value(self.program, points);
        if value.0 <= 0 {
            return Err(invalid("points", "too few points for the smallest unit"));
        }
        self.require_active()?;
        if points > self.card.points {
            return Err(DeclineCode::InsufficientPoints.into());
        }
        self.room_for(&Growth {
            bonus: value,
            bonus_given: value,
            ..Growth::default()
        })?;
        let expiry = marketing::lot_expiry(self.program, now);
        self.card.points -= points;
        self.add_bonus(value, expiry, now);
        self.card.bonus_given += value;
        let mut e = TxnEntry::new(TxnKind::Redeem, Millis(now));
        e.amount = value;
        e.bonus = value;
        e.extra = value;
        e.aux = expiry;
        e.points = points;
        Ok(e)
    }

    fn grant(
        &mut self,
        bonus: Option<Amount>,
        points: Option<u64>,
        now: i64,
    ) -> Result<TxnEntry, Fail> {
        let b = bonus.unwrap_or(Amount::ZERO);
        let p = points.unwrap_or(0);
        if b.0 < 0 || (b.0 == 0 && p == 0) {
            return Err(invalid("bonus", "a grant needs bonus or points"));
        }
        self.require_open()?;
        self.room_for(&Growth {
            bonus: b,
            bonus_given: b,
            points: p,
            ..Growth::default()
        })?;
        let expiry = marketing::lot_expiry(self.program, now);
        self.add_bonus(b, expiry, now);
        self.card.bonus_given += b;
        self.card.points = self.card.points.saturating_add(p);
        let mut e = TxnEntry::new(TxnKind::Grant, Millis(now));
        e.amount = b;
        e.bonus = b;
        e.extra = b;
        e.aux = expiry;
        e.points = p;
        Ok(e)
    }

    fn set_status(&mut self, to: CardStatus, kind: TxnKind, now: i64) -> Result<TxnEntry, Fail> {
        self.require_open()?;
        self.card.status = to;
        Ok(TxnEntry::new(kind, Millis(now)))
    }

    fn close(&mut self, now: i64) -> Result<TxnEntry, Fail> {
        self.require_open()?;
        if self.card.principal.0 > 0 || self.card.held.0 > 0 {
            return Err(invalid(
                "card_id",
                "card has principal or holds; cash out first",
            ));
        }
        let bonus = self.card.bonus;
        self.card.lots.clear();
        self.card.bonus = Amount::ZERO;
        self.card.status = CardStatus::Closed;
        let mut e = TxnEntry::new(TxnKind::Close, Millis(now));
        e.bonus = bonus;
        e.extra = bonus;
        Ok(e)
    }
}
