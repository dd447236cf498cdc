//! The hasher of the card index: card ids are already well spread, so a seedless mixer
//! (deterministic across processes, as replay needs) is all the table needs.

/// Mixes a card id into a well-spread hash (murmur3 finaliser); deterministic, no seed.
#[derive(Default, Clone, Copy)]
pub struct IdHasher(u64);

/// The murmur3 finaliser: spreads a card id (often sequential) over all 64 bits. Seedless, so
/// every process (and every replay) places ids alike.
pub(crate) fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        mix(self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, x: u64) {
        self.0 ^= x;
    }
    fn write_u32(&mut self, x: u32) {
        self.0 = self.0.rotate_left(32) ^ u64::from(x);
    }
}

/// For any map keyed by card ids (or transaction ids): the report's per-card facts use it too.
pub type IdBuild = std::hash::BuildHasherDefault<IdHasher>;
