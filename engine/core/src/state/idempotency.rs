//! Idempotency keys: the same key with the same request gets the first answer again.
//!
//! A key names one request of one caller on one card (SPEC): it is hashed together with the
//! caller and the card (program changes: the caller and a program scope), so two gateways
//! using `spend-1`, or one gateway using it on two cards, make separate requests, and no
//! caller can see or reverse another's.
//!
//! Why compact: every mutating call carries a key and keys live 24 h, so a busy shard holds
//! millions. A key is stored as its 128-bit xxh3 hash with a 64-bit fingerprint of the
//! command, a compact answer that points into the card's history (the reply is rebuilt from
//! there) and the card as the answer showed it ([`ShownCard`], so a replay repeats the first
//! answer byte for byte). Rare answers that cannot be rebuilt that way (reversals, program
//! changes, `400`s) are kept whole in a side table. Keys expire in arrival order (batch time
//! never decreases), so a FIFO gives O(1) expiry; a hard cap evicts the oldest beyond it.

use super::key_pack::Packed;
use crate::command::{CallerId, CardId, Command, Request};
use crate::money::Amount;
use crate::outcome::{CardStatus, DeclineCode, NotFoundKind, Outcome, Rejection};
use std::collections::{HashMap, VecDeque};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64, xxh3_64_with_seed};

/// The stored answer of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[repr(u8)]
pub(crate) enum Stored {
    /// Approved: the transaction `seq` of `card`; the reply is rebuilt from its history entry.
    Txn,
    Declined,
    NotFound,
    CardExists,
    /// The whole outcome is in the side table.
    Side,
    /// A reversal for this key arrived before any request carrying it.
    ReversedEarly,
}

/// Flag: the request was reversed; later requests with the key are declined `reversed`.
pub(crate) const K_REVERSED: u8 = 1;
/// Flag: `shown` holds the card as the answer showed it (else the answer showed no card).
pub(crate) const K_SHOWN: u8 = 2;
/// Flag: `fingerprint` is of the form snapshot versions 1 to 3 wrote ([`fingerprint_v3`]):
/// set on the entries such a snapshot restores, so a retry arriving after an upgrade still
/// matches its first answer. Entries made since carry [`fingerprint`]'s form.
pub(crate) const K_FP_V3: u8 = 4;
/// Flag: restored from a snapshot written before answers remembered their card
/// ([`KeyEntryV1`]): a replay shows the card as it is now. Without it and without
/// [`K_SHOWN`], the answer showed no card and a replay shows none, even once the card exists.
pub(crate) const K_CARD_AS_NOW: u8 = 8;

/// `ShownCard::tier` below the first tier.
pub(crate) const NO_TIER: u8 = u8::MAX;

/// The card as an answer showed it: every figure of the card view that can change later, so
/// a replay shows the card as it was then. `available` is derived; the program never changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct ShownCard {
    pub principal: Amount,
    pub bonus: Amount,
    pub held: Amount,
    pub points: u64,
    pub paid_in: Amount,
    pub bonus_given: Amount,
    pub consumed: Amount,
    pub status: CardStatus,
    /// Index of the tier in the program's tier list ([`NO_TIER`] below the first).
    pub tier: u8,
}

impl ShownCard {
    /// Nothing shown (an answer without a card).
    pub const NONE: ShownCard = ShownCard {
        principal: Amount::ZERO,
        bonus: Amount::ZERO,
        held: Amount::ZERO,
        points: 0,
        paid_in: Amount::ZERO,
        bonus_given: Amount::ZERO,
        consumed: Amount::ZERO,
        status: CardStatus::Active,
        tier: NO_TIER,
    };
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct KeyEntry {
    /// Fingerprint of the command (0 for `ReversedEarly`).
    pub fingerprint: u64,
    pub card: CardId,
    /// When the key was first seen (ms); it expires `ttl` later.
    pub at: i64,
    pub seq: u32,
    pub stored: Stored,
    /// `DeclineCode` or `NotFoundKind` as u8, by `stored`.
    pub code: u8,
    pub flags: u8,
    /// The card as the answer showed it (with [`K_SHOWN`]).
    pub shown: ShownCard,
}

const _: () = assert!(std::mem::size_of::<KeyEntry>() == 96);

/// A key entry of snapshot version 1 (before answers remembered the card they showed); such
/// keys were hashed alone ([`CallerId::UNSCOPED`]) and replay with the card as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct KeyEntryV1 {
    pub fingerprint: u64,
    pub card: CardId,
    pub at: i64,
    pub seq: u32,
    pub stored: Stored,
    pub code: u8,
    pub flags: u8,
}

impl From<KeyEntryV1> for KeyEntry {
    fn from(e: KeyEntryV1) -> KeyEntry {
        KeyEntry {
            fingerprint: e.fingerprint,
            card: e.card,
            at: e.at,
            seq: e.seq,
            stored: e.stored,
            code: e.code,
            flags: (e.flags & K_REVERSED) | K_CARD_AS_NOW,
            shown: ShownCard::NONE,
        }
    }
}

/// The 128-bit hash a key is remembered under: the key in its caller's namespace, on its card
/// (or in the program scope for program changes). Version-2 log records
/// ([`CallerId::UNSCOPED`]) hash the key alone, as it was hashed when they were written.
/// `card` is the card of the request's command (`None`: a program change).
pub(crate) fn key_hash(caller: CallerId, card: Option<CardId>, key: &str) -> u128 {
    if caller == CallerId::UNSCOPED {
        return xxh3_128(key.as_bytes());
    }
    let (scope, card) = match card {
        Some(c) => (1u8, c.0),
        None => (2u8, 0),
    };
    let mut buf = [0u8; 17 + 128];
    let head = [&[scope][..], &caller.0.to_le_bytes(), &card.to_le_bytes()].concat();
    match buf.get_mut(..17 + key.len()) {
        Some(dst) => {
            let (h, k) = dst.split_at_mut(17);
            h.copy_from_slice(&head);
            k.copy_from_slice(key.as_bytes());
            xxh3_128(dst)
        }
        None => xxh3_128(&[&head[..], key.as_bytes()].concat()),
    }
}

/// Collects the bytes of a fingerprint on the stack (spilling to the heap only for long store
/// names or program changes) and hashes them once: a streaming xxh3 state is large enough that
/// creating it cost more than hashing a command.
struct FpWriter {
    arr: [u8; 128],
    len: usize,
    spill: Vec<u8>,
}

impl FpWriter {
    fn new() -> FpWriter {
        FpWriter {
            arr: [0; 128],
            len: 0,
            spill: Vec::new(),
        }
    }
    fn update(&mut self, b: &[u8]) {
        if self.spill.is_empty() {
            if let Some(dst) = self.arr.get_mut(self.len..self.len + b.len()) {
                dst.copy_from_slice(b);
                self.len += b.len();
                return;
            }
            self.spill
                .extend_from_slice(self.arr.get(..self.len).unwrap_or_default());
        }
        self.spill.extend_from_slice(b);
    }
    fn digest(&self) -> u64 {
        if self.spill.is_empty() {
            xxh3_64(self.arr.get(..self.len).unwrap_or_default())
        } else {
            xxh3_64(&self.spill)
        }
    }
}

/// The fingerprint a retry must match: xxh3 (seeded with the caller) of the command's
/// canonical encoding, the rkyv archive the log stores it as. Every field of the command is in
/// that encoding, so a field added later is covered without touching this function; same
/// caller and command ⇔ same fingerprint (up to 2^-64). The caller is already in the key's
/// hash ([`key_hash`]); it is here too so that the fingerprint alone names the whole request.
///
/// The archive is written into `buf`, which keeps its memory from one request to the next (the
/// same bytes `rkyv::to_bytes` returns, without allocating them anew).
pub(crate) fn fingerprint(caller: CallerId, cmd: &Command, buf: &mut FpBuf) -> u64 {
    buf.0.clear();
    let fp = rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(cmd, &mut buf.0)
        .map(|archive| xxh3_64_with_seed(archive.as_slice(), caller.0));
    if buf.0.capacity() > FP_BUF_KEPT {
        // A program change with thousands of stores: don't hold its size for good.
        buf.0 = rkyv::util::AlignedVec::new();
    }
    match fp {
        Ok(fp) => fp,
        // Archiving into memory fails only when memory does; the field-by-field form is the
        // one that needs no allocation (never equal to a real fingerprint by more than chance).
        Err(_) => xxh3_64_with_seed(&fingerprint_v3(cmd).to_le_bytes(), caller.0),
    }
}

/// The buffer [`fingerprint`] archives commands into, kept across requests (one per `State`)
/// so that a keyed request allocates nothing for its fingerprint once the buffer has grown.
#[derive(Default)]
pub(crate) struct FpBuf(rkyv::util::AlignedVec<16>);

/// Most bytes [`FpBuf`] keeps between requests (any request archives in far fewer but a
/// program change).
const FP_BUF_KEPT: usize = 4096;

/// The fingerprint entries of snapshot versions 1 to 3 carry ([`K_FP_V3`]): written field by
/// field with tags. Kept only to match retries against those entries; new entries never use it.
pub(crate) fn fingerprint_v3(cmd: &Command) -> u64 {
    let mut h = FpWriter::new();
    let u64s = |h: &mut FpWriter, xs: &[u64]| {
        for x in xs {
            h.update(&x.to_le_bytes());
        }
    };
    let opt_str = |h: &mut FpWriter, s: &Option<String>| match s {
        None => h.update(&[0]),
        Some(s) => {
            h.update(&[1]);
            h.update(&(s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
    };
    match cmd {
        Command::UpsertProgram(p) => {
            h.update(&[0]);
            match rkyv::to_bytes::<rkyv::rancor::Error>(p) {
                Ok(b) => h.update(&b),
                Err(_) => h.update(p.id.as_bytes()),
            }
        }
        Command::OpenCard {
            card_id,
            program,
            registered,
            birthday,
        } => {
            h.update(&[1]);
            u64s(&mut h, &[card_id.0, program.len() as u64]);
            h.update(program.as_bytes());
            let b = birthday.map_or([0, 0], |b| [b.month, b.day]);
            h.update(&[*registered as u8, b[0], b[1]]);
        }
        Command::TopUp {
            card_id,
            amount,
            channel,
        } => {
            h.update(&[2, *channel as u8]);
            u64s(&mut h, &[card_id.0, amount.0 as u64]);
        }
        // `allow_partial` is written only when set, so a request without it keeps the
        // fingerprint it had before the field existed (keys remembered across an upgrade).
        Command::Spend {
            card_id,
            amount,
            method,
            store,
            allow_partial,
        } => {
            h.update(&[3, *method as u8]);
            u64s(&mut h, &[card_id.0, amount.0 as u64]);
            opt_str(&mut h, store);
            if *allow_partial {
                h.update(&[1]);
            }
        }
        Command::Hold {
            card_id,
            amount,
            ttl_seconds,
            method,
            store,
            allow_partial,
        } => {
            h.update(&[4, *method as u8]);
            u64s(&mut h, &[card_id.0, amount.0 as u64, *ttl_seconds as u64]);
            opt_str(&mut h, store);
            if *allow_partial {
                h.update(&[1]);
            }
        }
        Command::Capture { hold_id, amount } => {
            h.update(&[5, amount.is_some() as u8]);
            u64s(
                &mut h,
                &[
                    hold_id.card.0,
                    hold_id.seq as u64,
                    amount.map_or(0, |a| a.0 as u64),
                ],
            );
        }
        Command::Void { hold_id } => {
            h.update(&[6]);
            u64s(&mut h, &[hold_id.card.0, hold_id.seq as u64]);
        }
        Command::Refund { txn_id, amount } => {
            h.update(&[7]);
            u64s(&mut h, &[txn_id.card.0, txn_id.seq as u64, amount.0 as u64]);
        }
        Command::CashOut { card_id, reason } => {
            h.update(&[8, *reason as u8]);
            u64s(&mut h, &[card_id.0]);
        }
        Command::Reversal { card_id, key } => {
            h.update(&[9]);
            u64s(&mut h, &[card_id.0, key.len() as u64]);
            h.update(key.as_bytes());
        }
        Command::RedeemPoints { card_id, points } => {
            h.update(&[10]);
            u64s(&mut h, &[card_id.0, *points]);
        }
        Command::Grant {
            card_id,
            bonus,
            points,
            reason,
        } => {
            h.update(&[
                11,
                *reason as u8,
                bonus.is_some() as u8,
                points.is_some() as u8,
            ]);
            u64s(
                &mut h,
                &[
                    card_id.0,
                    bonus.map_or(0, |a| a.0 as u64),
                    points.unwrap_or(0),
                ],
            );
        }
        Command::Freeze { card_id } => {
            h.update(&[12]);
            u64s(&mut h, &[card_id.0]);
        }
        Command::Unfreeze { card_id } => {
            h.update(&[13]);
            u64s(&mut h, &[card_id.0]);
        }
        Command::Close { card_id } => {
            h.update(&[14]);
            u64s(&mut h, &[card_id.0]);
        }
        Command::Tick => h.update(&[15]),
        Command::IncrementHold {
            hold_id,
            amount,
            ttl_seconds,
        } => {
            h.update(&[16, ttl_seconds.is_some() as u8]);
            u64s(
                &mut h,
                &[
                    hold_id.card.0,
                    hold_id.seq as u64,
                    amount.0 as u64,
                    ttl_seconds.map_or(0, u64::from),
                ],
            );
        }
    }
    // 0 is reserved for "no request seen yet" (ReversedEarly).
    h.digest().max(1)
}

/// Identity hasher for keys that are already uniformly random (128-bit xxh3 hashes).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CardId, Method};
    use crate::money::Amount;

    /// An entry seen at `at`; its card varies with `at`, and every 5th is too wide to pack
    /// into the entry (kept aside), so the model test covers both.
    fn entry(at: i64) -> KeyEntry {
        let figure = if at % 5 == 0 { i64::MIN + at } else { at * 100 };
        KeyEntry {
            fingerprint: at as u64,
            card: CardId(1),
            at,
            seq: 0,
            stored: Stored::Declined,
            code: 0,
            flags: K_SHOWN,
            shown: ShownCard {
                principal: Amount(figure),
                bonus: Amount(figure.wrapping_neg()),
                held: Amount(at),
                points: figure as u64,
                paid_in: Amount(figure),
                bonus_given: Amount(figure),
                consumed: Amount(figure),
                status: CardStatus::Active,
                tier: (at % 7) as u8,
            },
        }
    }

    #[test]
    fn key_table_expires_in_arrival_order_across_chunks_and_keeps_frozen_copies() {
        key_table_against_a_model(0);
    }

    /// The index keeps 32 bits of each log position: positions past 2^32 (a long-running
    /// shard's) still find their entries.
    #[test]
    fn key_positions_past_two_to_the_32_still_find_their_entries() {
        key_table_against_a_model(u64::from(u32::MAX) - 2 * KEY_CHUNK as u64 - 5);
    }

    fn key_table_against_a_model(first_position: u64) {
        // A model (a plain map and queue) against the chunked log, through several chunk
        // boundaries, emptying, refilling, in-place updates and a frozen clone.
        let mut t = KeyTable::default();
        t.log.base = first_position;
        let mut model: VecDeque<(u128, KeyEntry)> = VecDeque::new();
        let mut frozen: Option<(FrozenKeys, Vec<(u128, KeyEntry)>)> = None;
        let mut next = 0u128;
        for round in 0..6i64 {
            let n = [KEY_CHUNK * 2 + 17, 5, KEY_CHUNK, 1, KEY_CHUNK * 3 - 1, 700][round as usize];
            for _ in 0..n {
                next += 1;
                let e = entry(round * 1000 + (next % 7) as i64);
                t.insert(next * 7919, e, None);
                model.push_back((next * 7919, e));
            }
            // Update a few in place (their position stays).
            for (k, e) in model.iter_mut().step_by(997) {
                e.flags |= K_REVERSED;
                t.update(k, |m| m.flags |= K_REVERSED);
            }
            // And change the card some show, between packed and aside both ways.
            for (k, e) in model.iter_mut().skip(3).step_by(331) {
                e.shown = entry(e.at + 1).shown;
                let shown = e.shown;
                t.update(k, |m| m.shown = shown);
            }
            if round == 2 {
                frozen = Some((t.freeze(), model.iter().copied().collect()));
            }
            let cut = round * 1000 + 3;
            t.expire(cut + 10, 10, usize::MAX);
            while model.front().is_some_and(|(_, e)| e.at + 10 <= cut + 10) {
                model.pop_front();
            }
            // The cap evicts the oldest beyond it.
            let cap = if round == 4 { 1000 } else { usize::MAX };
            t.expire(i64::MIN, 10, cap);
            while model.len() > cap {
                model.pop_front();
            }
            assert_eq!(t.len(), model.len());
            assert!(
                t.freeze().entries().eq(model.iter().copied()),
                "round {round}"
            );
            for (k, e) in model.iter().step_by(101) {
                assert_eq!(t.get(k), Some(*e));
            }
        }
        if let Some((f, at_freeze)) = frozen {
            assert!(f.entries().eq(at_freeze.into_iter()));
        }
        // Emptied completely, then reused.
        t.expire(i64::MAX - 20, 10, 0);
        assert_eq!(t.len(), 0);
        assert!(t.wide.is_empty(), "entries kept aside outlive their keys");
        assert!(t.freeze().entries().next().is_none());
        t.insert(5, entry(1), None);
        assert_eq!(t.get(&5), Some(entry(1)));
        assert_eq!(t.get(&7919), None);
    }

    /// Keys whose tags are equal (the same part and bucket bits, other bits different) are
    /// separate keys: each finds its own entry, an update changes only its own, and expiry
    /// forgets exactly the keys that expire, whichever order they sit in their chain.
    #[test]
    fn keys_sharing_a_tag_keep_their_own_entries() {
        let mut t = KeyTable::default();
        let base: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;
        // Bits 100.. (the high half's bits 36..) and the low half are not in the tag.
        let keys: Vec<u128> = (0..20u128).map(|i| base ^ (i << 100) ^ (i << 3)).collect();
        for k in &keys {
            assert_eq!(KeyTag::from(*k), KeyTag::from(base));
        }
        for (i, k) in keys.iter().enumerate() {
            t.insert(*k, entry(i as i64), None);
        }
        assert_eq!(t.len(), keys.len());
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.get(k), Some(entry(i as i64)), "key {i}");
        }
        assert_eq!(
            t.get(&(base ^ (99 << 100))),
            None,
            "same tag, never inserted"
        );
        t.update(&keys[13], |e| e.flags |= K_REVERSED);
        t.insert(keys[14], entry(1000), None);
        for (i, k) in keys.iter().enumerate() {
            let mut want = entry(i as i64);
            match i {
                13 => want.flags |= K_REVERSED,
                14 => want = entry(1000),
                _ => {}
            }
            assert_eq!(t.get(k), Some(want), "key {i}");
        }
        assert_eq!(t.len(), keys.len(), "an update keeps one entry per key");
        // Keys seen at 0..=9 expire at 10 with a TTL of 1 ms. Expiry stops at the first live
        // key in arrival order (key 10), so key 14, whose entry was replaced, keeps its place.
        t.expire(10, 1, usize::MAX);
        for (i, k) in keys.iter().enumerate() {
            assert_eq!(t.get(k).is_some(), i >= 10, "key {i}");
        }
        t.expire(i64::MAX - 1, 1, 0);
        assert_eq!(t.len(), 0);
        assert!(keys.iter().all(|k| t.get(k).is_none()));
    }

    #[test]
    fn fingerprints_tell_commands_apart_and_spill_long_ones() {
        let spend = |store: Option<String>, amount| Command::Spend {
            card_id: CardId(1),
            amount: Amount(amount),
            method: Method::Qr,
            store,
            allow_partial: false,
        };
        let c = CallerId::DEFAULT;
        for fp in [fingerprint_v3, |cmd: &Command| {
            fingerprint(CallerId::DEFAULT, cmd, &mut FpBuf::default())
        }] {
            let a = fp(&spend(None, 100));
            assert_eq!(a, fp(&spend(None, 100)));
            assert_ne!(a, fp(&spend(None, 101)));
            assert_ne!(a, fp(&spend(Some(String::new()), 100)));
            let long = "s".repeat(300);
            let b = fp(&spend(Some(long.clone()), 100));
            assert_eq!(b, fp(&spend(Some(long), 100)));
            assert_ne!(b, fp(&spend(Some("s".repeat(299)), 100)));
        }
        let mut buf = FpBuf::default();
        assert_eq!(
            fingerprint(c, &spend(None, 100), &mut buf),
            fingerprint(c, &spend(None, 100), &mut buf)
        );
    }

    /// Two requests that differ in any single field, or only in their caller, have different
    /// fingerprints: the fingerprint hashes the command's whole archive, so a field added to a
    /// command later is covered without touching `fingerprint`.
    #[test]
    fn a_change_of_any_one_field_or_of_the_caller_changes_the_fingerprint() {
        let buf = &mut FpBuf::default();
        for (base, others) in &command_families() {
            let fp = fingerprint(CallerId::DEFAULT, base, buf);
            assert_ne!(
                fp,
                fingerprint(CallerId(7), base, buf),
                "caller of {base:?}"
            );
            for other in others {
                assert_ne!(
                    fp,
                    fingerprint(CallerId::DEFAULT, other, buf),
                    "{base:?} vs {other:?}"
                );
            }
        }
    }

    /// The fingerprint through a buffer kept across calls is the one of a fresh archive
    /// (`rkyv::to_bytes`), the form every remembered key and pinned digest carries, whatever
    /// the buffer held before (a program, a long store, a short command).
    #[test]
    fn a_reused_buffer_gives_the_fingerprint_of_a_fresh_archive() {
        let mut all: Vec<Command> = command_families()
            .into_iter()
            .flat_map(|(base, others)| std::iter::once(base).chain(others))
            .collect();
        all.push(Command::UpsertProgram(crate::program::Program::demo()));
        all.push(Command::Spend {
            card_id: CardId(9),
            amount: Amount(1),
            method: crate::command::Method::Card,
            store: Some("店".repeat(64)),
            allow_partial: true,
        });
        let buf = &mut FpBuf::default();
        for round in 0..2 {
            for cmd in &all {
                for caller in [CallerId::DEFAULT, CallerId(7)] {
                    let fresh = rkyv::to_bytes::<rkyv::rancor::Error>(cmd).unwrap();
                    assert_eq!(
                        fingerprint(caller, cmd, buf),
                        xxh3_64_with_seed(&fresh, caller.0),
                        "round {round}: {cmd:?}"
                    );
                }
            }
            all.reverse();
        }
    }

    /// A keyed request's fingerprint allocates nothing once the buffer has grown to the size
    /// of the commands it sees (counted on this thread by the test binary's allocator).
    #[test]
    fn a_fingerprint_allocates_nothing_once_its_buffer_has_grown() {
        let buf = &mut FpBuf::default();
        let cmds: Vec<Command> = command_families().into_iter().map(|(b, _)| b).collect();
        for cmd in &cmds {
            fingerprint(CallerId(3), cmd, buf);
        }
        let before = crate::alloc_count::this_thread();
        for _ in 0..100 {
            for cmd in &cmds {
                std::hint::black_box(fingerprint(CallerId(3), cmd, buf));
            }
        }
        assert_eq!(crate::alloc_count::this_thread() - before, 0);
    }

    /// One command of each kind and, for each, commands that differ from it in one field.
    fn command_families() -> Vec<(Command, Vec<Command>)> {
        use crate::command::{CashOutReason, Channel, GrantReason, MonthDay, TxnId};
        let card = CardId(6_200_000_000_000_001);
        let hold = TxnId { card, seq: 3 };
        let spend = Command::Spend {
            card_id: card,
            amount: Amount(1_000),
            method: Method::Qr,
            allow_partial: false,
            store: Some("s1".into()),
        };
        let hold_cmd = Command::Hold {
            card_id: card,
            amount: Amount(1_000),
            ttl_seconds: 60,
            method: Method::Card,
            allow_partial: false,
            store: None,
        };
        let open = Command::OpenCard {
            card_id: card,
            program: "demo".into(),
            registered: false,
            birthday: None,
        };
        // Each base with every variation of one field.
        let families: Vec<(Command, Vec<Command>)> = vec![
            (
                spend.clone(),
                vec![
                    Command::Spend {
                        card_id: CardId(card.0 + 1),
                        amount: Amount(1_000),
                        method: Method::Qr,
                        allow_partial: false,
                        store: Some("s1".into()),
                    },
                    Command::Spend {
                        card_id: card,
                        amount: Amount(1_001),
                        method: Method::Qr,
                        allow_partial: false,
                        store: Some("s1".into()),
                    },
                    Command::Spend {
                        card_id: card,
                        amount: Amount(1_000),
                        method: Method::Card,
                        allow_partial: false,
                        store: Some("s1".into()),
                    },
                    Command::Spend {
                        card_id: card,
                        amount: Amount(1_000),
                        method: Method::Qr,
                        allow_partial: true,
                        store: Some("s1".into()),
                    },
                    Command::Spend {
                        card_id: card,
                        amount: Amount(1_000),
                        method: Method::Qr,
                        allow_partial: false,
                        store: Some("s2".into()),
                    },
                    Command::Spend {
                        card_id: card,
                        amount: Amount(1_000),
                        method: Method::Qr,
                        allow_partial: false,
                        store: None,
                    },
                ],
            ),
            (
                hold_cmd.clone(),
                vec![
                    Command::Hold {
                        card_id: card,
                        amount: Amount(1_000),
                        ttl_seconds: 61,
                        method: Method::Card,
                        allow_partial: false,
                        store: None,
                    },
                    Command::Hold {
                        card_id: card,
                        amount: Amount(1_000),
                        ttl_seconds: 60,
                        method: Method::Voice,
                        allow_partial: false,
                        store: None,
                    },
                    Command::Hold {
                        card_id: card,
                        amount: Amount(1_000),
                        ttl_seconds: 60,
                        method: Method::Card,
                        allow_partial: true,
                        store: None,
                    },
                    Command::Hold {
                        card_id: card,
                        amount: Amount(1_000),
                        ttl_seconds: 60,
                        method: Method::Card,
                        allow_partial: false,
                        store: Some("s".into()),
                    },
                    spend.clone(),
                ],
            ),
            (
                open.clone(),
                vec![
                    Command::OpenCard {
                        card_id: card,
                        program: "demo2".into(),
                        registered: false,
                        birthday: None,
                    },
                    Command::OpenCard {
                        card_id: card,
                        program: "demo".into(),
                        registered: true,
                        birthday: None,
                    },
                    Command::OpenCard {
                        card_id: card,
                        program: "demo".into(),
                        registered: false,
                        birthday: Some(MonthDay { month: 1, day: 2 }),
                    },
                ],
            ),
            (
                Command::TopUp {
                    card_id: card,
                    amount: Amount(5),
                    channel: Channel::Cash,
                },
                vec![
                    Command::TopUp {
                        card_id: card,
                        amount: Amount(5),
                        channel: Channel::Wechat,
                    },
                    Command::TopUp {
                        card_id: card,
                        amount: Amount(6),
                        channel: Channel::Cash,
                    },
                ],
            ),
            (
                Command::Capture {
                    hold_id: hold,
                    amount: None,
                },
                vec![
                    Command::Capture {
                        hold_id: hold,
                        amount: Some(Amount(1)),
                    },
                    Command::Capture {
                        hold_id: TxnId { card, seq: 4 },
                        amount: None,
                    },
                    Command::Void { hold_id: hold },
                ],
            ),
            (
                Command::IncrementHold {
                    hold_id: hold,
                    amount: Amount(5),
                    ttl_seconds: None,
                },
                vec![
                    Command::IncrementHold {
                        hold_id: hold,
                        amount: Amount(5),
                        ttl_seconds: Some(60),
                    },
                    Command::IncrementHold {
                        hold_id: hold,
                        amount: Amount(6),
                        ttl_seconds: None,
                    },
                ],
            ),
            (
                Command::Grant {
                    card_id: card,
                    bonus: Some(Amount(5)),
                    points: None,
                    reason: GrantReason::Birthday,
                },
                vec![
                    Command::Grant {
                        card_id: card,
                        bonus: Some(Amount(5)),
                        points: Some(1),
                        reason: GrantReason::Birthday,
                    },
                    Command::Grant {
                        card_id: card,
                        bonus: Some(Amount(5)),
                        points: None,
                        reason: GrantReason::Campaign,
                    },
                    Command::Grant {
                        card_id: card,
                        bonus: None,
                        points: Some(5),
                        reason: GrantReason::Birthday,
                    },
                ],
            ),
            (
                Command::CashOut {
                    card_id: card,
                    reason: CashOutReason::Consumer,
                },
                vec![Command::CashOut {
                    card_id: card,
                    reason: CashOutReason::CoolingOff,
                }],
            ),
            (
                Command::Reversal {
                    card_id: card,
                    key: "k".into(),
                },
                vec![Command::Reversal {
                    card_id: card,
                    key: "k2".into(),
                }],
            ),
        ];
        families
    }
}

#[derive(Default, Clone, Copy)]
pub(crate) struct PreHashed(u64);

impl std::hash::Hasher for PreHashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8)) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, x: u128) {
        self.0 = x as u64 ^ (x >> 64) as u64;
    }
}

pub(crate) type PreHashedBuild = std::hash::BuildHasherDefault<PreHashed>;

/// A key as the index holds it: 32 of its hash's bits, the 6 that pick its part of the index
/// and the 26 that pick its bucket, beside the low 32 bits of its log position. `(KeyTag, u32)`
/// takes 8 bytes, seven to a 64-byte bucket (the whole 128-bit key took 20, three to a bucket);
/// the key itself is in the log, and a lookup checks it there, so two keys that share a tag
/// are still told apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct KeyTag(u32);

/// Bits of a [`KeyTag`] that pick the bucket within a part: a part of the key index never
/// grows past 2^26 buckets (seven keys each; a shard holds fewer than 2^32 keys, 2^26 at most
/// to a part).
const TAG_HOME_BITS: u32 = 26;
const TAG_HOME_MASK: u32 = (1 << TAG_HOME_BITS) - 1;

impl From<u128> for KeyTag {
    /// Keys are 128-bit xxh3 hashes already: the high half is uniform as it is, and its top
    /// 6 bits (the part) and low 26 bits (the bucket) are what the tag keeps.
    fn from(k: u128) -> KeyTag {
        let high = (k >> 64) as u64;
        KeyTag(((high >> 58) as u32) << TAG_HOME_BITS | (high as u32 & TAG_HOME_MASK))
    }
}

impl super::parted::Slot for KeyTag {
    const HOME_BITS: u32 = TAG_HOME_BITS;

    /// The part and bucket bits where the whole key's spread has them (the high half of
    /// the hash): part and bucket come out the same from the tag as from the key.
    fn spread(&self) -> u64 {
        u64::from(self.0 >> TAG_HOME_BITS) << 58 | u64::from(self.0 & TAG_HOME_MASK)
    }
}

/// Entries per chunk of the key log: small enough that copying one shared chunk on write is a
/// sub-millisecond stall, large enough that a freeze clones few `Arc`s.
const KEY_CHUNK: usize = 4096;

/// All live keys of one shard.
///
/// Why a log of chunks and an index of positions: the entries live once, in arrival order, in
/// `Arc`-shared chunks, so a snapshot freezes millions of keys by cloning a few hundred `Arc`s
/// (a chunk still shared is copied on its first write), and expiry pops from the front. The
/// index maps a key's tag to its position in the log (8 bytes per key).
#[derive(Default)]
pub(crate) struct KeyTable {
    /// Key tag → the low 32 bits of its log position ([`KeyLog::position`] restores the rest).
    /// Filled by [`Parted::insert_new`](super::parted::Parted::insert_new) only: entries are
    /// told apart by position, as tags may repeat.
    index: super::parted::Parted<KeyTag, 7>,
    log: KeyLog,
    /// Whole outcomes for `Stored::Side` entries.
    pub side: HashMap<u128, Outcome, PreHashedBuild>,
    /// The entries too large to pack ([`Packed::is_wide`]), whole.
    wide: HashMap<u128, KeyEntry, PreHashedBuild>,
}

/// The keys of a frozen state: the shared log and a copy of the (small) side table; the
/// index is not needed to list them.
pub(crate) struct FrozenKeys {
    log: KeyLog,
    pub side: HashMap<u128, Outcome, PreHashedBuild>,
    wide: HashMap<u128, KeyEntry, PreHashedBuild>,
}

impl FrozenKeys {
    /// Remembered keys with their entries, in arrival order (the snapshot order).
    pub fn entries(&self) -> impl Iterator<Item = (u128, KeyEntry)> + Clone + '_ {
        self.log
            .iter()
            .map(|(e, base)| (e.key, e.packed.unpack(base, || self.wide.get(&e.key))))
    }

    pub fn len(&self) -> usize {
        self.log.len()
    }
}

/// How many keys behind the oldest [`KeyTable::expire`] prefetches the index bucket of.
const EXPIRE_AHEAD: usize = 8;

/// One remembered key in the key log: one cache line, so a lookup that confirms its key and
/// reads its answer waits for one line.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct LogEntry {
    key: u128,
    packed: Packed,
}

const _: () = assert!(std::mem::size_of::<LogEntry>() == 64);

/// A chunk of the key log, and the time its entries' times are packed against (its first
/// entry's: the entries of a chunk arrive within minutes of each other on a busy shard, so
/// their offsets take a few bytes).
#[derive(Clone)]
struct KeyChunk {
    base: i64,
    entries: Vec<LogEntry>,
}

/// Keys in arrival order (each key once), `base` numbering the first one.
#[derive(Default, Clone)]
struct KeyLog {
    chunks: VecDeque<std::sync::Arc<KeyChunk>>,
    /// Entries of `chunks[0]` already expired.
    head: usize,
    /// Position of `chunks[0][0]`.
    base: u64,
    len: usize,
}

impl KeyLog {
    /// The oldest live entry and its chunk's base time.
    fn front(&self) -> Option<(&LogEntry, i64)> {
        let c = self.chunks.front()?;
        Some((c.entries.get(self.head)?, c.base))
    }

    /// Position of the oldest live entry ([`KeyLog::front`]).
    fn front_position(&self) -> u64 {
        self.base + self.head as u64
    }

    fn pop_front(&mut self) {
        if self.len == 0 {
            return;
        }
        self.len -= 1;
        self.head += 1;
        if self.head == KEY_CHUNK || self.len == 0 {
            // The chunk is used up (or the log is empty): drop it and renumber from the next.
            let used = self.chunks.front().map_or(0, |c| c.entries.len());
            self.chunks.pop_front();
            self.base += used as u64;
            self.head = 0;
        }
    }

    /// Appends `e` under `key`: its position, and `e` itself when it does not pack (the
    /// caller keeps it aside).
    fn push_back(&mut self, key: u128, e: &KeyEntry) -> (u64, Option<KeyEntry>) {
        let pos = self.base + self.head as u64 + self.len as u64;
        // The index keeps positions' low 32 bits (see `position`).
        assert!(
            self.head + self.len < u32::MAX as usize,
            "a shard remembers fewer than 2^32 keys"
        );
        if self
            .chunks
            .back()
            .is_none_or(|c| c.entries.len() == KEY_CHUNK)
        {
            self.chunks.push_back(std::sync::Arc::new(KeyChunk {
                base: e.at,
                entries: Vec::with_capacity(KEY_CHUNK),
            }));
        }
        let last = self.chunks.len() - 1;
        let chunk = self.chunk_mut(last);
        let (packed, aside) = Packed::pack(e, chunk.base);
        chunk.entries.push(LogEntry { key, packed });
        self.len += 1;
        (pos, aside)
    }

    /// The log position whose low 32 bits are `low`: live keys span fewer than 2^32
    /// positions (asserted in `push_back`), so the rest follows from `base`.
    fn position(&self, low: u32) -> u64 {
        self.base + u64::from(low.wrapping_sub(self.base as u32))
    }

    /// Chunk and index in it of position `pos`.
    fn locate(&self, pos: u64) -> Option<(usize, usize)> {
        let i = usize::try_from(pos.checked_sub(self.base)?).ok()?;
        (i / KEY_CHUNK < self.chunks.len()).then_some((i / KEY_CHUNK, i % KEY_CHUNK))
    }

    /// The entry at `pos` and its chunk's base time.
    fn get(&self, pos: u64) -> Option<(&LogEntry, i64)> {
        let (c, i) = self.locate(pos)?;
        let chunk = self.chunks.get(c)?;
        Some((chunk.entries.get(i)?, chunk.base))
    }

    /// Packs `e` over the entry at `pos`; the entry itself when it does not fit.
    fn rewrite(&mut self, pos: u64, e: &KeyEntry) -> Option<KeyEntry> {
        let (c, i) = self.locate(pos)?;
        let chunk = self.chunk_mut(c);
        let (packed, aside) = Packed::pack(e, chunk.base);
        if let Some(slot) = chunk.entries.get_mut(i) {
            slot.packed = packed;
        }
        aside
    }

    /// The chunk for writing, copied first when a frozen snapshot still shares it.
    fn chunk_mut(&mut self, c: usize) -> &mut KeyChunk {
        let shared = &mut self.chunks[c];
        if std::sync::Arc::get_mut(shared).is_none() {
            let mut entries = Vec::with_capacity(KEY_CHUNK);
            entries.extend_from_slice(&shared.entries);
            *shared = std::sync::Arc::new(KeyChunk {
                base: shared.base,
                entries,
            });
        }
        // Cannot fail: either it was unique, or it was just replaced by a fresh Arc.
        std::sync::Arc::get_mut(shared).expect("key chunk is unique after copy-on-write")
    }

    /// Live entries, oldest first, each with its chunk's base time.
    fn iter(&self) -> impl Iterator<Item = (&LogEntry, i64)> + Clone + '_ {
        self.chunks.iter().enumerate().flat_map(|(i, c)| {
            c.entries
                .get(if i == 0 { self.head } else { 0 }..)
                .unwrap_or(&[])
                .iter()
                .map(|e| (e, c.base))
        })
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes of the chunks.
    fn bytes(&self) -> usize {
        self.chunks.len() * KEY_CHUNK * std::mem::size_of::<LogEntry>()
    }
}

impl KeyTable {
    /// Forgets keys first seen at or before `now − ttl`, and the oldest beyond `max`.
    pub fn expire(&mut self, now: i64, ttl_ms: i64, max: usize) {
        // Keys expire in arrival order, about one per keyed request once the table is full:
        // the bucket of the key a few places behind the oldest is loaded now, so removing it
        // a few calls later does not wait on memory.
        if let Some((e, _)) = self
            .log
            .get(self.log.front_position() + EXPIRE_AHEAD as u64)
        {
            self.index.prefetch(&KeyTag::from(e.key));
        }
        while let Some((&LogEntry { key: k, packed: p }, base)) = self.log.front() {
            if p.at(base, || self.wide.get(&k)).saturating_add(ttl_ms) > now
                && self.log.len() <= max
            {
                break;
            }
            let low = self.log.front_position() as u32;
            self.log.pop_front();
            let removed = self.index.remove_where(&KeyTag::from(k), |v| v == low);
            assert!(removed.is_some(), "an expiring key was in the index");
            if p.stored() == Stored::Side {
                self.side.remove(&k);
            }
            if p.is_wide() {
                self.wide.remove(&k);
            }
        }
    }

    /// Starts loading the index bucket a lookup of `k` reads first, without waiting for it.
    pub fn prefetch(&self, k: &u128) {
        self.index.prefetch(&KeyTag::from(*k));
    }

    /// The log position of key `k`, if remembered: the entry under its tag whose key in the
    /// log is `k`.
    fn position_of(&self, k: &u128) -> Option<u64> {
        let log = &self.log;
        let low = self.index.get_where(&KeyTag::from(*k), |low| {
            log.get(log.position(low)).is_some_and(|(e, _)| e.key == *k)
        })?;
        Some(log.position(low))
    }

    /// The entry of key `k`, if remembered.
    pub fn get(&self, k: &u128) -> Option<KeyEntry> {
        let pos = self.position_of(k)?;
        self.log
            .get(pos)
            .map(|(e, base)| e.packed.unpack(base, || self.wide.get(k)))
    }

    /// Changes the entry of a remembered key in place (its arrival position stays).
    pub fn update(&mut self, k: &u128, change: impl FnOnce(&mut KeyEntry)) {
        let Some(pos) = self.position_of(k) else {
            return;
        };
        let Some(mut e) = self
            .log
            .get(pos)
            .map(|(e, base)| e.packed.unpack(base, || self.wide.get(k)))
        else {
            return;
        };
        change(&mut e);
        self.rewrite(pos, k, &e);
    }

    /// Writes `e` over the entry of key `k` at log position `pos`.
    fn rewrite(&mut self, pos: u64, k: &u128, e: &KeyEntry) {
        match self.log.rewrite(pos, e) {
            Some(whole) => self.wide.insert(*k, whole),
            None => self.wide.remove(k),
        };
    }

    /// Remembers a key (or replaces the entry of one already remembered, keeping its place).
    pub fn insert(&mut self, k: u128, e: KeyEntry, side: Option<Outcome>) {
        if let Some(pos) = self.position_of(&k) {
            self.rewrite(pos, &k, &e);
        } else {
            let (pos, aside) = self.log.push_back(k, &e);
            self.index.insert_new(KeyTag::from(k), pos as u32);
            if let Some(whole) = aside {
                self.wide.insert(k, whole);
            }
        }
        if let Some(o) = side {
            self.side.insert(k, o);
        }
    }

    /// Room for `n` more keys, so a restore does not rehash a multi-million-entry table.
    pub fn reserve(&mut self, n: usize) {
        self.index.reserve(n);
    }

    /// Inserts that moved a whole part of the key index (growth).
    pub fn index_rehashes(&self) -> u64 {
        self.index.rehashes()
    }

    /// The keys as they are now, for a snapshot made elsewhere: shares the log's chunks
    /// (copied on their next write) and copies the side table.
    pub fn freeze(&self) -> FrozenKeys {
        FrozenKeys {
            log: self.log.clone(),
            side: self.side.clone(),
            wide: self.wide.clone(),
        }
    }

    pub fn len(&self) -> usize {
        debug_assert_eq!(self.index.len(), self.log.len());
        self.log.len()
    }

    /// Approximate heap bytes (index table at its capacity, the log's chunks, the wide entries).
    pub fn bytes(&self) -> usize {
        let wide = std::mem::size_of::<(u128, KeyEntry)>() + 1;
        self.index.bytes() + self.log.bytes() + self.wide.capacity() * 8 / 7 * wide
    }
}

/// Compacts an outcome of `request` for storage: `(stored, seq, code, side)`.
pub(crate) fn compact(request: &Request, outcome: &Outcome) -> (Stored, u32, u8, Option<Outcome>) {
    let card = request.command.card();
    match outcome {
        Outcome::Approved(a) => match (a.txn_id, card) {
            (Some(t), Some(c)) if t.card == c && a.card.is_some() && a.reversed_txn.is_none() => {
                (Stored::Txn, t.seq, 0, None)
            }
            _ => (Stored::Side, 0, 0, Some(outcome.clone())),
        },
        Outcome::Declined { code, .. } if card.is_some() => {
            (Stored::Declined, 0, *code as u8, None)
        }
        Outcome::Rejected(Rejection::NotFound { what }) if card.is_some() => {
            (Stored::NotFound, 0, *what as u8, None)
        }
        Outcome::Rejected(Rejection::CardExists) => (Stored::CardExists, 0, 0, None),
        _ => (Stored::Side, 0, 0, Some(outcome.clone())),
    }
}

pub(crate) fn decline_from_u8(x: u8) -> DeclineCode {
    DeclineCode::ALL
        .get(x as usize)
        .copied()
        .unwrap_or(DeclineCode::InsufficientFunds)
}

pub(crate) fn not_found_from_u8(x: u8) -> NotFoundKind {
    match x {
        0 => NotFoundKind::Card,
        1 => NotFoundKind::Hold,
        2 => NotFoundKind::Txn,
        3 => NotFoundKind::Program,
        5 => NotFoundKind::TrimmedTxn,
        _ => NotFoundKind::IdempotencyKey,
    }
}
