//! The float (资金池) of each program: kept in step by every operation (O(1) per request) and
//! recomputable card by card as a check.

use super::State;
use crate::money::Amount;
use crate::outcome::{CardStatus, FloatTotals};

impl State {
    /// The principal, bonus, held and open-ness of a card, for float bookkeeping.
    pub(super) fn float_part(&self, slot: u32) -> (Amount, Amount, Amount, bool) {
        let c = self.card_at(slot);
        (c.principal, c.bonus, c.held, c.status != CardStatus::Closed)
    }

    pub(super) fn shift_float(
        &mut self,
        slot: u32,
        before: (Amount, Amount, Amount, bool),
        after: (Amount, Amount, Amount, bool),
    ) {
        if before == after {
            return;
        }
        let p = self.card_at(slot).program as usize;
        if let Some(ps) = self.programs.get_mut(p) {
            let f = &mut ps.float;
            f.principal += after.0 - before.0;
            f.bonus += after.1 - before.1;
            f.held += after.2 - before.2;
            f.cards = (f.cards as i64 + i64::from(after.3) - i64::from(before.3)) as u64;
            // Operations refuse what would pass the bound (`Parts::room_for`); asserted in
            // release builds like the card invariants.
            let max = ps.program.currency.max_amount();
            let within = |a: Amount| a.0 >= 0 && a <= max;
            assert!(
                within(f.principal) && within(f.bonus) && within(f.held),
                "float of program {} out of range: {f:?}",
                ps.program.id
            );
        }
    }

    /// Outstanding principal, bonus, held per program id, sorted by id; O(programs).
    pub fn float(&self) -> Vec<(String, FloatTotals)> {
        let mut v: Vec<(String, FloatTotals)> = self
            .programs
            .iter()
            .map(|p| (p.program.id.clone(), p.float))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The float summed over all programs.
    pub fn float_total(&self) -> FloatTotals {
        self.programs
            .iter()
            .fold(FloatTotals::default(), |mut t, p| {
                t.principal += p.float.principal;
                t.bonus += p.float.bonus;
                t.held += p.float.held;
                t.cards += p.float.cards;
                t
            })
    }

    /// The float recomputed card by card (O(cards)); equals [`State::float`] — a check for tests.
    pub fn float_recomputed(&self) -> Vec<(String, FloatTotals)> {
        let mut per: Vec<FloatTotals> = vec![FloatTotals::default(); self.programs.len()];
        for c in self.cards() {
            if let Some(f) = per.get_mut(c.program as usize) {
                f.principal += c.principal;
                f.bonus += c.bonus;
                f.held += c.held;
                f.cards += u64::from(c.status != CardStatus::Closed);
            }
        }
        let mut v: Vec<(String, FloatTotals)> = self
            .programs
            .iter()
            .zip(per)
            .map(|(p, f)| (p.program.id.clone(), f))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }
}
