//! Time passing: holds past their TTL are released, bonus lots past their expiry expire,
//! expiry reminders go out. Driven only by `Command::Tick` (logged, so replay expires at the
//! same instants) and by hold releases (bonus that was kept to back a hold expires then).

use super::history::{TxnEntry, HOLD_EXPIRED};
use super::marketing::DAY_MS;
use super::ops::Parts;
use super::timers::{T_HOLD, T_LOT, T_REMIND};
use super::{Rules, State};
use crate::command::{Millis, TxnId};
use crate::money::Amount;
use crate::outcome::{Approval, Event, EventKind, Outcome, TxnKind};

impl State {
    pub(crate) fn tick(&mut self, now: Millis, events: &mut Vec<Event>) -> Outcome {
        self.keys.expire(
            now.0,
            self.config.idempotency_ttl_ms,
            self.config.idempotency_keys_max,
        );
        let mut released = Amount::ZERO;
        let mut expired = Amount::ZERO;
        // Bounded: what is left stays due for the next tick (`tick_due`).
        for _ in 0..self.config.timers_per_tick_max {
            let Some(t) = self.timers.pop_due(now.0) else {
                break;
            };
            self.timers_fired += 1;
            let Some(&slot) = self.card_index.get(&t.card.into()) else {
                continue;
            };
            let before = self.float_part(slot);
            let mut x = self.parts(slot);
            let available_before = x.card.available();
            match t.kind {
                T_HOLD => {
                    if let Some(h) = x.holds.get(&(t.card, t.seq)).copied() {
                        if h.expires_at == t.at {
                            x.release_hold(t.seq, h, HOLD_EXPIRED);
                            let mut e = TxnEntry::new(TxnKind::HoldExpired, now);
                            e.amount = h.amount;
                            e.extra = h.amount;
                            e.refers_to = t.seq;
                            x.record(e);
                            released += h.amount;
                            events.push(Event {
                                at: now,
                                card_id: x.card.id,
                                kind: EventKind::HoldExpired {
                                    hold_id: TxnId {
                                        card: x.card.id,
                                        seq: t.seq,
                                    },
                                    amount: h.amount,
                                },
                            });
                            expired += x.expire_overdue(now.0, events);
                        }
                    }
                }
                T_LOT => expired += x.expire_lots(now.0, events),
                T_REMIND => x.remind(now.0, events),
                _ => {}
            }
            if x.rules == Rules::Current {
                x.remind_low_balance(available_before, now.0, events);
            }
            x.card.check(x.program.currency.max_amount());
            let after = self.float_part(slot);
            self.shift_float(slot, before, after);
        }
        Outcome::Approved(Box::new(Approval {
            amount: released + expired,
            bonus: expired,
            released,
            forfeited: expired,
            ..Approval::nothing(TxnKind::Tick)
        }))
    }
}

impl Parts<'_> {
    /// Appends a history entry outside the operation's own (expiries inside a tick or a hold
    /// release).
    pub(crate) fn record(&mut self, e: TxnEntry) -> TxnId {
        self.card.push(
            e,
            self.config.history_per_card_max,
            self.config.idempotency_ttl_ms,
        )
    }

    /// Expires every lot due at `now`, as far as bonus is not backing holds; returns the
    /// amount expired.
    pub(crate) fn expire_lots(&mut self, now: i64, events: &mut Vec<Event>) -> Amount {
        let mut expired = Amount::ZERO;
        let mut last = 0;
        while let Some(lot) = self.card.lots.first() {
            if lot.expires_at > now {
                break;
            }
            let free = self.card.available().max(Amount::ZERO);
            let take = lot.amount.min(free);
            if take.0 == 0 {
                break;
            }
            let got = self.card.lots.take_from(lot.expires_at, take);
            self.card.bonus -= got;
            expired += got;
            last = lot.expires_at;
            if got < lot.amount {
                break;
            }
        }
        if expired.0 > 0 {
            let mut e = TxnEntry::new(TxnKind::BonusExpired, Millis(now));
            e.amount = expired;
            e.bonus = expired;
            e.aux = last;
            self.record(e);
            events.push(Event {
                at: Millis(now),
                card_id: self.card.id,
                kind: EventKind::BonusExpired { amount: expired },
            });
        }
        expired
    }

    /// After a hold is released: expire bonus that was due but kept to back it.
    pub(crate) fn expire_overdue(&mut self, now: i64, events: &mut Vec<Event>) -> Amount {
        match self.card.lots.first() {
            Some(l) if l.expires_at <= now => self.expire_lots(now, events),
            _ => Amount::ZERO,
        }
    }

    /// Reminds once per lot that expires within the program's `bonus_expiring_days`.
    pub(crate) fn remind(&mut self, now: i64, events: &mut Vec<Event>) {
        let Some(days) = self.program.reminders.bonus_expiring_days else {
            return;
        };
        let horizon = now.saturating_add(i64::from(days) * DAY_MS);
        let mut until = self.card.reminded_until;
        for lot in self.card.lots.iter() {
            if lot.expires_at > horizon {
                break;
            }
            if lot.expires_at <= until || lot.expires_at <= now {
                continue;
            }
            events.push(Event {
                at: Millis(now),
                card_id: self.card.id,
                kind: EventKind::BonusExpiring {
                    amount: lot.amount,
                    expires_at: Millis(lot.expires_at),
                },
            });
            until = lot.expires_at;
        }
        self.card.reminded_until = until;
    }
}
