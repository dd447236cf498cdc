//! A remembered key's entry as memory holds it: [`KeyEntry`] with the card its answer showed
//! packed into 32 bytes, so an entry takes 64 bytes instead of 96.
//!
//! Why: a busy shard remembers millions of keys for 24 h, and the card an answer showed (seven
//! figures, status and tier: 64 bytes) was two thirds of each entry. Its figures are amounts in
//! minor units and a point count, small numbers almost always, so as varints (amounts zig-zag
//! encoded) they fit in 32 bytes; a card that does not fit is kept whole beside the key log
//! ([`Packed::WIDE`], see `KeyTable`). The packing is exact both ways, so snapshots, which are
//! written from unpacked entries, keep their bytes.

use super::idempotency::{KeyEntry, ShownCard, Stored};
use super::varint::{self, Reader};
use crate::command::CardId;
use crate::money::Amount;
use crate::outcome::CardStatus;

/// Bytes for the packed card inside an entry.
const SHOWN_BYTES: usize = 32;

/// [`KeyEntry`] with its shown card packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Packed {
    fingerprint: u64,
    card: CardId,
    at: i64,
    seq: u32,
    stored: Stored,
    code: u8,
    flags: u8,
    /// Bytes of `shown` in use, or [`Packed::WIDE`].
    shown_len: u8,
    shown: [u8; SHOWN_BYTES],
}

const _: () = assert!(std::mem::size_of::<Packed>() == 64);

impl Packed {
    /// `shown_len` of an entry whose card did not fit: it is kept whole beside the log.
    const WIDE: u8 = u8::MAX;

    /// Packs `e`; the second value is its card when it does not fit (keep it aside).
    pub fn pack(e: &KeyEntry) -> (Packed, Option<ShownCard>) {
        let mut p = Packed {
            fingerprint: e.fingerprint,
            card: e.card,
            at: e.at,
            seq: e.seq,
            stored: e.stored,
            code: e.code,
            flags: e.flags,
            shown_len: 0,
            shown: [0; SHOWN_BYTES],
        };
        let s = &e.shown;
        let mut w = Writer {
            buf: &mut p.shown,
            len: 0,
        };
        let fits = [s.principal, s.bonus, s.held]
            .into_iter()
            .all(|a| w.varint(zigzag(a)))
            && w.varint(s.points)
            && [s.paid_in, s.bonus_given, s.consumed]
                .into_iter()
                .all(|a| w.varint(zigzag(a)))
            && w.byte(status_to_u8(s.status))
            && w.byte(s.tier);
        if fits {
            p.shown_len = w.len as u8;
            (p, None)
        } else {
            p.shown = [0; SHOWN_BYTES];
            p.shown_len = Packed::WIDE;
            (p, Some(e.shown))
        }
    }

    /// The entry again; `aside` finds the card kept aside, asked only when [`Packed::is_wide`].
    pub fn unpack<'a>(&self, aside: impl FnOnce() -> Option<&'a ShownCard>) -> KeyEntry {
        let shown = if self.is_wide() {
            let card = aside();
            debug_assert!(card.is_some(), "a wide key entry without its card");
            card.copied().unwrap_or(ShownCard::NONE)
        } else {
            let used = self.shown.get(..usize::from(self.shown_len)).unwrap_or(&[]);
            let mut r = Reader { buf: used, pos: 0 };
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
            debug_assert_eq!(r.pos, used.len(), "a packed card read to its end");
            shown
        };
        KeyEntry {
            fingerprint: self.fingerprint,
            card: self.card,
            at: self.at,
            seq: self.seq,
            stored: self.stored,
            code: self.code,
            flags: self.flags,
            shown,
        }
    }

    /// Its card is kept beside the log.
    pub fn is_wide(&self) -> bool {
        self.shown_len == Packed::WIDE
    }

    /// When the key was first seen (ms).
    pub fn at(&self) -> i64 {
        self.at
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
    buf: &'a mut [u8; SHOWN_BYTES],
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

    fn entry(shown: ShownCard) -> KeyEntry {
        KeyEntry {
            fingerprint: 0xdead_beef_cafe_f00d,
            card: CardId(6_200_000_000_000_001),
            at: 1_767_578_400_123,
            seq: 4_000_000_000,
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

    #[test]
    fn everyday_cards_pack_inline_and_extreme_ones_go_aside() {
        // A card with 1 000 000.00 of lifetime top-ups and a million points fits.
        let everyday = card(
            [6_696, 1_004, 500, 100_000_000, 15_000_000, 84_000_000],
            1_000_000,
            CardStatus::Frozen,
            3,
        );
        let (p, aside) = Packed::pack(&entry(everyday));
        assert!(aside.is_none() && !p.is_wide());
        assert_eq!(p.unpack(|| None), entry(everyday));
        assert_eq!(
            Packed::pack(&entry(ShownCard::NONE)).0.unpack(|| None),
            entry(ShownCard::NONE)
        );
        // Every figure at its extremes does not fit 32 bytes: kept aside, and comes back whole.
        let extreme = card(
            [i64::MIN, i64::MAX, -1, i64::MAX, i64::MIN, 1],
            u64::MAX,
            CardStatus::Closed,
            NO_TIER,
        );
        let (p, aside) = Packed::pack(&entry(extreme));
        assert!(p.is_wide());
        assert_eq!(aside, Some(extreme));
        assert_eq!(p.unpack(|| aside.as_ref()), entry(extreme));
    }

    /// Packing is exact for any card, inline or aside (so snapshots keep their bytes): every
    /// figure drawn from the edges of each varint length, in 20 000 mixes.
    #[test]
    fn packing_round_trips_at_every_varint_edge() {
        let edges = testing::edges(&[10_000_000_000]);
        let mut draw = testing::drawer();
        let (mut inline, mut wide) = (0, 0);
        for _ in 0..20_000 {
            let figures = [0; 6].map(|_: i64| edges[draw(edges.len())]);
            let points = edges[draw(edges.len())] as u64;
            let status = status_from_u8(draw(3) as u8);
            let shown = card(figures, points, status, draw(256) as u8);
            let (p, aside) = Packed::pack(&entry(shown));
            assert_eq!(p.is_wide(), aside.is_some());
            assert_eq!(p.unpack(|| aside.as_ref()), entry(shown), "{shown:?}");
            if p.is_wide() {
                wide += 1;
            } else {
                inline += 1;
            }
        }
        assert!(
            inline > 1_000 && wide > 1_000,
            "{inline} inline, {wide} wide"
        );
    }
}
