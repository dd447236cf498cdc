//! The card index and the key index: a hash map to `u32`, split into parts by the key's hash,
//! each part an open-addressing table of one-cache-line buckets.
//!
//! Why parts: a shard's indexes hold millions of entries. When one table of millions doubles,
//! the shard thread stops for hundreds of milliseconds to move every entry (measured as the p99
//! of the runtime bench). Split into [`PARTS`] tables, each doubling moves 1/64 of the entries:
//! the same total work, in stalls 64 times shorter.
//!
//! Why buckets of one cache line: a lookup reads one line in the common case, and the line's
//! address follows from the hash alone, so [`Parted::prefetch`] can start loading it many
//! requests ahead of the lookup without waiting for anything (a `std` map hides its layout, so
//! the shard could only prefetch by doing the lookup, stalling on its miss). Probing is linear
//! over buckets; each bucket counts the entries that passed it full (as F14 does), so a lookup
//! stops at the first bucket nothing overflowed, and removal needs no tombstones.

/// Number of parts (a power of two).
pub(crate) const PARTS: usize = 64;

/// A key an index can hold.
pub(crate) trait Slot: Copy + Eq + Default {
    /// How many low bits of [`Slot::spread`] the slot itself knows: a part never grows past
    /// 2^`HOME_BITS` buckets, so a growing part can rehome every slot from the slot alone.
    const HOME_BITS: u32 = 64;

    /// 64 well-mixed bits of the key: the top 6 pick the part, the low bits the bucket.
    fn spread(&self) -> u64;
}

/// A part grows when it would be fuller than this fraction (7/8) of its slots.
const LOAD_NUM: usize = 7;
const LOAD_DEN: usize = 8;

/// One cache line: up to `N` entries, which of them are there, and how many entries that
/// belong here or earlier were pushed past it.
#[repr(C, align(64))]
#[derive(Clone, Copy)]
struct Bucket<K, const N: usize> {
    /// Bit `i` set: slot `i` holds an entry.
    full: u16,
    /// Entries whose home bucket is this one or an earlier one in probe order and that live in
    /// a later one. Saturates: at `u16::MAX` it stays there (lookups then probe one bucket
    /// further than needed, never less).
    overflow: u16,
    keys: [K; N],
    values: [u32; N],
}

impl<K: Slot, const N: usize> Bucket<K, N> {
    const ALL: u16 = (1 << N) - 1;

    fn empty() -> Self {
        Bucket {
            full: 0,
            overflow: 0,
            keys: [K::default(); N],
            values: [0; N],
        }
    }

    /// The slot holding `k` whose value `accept` takes.
    fn find_where(&self, k: &K, accept: &mut impl FnMut(u32) -> bool) -> Option<usize> {
        let mut full = self.full;
        while full != 0 {
            let s = full.trailing_zeros() as usize;
            if self.keys[s] == *k && accept(self.values[s]) {
                return Some(s);
            }
            full &= full - 1;
        }
        None
    }

    fn entries(&self) -> impl Iterator<Item = (K, u32)> + '_ {
        (0..N)
            .filter(|s| self.full & (1 << s) != 0)
            .map(|s| (self.keys[s], self.values[s]))
    }
}

/// One part: a power-of-two number of buckets (none before the first insert).
struct Part<K, const N: usize> {
    buckets: Vec<Bucket<K, N>>,
    len: usize,
}

impl<K: Slot, const N: usize> Part<K, N> {
    fn home(&self, h: u64) -> usize {
        h as usize & (self.buckets.len() - 1)
    }

    fn next(&self, i: usize) -> usize {
        (i + 1) & (self.buckets.len() - 1)
    }

    /// Bucket and slot of `k`, if present.
    fn find(&self, k: &K, h: u64) -> Option<(usize, usize)> {
        self.find_where(k, h, &mut |_| true)
    }

    /// Bucket and slot of the entry of `k` whose value `accept` takes (a key may be held more
    /// than once by [`Parted::insert_new`]; `accept` tells those entries apart).
    fn find_where(
        &self,
        k: &K,
        h: u64,
        accept: &mut impl FnMut(u32) -> bool,
    ) -> Option<(usize, usize)> {
        if self.buckets.is_empty() {
            return None;
        }
        let mut i = self.home(h);
        for _ in 0..self.buckets.len() {
            let b = &self.buckets[i];
            if let Some(s) = b.find_where(k, accept) {
                return Some((i, s));
            }
            if b.overflow == 0 {
                return None;
            }
            i = self.next(i);
        }
        None
    }

    /// Whether one more entry fits under the load limit.
    fn has_room(&self) -> bool {
        (self.len + 1) * LOAD_DEN <= self.buckets.len() * N * LOAD_NUM
    }

    /// Puts `k` (absent) in the first bucket from its home with a free slot. There is room.
    fn place(&mut self, k: K, v: u32, h: u64) {
        let mut i = self.home(h);
        loop {
            let b = &mut self.buckets[i];
            let free = !b.full & Bucket::<K, N>::ALL;
            if free != 0 {
                let s = free.trailing_zeros() as usize;
                b.full |= 1 << s;
                b.keys[s] = k;
                b.values[s] = v;
                self.len += 1;
                return;
            }
            b.overflow = b.overflow.saturating_add(1);
            i = self.next(i);
        }
    }

    /// Moves every entry into `buckets` buckets (a power of two, room for them all).
    fn resize(&mut self, buckets: usize) {
        assert!(
            1usize
                .checked_shl(K::HOME_BITS)
                .is_none_or(|most| buckets <= most),
            "an index part outgrew what its slots know of their home"
        );
        let old = std::mem::replace(&mut self.buckets, vec![Bucket::empty(); buckets]);
        self.len = 0;
        for b in &old {
            for (k, v) in b.entries() {
                self.place(k, v, k.spread());
            }
        }
    }

    /// Buckets needed to hold `n` entries under the load limit.
    fn buckets_for(n: usize) -> usize {
        (n * LOAD_DEN)
            .div_ceil(N * LOAD_NUM)
            .max(1)
            .next_power_of_two()
    }

    /// Removes the entry [`Part::find_where`] finds.
    fn remove_where(&mut self, k: &K, h: u64, accept: &mut impl FnMut(u32) -> bool) -> Option<u32> {
        let (at, s) = self.find_where(k, h, accept)?;
        let b = &mut self.buckets[at];
        b.full &= !(1 << s);
        let v = b.values[s];
        self.len -= 1;
        // Every bucket from home up to the one it lived in counted it as passing.
        let mut i = self.home(h);
        while i != at {
            let b = &mut self.buckets[i];
            assert!(b.overflow > 0, "an index bucket lost its overflow count");
            if b.overflow != u16::MAX {
                b.overflow -= 1;
            }
            i = self.next(i);
        }
        Some(v)
    }
}

/// A map from `K` to `u32` in [`PARTS`] parts of cache-line buckets of `N` entries.
pub(crate) struct Parted<K, const N: usize> {
    parts: Box<[Part<K, N>]>,
    /// Inserts that found their part full, so moved every entry of it (growth): counted so a
    /// slow batch can say its index grew. Not part of the map.
    rehashes: u64,
}

impl<K: Slot, const N: usize> Default for Parted<K, N> {
    fn default() -> Self {
        const {
            assert!(
                std::mem::size_of::<Bucket<K, N>>() == 64,
                "a bucket is one line"
            );
            assert!(N <= 16);
        }
        Parted {
            parts: (0..PARTS)
                .map(|_| Part {
                    buckets: Vec::new(),
                    len: 0,
                })
                .collect(),
            rehashes: 0,
        }
    }
}

fn part_of(h: u64) -> usize {
    (h >> 58) as usize & (PARTS - 1)
}

impl<K: Slot, const N: usize> Parted<K, N> {
    pub fn get(&self, k: &K) -> Option<&u32> {
        let h = k.spread();
        let part = &self.parts[part_of(h)];
        let (b, s) = part.find(k, h)?;
        Some(&part.buckets[b].values[s])
    }

    /// The value of an entry of `k` that `accept` takes: for slots that hold only part of a
    /// key, where entries of different keys can share a slot key and `accept` checks the rest.
    pub fn get_where(&self, k: &K, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let h = k.spread();
        let part = &self.parts[part_of(h)];
        let (b, s) = part.find_where(k, h, &mut accept)?;
        Some(part.buckets[b].values[s])
    }

    /// Removes the entry [`Parted::get_where`] would find, and returns its value.
    pub fn remove_where(&mut self, k: &K, mut accept: impl FnMut(u32) -> bool) -> Option<u32> {
        let h = k.spread();
        self.parts[part_of(h)].remove_where(k, h, &mut accept)
    }

    /// Adds an entry without looking for one of the same key first: the caller knows this
    /// entry is new, though its slot key may already be there for another (see
    /// [`Parted::get_where`]). Not to be mixed with [`Parted::insert`] on one map.
    pub fn insert_new(&mut self, k: K, v: u32) {
        let h = k.spread();
        let part = &mut self.parts[part_of(h)];
        if !part.has_room() {
            part.resize((part.buckets.len() * 2).max(1));
            self.rehashes += 1;
        }
        part.place(k, v, h);
    }

    pub fn contains_key(&self, k: &K) -> bool {
        self.get(k).is_some()
    }

    /// Starts loading the bucket a lookup of `k` reads first, without waiting for it.
    pub fn prefetch(&self, k: &K) {
        let h = k.spread();
        let part = &self.parts[part_of(h)];
        if !part.buckets.is_empty() {
            let b = &part.buckets[part.home(h)];
            super::prefetch::prefetch_line(std::ptr::from_ref(b).cast());
        }
    }

    pub fn insert(&mut self, k: K, v: u32) -> Option<u32> {
        let h = k.spread();
        let part = &mut self.parts[part_of(h)];
        if let Some((b, s)) = part.find(&k, h) {
            return Some(std::mem::replace(&mut part.buckets[b].values[s], v));
        }
        self.insert_new(k, v);
        None
    }

    /// Inserts that moved a whole part (see the field).
    pub fn rehashes(&self) -> u64 {
        self.rehashes
    }

    /// Removes `k`'s entry (the indexes themselves remove only through
    /// [`Parted::remove_where`]: cards are never removed, keys by position).
    #[cfg(test)]
    pub fn remove(&mut self, k: &K) -> Option<u32> {
        self.remove_where(k, |_| true)
    }

    pub fn len(&self) -> usize {
        self.parts.iter().map(|p| p.len).sum()
    }

    /// Heap bytes of the buckets.
    pub fn bytes(&self) -> usize {
        self.parts.iter().map(|p| p.buckets.len() * 64).sum()
    }

    /// Room for `n` more entries spread evenly (a restore sizes the tables once).
    pub fn reserve(&mut self, n: usize) {
        let each = n.div_ceil(PARTS) + n.div_ceil(PARTS) / 8;
        for p in self.parts.iter_mut() {
            let want = Part::<K, N>::buckets_for(p.len + each);
            if want > p.buckets.len() {
                p.resize(want);
            }
        }
    }
}

/// A card id as the card index holds it: two `u32`s, so five entries and their slots fit in
/// one 64-byte bucket (a `u64` would align the keys to 8 and fit four).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CardKey([u32; 2]);

impl From<u64> for CardKey {
    fn from(id: u64) -> CardKey {
        CardKey([id as u32, (id >> 32) as u32])
    }
}

impl Slot for CardKey {
    /// Card ids are often sequential: mixed first, as the other maps keyed by card id do.
    fn spread(&self) -> u64 {
        super::hasher::mix(u64::from(self.0[0]) | u64::from(self.0[1]) << 32)
    }
}

/// The card index: card id → slot in the card table.
pub(crate) type CardIndex = Parted<CardKey, 5>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Keys whose spread is the key itself, to steer entries into chosen buckets.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    struct Raw([u32; 2]);
    impl Slot for Raw {
        fn spread(&self) -> u64 {
            u64::from(self.0[0]) | u64::from(self.0[1]) << 32
        }
    }
    fn raw(x: u64) -> Raw {
        Raw([x as u32, (x >> 32) as u32])
    }

    #[test]
    fn behaves_as_one_map_and_spreads_sequential_ids() {
        let mut m = CardIndex::default();
        let mut model = HashMap::new();
        for i in 0..20_000u64 {
            assert_eq!(
                m.insert(i.into(), i as u32 * 3),
                model.insert(i, i as u32 * 3)
            );
            if i % 3 == 0 {
                assert_eq!(m.remove(&(i / 2).into()), model.remove(&(i / 2)));
            }
        }
        assert_eq!(m.len(), model.len());
        for i in 0..20_000u64 {
            assert_eq!(m.get(&i.into()), model.get(&i));
            assert_eq!(m.contains_key(&i.into()), model.contains_key(&i));
        }
        // Sequential ids land in every part, none with more than twice its share.
        let most = m.parts.iter().map(|p| p.len).max().unwrap_or(0);
        assert!(m.parts.iter().all(|p| p.len > 0));
        assert!(most < 2 * m.len() / PARTS, "{most} of {}", m.len());
        // Every part grew from empty several times, and growth is counted once per move.
        assert!(m.rehashes() >= PARTS as u64 * 4, "{}", m.rehashes());
        assert!(m.rehashes() <= PARTS as u64 * 16, "{}", m.rehashes());
        assert!(
            m.len() * LOAD_DEN <= m.bytes() / 64 * 5 * LOAD_NUM,
            "within the load limit"
        );
    }

    /// Entries all homed on one bucket spill into the following ones; removing any of them,
    /// in any order, leaves the others findable and the overflow counts back at zero.
    #[test]
    fn overflow_chains_survive_removal_in_any_order() {
        let mut m: Parted<Raw, 5> = Parted::default();
        // Same part (top bits 0), same home bucket (low bits 0) once the part has 16+ buckets.
        let keys: Vec<u64> = (0..23u64).map(|i| i << 20).collect();
        m.reserve(PARTS * 60);
        for (n, &k) in keys.iter().enumerate() {
            assert_eq!(m.insert(raw(k), n as u32), None);
        }
        let part = &m.parts[0];
        assert!(part.buckets.len() >= 8, "{}", part.buckets.len());
        assert_eq!(part.buckets[0].overflow, 18, "23 entries, 5 at home");
        let mut order: Vec<usize> = (0..keys.len()).collect();
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for i in (1..order.len()).rev() {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            order.swap(i, (x % (i as u64 + 1)) as usize);
        }
        for (gone, &n) in order.iter().enumerate() {
            assert_eq!(m.remove(&raw(keys[n])), Some(n as u32));
            assert_eq!(m.remove(&raw(keys[n])), None);
            for &later in &order[gone + 1..] {
                assert_eq!(m.get(&raw(keys[later])), Some(&(later as u32)));
            }
        }
        assert_eq!(m.len(), 0);
        assert!(m.parts[0]
            .buckets
            .iter()
            .all(|b| b.overflow == 0 && b.full == 0));
    }

    /// A chain that runs past the last bucket wraps to the first.
    #[test]
    fn chains_wrap_around_the_end() {
        let mut m: Parted<Raw, 5> = Parted::default();
        m.reserve(PARTS * 60);
        let last = m.parts[0].buckets.len() as u64 - 1;
        let keys: Vec<u64> = (0..12u64).map(|i| last | i << 30).collect();
        for &k in &keys {
            m.insert(raw(k), k as u32);
        }
        assert!(m.parts[0].buckets[0].full != 0, "spilled into bucket 0");
        for &k in &keys {
            assert_eq!(m.get(&raw(k)), Some(&(k as u32)));
        }
        for &k in &keys {
            assert_eq!(m.remove(&raw(k)), Some(k as u32));
        }
        assert!(m.parts[0].buckets.iter().all(|b| b.overflow == 0));
    }

    /// Entries added by `insert_new` may share a slot key: `get_where` and `remove_where`
    /// find the entry their test accepts, whichever bucket of the chain it lies in, and
    /// removing one leaves the others.
    #[test]
    fn entries_sharing_a_slot_key_are_told_apart_by_value() {
        let mut m: Parted<Raw, 5> = Parted::default();
        m.reserve(PARTS * 60);
        // Twelve entries of one key on one home bucket: they spill into the next two.
        for v in 0..12u32 {
            m.insert_new(raw(7), v);
        }
        m.insert_new(raw(8), 100);
        assert_eq!(m.len(), 13);
        for v in 0..12u32 {
            assert_eq!(m.get_where(&raw(7), |x| x == v), Some(v));
        }
        assert_eq!(
            m.get_where(&raw(7), |x| x == 100),
            None,
            "another key's value"
        );
        assert_eq!(m.get_where(&raw(8), |_| true), Some(100));
        for v in (0..12u32).rev().step_by(2) {
            assert_eq!(m.remove_where(&raw(7), |x| x == v), Some(v));
            assert_eq!(m.remove_where(&raw(7), |x| x == v), None);
        }
        for v in 0..12u32 {
            let left = (v % 2 == 0).then_some(v);
            assert_eq!(m.get_where(&raw(7), |x| x == v), left);
        }
        assert_eq!(m.len(), 7);
    }

    proptest::proptest! {
        /// Any mix of inserts, removals and lookups answers as `HashMap` does, with keys
        /// crowded onto a few home buckets of two parts (long chains, wrap-arounds, growth),
        /// and every bucket's overflow count stays exactly the number of entries that passed it.
        #[test]
        fn crowded_keys_answer_as_a_hash_map(
            ops in proptest::collection::vec((0u8..3, 0u64..400), 0..3000)
        ) {
            let mut m: Parted<Raw, 5> = Parted::default();
            let mut model = HashMap::new();
            // Home bucket from the low 3 bits; part 0 or 1 from the top bits; the rest tells
            // keys apart.
            let key = |x: u64| raw((x & 7) | (x >> 3) << 20 | (x & 1) << 58);
            for (n, (op, x)) in ops.into_iter().enumerate() {
                match op {
                    0 => proptest::prop_assert_eq!(
                        m.insert(key(x), n as u32),
                        model.insert(x, n as u32)
                    ),
                    1 => proptest::prop_assert_eq!(m.remove(&key(x)), model.remove(&x)),
                    _ => proptest::prop_assert_eq!(m.get(&key(x)), model.get(&x)),
                }
            }
            proptest::prop_assert_eq!(m.len(), model.len());
            for (x, v) in &model {
                proptest::prop_assert_eq!(m.get(&key(*x)), Some(v));
            }
            overflow_counts_are_exact(&m)?;
        }

        /// `insert_new`, `get_where` and `remove_where` answer as a list of (key, value) pairs
        /// does, with keys repeated and crowded onto a few home buckets of two parts, growth
        /// included; overflow counts stay exact.
        #[test]
        fn repeated_keys_answer_as_a_list_of_pairs(
            ops in proptest::collection::vec((0u8..3, 0u64..40, 0u32..4), 0..3000)
        ) {
            let mut m: Parted<Raw, 5> = Parted::default();
            let mut model: Vec<(u64, u32)> = Vec::new();
            let key = |x: u64| raw((x & 3) | (x >> 2) << 20 | (x & 1) << 58);
            for (n, (op, x, r)) in ops.into_iter().enumerate() {
                // Values are unique, so "the value r-th in the model for x" names one entry.
                let pick = |model: &Vec<(u64, u32)>| {
                    let of_x: Vec<u32> =
                        model.iter().filter(|e| e.0 == x).map(|e| e.1).collect();
                    of_x.get(r as usize).copied().unwrap_or(u32::MAX)
                };
                match op {
                    0 => {
                        m.insert_new(key(x), n as u32);
                        model.push((x, n as u32));
                    }
                    1 => {
                        let v = pick(&model);
                        let want = model.iter().position(|e| *e == (x, v));
                        let got = m.remove_where(&key(x), |y| y == v);
                        proptest::prop_assert_eq!(got, want.map(|i| model.remove(i).1));
                    }
                    _ => {
                        // Any entry of x with a value of r's residue mod 4.
                        let got = m.get_where(&key(x), |y| y % 4 == r);
                        match got {
                            Some(y) => proptest::prop_assert!(model.contains(&(x, y)) && y % 4 == r),
                            None => proptest::prop_assert!(
                                !model.iter().any(|e| e.0 == x && e.1 % 4 == r)
                            ),
                        }
                    }
                }
            }
            proptest::prop_assert_eq!(m.len(), model.len());
            overflow_counts_are_exact(&m)?;
        }
    }

    /// Every bucket's overflow count is exactly the number of entries that passed it.
    fn overflow_counts_are_exact<K: Slot, const N: usize>(
        m: &Parted<K, N>,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        for part in m.parts.iter() {
            let mut passed = vec![0u16; part.buckets.len()];
            for (at, b) in part.buckets.iter().enumerate() {
                for (k, _) in b.entries() {
                    let mut i = part.home(k.spread());
                    while i != at {
                        passed[i] += 1;
                        i = part.next(i);
                    }
                }
            }
            let counts: Vec<u16> = part.buckets.iter().map(|b| b.overflow).collect();
            proptest::prop_assert_eq!(counts, passed);
        }
        Ok(())
    }
}
