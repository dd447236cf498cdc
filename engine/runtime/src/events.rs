//! The event log behind `GET /v1/events?after=SEQ`: events numbered from the log, so a
//! consumer resumes exactly where it stopped, across restarts, snapshots and replays.
//!
//! ## Sequence numbers
//! An event's `seq` is computed from facts the log holds: the batch time of the record that
//! produced it, the shard, and how many events that shard produced earlier in the same
//! millisecond. Packed into a u64 (see [`seq_parts`]):
//!
//! | bits | field |
//! | --- | --- |
//! | 63–22 | batch time, ms since the Unix epoch (42 bits: until the year 2109) |
//! | 21–8 | index of the event among its shard's events of that millisecond (14 bits) |
//! | 7–0 | shard (8 bits; `meta::SHARDS_MAX` is 256) |
//!
//! The order of `seq` is the feed's order: by batch time, then index, then shard. In a shard,
//! events come in the order `apply` produced them (batch time never decreases). Past 16 384
//! events of one shard in one millisecond, the index carries into the time field: the seq
//! stays unique and increasing, only its time part runs ahead. [`SeqClock`] computes the
//! numbers the same way live, at recovery and offline (`svault report` numbers the events of
//! the whole history with it), so a seq never changes.
//!
//! Snapshots: before a shard freezes its state it moves its batch time past every seq it has
//! given (`SeqClock::time_after_last`), so every record after a snapshot has a later
//! millisecond than every event before it, and a shard restored from the snapshot (which does
//! not know the last seq) numbers the following events exactly as the unbroken run did.
//!
//! ## Visibility (why `after` never skips an event)
//! Shards run independently, so shard 1 may publish events at 10:00:00.005 before shard 0
//! publishes its own at 10:00:00.004. Each shard therefore publishes a **floor**: the smallest
//! seq it can still give (its batch time never goes back). The feed shows only events below
//! the lowest floor of all shards, so once a consumer has seen seq S, no event below S can
//! appear later. An idle shard raises its floor on its idle tick (every 250 ms) and whenever a
//! reader nudges it (`Engine::events`).
//!
//! ## What is kept
//! A bounded map of the newest `events_max` events (default 65 536) by seq. At start-up the
//! feed holds the events of the records replayed after the newest snapshot (a snapshot is
//! taken every 10 M records or 10 minutes by default), renumbered identically. Older events
//! are still in the log (and the archive): `svault report --parquet` writes all of them.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use svault_core::command::Millis;
use svault_core::outcome::Event;

/// Default number of events kept.
pub const EVENTS_MAX_DEFAULT: usize = 65_536;

/// Bits of the shard field.
pub const SEQ_SHARD_BITS: u32 = 8;
/// Bits of the per-millisecond index.
pub const SEQ_INDEX_BITS: u32 = 14;
/// Shift of the time field.
pub const SEQ_TIME_SHIFT: u32 = SEQ_SHARD_BITS + SEQ_INDEX_BITS;
/// One step of the index field.
const SEQ_INDEX_STEP: u64 = 1 << SEQ_SHARD_BITS;

const _: () = assert!(SEQ_TIME_SHIFT == 22);
const _: () = assert!(crate::meta::SHARDS_MAX <= 1 << SEQ_SHARD_BITS);

/// The seq of the first event shard `shard` could give at `at`.
pub fn seq_base(at: Millis, shard: usize) -> u64 {
    ((at.0.max(0) as u64) << SEQ_TIME_SHIFT) | (shard as u64 & ((1 << SEQ_SHARD_BITS) - 1))
}

/// `(time ms, index, shard)` of a seq.
pub fn seq_parts(seq: u64) -> (i64, u32, usize) {
    (
        (seq >> SEQ_TIME_SHIFT) as i64,
        ((seq >> SEQ_SHARD_BITS) & ((1 << SEQ_INDEX_BITS) - 1)) as u32,
        (seq & ((1 << SEQ_SHARD_BITS) - 1)) as usize,
    )
}

/// Numbers one shard's events (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct SeqClock {
    shard: usize,
    /// Last seq given (0 ⇒ none since the start or the snapshot).
    last: u64,
}

impl SeqClock {
    /// A clock for `shard` that has given nothing yet (an empty state, or a restored snapshot).
    pub fn new(shard: usize) -> SeqClock {
        SeqClock { shard, last: 0 }
    }

    /// The seq of the next event, produced at batch time `at`.
    pub fn next(&mut self, at: Millis) -> u64 {
        let base = seq_base(at, self.shard);
        let seq = if base > self.last || self.last == 0 {
            base
        } else {
            self.last + SEQ_INDEX_STEP
        };
        debug_assert!(seq > self.last);
        self.last = seq;
        seq
    }

    /// The smallest seq this shard can still give when its batch time is `now`.
    pub fn floor(&self, now: Millis) -> u64 {
        let base = seq_base(now, self.shard);
        if self.last == 0 {
            base
        } else {
            base.max(self.last + SEQ_INDEX_STEP)
        }
    }

    /// The first millisecond after every seq given: a snapshot's batch time is moved there.
    pub fn time_after_last(&self) -> Millis {
        if self.last == 0 {
            Millis(0)
        } else {
            Millis((self.last >> SEQ_TIME_SHIFT) as i64 + 1)
        }
    }
}

/// The shared, bounded event log of all shards.
pub struct EventRing {
    inner: Mutex<BTreeMap<u64, Event>>,
    floors: Vec<AtomicU64>,
    events_max: usize,
}

impl EventRing {
    /// An empty log for `shards` shards keeping at most `events_max` events (at least 1).
    pub fn new(events_max: usize, shards: usize) -> EventRing {
        EventRing {
            inner: Mutex::new(BTreeMap::new()),
            floors: (0..shards.max(1)).map(|_| AtomicU64::new(0)).collect(),
            events_max: events_max.max(1),
        }
    }

    /// Numbers and stores one shard's events (in the order `apply` produced them); drops the
    /// oldest beyond the bound.
    pub fn push_all(&self, clock: &mut SeqClock, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut map = self.inner.lock();
        for e in events.drain(..) {
            let seq = clock.next(e.at);
            map.insert(seq, e);
        }
        while map.len() > self.events_max {
            map.pop_first();
        }
    }

    /// Shard `k` can give no seq below `floor` any more (floors only rise).
    pub fn set_floor(&self, k: usize, floor: u64) {
        if let Some(f) = self.floors.get(k) {
            f.fetch_max(floor, Ordering::Release);
        }
    }

    /// Below this seq the feed is final.
    pub fn visible_below(&self) -> u64 {
        self.floors
            .iter()
            .map(|f| f.load(Ordering::Acquire))
            .min()
            .unwrap_or(0)
    }

    /// Final events with seq > `after`, in seq order, at most `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Vec<(u64, Event)> {
        let below = self.visible_below();
        if after.saturating_add(1) >= below {
            return Vec::new();
        }
        let map = self.inner.lock();
        map.range(after + 1..below)
            .take(limit)
            .map(|(s, e)| (*s, e.clone()))
            .collect()
    }

    /// Seq of the newest final event (0 when none).
    pub fn last_seq(&self) -> u64 {
        let below = self.visible_below();
        let map = self.inner.lock();
        map.range(..below).next_back().map_or(0, |(s, _)| *s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svault_core::command::CardId;
    use svault_core::outcome::EventKind;

    fn ev(at: i64) -> Event {
        Event {
            at: Millis(at),
            card_id: CardId(at as u64),
            kind: EventKind::VelocityBreach,
        }
    }

    #[test]
    fn layout_and_order() {
        let mut c = SeqClock::new(3);
        let a = c.next(Millis(1_000));
        let b = c.next(Millis(1_000));
        let d = c.next(Millis(1_001));
        assert_eq!(seq_parts(a), (1_000, 0, 3));
        assert_eq!(seq_parts(b), (1_000, 1, 3));
        assert_eq!(seq_parts(d), (1_001, 0, 3));
        assert_eq!(c.time_after_last(), Millis(1_002));
        assert_eq!(c.floor(Millis(1_001)), d + SEQ_INDEX_STEP);
        assert_eq!(c.floor(Millis(5_000)), seq_base(Millis(5_000), 3));
        // A full millisecond carries into the next one, still increasing.
        let mut c = SeqClock::new(0);
        let mut prev = 0;
        for _ in 0..(1 << SEQ_INDEX_BITS) + 5 {
            let s = c.next(Millis(7));
            assert!(s > prev);
            prev = s;
        }
        assert_eq!(seq_parts(prev).0, 8);
        // After a snapshot the clock starts empty; later times number alike.
        let mut live = SeqClock::new(1);
        live.next(Millis(10));
        let t = live.time_after_last();
        let mut restored = SeqClock::new(1);
        assert_eq!(live.next(t), restored.next(t));
    }

    #[test]
    fn only_events_below_every_floor_are_visible() {
        let ring = EventRing::new(3, 2);
        let (mut c0, mut c1) = (SeqClock::new(0), SeqClock::new(1));
        ring.push_all(&mut c1, &mut vec![ev(5)]);
        assert!(ring.after(0, 10).is_empty(), "no floor yet");
        ring.set_floor(1, c1.floor(Millis(5)));
        ring.set_floor(0, c0.floor(Millis(4)));
        assert!(ring.after(0, 10).is_empty(), "shard 0 may still give ms 4");
        ring.push_all(&mut c0, &mut vec![ev(4)]);
        ring.set_floor(0, c0.floor(Millis(6)));
        let got: Vec<i64> = ring.after(0, 10).iter().map(|(_, e)| e.at.0).collect();
        assert_eq!(got, vec![4, 5]);
        let first = ring.after(0, 1)[0].0;
        assert_eq!(ring.after(first, 10).len(), 1);
        assert_eq!(ring.last_seq(), ring.after(0, 10)[1].0);
        // Bounded: the oldest go first.
        ring.set_floor(1, c1.floor(Millis(100)));
        ring.push_all(&mut c0, &mut vec![ev(6), ev(6), ev(7)]);
        ring.set_floor(0, c0.floor(Millis(100)));
        let got: Vec<i64> = ring.after(0, 10).iter().map(|(_, e)| e.at.0).collect();
        assert_eq!(got, vec![6, 6, 7]);
        assert!(ring.after(u64::MAX, 10).is_empty());
    }
}
