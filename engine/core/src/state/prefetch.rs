//! Prefetching what `apply` will touch, a few requests ahead, so cache misses overlap. A hint
//! only: nothing here changes the state.

use super::card::Card;
use super::{idempotency, State};
use crate::command::{CallerId, Request};

/// Hints the CPU to load the cache line at `p` without waiting for it.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is only a hint: it never faults and reads nothing into the program,
    // whatever the address; SSE is part of every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// How many requests ahead of `apply` each prefetch stage runs. Each stage reads only what the
/// stage before it brought into cache, so none of them waits on memory:
/// 0. the index buckets of the card and of the idempotency key (their addresses follow from
///    the hashes alone);
/// 1. the shared header of the card's chunk (found through the card's bucket);
/// 2. the card (found through the chunk);
/// 3. the card's history (found through the card).
const STAGES: [usize; 4] = [16, 12, 8, 4];
// Every stage looks at least one request ahead (callers index `nth(d)` from the next request),
// and each later stage nearer than the one before it.
const _: () = assert!(STAGES[3] >= 1 && STAGES[2] > STAGES[3]);
const _: () = assert!(STAGES[1] > STAGES[2] && STAGES[0] > STAGES[1]);

impl State {
    /// Prefetching before the first request of a run is applied: every stage for the requests
    /// the later calls of [`State::prefetch_ahead`] will not reach. `nth(d)` is the request
    /// `d` places from the one about to be applied (0: that one).
    pub fn prefetch_first<'r>(&self, nth: impl Fn(usize) -> Option<(&'r Request, CallerId)>) {
        for (stage, &ahead) in STAGES.iter().enumerate() {
            for d in 0..ahead {
                if let Some((r, caller)) = nth(d) {
                    self.prefetch_stage(stage, r, caller);
                }
            }
        }
    }

    /// Called before each apply of a run: starts loading what the requests a few places later
    /// will touch, so the cache misses of many requests overlap instead of stalling one after
    /// another. `nth(d)` is the request `d` places after the one about to be applied. A hint
    /// only: it changes nothing.
    pub fn prefetch_ahead<'r>(&self, nth: impl Fn(usize) -> Option<(&'r Request, CallerId)>) {
        for (stage, &ahead) in STAGES.iter().enumerate() {
            if let Some((r, caller)) = nth(ahead) {
                self.prefetch_stage(stage, r, caller);
            }
        }
    }

    /// One stage of [`STAGES`] for one request.
    fn prefetch_stage(&self, stage: usize, request: &Request, caller: CallerId) {
        let card = request.command.card();
        if stage == 0 {
            if let Some(key) = request.idempotency_key.as_deref() {
                self.keys
                    .prefetch(&idempotency::key_hash(caller, card, key));
            }
            if let Some(id) = card {
                self.card_index.prefetch(&id.0.into());
            }
            return;
        }
        // Later stages find the card through its bucket, in cache since stage 0.
        let Some(&slot) = card.and_then(|id| self.card_index.get(&id.0.into())) else {
            return;
        };
        let (start, len) = match stage {
            1 => (self.chunk_header(slot), 1),
            2 => (
                std::ptr::from_ref(self.card_at(slot)).cast::<u8>(),
                std::mem::size_of::<Card>(),
            ),
            _ => {
                let bytes = self.card_at(slot).history.as_bytes();
                (bytes.as_ptr(), bytes.len().min(128))
            }
        };
        for line in (0..len).step_by(64) {
            prefetch_line(start.wrapping_add(line));
        }
    }
}
