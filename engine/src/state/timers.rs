//! Deadlines of one shard: hold expiries, bonus lot expiries, expiry reminders.
//!
//! Why a heap: `tick_due` must be O(1) and a `Tick` must touch only what is due. Entries are
//! never removed early: a hold captured before its deadline leaves a stale entry that the Tick
//! skips (it checks the hold is still active). The heap is part of the snapshot and digest, so
//! a restored shard skips exactly the same stale entries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// What a timer is for, in the order timers due at the same instant run.
pub(crate) const T_HOLD: u8 = 0;
pub(crate) const T_LOT: u8 = 1;
pub(crate) const T_REMIND: u8 = 2;

/// `(at, kind, card, seq)`: a total order, so Ticks are deterministic.
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

#[derive(Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Timer>>,
}

impl Timers {
    pub fn push(&mut self, t: Timer) {
        self.heap.push(Reverse(t));
    }
    pub fn next_at(&self) -> Option<i64> {
        self.heap.peek().map(|r| r.0.at)
    }
    /// Pops the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: i64) -> Option<Timer> {
        if self.next_at()? <= now {
            self.heap.pop().map(|r| r.0)
        } else {
            None
        }
    }
    pub fn len(&self) -> usize {
        self.heap.len()
    }
    /// All timers in order (for snapshots and digests).
    pub fn sorted(&self) -> Vec<Timer> {
        let mut v: Vec<Timer> = self.heap.iter().map(|r| r.0).collect();
        v.sort_unstable();
        v
    }
    pub fn from_sorted(v: Vec<Timer>) -> Timers {
        Timers {
            heap: v.into_iter().map(Reverse).collect(),
        }
    }
}
