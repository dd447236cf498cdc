//! Deadlines of one shard: hold expiries, bonus lot expiries, expiry reminders.
//!
//! Why two structures: holds expire at arbitrary instants and live in a binary heap; bonus
//! lots expire (and are reminded about) at local midnights, so millions of cards share a few
//! instants, and those are grouped in an ordered map of instant → cards (8 bytes per card
//! instead of a 24-byte heap entry). `tick_due` is O(1) either way and a `Tick` touches only
//! what is due. Entries are never removed early: a hold captured before its deadline leaves a
//! stale entry that the Tick skips (it checks the hold is still active). Both structures are
//! part of the snapshot and digest, in a fixed order, so a restored shard behaves the same.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::sync::Arc;

/// What a timer is for, in the order timers due at the same instant run.
pub(crate) const T_HOLD: u8 = 0;
pub(crate) const T_LOT: u8 = 1;
pub(crate) const T_REMIND: u8 = 2;

/// `(at, kind, card, seq)`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
pub(crate) struct Timer {
    pub at: i64,
    pub kind: u8,
    pub card: u64,
    pub seq: u32,
}

#[derive(Default, Clone)]
pub(crate) struct Timers {
    holds: BinaryHeap<Reverse<Timer>>,
    /// Lot expiries and reminders: (instant, kind) → cards, popped from the back.
    grouped: BTreeMap<(i64, u8), CardList>,
}

/// Cards per chunk of a [`CardList`].
const CARDS_PER_CHUNK: usize = 4096;

/// The cards of one timer group, in `Arc`-shared chunks, so a snapshot's freeze clones chunk
/// pointers (a group can hold millions of cards) and a later push or pop copies at most the
/// one chunk it touches. Every chunk but the last is full.
#[derive(Default, Clone)]
struct CardList {
    chunks: Vec<Arc<Vec<u64>>>,
    len: usize,
}

impl CardList {
    fn push(&mut self, card: u64) {
        match self.chunks.last_mut() {
            Some(last) if last.len() < CARDS_PER_CHUNK => Arc::make_mut(last).push(card),
            _ => self.chunks.push(Arc::new(vec![card])),
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<u64> {
        let last = self.chunks.last_mut()?;
        let card = Arc::make_mut(last).pop();
        if last.is_empty() {
            self.chunks.pop();
        }
        if card.is_some() {
            self.len -= 1;
        }
        card
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn iter(&self) -> impl Iterator<Item = &u64> + '_ {
        self.chunks.iter().flat_map(|c| c.iter())
    }

    fn bytes(&self) -> usize {
        self.chunks
            .iter()
            .map(|c| c.capacity() * 8 + 16)
            .sum::<usize>()
            + 48
    }
}

impl Timers {
    pub fn push(&mut self, t: Timer) {
        if t.kind == T_HOLD {
            self.holds.push(Reverse(t));
        } else {
            self.grouped.entry((t.at, t.kind)).or_default().push(t.card);
        }
    }

    fn next_key(&self) -> Option<(i64, u8)> {
        let h = self.holds.peek().map(|r| (r.0.at, r.0.kind));
        let g = self.grouped.first_key_value().map(|(k, _)| *k);
        match (h, g) {
            (Some(h), Some(g)) => Some(h.min(g)),
            (h, g) => h.or(g),
        }
    }

    pub fn next_at(&self) -> Option<i64> {
        self.next_key().map(|k| k.0)
    }

    /// Pops the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: i64) -> Option<Timer> {
        let key = self.next_key()?;
        if key.0 > now {
            return None;
        }
        if key.1 == T_HOLD {
            return self.holds.pop().map(|r| r.0);
        }
        let mut entry = self.grouped.first_entry()?;
        let card = entry.get_mut().pop();
        if entry.get().is_empty() {
            entry.remove();
        }
        card.map(|card| Timer {
            at: key.0,
            kind: key.1,
            card,
            seq: 0,
        })
    }

    pub fn len(&self) -> usize {
        self.holds.len() + self.grouped.values().map(|c| c.len).sum::<usize>()
    }

    /// Heap bytes (approximate), for memory accounting.
    pub fn bytes(&self) -> usize {
        self.holds.capacity() * std::mem::size_of::<Timer>()
            + self.grouped.values().map(CardList::bytes).sum::<usize>()
    }

    /// All timers in a canonical order (for snapshots and digests): holds sorted, then the
    /// groups in key order, each in its stored order.
    pub fn sorted(&self) -> Vec<Timer> {
        let mut v: Vec<Timer> = self.holds.iter().map(|r| r.0).collect();
        v.sort_unstable();
        for (&(at, kind), cards) in &self.grouped {
            v.extend(cards.iter().map(|&card| Timer {
                at,
                kind,
                card,
                seq: 0,
            }));
        }
        v
    }

    pub fn from_sorted(v: Vec<Timer>) -> Timers {
        let mut t = Timers::default();
        for x in v {
            t.push(x);
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn card_lists_pop_from_the_back_across_chunks_and_keep_frozen_copies() {
        let mut l = CardList::default();
        let mut model = Vec::new();
        for c in 0..(CARDS_PER_CHUNK as u64 * 2 + 5) {
            l.push(c);
            model.push(c);
        }
        let frozen = l.clone();
        for _ in 0..CARDS_PER_CHUNK + 7 {
            assert_eq!(l.pop(), model.pop());
        }
        for c in 0..10 {
            l.push(1_000_000 + c);
            model.push(1_000_000 + c);
        }
        assert!(l.iter().copied().eq(model.iter().copied()));
        assert_eq!(l.len, model.len());
        assert!(frozen
            .iter()
            .copied()
            .eq(0..(CARDS_PER_CHUNK as u64 * 2 + 5)));
        while let Some(c) = model.pop() {
            assert_eq!(l.pop(), Some(c));
        }
        assert!(l.is_empty() && l.pop().is_none() && l.chunks.is_empty());
    }

    #[test]
    fn pops_in_time_then_kind_order() {
        let mut t = Timers::default();
        t.push(Timer {
            at: 20,
            kind: T_LOT,
            card: 1,
            seq: 0,
        });
        t.push(Timer {
            at: 20,
            kind: T_HOLD,
            card: 2,
            seq: 5,
        });
        t.push(Timer {
            at: 10,
            kind: T_REMIND,
            card: 3,
            seq: 0,
        });
        t.push(Timer {
            at: 20,
            kind: T_LOT,
            card: 4,
            seq: 0,
        });
        assert_eq!(t.next_at(), Some(10));
        assert_eq!(t.pop_due(9), None);
        let order: Vec<(i64, u8, u64)> = std::iter::from_fn(|| t.pop_due(100))
            .map(|x| (x.at, x.kind, x.card))
            .collect();
        assert_eq!(
            order,
            vec![
                (10, T_REMIND, 3),
                (20, T_HOLD, 2),
                (20, T_LOT, 4),
                (20, T_LOT, 1)
            ]
        );
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn canonical_order_round_trips() {
        let mut t = Timers::default();
        for (at, kind, card) in [
            (5, T_LOT, 9),
            (5, T_LOT, 3),
            (1, T_HOLD, 7),
            (2, T_REMIND, 1),
        ] {
            t.push(Timer {
                at,
                kind,
                card,
                seq: 0,
            });
        }
        let s = t.sorted();
        assert_eq!(Timers::from_sorted(s.clone()).sorted(), s);
    }
}
