//! Bonus lots: bonus funds grouped by expiry instant, earliest first.
//!
//! Why inline: most cards hold zero or one lot, so the first lot lives in the card itself and
//! only cards with several live lots pay for a heap allocation. Lots credited on the same local
//! day share one expiry instant and merge, which keeps the list short.

use crate::money::Amount;

/// Expiry instant of bonus that never expires.
pub(crate) const NEVER: i64 = i64::MAX;

/// Bonus funds that expire together at `expires_at` (ms since epoch, UTC).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub(crate) struct Lot {
    pub amount: Amount,
    pub expires_at: i64,
}

/// The lots of one card, sorted by `expires_at`, no two with the same instant, none empty.
/// Invariant: `head.amount == 0` ⇔ the list is empty (then `rest` is `None`).
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub(crate) struct Lots {
    head: Lot,
    // Boxed: 8 bytes in every card instead of a 24-byte `Vec` that most cards never use.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<Lot>>>,
}

impl Lots {
    pub fn is_empty(&self) -> bool {
        self.head.amount.0 == 0
    }

    /// The earliest lot.
    pub fn first(&self) -> Option<Lot> {
        (!self.is_empty()).then_some(self.head)
    }

    /// All lots, earliest first.
    pub fn iter(&self) -> impl Iterator<Item = Lot> + '_ {
        let head = self.first();
        head.into_iter()
            .chain(self.rest.iter().flat_map(|r| r.iter().copied()))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        if self.is_empty() {
            0
        } else {
            1 + self.rest.as_ref().map_or(0, |r| r.len())
        }
    }

    /// Whether the invariants hold (sorted, distinct instants, no empty lot); for restore.
    pub fn valid(&self) -> bool {
        if self.is_empty() {
            return self.rest.is_none();
        }
        let mut prev: Option<i64> = None;
        let mut total: i64 = 0;
        for l in self.iter() {
            if l.amount.0 <= 0 || prev.is_some_and(|p| p >= l.expires_at) {
                return false;
            }
            match total.checked_add(l.amount.0) {
                Some(t) => total = t,
                None => return false,
            }
            prev = Some(l.expires_at);
        }
        self.rest.as_ref().is_none_or(|r| !r.is_empty())
    }

    /// Heap bytes used beyond the inline first lot.
    pub fn heap_bytes(&self) -> usize {
        self.rest.as_ref().map_or(0, |r| {
            std::mem::size_of::<Vec<Lot>>() + r.capacity() * std::mem::size_of::<Lot>()
        })
    }

    /// Sum of all lots.
    pub fn total(&self) -> Amount {
        self.iter().fold(Amount::ZERO, |s, l| s + l.amount)
    }

    /// Credits `amount` expiring at `expires_at`; returns `true` when this made a new lot
    /// (a new expiry instant that needs a timer) rather than growing an existing one.
    pub fn add(&mut self, amount: Amount, expires_at: i64) -> bool {
        debug_assert!(amount.0 > 0);
        if self.is_empty() {
            self.head = Lot { amount, expires_at };
            return true;
        }
        if self.head.expires_at == expires_at {
            self.head.amount += amount;
            return false;
        }
        if expires_at < self.head.expires_at {
            let old = std::mem::replace(&mut self.head, Lot { amount, expires_at });
            self.rest
                .get_or_insert_with(Default::default)
                .insert(0, old);
            return true;
        }
        let rest = self.rest.get_or_insert_with(Default::default);
        match rest.binary_search_by_key(&expires_at, |l| l.expires_at) {
            Ok(i) => {
                if let Some(l) = rest.get_mut(i) {
                    l.amount += amount;
                }
                false
            }
            Err(i) => {
                rest.insert(i, Lot { amount, expires_at });
                true
            }
        }
    }

    /// Takes up to `amount` from the earliest lots; returns what was taken and the expiry of
    /// the latest lot touched (where a refund of this money goes back to).
    pub fn take_earliest(&mut self, amount: Amount) -> (Amount, i64) {
        let mut left = amount.0;
        let mut last_expiry = NEVER;
        while left > 0 && !self.is_empty() {
            let take = left.min(self.head.amount.0);
            self.head.amount.0 -= take;
            left -= take;
            last_expiry = self.head.expires_at;
            if self.head.amount.0 == 0 {
                self.pop_head();
            }
        }
        (Amount(amount.0 - left), last_expiry)
    }

    /// Removes up to `amount` from the lot expiring exactly at `expires_at`; returns what it took.
    pub fn take_from(&mut self, expires_at: i64, amount: Amount) -> Amount {
        if self.is_empty() {
            return Amount::ZERO;
        }
        if self.head.expires_at == expires_at {
            let take = amount.0.min(self.head.amount.0);
            self.head.amount.0 -= take;
            if self.head.amount.0 == 0 {
                self.pop_head();
            }
            return Amount(take);
        }
        let Some(rest) = self.rest.as_mut() else {
            return Amount::ZERO;
        };
        let Ok(i) = rest.binary_search_by_key(&expires_at, |l| l.expires_at) else {
            return Amount::ZERO;
        };
        let Some(l) = rest.get_mut(i) else {
            return Amount::ZERO;
        };
        let take = amount.0.min(l.amount.0);
        l.amount.0 -= take;
        if l.amount.0 == 0 {
            rest.remove(i);
            if rest.is_empty() {
                self.rest = None;
            }
        }
        Amount(take)
    }

    /// Amount in the lot expiring exactly at `expires_at`.
    pub fn amount_at(&self, expires_at: i64) -> Amount {
        self.iter()
            .find(|l| l.expires_at == expires_at)
            .map_or(Amount::ZERO, |l| l.amount)
    }

    /// Removes everything (a cash-out or close forfeits the bonus).
    pub fn clear(&mut self) {
        *self = Lots::default();
    }

    fn pop_head(&mut self) {
        match self.rest.as_mut() {
            Some(rest) if !rest.is_empty() => {
                self.head = rest.remove(0);
                if rest.is_empty() {
                    self.rest = None;
                }
            }
            _ => {
                self.head = Lot::default();
                self.rest = None;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lots_stay_sorted_merge_and_drain_earliest_first() {
        let mut l = Lots::default();
        assert!(l.add(Amount(100), 30));
        assert!(l.add(Amount(50), 10));
        assert!(!l.add(Amount(5), 30));
        assert!(l.add(Amount(7), 20));
        assert_eq!(
            l.iter()
                .map(|x| (x.amount.0, x.expires_at))
                .collect::<Vec<_>>(),
            vec![(50, 10), (7, 20), (105, 30)]
        );
        assert_eq!(l.total(), Amount(162));
        assert_eq!(l.take_earliest(Amount(55)), (Amount(55), 20));
        assert_eq!(
            l.iter().map(|x| x.amount.0).collect::<Vec<_>>(),
            vec![2, 105]
        );
        assert_eq!(l.take_from(30, Amount(200)), Amount(105));
        assert_eq!(l.len(), 1);
        assert_eq!(l.take_earliest(Amount(10)), (Amount(2), 20));
        assert!(l.is_empty());
        assert_eq!(l.take_earliest(Amount(1)), (Amount(0), NEVER));
    }
}
