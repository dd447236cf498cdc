//! Requests into the state machine: what a gateway or an admin asked for.
//!
//! Why one enum: every mutating request is logged to the WAL as-is (with its batch time),
//! and replay feeds the same requests to the same pure `apply`, reaching the same state.
//! Everything here is already validated and in minor units; JSON lives in `http`.

use crate::money::Amount;
use crate::program::Program;

/// A card number: 1–19 decimal digits without a leading zero, so the text and the number are
/// one-to-one (`"0001"` is refused, never read as card `1`); 0 is not a card.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct CardId(pub u64);

impl CardId {
    /// The largest card id: 19 digits. Both doors hold a card id to it ([`CardId::checked`]).
    pub const MAX: CardId = CardId(9_999_999_999_999_999_999);

    /// A card id from its number: 1 to [`CardId::MAX`] (the binary protocol's form; 0 is
    /// refused as `"0"` is, for its leading zero).
    pub fn checked(raw: u64) -> Option<CardId> {
        (1..=CardId::MAX.0).contains(&raw).then_some(CardId(raw))
    }

    /// Parses 1–19 ASCII digits without a leading zero (so `"0"` too is refused).
    pub fn parse(s: &str) -> Option<CardId> {
        let digits = !s.is_empty() && s.len() <= 19 && s.bytes().all(|b| b.is_ascii_digit());
        if !digits || s.starts_with('0') {
            return None;
        }
        s.parse().ok().and_then(CardId::checked)
    }
}

impl std::fmt::Display for CardId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A transaction id: the card and the card-local sequence number, printed `"{card}-{seq}"`.
/// Holds use the id of their hold transaction as `hold_id`. The card inside lets the router
/// send a refund or capture to the card's shard without a global table.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq, Hash))]
pub struct TxnId {
    pub card: CardId,
    pub seq: u32,
}

impl TxnId {
    /// Parses the `"{card}-{seq}"` form that `Display` prints: the card as [`CardId::parse`] reads
    /// it, the seq at most 10 digits that fit a `u32`. Anything else is `None`.
    pub fn parse(s: &str) -> Option<TxnId> {
        let (card, seq) = s.split_once('-')?;
        if seq.is_empty() || seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(TxnId {
            card: CardId::parse(card)?,
            seq: seq.parse().ok()?,
        })
    }
}

impl std::fmt::Display for TxnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.card.0, self.seq)
    }
}

/// Milliseconds since the Unix epoch, UTC. Batch time: taken once per batch, never decreasing.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Millis(pub i64);

macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash,
            rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
        )]
        #[rkyv(derive(Debug, PartialEq, Eq))]
        #[repr(u8)]
        pub enum $name { $($variant),+ }
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The word used in JSON and reports.
            pub fn as_str(self) -> &'static str { match self { $($name::$variant => $text),+ } }
            /// Parses the JSON word.
            pub fn parse(s: &str) -> Option<$name> { match s { $($text => Some($name::$variant),)+ _ => None } }
        }
    };
}

wire_enum!(
    /// How a top-up was paid.
    Channel { Wechat = "wechat", Alipay = "alipay", Unionpay = "unionpay", Cash = "cash" }
);
wire_enum!(
    /// How a spend or hold was presented.
    Method { Qr = "qr", Card = "card", Voice = "voice" }
);
wire_enum!(
    /// Why a cash-out happens; decides the amount (see SPEC).
    CashOutReason { Consumer = "consumer", MerchantFault = "merchant_fault", CoolingOff = "cooling_off" }
);
wire_enum!(
    /// Why an admin granted bonus or points.
    GrantReason { Birthday = "birthday", Referral = "referral", Compensation = "compensation", Campaign = "campaign" }
);

/// A birthday (month, day) for birthday grants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct MonthDay {
    pub month: u8,
    pub day: u8,
}

/// One operation on the state. Validated input, minor units.
// A program is large in memory but rare and archived out of line; boxing it in memory would
// change nothing on disk and cost an allocation per program change only, so it stays inline.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum Command {
    /// Create or replace a program (brand rules). Replicated to every shard.
    /// Archived out of line: a program is hundreds of bytes, and inline it would make every
    /// archived command (every logged spend) that large.
    UpsertProgram(#[rkyv(with = rkyv::with::AsBox)] Program),
    OpenCard {
        card_id: CardId,
        program: String,
        registered: bool,
        birthday: Option<MonthDay>,
    },
    TopUp {
        card_id: CardId,
        amount: Amount,
        channel: Channel,
    },
    /// `allow_partial`: approve what is available when the funds are short but not zero
    /// (partial approval, as card networks do).
    /// (`allow_partial` sits after `method`, in what was padding: a spend's archive is no
    /// larger for it.)
    Spend {
        card_id: CardId,
        amount: Amount,
        method: Method,
        allow_partial: bool,
        store: Option<String>,
    },
    Hold {
        card_id: CardId,
        amount: Amount,
        ttl_seconds: u32,
        method: Method,
        allow_partial: bool,
        store: Option<String>,
    },
    Capture {
        hold_id: TxnId,
        amount: Option<Amount>,
    },
    Void {
        hold_id: TxnId,
    },
    Refund {
        txn_id: TxnId,
        amount: Amount,
    },
    CashOut {
        card_id: CardId,
        reason: CashOutReason,
    },
    /// Gateway timeout reversal of the caller's own request that carried `key` on `card_id`:
    /// routed to that card's shard, which undoes the request if it applied it and otherwise
    /// remembers the key as reversed. (Records of log version 2 carry no card; they decode
    /// with `card_id` 0 and reverse the key wherever the shard had it, as they did then.)
    Reversal {
        card_id: CardId,
        key: String,
    },
    RedeemPoints {
        card_id: CardId,
        points: u64,
    },
    Grant {
        card_id: CardId,
        bonus: Option<Amount>,
        points: Option<u64>,
        reason: GrantReason,
    },
    Freeze {
        card_id: CardId,
    },
    Unfreeze {
        card_id: CardId,
    },
    Close {
        card_id: CardId,
    },
    /// Time passes: expire holds and bonus lots due by the batch time, emit reminders.
    /// Logged by the shard when something is due, so replay expires at the same instant.
    Tick,
    /// Incremental authorization: raise an open hold by `amount` (a merchant amount before
    /// discount, at the hold's rate), checked like a spend of that amount; `ttl_seconds`, when
    /// given, extends the hold to that many seconds from now.
    IncrementHold {
        hold_id: TxnId,
        amount: Amount,
        ttl_seconds: Option<u32>,
    },
}

impl Command {
    /// The one card this command touches: the card id it names, or the card inside the
    /// `TxnId` of a capture, void or refund. `None` for program changes and ticks, which are
    /// no card's. The router, the gateway scope check and the idempotency table all ask here.
    pub fn card(&self) -> Option<CardId> {
        match self {
            Command::OpenCard { card_id, .. }
            | Command::TopUp { card_id, .. }
            | Command::Spend { card_id, .. }
            | Command::Hold { card_id, .. }
            | Command::CashOut { card_id, .. }
            | Command::RedeemPoints { card_id, .. }
            | Command::Grant { card_id, .. }
            | Command::Freeze { card_id }
            | Command::Unfreeze { card_id }
            | Command::Close { card_id }
            | Command::Reversal { card_id, .. } => Some(*card_id),
            Command::Capture { hold_id, .. }
            | Command::Void { hold_id }
            | Command::IncrementHold { hold_id, .. } => Some(hold_id.card),
            Command::Refund { txn_id, .. } => Some(txn_id.card),
            Command::UpsertProgram(_) | Command::Tick => None,
        }
    }
}

/// Who sent a request: idempotency keys are namespaced by caller (and card), so two gateways
/// that both use `spend-1` never collide and one never sees or reverses the other's requests.
///
/// The id of an API key is a 64-bit hash of the key ([`CallerId::of_api_key`]), never the key
/// itself: it is written into every log record. With auth off all callers are one,
/// [`CallerId::DEFAULT`].
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct CallerId(pub u64);

impl CallerId {
    /// The one caller when auth is off (and of internal requests).
    pub const DEFAULT: CallerId = CallerId(0);
    /// Requests logged by log version 2, before keys were scoped: their keys are hashed alone,
    /// as they were then, so an old log replays to exactly the answers it gave.
    pub const UNSCOPED: CallerId = CallerId(u64::MAX);

    /// The caller holding API key `key`: a domain-separated xxh3 of the key, kept clear of
    /// the two reserved values.
    pub fn of_api_key(key: &str) -> CallerId {
        let mut bytes = Vec::with_capacity(16 + key.len());
        bytes.extend_from_slice(b"svault-caller\0");
        bytes.extend_from_slice(key.as_bytes());
        let h = xxhash_rust::xxh3::xxh3_64(&bytes);
        CallerId(h.clamp(1, u64::MAX - 1))
    }
}

/// A mutating request: the command plus its idempotency key (required over HTTP;
/// `None` for internal commands such as `Tick` and program replication). The caller travels
/// beside it (`State::apply_as`, the log record).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Request {
    pub idempotency_key: Option<String>,
    pub command: Command,
}

/// A read: answered by the shard from memory, never logged.
#[derive(Debug, Clone, PartialEq)]
pub enum Query {
    Card {
        card_id: CardId,
    },
    /// Newest first, at most `limit` entries, only those older than `before` when given (a
    /// cursor: the `txn_id` of the last entry of the previous page).
    Transactions {
        card_id: CardId,
        limit: u32,
        before: Option<u32>,
    },
}

impl Query {
    /// The card a query reads.
    pub fn card(&self) -> CardId {
        match self {
            Query::Card { card_id } | Query::Transactions { card_id, .. } => *card_id,
        }
    }
}
