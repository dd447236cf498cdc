//! Gateway timeout reversals of the caller's own request, by idempotency key, on one card.
//!
//! `Command::Reversal { card_id, key }` goes to the card's shard. The key is looked up in the
//! reversing caller's namespace on that card, so a caller can only ever reach its own request
//! (another caller's request with the same key is a different key; reversing it changes nothing
//! of theirs and tells nothing about it). Then:
//! - the request with `key` was **approved** ⇒ it is undone and the answer is
//!   `Approved { kind: Reversal, reversed_txn: Some(original) }` (the undo is a history entry of
//!   its own): a top-up loses the principal and bonus it credited (declined
//!   `insufficient_funds` if they are no longer all there, as after a spend); a spend or
//!   capture is refunded in full (what is not refunded yet) and a capture's hold reopens for
//!   what it held until its own expiry (released if that has passed, or held only up to what
//!   is available; current rules); an active hold is voided; an increment lowers its hold by
//!   what it added if the hold is still open (its ttl extension stays); a refund,
//!   redeem or grant is taken back (`insufficient_funds` / `insufficient_points` if gone);
//!   freeze and unfreeze flip back. Opens, closes and cash-outs cannot be reversed (`400`).
//! - it was **declined or refused**, or **never seen** ⇒ nothing to undo:
//!   `Approved { reversed_txn: None }`.
//!
//! Either way the key is remembered as reversed: the request arriving later (or retried) is
//! declined `reversed`. A second reversal of the same key changes nothing and (current rules)
//! answers what the first did: the first reversal's transaction, rebuilt from its history
//! entry.
//!
//! Reversals logged before records named their caller (log versions 2 and 3) were broadcast and
//! name no card (card 0, caller [`CallerId::UNSCOPED`]): they find the key wherever this shard
//! had it, as they did then.

use super::history::{
    TxnEntry, F_REVERSED, HOLD_ACTIVE, HOLD_CAPTURED, HOLD_EXPIRED, HOLD_STATE_MASK, HOLD_VOIDED,
};
use super::idempotency::{key_hash, KeyEntry, ShownCard, Stored, K_REVERSED, K_SHOWN};
use super::marketing;
use super::ops::{Growth, Parts};
use super::timers::{Timer, T_HOLD};
use super::{invalid, not_found, Fail, Hold, Rules, State};
use crate::command::{CallerId, CardId, Millis, TxnId};
use crate::money::Amount;
use crate::outcome::{Approval, CardStatus, DeclineCode, Event, NotFoundKind, Outcome, TxnKind};

impl State {
    pub(crate) fn reversal(
        &mut self,
        caller: CallerId,
        card_id: CardId,
        key: &str,
        now: Millis,
        events: &mut Vec<Event>,
    ) -> Outcome {
        self.keys.expire(
            now.0,
            self.config.idempotency_ttl_ms,
            self.config.idempotency_keys_max,
        );
        // The reversed request's key: same caller, same card.
        let kh = key_hash(caller, Some(card_id), key);
        let Some(e) = self.keys.get(&kh) else {
            let marker = KeyEntry {
                fingerprint: 0,
                card: card_id,
                at: now.0,
                seq: 0,
                stored: Stored::ReversedEarly,
                code: 0,
                flags: K_REVERSED,
                shown: ShownCard::NONE,
            };
            self.keys.insert(kh, marker, None);
            return nothing_reversed(None);
        };
        if e.flags & K_REVERSED != 0 || e.stored != Stored::Txn {
            self.keys.update(&kh, |m| m.flags |= K_REVERSED);
            if self.rules == Rules::Current && e.flags & K_REVERSED != 0 {
                // A second reversal of the same request answers what the first did.
                if let Some(first) = self.first_reversal(e.card, e.seq) {
                    return first;
                }
            }
            let was = (e.stored == Stored::Txn).then_some(TxnId {
                card: e.card,
                seq: e.seq,
            });
            return nothing_reversed(was);
        }
        debug_assert!(
            caller == CallerId::UNSCOPED || e.card == card_id,
            "a scoped key is found only on its own card"
        );
        let Some(&slot) = self.card_index.get(&e.card.0.into()) else {
            return nothing_reversed(None);
        };
        let outcome = self.card_op(slot, now, events, |st, slot, ev| {
            st.parts(slot).undo(e.seq, now.0, ev)
        });
        if matches!(outcome, Outcome::Approved(_)) {
            // Later retries of the reversed request are declined `reversed`, showing the card
            // as it was after the undo.
            let (flags, shown) = self.shown_of(e.card);
            self.keys.update(&kh, |m| {
                m.flags = (m.flags & !K_SHOWN) | K_REVERSED | flags;
                m.shown = shown;
            });
        }
        outcome
    }
}

impl State {
    /// The answer of the reversal that undid transaction `seq` of `card`, rebuilt from its
    /// history entry (the card view as it is now); `None` if there was none or it was trimmed.
    fn first_reversal(&self, card: CardId, seq: u32) -> Option<Outcome> {
        let c = self.card(card)?;
        let (rseq, r) = c
            .entries_after(seq)
            .find(|(_, r)| r.kind == TxnKind::Reversal && r.refers_to == seq)?;
        Some(Outcome::Approved(Box::new(self.approval(c, rseq, &r))))
    }
}

fn nothing_reversed(was: Option<TxnId>) -> Outcome {
    Outcome::Approved(Box::new(Approval {
        reversed_txn: was,
        ..Approval::nothing(TxnKind::Reversal)
    }))
}

impl Parts<'_> {
    /// Takes `amount` of bonus back, from the lot expiring at `expiry` first.
    fn take_bonus_back(&mut self, expiry: i64, amount: Amount) {
        let got = self.card.lots.take_from(expiry, amount);
        let (rest, _) = self.card.lots.take_earliest(amount - got);
        debug_assert_eq!(got + rest, amount);
        self.card.bonus -= got + rest;
    }

    fn require_back(&self, principal: Amount, bonus: Amount) -> Result<(), Fail> {
        let c = &*self.card;
        if c.principal < principal || c.bonus < bonus || c.available() < principal + bonus {
            return Err(DeclineCode::InsufficientFunds.into());
        }
        Ok(())
    }

    /// Reopens hold `seq` (captured) for `amount` (what it held when captured) until its own
    /// expiry; if that has passed, the hold stays released (as expired). A hold cannot reserve
    /// more than is available: it reopens for at most that.
    fn reopen_hold(&mut self, seq: u32, amount: Amount, now: i64, events: &mut Vec<Event>) {
        let Some(h) = self.card.entry(seq) else {
            return;
        };
        if h.kind != TxnKind::Hold || h.flags & HOLD_STATE_MASK != HOLD_CAPTURED {
            return;
        }
        // Its expiry as its increments left it.
        let expires_at = self.hold_terms(seq).map_or(h.aux, |(_, at)| at);
        // Within what is there, and within the 10^12 bound on held (the card's and the float's).
        let max = self.program.currency.max_amount();
        let amount = amount
            .min(self.card.available())
            .min(max - self.card.held)
            .min(max - self.float.held);
        let state = if expires_at <= now {
            HOLD_EXPIRED
        } else if amount.0 <= 0 {
            HOLD_VOIDED
        } else {
            self.card.held += amount;
            self.holds
                .insert((self.card.id.0, seq), Hold { amount, expires_at });
            self.timers.push(Timer {
                at: expires_at,
                kind: T_HOLD,
                card: self.card.id.0,
                seq,
            });
            HOLD_ACTIVE
        };
        if let Some(flags) = self.card.flags_mut(seq) {
            *flags = (*flags & !HOLD_STATE_MASK) | state;
        }
        if state != HOLD_ACTIVE {
            // Bonus kept past its expiry to back the hold expires now.
            self.expire_overdue(now, events);
        }
    }

    /// Undoes transaction `seq` of this card (see the module docs).
    pub(crate) fn undo(
        &mut self,
        seq: u32,
        now: i64,
        events: &mut Vec<Event>,
    ) -> Result<TxnEntry, Fail> {
        let orig = self
            .card
            .entry(seq)
            .ok_or_else(|| not_found(NotFoundKind::Txn))?;
        if self.card.status == CardStatus::Closed {
            return Err(DeclineCode::CardClosed.into());
        }
        let mut e = TxnEntry::new(TxnKind::Reversal, Millis(now));
        e.refers_to = seq;
        let undone = orig.flags & F_REVERSED != 0;
        match orig.kind {
            TxnKind::TopUp if !undone => {
                let (p, b) = (orig.principal, orig.bonus);
                if self.card.lots.amount_at(orig.aux) < b {
                    return Err(DeclineCode::InsufficientFunds.into());
                }
                self.require_back(p, b)?;
                self.card.principal -= p;
                self.take_bonus_back(orig.aux, b);
                self.card.paid_in -= p;
                self.card.bonus_given -= b;
                self.card.top_up_count = self.card.top_up_count.saturating_sub(1);
                if self.card.day == marketing::local_day(self.program, orig.at) {
                    self.card.top_up_today = (self.card.top_up_today - p).max(Amount::ZERO);
                }
                (e.amount, e.principal, e.bonus) = (p + b, Amount::ZERO - p, Amount::ZERO - b);
            }
            TxnKind::Spend | TxnKind::Capture => {
                let (done, _, _) = self.refunded(seq);
                let rest = orig.amount - done;
                if rest.0 > 0 {
                    e = self.give_back(seq, &orig, rest, TxnKind::Reversal, now)?;
                }
                if orig.kind == TxnKind::Capture && self.rules == Rules::Current {
                    // The capture did not happen: its hold is as it was before it.
                    self.reopen_hold(orig.refers_to, orig.amount + orig.extra, now, events);
                }
            }
            TxnKind::Increment if !undone => {
                let key = (self.card.id.0, orig.refers_to);
                if let Some(h) = self.holds.get(&key).copied() {
                    let back = orig.amount.min(h.amount);
                    self.holds.insert(
                        key,
                        Hold {
                            amount: h.amount - back,
                            expires_at: h.expires_at,
                        },
                    );
                    self.card.held -= back;
                    e.amount = back;
                    e.extra = back;
                }
            }
            TxnKind::Hold => {
                if let Some(h) = self.holds.get(&(self.card.id.0, seq)).copied() {
                    self.release_hold(seq, h, HOLD_VOIDED);
                    e.amount = h.amount;
                    e.extra = h.amount;
                    self.expire_overdue(now, events);
                }
            }
            TxnKind::Refund if !undone => {
                let (p, b) = (orig.principal, orig.bonus);
                self.require_back(p, b)?;
                self.room_for(&Growth {
                    consumed: orig.amount,
                    points: orig.points,
                    ..Growth::default()
                })?;
                self.card.principal -= p;
                self.take_bonus_back(orig.aux, b);
                self.card.consumed += orig.amount;
                self.card.points = self.card.points.saturating_add(orig.points);
                (e.amount, e.principal, e.bonus, e.points) =
                    (orig.amount, Amount::ZERO - p, Amount::ZERO - b, orig.points);
            }
            TxnKind::Redeem | TxnKind::Grant if !undone => {
                let b = orig.bonus;
                self.require_back(Amount::ZERO, b)?;
                let points_back = orig.kind == TxnKind::Grant;
                if points_back && self.card.points < orig.points {
                    return Err(DeclineCode::InsufficientPoints.into());
                }
                if !points_back {
                    self.room_for(&Growth {
                        points: orig.points,
                        ..Growth::default()
                    })?;
                }
                self.take_bonus_back(orig.aux, b);
                self.card.bonus_given -= b;
                if points_back {
                    self.card.points -= orig.points;
                } else {
                    self.card.points = self.card.points.saturating_add(orig.points);
                }
                (e.amount, e.bonus, e.points) = (b, Amount::ZERO - b, orig.points);
            }
            TxnKind::TopUp
            | TxnKind::Refund
            | TxnKind::Redeem
            | TxnKind::Grant
            | TxnKind::Increment => {}
            TxnKind::Freeze => {
                if self.card.status == CardStatus::Frozen {
                    self.card.status = CardStatus::Active;
                }
            }
            TxnKind::Unfreeze => {
                if self.card.status == CardStatus::Active {
                    self.card.status = CardStatus::Frozen;
                }
            }
            _ => {
                return Err(invalid(
                    "idempotency_key",
                    "this operation cannot be reversed",
                ))
            }
        }
        let kind = self.card.entry(seq).map(|o| o.kind);
        if let (Some(kind), Some(flags)) = (kind, self.card.flags_mut(seq)) {
            if matches!(
                kind,
                TxnKind::TopUp
                    | TxnKind::Refund
                    | TxnKind::Redeem
                    | TxnKind::Grant
                    | TxnKind::Increment
            ) {
                *flags |= F_REVERSED;
            }
        }
        Ok(e)
    }
}
