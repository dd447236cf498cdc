//! What a reply shows: the card view of SPEC.md and the approval of a history entry (also how
//! idempotent replays rebuild the first answer).

use super::card::Card;
use super::history::TxnEntry;
use super::State;
use crate::command::{CardId, Millis, TxnId};
use crate::money::Amount;
use crate::outcome::{Approval, CardView, TxnKind};

impl State {
    pub(super) fn view_of(&self, id: CardId) -> Option<CardView> {
        self.card(id).map(|c| self.view(c))
    }

    /// The card view of SPEC.md.
    pub(super) fn view(&self, c: &Card) -> CardView {
        let slot = &self.programs[c.program as usize];
        let p = &slot.program;
        // The highest tier reached, as `Program::tier_for`, by index to share its name.
        let tier = p
            .tiers
            .iter()
            .rposition(|t| c.paid_in >= t.lifetime_top_up)
            .and_then(|i| slot.names.tiers.get(i).cloned());
        CardView {
            card_id: c.id,
            program: slot.names.id.clone(),
            currency: p.currency,
            principal: c.principal,
            bonus: c.bonus,
            held: c.held,
            available: c.available(),
            points: c.points,
            tier,
            status: c.status,
            paid_in: c.paid_in,
            bonus_given: c.bonus_given,
            consumed: c.consumed,
        }
    }

    /// The approval of a history entry (also used to rebuild idempotent replays, so a replay
    /// and the first answer agree field for field, apart from the card view).
    pub(super) fn approval(&self, c: &Card, seq: u32, e: &TxnEntry) -> Approval {
        let k = e.kind;
        let refers = (e.refers_to != 0).then_some(TxnId {
            card: c.id,
            seq: e.refers_to,
        });
        // A reversal moves points back the way the original did not: up for an undone refund
        // or redeem, down for an undone spend, capture or grant.
        let points_up = match k {
            TxnKind::Spend | TxnKind::Capture | TxnKind::Grant => true,
            TxnKind::Reversal => c
                .entry(e.refers_to)
                .is_some_and(|o| matches!(o.kind, TxnKind::Refund | TxnKind::Redeem)),
            _ => false,
        };
        let points_moved = matches!(
            k,
            TxnKind::Spend
                | TxnKind::Capture
                | TxnKind::Grant
                | TxnKind::Redeem
                | TxnKind::Refund
                | TxnKind::Reversal
        );
        // A cash-out pays principal first, then (`merchant_fault` under a non-proportional
        // spend order) bonus; the principal it does not pay is retained, the bonus it does
        // not pay is forfeited.
        let paid_from_bonus = (e.amount - e.principal).max(Amount::ZERO);
        Approval {
            kind: k,
            txn_id: Some(TxnId { card: c.id, seq }),
            amount: e.signed_amount(),
            principal: e.principal,
            bonus: e.bonus,
            bonus_granted: match k {
                TxnKind::TopUp | TxnKind::Grant | TxnKind::Redeem => e.extra,
                _ => Amount::ZERO,
            },
            discount: match k {
                TxnKind::Spend | TxnKind::Hold | TxnKind::Increment => e.extra,
                _ => Amount::ZERO,
            },
            discount_source: match k {
                TxnKind::Spend | TxnKind::Hold => e.discount_source(),
                _ => None,
            },
            points_earned: if points_moved && points_up {
                e.points
            } else {
                0
            },
            points_spent: if points_moved && !points_up {
                e.points
            } else {
                0
            },
            released: match k {
                TxnKind::Capture | TxnKind::Void | TxnKind::HoldExpired | TxnKind::Reversal => {
                    e.extra
                }
                _ => Amount::ZERO,
            },
            forfeited: match k {
                TxnKind::CashOut => e.bonus - paid_from_bonus,
                TxnKind::Close => e.extra,
                _ => Amount::ZERO,
            },
            retained: match k {
                TxnKind::CashOut => (e.principal - e.amount).max(Amount::ZERO),
                _ => Amount::ZERO,
            },
            reversed_txn: if k == TxnKind::Reversal { refers } else { None },
            expires_at: matches!(k, TxnKind::Hold | TxnKind::Increment).then_some(Millis(e.aux)),
            card: Some(self.view(c)),
            partial: e.partial(),
            requested: None,
            hold: (k == TxnKind::Increment).then_some(TxnId {
                card: c.id,
                seq: e.refers_to,
            }),
        }
    }

    /// One line of the card's history, for reconciliation: the approval's figures, plus how,
    /// where and why, taken from the transaction's origin (a capture's hold, a refund's spend).
    pub(super) fn txn_record(&self, c: &Card, seq: u32, e: &TxnEntry) -> crate::outcome::TxnRecord {
        let a = self.approval(c, seq, e);
        // Follow `refers_to` to the transaction that says how and where (a refund of a
        // capture: capture, then its hold); bounded, the chain is at most three long.
        let mut origin = *e;
        for _ in 0..3 {
            match origin.refers().and_then(|r| c.entry(r)) {
                Some(o) => origin = o,
                None => break,
            }
        }
        let reason = match e.kind {
            TxnKind::Grant => e.grant_reason().map(crate::outcome::TxnReason::Grant),
            TxnKind::CashOut => u8::try_from(e.aux)
                .ok()
                .and_then(|i| crate::command::CashOutReason::ALL.get(usize::from(i)))
                .map(|r| crate::outcome::TxnReason::CashOut(*r)),
            _ => None,
        };
        crate::outcome::TxnRecord {
            txn_id: TxnId { card: c.id, seq },
            kind: e.kind,
            at: Millis(e.at),
            amount: a.amount,
            principal: a.principal,
            bonus: if e.kind == TxnKind::TopUp {
                a.bonus.max(a.bonus_granted)
            } else {
                a.bonus
            },
            channel: origin.channel(),
            method: origin.method(),
            store: origin
                .store_slot()
                .and_then(|i| self.stores.get(i))
                .cloned(),
            discount: a.discount,
            points: i64::try_from(a.points_earned).unwrap_or(i64::MAX)
                - i64::try_from(a.points_spent).unwrap_or(i64::MAX),
            refers_to: e.refers().map(|r| TxnId { card: c.id, seq: r }),
            reason,
            partial: e.partial(),
        }
    }
}
