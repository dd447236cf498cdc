//! A remembered key's entry as memory holds it: [`KeyEntry`] packed into 48 bytes, so that
//! with its 16-byte key an entry of the key log is one 64-byte cache line (it was 96 bytes,
//! then 80 with the card packed).
//!
//! Why: a busy shard remembers millions of keys for 24 h, and every keyed request reads one
//! entry at random. Besides the fingerprint and the kind of answer, an entry holds numbers that
//! are small almost always: the card id, when the key was seen (as an offset from a base time
//! the caller keeps, the first entry of its chunk of the log), the transaction's number, and the
//! card as the answer showed it (seven figures in minor units, status and tier). As varints
//! (signed ones zig-zag encoded) they fit in [`BYTES`]; an entry that does not fit is kept
//! whole beside the key log ([`Packed::WIDE`], see `KeyTable`). The packing is exact both ways,
//! so snapshots, which are written from unpacked entries, keep their bytes.

use super::idempotency::{KeyEntry, ShownCard, Stored};
use super::varint::{self, Reader};
use crate::command::CardId;
use crate::money::Amount;
use crate::outcome::CardStatus;

/// Bytes for the varint part of an entry: card, time, transaction and the card as shown.
const BYTES: usize = 37;

/// [`KeyEntry`] packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packed {
    fingerprint: u64,
    stored: Stored,
    code: u8,
    /// The entry's flags, with [`Packed::WIDE`] when it is kept aside.
    flags: u8,
    /// Varints, self-delimiting; zeros after them.
    bytes: [u8; BYTES],
}

const _: () = assert!(std::mem::size_of::<Packed>() == 48);

impl Packed {
    /// Flag of an entry that did not fit: it is kept whole beside the log. No flag of
    /// [`KeyEntry`] uses this bit; an entry that carries it anyway goes aside whole.
    const WIDE: u8 = 0x80;

    /// Packs `e`, its time as an offset from `base`; the second value is the entry itself when
    /// it does not fit (keep it aside).
    pub fn pack(e: &KeyEntry, base: i64) -> (Packed, Option<KeyEntry>) {
        let mut p = Packed {
            fingerprint: e.fingerprint,
            stored: e.stored,
            code: e.code,
            flags: e.flags,
            bytes: [0; BYTES],
        };
        let s = &e.shown;
        let mut w = Writer {
            buf: &mut p.bytes,
            len: 0,
        };
        let fits = w.varint(e.card.0)
            && w.varint(varint::zigzag(e.at.wrapping_sub(base)))
            && w.varint(u64::from(e.seq))
            && [s.principal, s.bonus, s.held]
                .into_iter()
                .all(|a| w.varint(zigzag(a)))
            && w.varint(s.points)
            && [s.paid_in, s.bonus_given, s.consumed]
                .into_iter()
                .all(|a| w.varint(zigzag(a)))
            && w.byte(status_to_u8(s.status))
            && w.byte(s.tier);
        if fits && e.flags & Packed::WIDE == 0 {
            (p, None)
        } else {
            p.bytes = [0; BYTES];
            p.flags |= Packed::WIDE;
            (p, Some(*e))
        }
    }

    /// The entry again (`base` as given to [`Packed::pack`]); `aside` finds the entry kept
    /// aside, asked only when [`Packed::is_wide`].
    pub fn unpack<'a>(&self, base: i64, aside: impl FnOnce() -> Option<&'a KeyEntry>) -> KeyEntry {
        if self.is_wide() {
            let e = aside();
            debug_assert!(e.is_some(), "a wide key entry kept nowhere");
            return e.copied().unwrap_or(KeyEntry {
                fingerprint: self.fingerprint,
                card: CardId(0),
                at: base,
                seq: 0,
                stored: self.stored,
                code: self.code,
                flags: self.flags,
                shown: ShownCard::NONE,
            });
        }
        let (mut r, card, at) = self.head(base);
        let seq = r.varint() as u32;
        let shown = ShownCard {
            principal: unzigzag(r.varint()),
            bonus: unzigzag(r.varint()),
            held: unzigzag(r.varint()),
            points: r.varint(),
            paid_in: unzigzag(r.varint()),
            bonus_given: unzigzag(r.varint()),
            consumed: unzigzag(r.varint()),
            status: status_from_u8(r.byte()),
            tier: r.byte(),
        };
        KeyEntry {
            fingerprint: self.fingerprint,
            card,
            at,
            seq,
            stored: self.stored,
            code: self.code,
            flags: self.flags,
            shown,
        }
    }

    /// The entry is kept beside the log.
    pub fn is_wide(&self) -> bool {
        self.flags & Packed::WIDE != 0
    }

    /// When the key was first seen (ms), `base` as given to [`Packed::pack`]; `aside` as for
    /// [`Packed::unpack`].
    pub fn at<'a>(&self, base: i64, aside: impl FnOnce() -> Option<&'a KeyEntry>) -> i64 {
        if self.is_wide() {
            return aside().map_or(base, |e| e.at);
        }
        self.head(base).2
    }

    /// The card id and time an inline entry starts with (in [`Packed::pack`]'s order), and a
    /// reader at what follows them.
    fn head(&self, base: i64) -> (Reader<'_>, CardId, i64) {
        let mut r = Reader {
            buf: &self.bytes,
            pos: 0,
        };
        let card = CardId(r.varint());
        let at = base.wrapping_add(varint::unzigzag(r.varint()));
        (r, card, at)
    }

    pub fn stored(&self) -> Stored {
        self.stored
    }
}

fn zigzag(a: Amount) -> u64 {
    varint::zigzag(a.0)
}

fn unzigzag(x: u64) -> Amount {
    Amount(varint::unzigzag(x))
}

fn status_to_u8(s: CardStatus) -> u8 {
    match s {
        CardStatus::Active => 0,
        CardStatus::Frozen => 1,
        CardStatus::Closed => 2,
    }
}

fn status_from_u8(x: u8) -> CardStatus {
    match x {
        0 => CardStatus::Active,
        1 => CardStatus::Frozen,
        _ => {
            debug_assert_eq!(x, 2, "packed card status");
            CardStatus::Closed
        }
    }
}

/// Writes into a fixed buffer; every write says whether it fit.
struct Writer<'a> {
    buf: &'a mut [u8; BYTES],
    len: usize,
}

impl Writer<'_> {
    fn byte(&mut self, b: u8) -> bool {
        match self.buf.get_mut(self.len) {
            Some(slot) => {
                *slot = b;
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// LEB128: seven bits a byte, low first.
    fn varint(&mut self, mut x: u64) -> bool {
        loop {
            let low = (x & 0x7f) as u8;
            x >>= 7;
            if x == 0 {
                return self.byte(low);
            }
            if !self.byte(low | 0x80) {
                return false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::idempotency::{K_REVERSED, K_SHOWN, NO_TIER};
    use crate::state::varint::testing;

    /// When the entries below were seen, and the base of their chunk a minute before.
    const AT: i64 = 1_767_578_400_123;
    const BASE: i64 = AT - 60_000;

    fn entry(shown: ShownCard) -> KeyEntry {
        KeyEntry {
            fingerprint: 0xdead_beef_cafe_f00d,
            card: CardId(6_200_000_000_000_001),
            at: AT,
            seq: 1_234,
            stored: Stored::Txn,
            code: 7,
            flags: K_SHOWN | K_REVERSED,
            shown,
        }
    }

    fn card(figures: [i64; 6], points: u64, status: CardStatus, tier: u8) -> ShownCard {
        let [principal, bonus, held, paid_in, bonus_given, consumed] = figures.map(Amount);
        ShownCard {
            principal,
            bonus,
            held,
            points,
            paid_in,
            bonus_given,
            consumed,
            status,
            tier,
        }
    }

    /// Packs and unpacks `e` against `base`; says whether it went aside.
    fn round_trip(e: &KeyEntry, base: i64) -> bool {
        let (p, aside) = Packed::pack(e, base);
        assert_eq!(p.is_wide(), aside.is_some());
        assert_eq!(
            p.unpack(base, || aside.as_ref()),
            *e,
            "{e:?} against {base}"
        );
        assert_eq!(p.at(base, || aside.as_ref()), e.at);
        assert_eq!(p.stored(), e.stored);
        p.is_wide()
    }

    #[test]
    fn everyday_entries_pack_inline_and_extreme_ones_go_aside() {
        // A 16-digit card with 1 000 000.00 of lifetime top-ups and a million points fits.
        let everyday = card(
            [6_696, 1_004, 500, 100_000_000, 15_000_000, 84_000_000],
            1_000_000,
            CardStatus::Frozen,
            3,
        );
        assert!(!round_trip(&entry(everyday), BASE));
        assert!(!round_trip(&entry(ShownCard::NONE), BASE));
        // Seen before its chunk's base (a clock that stepped back): a negative offset.
        assert!(!round_trip(&entry(everyday), AT + 60_000));
        // An entry with a flag no entry uses goes aside whole, flag and all.
        let odd = KeyEntry {
            flags: K_SHOWN | 0x80,
            ..entry(everyday)
        };
        assert!(round_trip(&odd, BASE));
        // Every figure at its extremes does not fit: kept aside, and comes back whole.
        let extreme = card(
            [i64::MIN, i64::MAX, -1, i64::MAX, i64::MIN, 1],
            u64::MAX,
            CardStatus::Closed,
            NO_TIER,
        );
        let (p, aside) = Packed::pack(&entry(extreme), BASE);
        assert!(p.is_wide());
        assert_eq!(aside, Some(entry(extreme)));
        assert!(round_trip(&entry(extreme), BASE));
        // So does a card id, time and transaction number at their largest.
        let far = KeyEntry {
            card: CardId(u64::MAX),
            at: i64::MIN,
            seq: u32::MAX,
            ..entry(everyday)
        };
        assert!(round_trip(&far, i64::MAX));
    }

    /// Packing is exact for any entry, inline or aside (so snapshots keep their bytes): every
    /// number drawn from the edges of each varint length, in 40 000 mixes.
    #[test]
    fn packing_round_trips_at_every_varint_edge() {
        let edges = testing::edges(&[10_000_000_000]);
        let mut draw = testing::drawer();
        let mut edge = || edges[draw(edges.len())];
        let (mut inline, mut wide) = (0, 0);
        for _ in 0..40_000 {
            let figures = [0; 6].map(|_: i64| edge());
            let points = edge() as u64;
            // The card id, time and transaction number from the edges below 2^20 mostly.
            let mut small = || match edge() {
                x if x.unsigned_abs() < 1 << 20 || x % 4 == 0 => x,
                x => x % (1 << 20),
            };
            let (card_id, offset, seq) = (small() as u64, small(), small() as u32);
            let status = status_from_u8((points % 3) as u8);
            let shown = card(figures, points, status, (seq % 256) as u8);
            let e = KeyEntry {
                card: CardId(card_id),
                at: BASE.wrapping_add(offset),
                seq,
                ..entry(shown)
            };
            if round_trip(&e, BASE) {
                wide += 1;
            } else {
                inline += 1;
            }
        }
        assert!(inline > 800 && wide > 800, "{inline} inline, {wide} wide");
    }
}
