//! A card's transaction history: one compact entry per approved operation.
//!
//! Why here and not only in the log: refunds, captures, reversals, cash-out locks and
//! idempotent replays all need facts about earlier transactions of the same card, and the
//! card-local sequence number (`TxnId.seq`) indexes this list directly. Each card keeps its
//! recent history; entries older than the idempotency TTL are trimmed once a card holds more
//! than `StateConfig::history_per_card_max` (a refund of a trimmed transaction is `404`).

use crate::command::{Channel, GrantReason, Method, Millis};
use crate::money::Amount;
use crate::outcome::{DiscountSource, TxnKind};

/// Flag: a top-up, refund, redeem, grant or increment that a reversal undid.
pub(crate) const F_REVERSED: u8 = 1;
/// Flag of a spend or hold approved for less than requested (partial approval).
pub(crate) const F_PARTIAL: u8 = 128;
/// Hold states live in `flags` of a `Hold` entry.
pub(crate) const HOLD_ACTIVE: u8 = 0;
pub(crate) const HOLD_CAPTURED: u8 = 2;
pub(crate) const HOLD_VOIDED: u8 = 4;
pub(crate) const HOLD_EXPIRED: u8 = 8;
pub(crate) const HOLD_STATE_MASK: u8 = 2 | 4 | 8;
/// Flags of spends and holds (current rules): where the discount came from.
pub(crate) const DISCOUNT_TIER: u8 = 16;
pub(crate) const DISCOUNT_WINDOW: u8 = 32;
/// Flag of a hold placed under the current rules: its captures are merchant amounts before
/// discount, at the rate fixed when the hold was placed (kept in the entry's `points`).
pub(crate) const HOLD_GROSS: u8 = 64;

/// One approved operation. What `extra`, `aux` and `points` hold depends on `kind`:
///
/// | kind | amount | principal / bonus | extra | aux | points |
/// | --- | --- | --- | --- | --- | --- |
/// | top_up | principal credited | credited | ladder bonus | bonus lot expiry | 0 |
/// | spend | charged (after discount) | taken | discount | expiry of the latest lot drawn | earned |
/// | hold | held | 0 | discount | hold expiry | 0, or the discount rate (`HOLD_GROSS`) |
/// | increment | added to the hold | 0 | discount | hold expiry after it | 0 |
/// | capture | captured | taken | released | expiry of the latest lot drawn | earned |
/// | void, hold_expired | released | 0 | released | 0 | 0 |
/// | refund | refunded | returned | 0 | lot expiry | taken back |
/// | cash_out | paid out | removed | forfeited | 0 | 0 |
/// | reversal | undone amount | signed change to the card | 0 | lot expiry | points moved |
/// | redeem, grant | bonus credited | 0 / bonus | bonus | lot expiry | spent / granted |
/// | bonus_expired | expired | 0 / expired | 0 | lot expiry | 0 |
///
/// `refers_to` names the transaction a capture, void, increment, expiry, refund or reversal is
/// about; a spend or hold refers to nothing, and there it holds its store instead: one more
/// than the store's index in the shard's store table, 0 for none. `detail` is how the money
/// moved: a top-up's channel, a spend's or hold's method, a grant's reason, as one more than
/// its index in the word list, 0 for none. It was padding before, written as zero, so entries
/// restored from older snapshots say none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(crate) struct TxnEntry {
    pub at: i64,
    pub amount: Amount,
    pub principal: Amount,
    pub bonus: Amount,
    pub extra: Amount,
    pub aux: i64,
    pub points: u64,
    /// Sequence number of the transaction this one refers to (0 ⇒ none).
    pub refers_to: u32,
    pub kind: TxnKind,
    pub flags: u8,
    pub detail: u8,
}

const _: () = assert!(std::mem::size_of::<TxnEntry>() == 64);

/// The `detail` byte of a value of a word list: its index + 1.
pub(crate) fn detail_of<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter()
        .position(|x| x == v)
        .and_then(|i| u8::try_from(i + 1).ok())
        .unwrap_or(0)
}

/// The value of a word list a `detail` byte names.
pub(crate) fn from_detail<T: Copy>(all: &[T], d: u8) -> Option<T> {
    usize::from(d)
        .checked_sub(1)
        .and_then(|i| all.get(i).copied())
}

impl TxnEntry {
    pub fn new(kind: TxnKind, at: Millis) -> TxnEntry {
        TxnEntry {
            at: at.0,
            amount: Amount::ZERO,
            principal: Amount::ZERO,
            bonus: Amount::ZERO,
            extra: Amount::ZERO,
            aux: 0,
            points: 0,
            refers_to: 0,
            kind,
            flags: 0,
            detail: 0,
        }
    }

    /// `amount` with the sign of the change to the card: a reversal that takes money back
    /// (of a top-up, refund, redeem or grant) is negative.
    pub fn signed_amount(&self) -> Amount {
        if self.kind == TxnKind::Reversal && (self.principal.0 < 0 || self.bonus.0 < 0) {
            Amount::ZERO - self.amount
        } else {
            self.amount
        }
    }

    /// Where a spend's or hold's discount came from (recorded under the current rules only).
    pub fn discount_source(&self) -> Option<DiscountSource> {
        if self.flags & DISCOUNT_WINDOW != 0 {
            Some(DiscountSource::Window)
        } else if self.flags & DISCOUNT_TIER != 0 {
            Some(DiscountSource::Tier)
        } else {
            None
        }
    }

    /// The transaction this one is about (`None` for spends and holds, whose `refers_to` is
    /// their store).
    pub fn refers(&self) -> Option<u32> {
        let about = !matches!(self.kind, TxnKind::Spend | TxnKind::Hold);
        (about && self.refers_to != 0).then_some(self.refers_to)
    }

    /// A spend's or hold's store: its index in the shard's store table.
    pub fn store_slot(&self) -> Option<u32> {
        let own = matches!(self.kind, TxnKind::Spend | TxnKind::Hold);
        (own && self.refers_to != 0).then(|| self.refers_to - 1)
    }

    /// Whether a spend or hold was approved for less than requested.
    pub fn partial(&self) -> bool {
        matches!(self.kind, TxnKind::Spend | TxnKind::Hold) && self.flags & F_PARTIAL != 0
    }

    pub fn channel(&self) -> Option<Channel> {
        (self.kind == TxnKind::TopUp)
            .then(|| from_detail(Channel::ALL, self.detail))
            .flatten()
    }

    pub fn method(&self) -> Option<Method> {
        matches!(self.kind, TxnKind::Spend | TxnKind::Hold)
            .then(|| from_detail(Method::ALL, self.detail))
            .flatten()
    }

    pub fn grant_reason(&self) -> Option<GrantReason> {
        (self.kind == TxnKind::Grant)
            .then(|| from_detail(GrantReason::ALL, self.detail))
            .flatten()
    }
}
