//! Prefetching what `apply` will touch, a few requests ahead, so cache misses overlap. A hint
//! only: nothing here changes the state.

use super::card::Card;
use super::{idempotency, State};
use crate::command::{CallerId, Request};

/// Hints the CPU to load the cache line at `p` without waiting for it.
#[inline(always)]
#[allow(unsafe_code)]
fn prefetch_line(p: *const u8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` is only a hint: it never faults and reads nothing into the program,
    // whatever the address; SSE is part of every x86_64 target.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

impl State {
    /// Starts loading what `apply(request)` touches first: the card's index bucket, the card,
    /// and the key's index bucket. Called a few requests ahead of `apply` over a batch, so the
    /// cache misses of several requests overlap instead of stalling one after another. A hint
    /// only: it changes nothing.
    pub fn prefetch(&self, request: &Request, caller: CallerId) {
        if let Some(key) = request.idempotency_key.as_deref() {
            let card = request.command.card();
            self.keys.touch(&idempotency::key_hash(caller, card, key));
        }
        let Some(id) = request.command.card() else {
            return;
        };
        if let Some(&slot) = self.card_index.get(&id.0) {
            let card = std::ptr::from_ref(self.card_at(slot)).cast::<u8>();
            for line in (0..std::mem::size_of::<Card>()).step_by(64) {
                prefetch_line(card.wrapping_add(line));
            }
        }
    }
}
