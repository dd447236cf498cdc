//! A card's history as memory holds it: each [`TxnEntry`] packed to its nonzero fields as
//! varints, so the two entries most cards hold (open, top-up) take 25 to 40 bytes, not 128.
//!
//! Why: two 64-byte entries were 128 of the 351 bytes a card took, and most of an entry is
//! zeros and small numbers. An entry is found by hopping over length bytes, one byte read per
//! entry before it (a card keeps `history_per_card_max`, 1 024 by default, plus what is younger than the
//! key TTL; most keep a few); its flags byte, the only field that changes after a push (hold state,
//! reversed), is changed in place. Snapshots archive the entries unpacked ([`AsEntries`]), so
//! their bytes and every digest are what they were.
//!
//! Layout: empty, or the entry count (u32 LE) and then the entries, each
//! `len kind flags detail mask` and the varints `mask` names. `at` is always there: the first
//! entry's as a zig-zag number, the others' as their distance from it. `principal` is kept as
//! its difference from `amount` (equal in most top-ups and spends), `aux` (an expiry) as its
//! distance from `at`.

use super::history::TxnEntry;
use super::varint::{self, Reader};
use crate::money::Amount;
use crate::outcome::TxnKind;

/// Bytes of the entry count in front of the entries.
const COUNT_BYTES: usize = 4;
/// An entry's bytes before its varints: length, kind, flags, detail, mask.
const HEAD_BYTES: usize = 5;
/// Where the flags byte sits in an entry.
const FLAGS_AT: usize = 2;

/// `mask` bits: which varints follow, in this order.
const M_AMOUNT: u8 = 1;
const M_PRINCIPAL: u8 = 2;
const M_BONUS: u8 = 4;
const M_EXTRA: u8 = 8;
const M_AUX: u8 = 16;
const M_POINTS: u8 = 32;
const M_REFERS: u8 = 64;

/// The longest packed entry: the head, `at` and seven varints of at most 10 bytes (< 256, so
/// the length fits its byte).
const ENTRY_MAX: usize = HEAD_BYTES + 8 * 10;
const _: () = assert!(ENTRY_MAX <= u8::MAX as usize);

/// A card's entries, oldest first; entry `i` is the card's transaction `hist_first_seq + i`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct History {
    /// Exactly as long as its content (a card's history grows by one entry at a time, and
    /// spare capacity in millions of cards is what this type exists to save).
    bytes: Box<[u8]>,
}

impl History {
    /// Entries held.
    pub fn len(&self) -> usize {
        match self.bytes.get(..COUNT_BYTES) {
            Some(c) => u32::from_le_bytes([c[0], c[1], c[2], c[3]]) as usize,
            None => 0,
        }
    }

    /// The packed bytes, for prefetching them.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Heap bytes in use.
    pub fn heap_bytes(&self) -> usize {
        self.bytes.len()
    }

    /// The `at` every later entry is stored relative to (the first entry's).
    fn base_at(&self) -> i64 {
        if self.bytes.len() <= COUNT_BYTES {
            return 0;
        }
        let mut r = Reader {
            buf: &self.bytes,
            pos: COUNT_BYTES + HEAD_BYTES,
        };
        varint::unzigzag(r.varint())
    }

    /// Byte offset of entry `i` (`len()` for the end).
    fn offset(&self, i: usize) -> Option<usize> {
        if i > self.len() {
            return None;
        }
        let mut at = COUNT_BYTES;
        for _ in 0..i {
            at += usize::from(*self.bytes.get(at)?);
        }
        Some(at)
    }

    /// Entry `i`.
    pub fn get(&self, i: usize) -> Option<TxnEntry> {
        if i >= self.len() {
            return None;
        }
        let at = self.offset(i)?;
        Some(self.decode(at, if i == 0 { None } else { Some(self.base_at()) }))
    }

    /// The flags byte of entry `i`, to change in place.
    pub fn flags_mut(&mut self, i: usize) -> Option<&mut u8> {
        if i >= self.len() {
            return None;
        }
        let at = self.offset(i)?;
        self.bytes.get_mut(at + FLAGS_AT)
    }

    /// Every entry, oldest first.
    pub fn iter(&self) -> Entries<'_> {
        self.iter_from(0)
    }

    /// Entries `start..`, oldest first (those before are hopped over, not decoded).
    pub fn iter_from(&self, start: usize) -> Entries<'_> {
        let len = self.len();
        let start = start.min(len);
        Entries {
            history: self,
            base: self.base_at(),
            at: self.offset(start).unwrap_or(self.bytes.len()),
            done: start,
            len,
        }
    }

    /// Every entry, unpacked (for the few rules that read a card's history backwards).
    pub fn to_vec(&self) -> Vec<TxnEntry> {
        self.iter().collect()
    }

    /// Appends `e`.
    pub fn push(&mut self, e: &TxnEntry) {
        let count = self.len();
        let base = if count == 0 {
            None
        } else {
            Some(self.base_at())
        };
        let mut bytes = std::mem::take(&mut self.bytes).into_vec();
        if bytes.is_empty() {
            bytes.reserve_exact(COUNT_BYTES);
            bytes.extend_from_slice(&0u32.to_le_bytes());
        }
        encode(e, base, &mut bytes);
        let count = u32::try_from(count + 1).expect("a card's history numbering is a u32");
        bytes[..COUNT_BYTES].copy_from_slice(&count.to_le_bytes());
        self.bytes = bytes.into_boxed_slice();
    }

    /// Drops the oldest `n` entries (the rest are packed again: later ones are stored
    /// relative to the first).
    pub fn drop_front(&mut self, n: usize) {
        let keep: Vec<TxnEntry> = self.iter().skip(n).collect();
        *self = History::from_entries(keep.iter());
    }

    /// The entries packed.
    pub fn from_entries<'a>(entries: impl IntoIterator<Item = &'a TxnEntry>) -> History {
        let mut h = History::default();
        for e in entries {
            h.push(e);
        }
        h
    }

    /// The entry at byte offset `at`; `base` is the first entry's `at` (`None`: this is it).
    fn decode(&self, at: usize, base: Option<i64>) -> TxnEntry {
        let len = usize::from(self.bytes.get(at).copied().unwrap_or(0));
        let buf = self.bytes.get(at..at + len).unwrap_or(&[]);
        debug_assert_eq!(buf.len(), len, "a packed entry inside its history");
        let mut r = Reader { buf, pos: 1 };
        let kind = kind_from_u8(r.byte());
        let flags = r.byte();
        let detail = r.byte();
        let mask = r.byte();
        let time = varint::unzigzag(r.varint());
        let at_ms = match base {
            None => time,
            Some(b) => b.wrapping_add(time),
        };
        let mut field = |bit: u8| {
            if mask & bit != 0 {
                r.varint()
            } else {
                0
            }
        };
        let amount = varint::unzigzag(field(M_AMOUNT));
        let principal = amount.wrapping_add(varint::unzigzag(field(M_PRINCIPAL)));
        let bonus = varint::unzigzag(field(M_BONUS));
        let extra = varint::unzigzag(field(M_EXTRA));
        let aux = if mask & M_AUX != 0 {
            at_ms.wrapping_add(varint::unzigzag(field(M_AUX)))
        } else {
            0
        };
        let points = field(M_POINTS);
        let refers_to = field(M_REFERS) as u32;
        debug_assert_eq!(r.pos, len, "a packed entry read to its end");
        TxnEntry {
            at: at_ms,
            amount: Amount(amount),
            principal: Amount(principal),
            bonus: Amount(bonus),
            extra: Amount(extra),
            aux,
            points,
            refers_to,
            kind,
            flags,
            detail,
        }
    }
}

/// [`History::iter`]: knows its length and can restart (rkyv walks it twice).
#[derive(Clone)]
pub(crate) struct Entries<'a> {
    history: &'a History,
    base: i64,
    /// Byte offset of the next entry.
    at: usize,
    done: usize,
    len: usize,
}

impl Iterator for Entries<'_> {
    type Item = TxnEntry;

    fn next(&mut self) -> Option<TxnEntry> {
        if self.done >= self.len {
            return None;
        }
        let h = self.history;
        let e = h.decode(self.at, (self.done > 0).then_some(self.base));
        self.at += usize::from(h.bytes.get(self.at).copied().unwrap_or(0));
        self.done += 1;
        Some(e)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len - self.done;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Entries<'_> {}

/// Appends `e` packed to `out`, reserving exactly its bytes; `base` as for
/// [`History::decode`].
fn encode(e: &TxnEntry, base: Option<i64>, out: &mut Vec<u8>) {
    let time = varint::zigzag(match base {
        None => e.at,
        Some(b) => e.at.wrapping_sub(b),
    });
    let principal = e.principal.0.wrapping_sub(e.amount.0);
    let fields = [
        (M_AMOUNT, varint::zigzag(e.amount.0), e.amount.0 != 0),
        (M_PRINCIPAL, varint::zigzag(principal), principal != 0),
        (M_BONUS, varint::zigzag(e.bonus.0), e.bonus.0 != 0),
        (M_EXTRA, varint::zigzag(e.extra.0), e.extra.0 != 0),
        (M_AUX, varint::zigzag(e.aux.wrapping_sub(e.at)), e.aux != 0),
        (M_POINTS, e.points, e.points != 0),
        (M_REFERS, u64::from(e.refers_to), e.refers_to != 0),
    ];
    let mask = fields.iter().filter(|f| f.2).fold(0u8, |m, f| m | f.0);
    let len = HEAD_BYTES
        + varint::len(time)
        + fields
            .iter()
            .filter(|f| f.2)
            .map(|f| varint::len(f.1))
            .sum::<usize>();
    debug_assert!(len <= ENTRY_MAX);
    out.reserve_exact(len);
    let start = out.len();
    out.extend_from_slice(&[len as u8, e.kind as u8, e.flags, e.detail, mask]);
    varint::put(out, time);
    for (_, x, present) in fields {
        if present {
            varint::put(out, x);
        }
    }
    debug_assert_eq!(out.len() - start, len);
}

fn kind_from_u8(b: u8) -> TxnKind {
    let kind = TxnKind::ALL.get(usize::from(b)).copied();
    debug_assert!(kind.is_some(), "a packed entry's kind");
    kind.unwrap_or(TxnKind::Open)
}

/// rkyv: a [`History`] archived exactly as the `Vec<TxnEntry>` cards held before, so snapshot
/// bytes (and digests) do not depend on how memory packs it.
pub(crate) struct AsEntries;

impl rkyv::with::ArchiveWith<History> for AsEntries {
    type Archived = rkyv::vec::ArchivedVec<rkyv::Archived<TxnEntry>>;
    type Resolver = rkyv::vec::VecResolver;

    fn resolve_with(field: &History, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::vec::ArchivedVec::resolve_from_len(field.len(), resolver, out);
    }
}

impl<S> rkyv::with::SerializeWith<History, S> for AsEntries
where
    S: rkyv::rancor::Fallible + rkyv::ser::Allocator + rkyv::ser::Writer + ?Sized,
{
    fn serialize_with(field: &History, s: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::vec::ArchivedVec::<rkyv::Archived<TxnEntry>>::serialize_from_iter::<TxnEntry, _, S>(
            field.iter(),
            s,
        )
    }
}

impl<D> rkyv::with::DeserializeWith<rkyv::vec::ArchivedVec<rkyv::Archived<TxnEntry>>, History, D>
    for AsEntries
where
    D: rkyv::rancor::Fallible + ?Sized,
{
    fn deserialize_with(
        field: &rkyv::vec::ArchivedVec<rkyv::Archived<TxnEntry>>,
        d: &mut D,
    ) -> Result<History, D::Error> {
        let mut h = History::default();
        for a in field.iter() {
            let e: TxnEntry = rkyv::Deserialize::deserialize(a, d)?;
            h.push(&e);
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::varint::testing;

    fn entry(kind: TxnKind, at: i64, figures: [i64; 5], points: u64, refers_to: u32) -> TxnEntry {
        let [amount, principal, bonus, extra, aux] = figures;
        TxnEntry {
            at,
            amount: Amount(amount),
            principal: Amount(principal),
            bonus: Amount(bonus),
            extra: Amount(extra),
            aux,
            points,
            refers_to,
            kind,
            flags: 0x55,
            detail: 3,
        }
    }

    #[test]
    fn an_open_and_a_top_up_take_a_few_dozen_bytes_and_come_back_whole() {
        let t = 1_767_578_400_123;
        let open = entry(TxnKind::Open, t, [0; 5], 0, 0);
        let top_up = entry(
            TxnKind::TopUp,
            t + 60_000,
            [10_000, 10_000, 1_000, 1_000, t + 365 * 86_400_000],
            0,
            0,
        );
        let h = History::from_entries([&open, &top_up]);
        assert_eq!(h.len(), 2);
        assert_eq!(h.get(0), Some(open));
        assert_eq!(h.get(1), Some(top_up));
        assert_eq!(h.get(2), None);
        // 4 (count) + 11 (open: head, time) + 21 (top-up: head, 1 min, amount, bonus and the
        // ladder bonus, the lot's expiry a year on; its principal is its amount).
        assert_eq!(h.heap_bytes(), 36);
        assert_eq!(h.to_vec(), vec![open, top_up]);
    }

    /// Packing is exact for any entry: every figure drawn from the edges of each varint length
    /// (and from the extremes), in 20 000 mixes, flags changed in place, the front dropped.
    #[test]
    fn packing_round_trips_at_every_varint_edge() {
        let edges = testing::edges(&[1_767_578_400_123]);
        let mut draw = testing::drawer();
        let mut h = History::default();
        let mut want = Vec::new();
        for i in 0..20_000 {
            let figures = [0; 5].map(|_: i64| edges[draw(edges.len())]);
            let e = entry(
                TxnKind::ALL[draw(TxnKind::ALL.len())],
                edges[draw(edges.len())],
                figures,
                edges[draw(edges.len())] as u64,
                edges[draw(edges.len())] as u32,
            );
            h.push(&e);
            want.push(e);
            if i % 1000 == 999 {
                let j = draw(want.len());
                *h.flags_mut(j).expect("in range") = 0xa0;
                want[j].flags = 0xa0;
                assert_eq!(h.get(j), Some(want[j]));
            }
        }
        assert_eq!(h.len(), want.len());
        assert!(h.iter().eq(want.iter().copied()));
        assert!(h.iter_from(19_990).eq(want[19_990..].iter().copied()));
        assert_eq!(h.iter_from(20_000).len(), 0);
        assert_eq!(h.iter_from(25_000).len(), 0);
        h.drop_front(7_000);
        assert!(h.iter().eq(want[7_000..].iter().copied()));
        assert_eq!(h.get(0), Some(want[7_000]));
    }

    #[test]
    fn every_kind_survives_its_byte() {
        for (i, k) in TxnKind::ALL.iter().enumerate() {
            assert_eq!(*k as u8 as usize, i);
            assert_eq!(kind_from_u8(*k as u8), *k);
        }
    }
}
