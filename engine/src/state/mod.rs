//! The state machine: pure and deterministic. (Stub: the engine work fills this in.)
//!
//! `apply(request, now)` takes the batch time from outside; no I/O, no clock, no randomness.
//! The runtime logs each `Request` with its `now`; replay feeds them back and reaches the
//! same `digest()`.

use crate::command::{CardId, Millis, Query, Request};
use crate::outcome::{Event, FloatTotals, Reply};

/// Limits of one shard's state.
#[derive(Debug, Clone)]
pub struct StateConfig {
    /// How long an idempotency key is remembered (SPEC: at least 24 h).
    pub idempotency_ttl_ms: i64,
}

impl Default for StateConfig {
    fn default() -> Self {
        StateConfig { idempotency_ttl_ms: 24 * 3600 * 1000 }
    }
}

/// The answer to a read.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryAnswer {
    Card(Option<crate::outcome::CardView>),
    Transactions(Option<Vec<crate::outcome::TxnRecord>>),
}

/// All cards, programs, holds, idempotency keys and the float of one shard.
pub struct State {}

impl State {
    pub fn new(config: StateConfig) -> State {
        let _ = config;
        todo!()
    }
    /// Applies one request at batch time `now`. Events produced are appended to `events`.
    pub fn apply(&mut self, request: &Request, now: Millis, events: &mut Vec<Event>) -> Reply {
        let _ = (request, now, events);
        todo!()
    }
    /// `true` when a `Command::Tick` at `now` would expire or remind something.
    pub fn tick_due(&self, now: Millis) -> bool {
        let _ = now;
        todo!()
    }
    pub fn query(&self, query: &Query, now: Millis) -> QueryAnswer {
        let _ = (query, now);
        todo!()
    }
    /// The program a card belongs to (for gateway-key scoping).
    pub fn program_of(&self, card_id: CardId) -> Option<&str> {
        let _ = card_id;
        todo!()
    }
    /// Outstanding principal, bonus, held per program id; O(programs).
    pub fn float(&self) -> Vec<(String, FloatTotals)> {
        todo!()
    }
    /// A hash of the whole state: same log ⇒ same digest.
    pub fn digest(&self) -> u64 {
        todo!()
    }
    /// Serialises the whole state for a snapshot.
    pub fn snapshot(&self) -> Vec<u8> {
        todo!()
    }
    /// Restores a state from `snapshot` bytes, validating them.
    pub fn restore(bytes: &[u8], config: StateConfig) -> Result<State, StateError> {
        let _ = (bytes, config);
        todo!()
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    #[error("snapshot is invalid: {0}")]
    InvalidSnapshot(String),
}
