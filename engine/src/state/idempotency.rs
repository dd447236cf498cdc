//! Idempotency keys: the same key with the same request gets the first answer again.
//!
//! Why compact: every mutating call carries a key and keys live 24 h, so a busy shard holds
//! millions. A key is stored as its 128-bit xxh3 hash with a 64-bit fingerprint of the
//! command and a compact answer that points into the card's history (the full reply is
//! rebuilt from there). Rare answers that cannot be rebuilt that way (reversals, program
//! changes, `400`s) are kept whole in a side table. Keys expire in arrival order (batch time
//! never decreases), so a FIFO gives O(1) expiry; a hard cap evicts the oldest beyond it.

use crate::command::{CardId, Command, Request};
use crate::outcome::{DeclineCode, NotFoundKind, Outcome, Rejection};
use std::collections::{HashMap, VecDeque};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64};

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
}

const _: () = assert!(std::mem::size_of::<KeyEntry>() == 32);

/// 128-bit hash of an idempotency key.
pub(crate) fn key_hash(key: &str) -> u128 {
    xxh3_128(key.as_bytes())
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

/// A deterministic fingerprint of a command: same command ⇔ same fingerprint (up to 2^-64).
/// Written field by field with tags, so it does not depend on `Hash` impl details.
pub(crate) fn fingerprint(cmd: &Command) -> u64 {
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
        Command::Spend {
            card_id,
            amount,
            method,
            store,
        } => {
            h.update(&[3, *method as u8]);
            u64s(&mut h, &[card_id.0, amount.0 as u64]);
            opt_str(&mut h, store);
        }
        Command::Hold {
            card_id,
            amount,
            ttl_seconds,
            method,
            store,
        } => {
            h.update(&[4, *method as u8]);
            u64s(&mut h, &[card_id.0, amount.0 as u64, *ttl_seconds as u64]);
            opt_str(&mut h, store);
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
        Command::Reversal { key } => {
            h.update(&[9]);
            h.update(&key_hash(key).to_le_bytes());
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
    }
    // 0 is reserved for "no request seen yet" (ReversedEarly).
    h.digest().max(1)
}

/// The card a command is about, if any (replays rebuild the card view from it).
pub(crate) fn command_card(cmd: &Command) -> Option<CardId> {
    match cmd {
        Command::OpenCard { card_id, .. }
        | Command::TopUp { card_id, .. }
        | Command::Spend { card_id, .. }
        | Command::Hold { card_id, .. }
        | Command::CashOut { card_id, .. }
        | Command::RedeemPoints { card_id, .. }
        | Command::Grant { card_id, .. }
        | Command::Freeze { card_id }
        | Command::Unfreeze { card_id }
        | Command::Close { card_id } => Some(*card_id),
        Command::Capture { hold_id, .. } | Command::Void { hold_id } => Some(hold_id.card),
        Command::Refund { txn_id, .. } => Some(txn_id.card),
        Command::UpsertProgram(_) | Command::Reversal { .. } | Command::Tick => None,
    }
}

/// Identity hasher for keys that are already uniformly random (128-bit xxh3 hashes).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CardId, Method};
    use crate::money::Amount;

    #[test]
    fn fingerprints_tell_commands_apart_and_spill_long_ones() {
        let spend = |store: Option<String>, amount| Command::Spend {
            card_id: CardId(1),
            amount: Amount(amount),
            method: Method::Qr,
            store,
        };
        let a = fingerprint(&spend(None, 100));
        assert_eq!(a, fingerprint(&spend(None, 100)));
        assert_ne!(a, fingerprint(&spend(None, 101)));
        assert_ne!(a, fingerprint(&spend(Some(String::new()), 100)));
        let long = "s".repeat(300);
        let b = fingerprint(&spend(Some(long.clone()), 100));
        assert_eq!(b, fingerprint(&spend(Some(long), 100)));
        assert_ne!(b, fingerprint(&spend(Some("s".repeat(299)), 100)));
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

/// All live keys of one shard.
#[derive(Default, Clone)]
pub(crate) struct KeyTable {
    pub map: HashMap<u128, KeyEntry, PreHashedBuild>,
    /// Keys in arrival order (each key once).
    pub fifo: VecDeque<u128>,
    /// Whole outcomes for `Stored::Side` entries.
    pub side: HashMap<u128, Outcome, PreHashedBuild>,
}

impl KeyTable {
    /// Forgets keys first seen at or before `now − ttl`, and the oldest beyond `max`.
    pub fn expire(&mut self, now: i64, ttl_ms: i64, max: usize) {
        while let Some(&k) = self.fifo.front() {
            let old = match self.map.get(&k) {
                Some(e) => e.at.saturating_add(ttl_ms) <= now || self.fifo.len() > max,
                None => true,
            };
            if !old {
                break;
            }
            self.fifo.pop_front();
            if let Some(e) = self.map.remove(&k) {
                if e.stored == Stored::Side {
                    self.side.remove(&k);
                }
            }
        }
    }

    pub fn insert(&mut self, k: u128, e: KeyEntry, side: Option<Outcome>) {
        if self.map.insert(k, e).is_none() {
            self.fifo.push_back(k);
        }
        if let Some(o) = side {
            self.side.insert(k, o);
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Compacts an outcome of `request` for storage: `(stored, seq, code, side)`.
pub(crate) fn compact(request: &Request, outcome: &Outcome) -> (Stored, u32, u8, Option<Outcome>) {
    let card = command_card(&request.command);
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
        _ => NotFoundKind::IdempotencyKey,
    }
}
