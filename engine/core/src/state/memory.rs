//! How much a shard's state holds: counts and approximate heap bytes by part (metrics and the
//! memory benchmark).

use super::card::Card;
use super::State;

impl State {
    /// Number of cards in this shard.
    pub fn card_count(&self) -> usize {
        self.card_index.len()
    }

    /// Number of idempotency keys remembered.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Approximate heap use by part, from capacities (for metrics and the memory benchmark).
    pub fn memory(&self) -> MemoryUse {
        let card = std::mem::size_of::<Card>();
        let lots_extra: usize = self.cards().map(|c| c.lots.heap_bytes()).sum();
        let history: usize = self.cards().map(|c| c.history.heap_bytes()).sum();
        // hashbrown: one control byte per bucket plus the bucket; buckets ≈ capacity × 8/7.
        let table = |cap: usize, entry: usize| cap * 8 / 7 * (entry + 1);
        MemoryUse {
            cards: self
                .chunks
                .iter()
                .map(|c| c.capacity() * card)
                .sum::<usize>()
                + lots_extra
                + self.stores.bytes(),
            card_index: self.card_index.bytes(),
            history,
            keys: self.keys.bytes(),
            holds: table(self.holds.capacity(), 32),
            timers: self.timers.bytes(),
        }
    }

    /// Number of pending deadlines (holds, lots, reminders), stale ones included.
    pub fn timer_count(&self) -> usize {
        self.timers.len()
    }
}

/// Approximate bytes held by each part of a shard's state (see [`State::memory`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Card structs (with inline first lot) and extra lots.
    pub cards: usize,
    pub card_index: usize,
    /// Per-card transaction history.
    pub history: usize,
    pub keys: usize,
    pub holds: usize,
    pub timers: usize,
}
