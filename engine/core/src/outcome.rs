//! What the state machine answers. A decline is a value, not an error.

use crate::command::{CardId, CashOutReason, Channel, GrantReason, Method, Millis, TxnId};
use crate::money::{Amount, Currency};
use std::sync::Arc;

/// Why an operation was declined (`402`). The words are SPEC.md's decline codes.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum DeclineCode {
    InsufficientFunds,
    CardFrozen,
    CardClosed,
    OverSingleTopUp,
    OverBalanceCap,
    OverDailyTopUp,
    VelocityLimit,
    HoldExpired,
    OverCapture,
    OverRefund,
    RefundLocked,
    Reversed,
    InsufficientPoints,
    /// The request would take a balance, a lifetime total, the points or the program's float
    /// past 10^12 (SPEC "Money": checked arithmetic); nothing changed.
    OverAmountLimit,
    /// A spend, hold or increment at a store outside the program's allow list (or with no
    /// store when there is one), or on its deny list.
    StoreNotAllowed,
    /// Above the program's `spend.max_single`.
    OverSingleSpend,
    /// The card made the program's `spend.max_daily_count` spends today (local day).
    OverDailyCount,
}

impl DeclineCode {
    /// Every code in SPEC's order. A code's index here is the binary protocol's decline `detail`
    /// byte and its metrics slot, so new codes go at the end.
    pub const ALL: &'static [DeclineCode] = &[
        DeclineCode::InsufficientFunds,
        DeclineCode::CardFrozen,
        DeclineCode::CardClosed,
        DeclineCode::OverSingleTopUp,
        DeclineCode::OverBalanceCap,
        DeclineCode::OverDailyTopUp,
        DeclineCode::VelocityLimit,
        DeclineCode::HoldExpired,
        DeclineCode::OverCapture,
        DeclineCode::OverRefund,
        DeclineCode::RefundLocked,
        DeclineCode::Reversed,
        DeclineCode::InsufficientPoints,
        DeclineCode::OverAmountLimit,
        DeclineCode::StoreNotAllowed,
        DeclineCode::OverSingleSpend,
        DeclineCode::OverDailyCount,
    ];
    /// The SPEC decline code sent in JSON (`"insufficient_funds"`): wire text, never reworded.
    pub fn as_str(self) -> &'static str {
        match self {
            DeclineCode::InsufficientFunds => "insufficient_funds",
            DeclineCode::CardFrozen => "card_frozen",
            DeclineCode::CardClosed => "card_closed",
            DeclineCode::OverSingleTopUp => "over_single_top_up",
            DeclineCode::OverBalanceCap => "over_balance_cap",
            DeclineCode::OverDailyTopUp => "over_daily_top_up",
            DeclineCode::VelocityLimit => "velocity_limit",
            DeclineCode::HoldExpired => "hold_expired",
            DeclineCode::OverCapture => "over_capture",
            DeclineCode::OverRefund => "over_refund",
            DeclineCode::RefundLocked => "refund_locked",
            DeclineCode::Reversed => "reversed",
            DeclineCode::InsufficientPoints => "insufficient_points",
            DeclineCode::OverAmountLimit => "over_amount_limit",
            DeclineCode::StoreNotAllowed => "store_not_allowed",
            DeclineCode::OverSingleSpend => "over_single_spend",
            DeclineCode::OverDailyCount => "over_daily_count",
        }
    }
}

/// A request the state machine refused before deciding anything (`404`, `409`, `400`).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Rejection {
    /// `404`: no such card / hold / transaction / program.
    NotFound { what: NotFoundKind },
    /// `409 idempotency_key_reused`: the key was used with another request.
    IdempotencyKeyReused,
    /// `409 card_exists`: open with a card id already taken.
    CardExists,
    /// `400`: valid syntax but not acceptable here (e.g. below the program's top-up minimum,
    /// a capture of a hold that is not active); `field` names the input at fault.
    Invalid { field: String, reason: String },
}

/// What a `404` was looking for: it picks the error message and the binary protocol's
/// `detail` byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[repr(u8)]
pub enum NotFoundKind {
    Card,
    Hold,
    Txn,
    Program,
    IdempotencyKey,
    /// A transaction of the card that is no longer in its in-memory history (trimmed: older
    /// than the key TTL and beyond `history_per_card_max` entries); it is in the log.
    TrimmedTxn,
}

/// Lifecycle status of a card.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum CardStatus {
    Active,
    Frozen,
    Closed,
}

impl CardStatus {
    /// The status as JSON spells it (`"active"`, `"frozen"`, `"closed"`).
    pub fn as_str(self) -> &'static str {
        match self {
            CardStatus::Active => "active",
            CardStatus::Frozen => "frozen",
            CardStatus::Closed => "closed",
        }
    }
}

/// Archives an `Arc<str>` exactly like a `String` (rkyv's own `Arc` support would archive a
/// shared pointer, making snapshot bytes and digests depend on which values share memory).
pub struct ArcStr;

impl rkyv::with::ArchiveWith<Arc<str>> for ArcStr {
    type Archived = rkyv::string::ArchivedString;
    type Resolver = rkyv::string::StringResolver;

    fn resolve_with(field: &Arc<str>, resolver: Self::Resolver, out: rkyv::Place<Self::Archived>) {
        rkyv::string::ArchivedString::resolve_from_str(field, resolver, out);
    }
}

impl<S> rkyv::with::SerializeWith<Arc<str>, S> for ArcStr
where
    S: rkyv::rancor::Fallible + ?Sized,
    S::Error: rkyv::rancor::Source,
    str: rkyv::SerializeUnsized<S>,
{
    fn serialize_with(field: &Arc<str>, serializer: &mut S) -> Result<Self::Resolver, S::Error> {
        rkyv::string::ArchivedString::serialize_from_str(field, serializer)
    }
}

impl<D> rkyv::with::DeserializeWith<rkyv::string::ArchivedString, Arc<str>, D> for ArcStr
where
    D: rkyv::rancor::Fallible + ?Sized,
{
    fn deserialize_with(
        field: &rkyv::string::ArchivedString,
        _: &mut D,
    ) -> Result<Arc<str>, D::Error> {
        Ok(Arc::from(field.as_str()))
    }
}

/// The card view of SPEC.md: balances in minor units, formatted by the servers.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct CardView {
    pub card_id: CardId,
    /// Shared with the state's program table: a reply clones a pointer, not the name.
    #[rkyv(with = ArcStr)]
    pub program: Arc<str>,
    pub currency: Currency,
    pub principal: Amount,
    pub bonus: Amount,
    pub held: Amount,
    /// principal + bonus − held
    pub available: Amount,
    pub points: u64,
    /// Tier name, `None` below the first tier (shared like `program`).
    #[rkyv(with = rkyv::with::Map<ArcStr>)]
    pub tier: Option<Arc<str>>,
    pub status: CardStatus,
    /// Lifetime principal paid in (top-ups) at face value.
    pub paid_in: Amount,
    /// Lifetime bonus given.
    pub bonus_given: Amount,
    /// Lifetime value consumed at face value (spends + captures − refunds).
    pub consumed: Amount,
}

/// What kind of operation an approval (or a transaction in history) is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
#[repr(u8)]
pub enum TxnKind {
    Open,
    TopUp,
    Spend,
    Hold,
    Capture,
    Void,
    HoldExpired,
    Refund,
    CashOut,
    Reversal,
    Redeem,
    Grant,
    Freeze,
    Unfreeze,
    Close,
    BonusExpired,
    Program,
    /// A `Command::Tick`: expiries and reminders due at the batch time.
    Tick,
    /// An incremental authorization: an open hold raised.
    Increment,
}

impl TxnKind {
    /// Every kind, in declaration order: `ALL[k as usize] == k` (the byte a packed history
    /// entry stores).
    pub const ALL: [TxnKind; 19] = [
        TxnKind::Open,
        TxnKind::TopUp,
        TxnKind::Spend,
        TxnKind::Hold,
        TxnKind::Capture,
        TxnKind::Void,
        TxnKind::HoldExpired,
        TxnKind::Refund,
        TxnKind::CashOut,
        TxnKind::Reversal,
        TxnKind::Redeem,
        TxnKind::Grant,
        TxnKind::Freeze,
        TxnKind::Unfreeze,
        TxnKind::Close,
        TxnKind::BonusExpired,
        TxnKind::Program,
        TxnKind::Tick,
        TxnKind::Increment,
    ];

    /// The `kind` word of approvals and history lines in JSON (`"top_up"`).
    pub fn as_str(self) -> &'static str {
        match self {
            TxnKind::Open => "open",
            TxnKind::TopUp => "top_up",
            TxnKind::Spend => "spend",
            TxnKind::Hold => "hold",
            TxnKind::Capture => "capture",
            TxnKind::Void => "void",
            TxnKind::HoldExpired => "hold_expired",
            TxnKind::Refund => "refund",
            TxnKind::CashOut => "cash_out",
            TxnKind::Reversal => "reversal",
            TxnKind::Redeem => "redeem",
            TxnKind::Grant => "grant",
            TxnKind::Freeze => "freeze",
            TxnKind::Unfreeze => "unfreeze",
            TxnKind::Close => "close",
            TxnKind::BonusExpired => "bonus_expired",
            TxnKind::Program => "program",
            TxnKind::Tick => "tick",
            TxnKind::Increment => "increment",
        }
    }
}

/// Which discount a spend or hold got: a tier's and a time window's do not stack, the larger
/// applies (SPEC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscountSource {
    Tier,
    Window,
}

impl DiscountSource {
    /// The word of an approval's `discount_source` in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            DiscountSource::Tier => "tier",
            DiscountSource::Window => "window",
        }
    }
}

/// An approved operation. Fields that do not apply to the kind are zero / `None`.
///
/// Every figure is the change to the card with its sign where the kind alone does not say it:
/// a reversal that takes money back (of a top-up, refund, redeem or grant) has a negative
/// `amount`, `principal` and `bonus`; points that go up are `points_earned`, points that go
/// down `points_spent`.
///
/// The fields marked `Skip` are derived (never stored whole in the idempotency side table,
/// which holds only reversals, program changes and rejections), so they stay out of the
/// archived form and snapshots keep their layout.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Approval {
    pub kind: TxnKind,
    /// The transaction id (for holds, also the `hold_id`); `None` for program changes.
    pub txn_id: Option<TxnId>,
    /// What was charged or credited (after discount for spends; the cash paid out for cash-outs).
    pub amount: Amount,
    /// The parts of `amount` taken from / credited to principal and bonus.
    pub principal: Amount,
    pub bonus: Amount,
    /// Ladder bonus credited by a top-up, or bonus granted / redeemed.
    pub bonus_granted: Amount,
    /// Discount given on a spend/hold: the tier's or the time window's, the larger.
    pub discount: Amount,
    /// Which discount `discount` is (spends and holds with a discount, current rules).
    #[rkyv(with = rkyv::with::Skip)]
    pub discount_source: Option<DiscountSource>,
    /// Points added to the card (earned, granted, given back by a reversal).
    pub points_earned: u64,
    /// Points taken from the card (redeemed, taken back by a refund or reversal).
    pub points_spent: u64,
    /// Amount released back to the card (void, partial capture, expired hold).
    pub released: Amount,
    /// Bonus dropped from the card: forfeited by a cash-out or close, expired in a tick.
    pub forfeited: Amount,
    /// Principal a cash-out took off the card without paying it out (SPEC's `consumer`
    /// rule keeps back the value the bonus bought).
    #[rkyv(with = rkyv::with::Skip)]
    pub retained: Amount,
    /// For a reversal: the transaction undone, if the original had been applied.
    pub reversed_txn: Option<TxnId>,
    /// Hold expiry time, for holds (for increments: the raised hold's, after the increment).
    pub expires_at: Option<Millis>,
    /// The card after the operation (`None` for program changes and reversals of nothing).
    pub card: Option<CardView>,
    /// A partial approval: a spend or hold approved for what was available (`amount`), less
    /// than `requested`.
    #[rkyv(with = rkyv::with::Skip)]
    pub partial: bool,
    /// For partial approvals: the amount the request asked for (the merchant amount).
    #[rkyv(with = rkyv::with::Skip)]
    pub requested: Option<Amount>,
    /// For increments: the hold raised.
    #[rkyv(with = rkyv::with::Skip)]
    pub hold: Option<TxnId>,
}

impl Approval {
    /// An approval that moved nothing: every figure zero, no transaction, no card. Program
    /// changes, ticks and reversals of nothing start from it and set what they have.
    pub fn nothing(kind: TxnKind) -> Approval {
        Approval {
            kind,
            txn_id: None,
            amount: Amount::ZERO,
            principal: Amount::ZERO,
            bonus: Amount::ZERO,
            bonus_granted: Amount::ZERO,
            discount: Amount::ZERO,
            discount_source: None,
            points_earned: 0,
            points_spent: 0,
            released: Amount::ZERO,
            forfeited: Amount::ZERO,
            retained: Amount::ZERO,
            reversed_txn: None,
            expires_at: None,
            card: None,
            partial: false,
            requested: None,
            hold: None,
        }
    }
}

/// The answer to a mutating request.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Outcome {
    Approved(Box<Approval>),
    Declined {
        code: DeclineCode,
        card: Option<CardView>,
    },
    Rejected(Rejection),
}

/// An outcome plus whether it is a stored answer to an earlier request with the same key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub outcome: Outcome,
    /// `true` ⇒ `Idempotent-Replayed: true`.
    pub replayed: bool,
}

/// One line of a card's history (newest first in `GET /v1/cards/{id}/transactions`): what
/// finance needs to reconcile it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnRecord {
    pub txn_id: TxnId,
    pub kind: TxnKind,
    pub at: Millis,
    /// As in the approval: signed for reversals that take money back.
    pub amount: Amount,
    pub principal: Amount,
    pub bonus: Amount,
    /// How a top-up was paid.
    pub channel: Option<Channel>,
    /// How a spend or hold was presented (captures, increments and voids: their hold's).
    pub method: Option<Method>,
    /// Where (spends and holds; captures, increments, voids and refunds: their original's).
    pub store: Option<Arc<str>>,
    /// Discount given (spends, holds, increments).
    pub discount: Amount,
    /// Points moved, signed: earned or granted (+), redeemed or taken back (−).
    pub points: i64,
    /// For captures, voids, increments, expiries, refunds and reversals: the transaction they
    /// refer to.
    pub refers_to: Option<TxnId>,
    /// Why: a grant's or a cash-out's reason.
    pub reason: Option<TxnReason>,
    /// A partial approval (approved for less than requested).
    pub partial: bool,
}

/// The reason a history line carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnReason {
    Grant(GrantReason),
    CashOut(CashOutReason),
}

impl TxnReason {
    /// The reason as JSON spells it: the grant's or the cash-out's own word.
    pub fn as_str(self) -> &'static str {
        match self {
            TxnReason::Grant(r) => r.as_str(),
            TxnReason::CashOut(r) => r.as_str(),
        }
    }
}

/// Outstanding money of one program (or all): the fund pool.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct FloatTotals {
    pub principal: Amount,
    pub bonus: Amount,
    pub held: Amount,
    pub cards: u64,
}

/// Something worth telling the brand or operations: reminders, expiries, anomalies.
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Event {
    pub at: Millis,
    pub card_id: CardId,
    pub kind: EventKind,
}

/// What an [`Event`] reports, with the figures its notice needs (amounts in minor units).
#[derive(Debug, Clone, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum EventKind {
    LowBalance {
        available: Amount,
    },
    BonusExpiring {
        amount: Amount,
        expires_at: Millis,
    },
    BonusExpired {
        amount: Amount,
    },
    HoldExpired {
        hold_id: TxnId,
        amount: Amount,
    },
    /// More spends per minute than the program allows were attempted.
    VelocityBreach,
    /// A top-up cashed out or refunded within minutes of being made.
    QuickCashOut {
        amount: Amount,
    },
    /// Several declines in a row on one card.
    RepeatedDeclines {
        count: u32,
    },
}

impl EventKind {
    /// The event's `kind` word in JSON (`"low_balance"`).
    pub fn as_str(&self) -> &'static str {
        match self {
            EventKind::LowBalance { .. } => "low_balance",
            EventKind::BonusExpiring { .. } => "bonus_expiring",
            EventKind::BonusExpired { .. } => "bonus_expired",
            EventKind::HoldExpired { .. } => "hold_expired",
            EventKind::VelocityBreach => "velocity_breach",
            EventKind::QuickCashOut { .. } => "quick_cash_out",
            EventKind::RepeatedDeclines { .. } => "repeated_declines",
        }
    }
}
