//! One card: balances, lots, lifetime totals, daily and per-minute counters, history.
//!
//! Why so compact: a shard holds millions of cards; every field is sized for its range and
//! the first bonus lot lives inline (see `lots`). Balances are kept apart: `principal` (what
//! the customer paid) and `bonus` (the sum of the lots); `held` is the part of both that holds
//! reserve, so `available = principal + bonus − held`, never negative.

use super::history::TxnEntry;
use super::lots::Lots;
use super::packed_history::{AsEntries, History};
use crate::command::{CardId, MonthDay, TxnId};
use crate::money::{Amount, POINTS_MAX};
use crate::outcome::CardStatus;

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct Card {
    pub id: CardId,
    pub principal: Amount,
    /// Always equal to `lots.total()`.
    pub bonus: Amount,
    pub held: Amount,
    pub points: u64,
    /// Lifetime principal topped up (less reversed top-ups and cooling-off pay-outs).
    pub paid_in: Amount,
    /// Lifetime bonus given (ladder, grants, redeems; less reversals).
    pub bonus_given: Amount,
    /// Lifetime value consumed at face value: spends + captures − refunds.
    pub consumed: Amount,
    /// Top-ups and spends of local day `day` (velocity and daily caps).
    pub top_up_today: Amount,
    pub spend_today: Amount,
    /// Every lot expiring at or before this instant has had its expiry reminder.
    pub reminded_until: i64,
    pub lots: Lots,
    /// History; entry `i` has sequence number `hist_first_seq + i`.
    #[rkyv(with = AsEntries)]
    pub history: History,
    pub hist_first_seq: u32,
    /// Number of top-ups so far (the ladder ordinal of the next one is this + 1).
    pub top_up_count: u32,
    /// Local day (days since the epoch in the program's time zone) of the daily counters.
    pub day: i32,
    /// Minute (since the epoch) of `spends_in_minute`.
    pub minute: u32,
    pub spends_in_minute: u16,
    /// Index of the card's program in the state's program table.
    pub program: u16,
    pub status: CardStatus,
    pub registered: bool,
    /// Birthday month and day; 0 ⇒ not given.
    pub birth_month: u8,
    pub birth_day: u8,
    /// Declines in a row (for the repeated-declines anomaly); saturates.
    pub decline_streak: u8,
    /// Spends, holds and increments approved on local day `day` (`spend.max_daily_count`).
    /// Last, in what was the archived card's padding: snapshots from before it restore it as 0.
    pub spend_count_today: u32,
}

// 168 with the history in a `Vec` (24 bytes); a card chunk holds 256 of these.
const _: () = assert!(std::mem::size_of::<Card>() == 160);

impl Card {
    pub fn new(id: CardId, program: u16, registered: bool, birthday: Option<MonthDay>) -> Card {
        Card {
            id,
            principal: Amount::ZERO,
            bonus: Amount::ZERO,
            held: Amount::ZERO,
            points: 0,
            paid_in: Amount::ZERO,
            bonus_given: Amount::ZERO,
            consumed: Amount::ZERO,
            top_up_today: Amount::ZERO,
            spend_today: Amount::ZERO,
            reminded_until: i64::MIN,
            lots: Lots::default(),
            history: History::default(),
            hist_first_seq: 1,
            top_up_count: 0,
            day: i32::MIN,
            minute: 0,
            spends_in_minute: 0,
            program,
            status: CardStatus::Active,
            registered,
            birth_month: birthday.map_or(0, |b| b.month),
            birth_day: birthday.map_or(0, |b| b.day),
            decline_streak: 0,
            spend_count_today: 0,
        }
    }

    pub fn total(&self) -> Amount {
        self.principal + self.bonus
    }

    pub fn available(&self) -> Amount {
        self.principal + self.bonus - self.held
    }

    /// The sequence number the next history entry gets.
    pub fn next_seq(&self) -> u32 {
        self.hist_first_seq + self.history.len() as u32
    }

    pub fn entry(&self, seq: u32) -> Option<TxnEntry> {
        let i = seq.checked_sub(self.hist_first_seq)?;
        self.history.get(i as usize)
    }

    /// The flags of transaction `seq` (the only part of an entry that changes after it is
    /// pushed: a hold's state, reversed).
    pub fn flags_mut(&mut self, seq: u32) -> Option<&mut u8> {
        let i = seq.checked_sub(self.hist_first_seq)?;
        self.history.flags_mut(i as usize)
    }

    /// Entries after `seq`, oldest first, with their sequence numbers.
    pub fn entries_after(&self, seq: u32) -> impl Iterator<Item = (u32, TxnEntry)> + '_ {
        let start = seq.saturating_sub(self.hist_first_seq).saturating_add(1) as usize;
        let first = self.hist_first_seq;
        self.history
            .iter_from(start)
            .enumerate()
            .map(move |(i, e)| (first + (start + i) as u32, e))
    }

    /// Appends an entry; trims the oldest half of the history once it is over `max` entries
    /// (checked every `max` entries) and that half is older than `keep_ms` (so stored idempotent answers can still be
    /// rebuilt). Returns the new entry's id.
    pub fn push(&mut self, entry: TxnEntry, max: usize, keep_ms: i64) -> TxnId {
        // Checked every `max` entries (a function of the logical state only, so a restored
        // card trims exactly like the original), and a push normally touches only its slot.
        let max = max.max(2);
        let len = self.history.len();
        if len >= max && len.is_multiple_of(max) {
            let half = len / 2;
            if self
                .history
                .get(half)
                .is_some_and(|e| e.at.saturating_add(keep_ms) <= entry.at)
            {
                self.history.drop_front(half);
                self.hist_first_seq += half as u32;
            }
        }
        let seq = self.next_seq();
        self.history.push(&entry);
        TxnId { card: self.id, seq }
    }

    /// The first invariant the card breaks, if any: no figure negative or past `max` (the
    /// currency's 10^12 bound; points past [`POINTS_MAX`]), held ≤ principal + bonus, bonus =
    /// the sum of the lots. Restore refuses such a card; [`Card::check`] stops on it.
    pub fn broken(&self, max: Amount) -> Option<&'static str> {
        let figures = [
            self.principal,
            self.bonus,
            self.held,
            self.paid_in,
            self.bonus_given,
            self.consumed,
            self.top_up_today,
            self.spend_today,
        ];
        if figures.iter().any(|a| a.0 < 0 || *a > max) || self.points > POINTS_MAX {
            return Some("a balance, total or counter is negative or past 10^12");
        }
        if self.held > self.total() {
            return Some("held above principal + bonus");
        }
        if self.bonus != self.lots.total() {
            return Some("bonus is not the sum of its lots");
        }
        None
    }

    /// Asserts the invariants after every operation, in release builds too: a few compares per
    /// request (`cargo bench -p bench --bench state` measures it), and a card that broke one
    /// must stop the shard rather than answer from wrong balances.
    pub fn check(&self, max: Amount) {
        if let Some(why) = self.broken(max) {
            panic!("card {} breaks an invariant: {why}", self.id);
        }
    }
}

const _: () = assert!(std::mem::size_of::<Card>() <= 176);
