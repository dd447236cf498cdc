//! The event log behind `GET /v1/events?after=SEQ`: a bounded ring of the newest events of all
//! shards, each with a global sequence number.
//!
//! Sequence numbers increase by one per event and are **per process lifetime**: they start at 1
//! when the engine opens, and recovery replays the log through the same `apply`, so the events
//! of the recovered history are produced again (and numbered again) at restart. A client that
//! keeps `after` across a restart may therefore see events again; events carry their `at` time.
//! The ring is bounded (`events_max`): a slow reader loses the oldest, never grows memory.

use crate::outcome::Event;
use parking_lot::Mutex;
use std::collections::VecDeque;

/// Default number of events kept.
pub const EVENTS_MAX_DEFAULT: usize = 65_536;

/// The shared ring.
pub struct EventRing {
    inner: Mutex<Ring>,
    events_max: usize,
}

struct Ring {
    /// Sequence number of `events[0]`.
    first_seq: u64,
    events: VecDeque<Event>,
}

impl EventRing {
    /// An empty ring keeping at most `events_max` events (at least 1).
    pub fn new(events_max: usize) -> EventRing {
        EventRing {
            inner: Mutex::new(Ring {
                first_seq: 1,
                events: VecDeque::new(),
            }),
            events_max: events_max.max(1),
        }
    }

    /// Appends events (one shard's batch), numbering them; drops the oldest beyond the bound.
    pub fn push_all(&self, events: &mut Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut ring = self.inner.lock();
        for e in events.drain(..) {
            ring.events.push_back(e);
            if ring.events.len() > self.events_max {
                ring.events.pop_front();
                ring.first_seq += 1;
            }
        }
    }

    /// Events with sequence number > `after`, oldest first, at most `limit`.
    pub fn after(&self, after: u64, limit: usize) -> Vec<(u64, Event)> {
        let ring = self.inner.lock();
        let start_seq = after.saturating_add(1).max(ring.first_seq);
        let skip = (start_seq - ring.first_seq) as usize;
        ring.events
            .iter()
            .skip(skip)
            .take(limit)
            .enumerate()
            .map(|(i, e)| (start_seq + i as u64, e.clone()))
            .collect()
    }

    /// Sequence number of the newest event (0 when none yet).
    pub fn last_seq(&self) -> u64 {
        let ring = self.inner.lock();
        ring.first_seq + ring.events.len() as u64 - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CardId, Millis};
    use crate::outcome::EventKind;

    fn ev(i: i64) -> Event {
        Event {
            at: Millis(i),
            card_id: CardId(i as u64),
            kind: EventKind::VelocityBreach,
        }
    }

    #[test]
    fn numbers_and_bounds() {
        let ring = EventRing::new(3);
        assert!(ring.after(0, 10).is_empty());
        assert_eq!(ring.last_seq(), 0);
        ring.push_all(&mut vec![ev(1), ev(2)]);
        assert_eq!(
            ring.after(0, 10)
                .iter()
                .map(|(s, _)| *s)
                .collect::<Vec<_>>(),
            vec![1, 2]
        );
        ring.push_all(&mut vec![ev(3), ev(4), ev(5)]);
        let got = ring.after(0, 10);
        assert_eq!(
            got.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![3, 4, 5]
        );
        assert_eq!(got[0].1, ev(3));
        assert_eq!(
            ring.after(3, 1).iter().map(|(s, _)| *s).collect::<Vec<_>>(),
            vec![4]
        );
        assert!(ring.after(5, 10).is_empty());
        assert!(ring.after(u64::MAX, 10).is_empty());
        assert_eq!(ring.last_seq(), 5);
    }
}
