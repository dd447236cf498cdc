//! A hash map split into parts by the key's hash, so that growing never rehashes everything.
//!
//! Why: a shard's key index and card index hold millions of entries. When one hashbrown table
//! of millions doubles, the shard thread stops for hundreds of milliseconds to move every entry
//! (measured as the p99 of the runtime bench). Split into [`PARTS`] tables, each doubling
//! moves 1/64 of the entries: the same total work, in stalls 64 times shorter.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};

/// Number of parts (a power of two).
pub(crate) const PARTS: usize = 64;

/// Picks a key's part from its hash, using bits the per-part table does not lean on alone.
pub(crate) trait Part {
    fn part(&self) -> usize;
}

impl Part for u128 {
    /// Keys are 128-bit xxh3 hashes already: the top bits are uniform.
    fn part(&self) -> usize {
        (*self >> 122) as usize & (PARTS - 1)
    }
}

impl Part for u64 {
    /// Card ids are often sequential: mix them first (murmur3 finaliser) and take top bits.
    fn part(&self) -> usize {
        let mut x = *self;
        x ^= x >> 33;
        x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
        x ^= x >> 33;
        (x >> 58) as usize & (PARTS - 1)
    }
}

/// `HashMap<K, V, S>` in [`PARTS`] parts; only what the state uses.
pub(crate) struct Parted<K, V, S> {
    parts: Box<[HashMap<K, V, S>]>,
    /// Inserts that found their part full, so moved every entry of it (growth, or a rehash
    /// in place): counted so a slow batch can say its index grew. Not part of the map.
    rehashes: u64,
}

impl<K, V, S: Default> Default for Parted<K, V, S> {
    fn default() -> Self {
        Parted {
            parts: (0..PARTS).map(|_| HashMap::default()).collect(),
            rehashes: 0,
        }
    }
}

impl<K: Hash + Eq + Part, V, S: BuildHasher> Parted<K, V, S> {
    fn of(&self, k: &K) -> &HashMap<K, V, S> {
        &self.parts[k.part()]
    }

    fn of_mut(&mut self, k: &K) -> &mut HashMap<K, V, S> {
        &mut self.parts[k.part()]
    }

    pub fn get(&self, k: &K) -> Option<&V> {
        self.of(k).get(k)
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.of(k).contains_key(k)
    }

    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        let part = &mut self.parts[k.part()];
        let full = part.len() == part.capacity();
        let old = part.insert(k, v);
        if full && old.is_none() {
            self.rehashes += 1;
        }
        old
    }

    /// Inserts that moved a whole part (see the field).
    pub fn rehashes(&self) -> u64 {
        self.rehashes
    }

    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.of_mut(k).remove(k)
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(HashMap::len).sum()
    }

    pub fn capacity(&self) -> usize {
        self.parts.iter().map(HashMap::capacity).sum()
    }

    /// Room for `n` more entries spread evenly (a restore sizes the tables once).
    pub fn reserve(&mut self, n: usize) {
        let each = n.div_ceil(PARTS) + n.div_ceil(PARTS) / 8;
        for p in self.parts.iter_mut() {
            p.reserve(each);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn behaves_as_one_map_and_spreads_sequential_ids() {
        let mut m: Parted<u64, u64, std::hash::RandomState> = Parted::default();
        let mut model = HashMap::new();
        for i in 0..20_000u64 {
            assert_eq!(m.insert(i, i * 3), model.insert(i, i * 3));
            if i % 3 == 0 {
                assert_eq!(m.remove(&(i / 2)), model.remove(&(i / 2)));
            }
        }
        assert_eq!(m.len(), model.len());
        for i in 0..20_000u64 {
            assert_eq!(m.get(&i), model.get(&i));
            assert_eq!(m.contains_key(&i), model.contains_key(&i));
        }
        // Sequential ids land in every part, none with more than twice its share.
        let most = m.parts.iter().map(HashMap::len).max().unwrap_or(0);
        assert!(m.parts.iter().all(|p| !p.is_empty()));
        assert!(most < 2 * m.len() / PARTS, "{most} of {}", m.len());
        // Every part grew from empty several times, and growth is counted once per move.
        assert!(m.rehashes() >= PARTS as u64 * 4, "{}", m.rehashes());
        assert!(m.rehashes() <= PARTS as u64 * 16, "{}", m.rehashes());
    }
}
