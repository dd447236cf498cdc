//! Log record version 1, read so that logs written before version 2 still replay.
//!
//! Version 1 archived `Command::UpsertProgram(Program)` inline, so every archived command had
//! the size of a program. Everything else is the version 2 layout: the same fields in the same
//! order, the same variant numbers. These types exist only to be validated and decoded, then
//! turned into today's [`LogRecord`]; nothing writes them (but the tests, which pin their bytes).

use crate::command::{
    CallerId, CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, MonthDay,
    Request, TxnId,
};
use crate::money::Amount;
use crate::program::v1::ProgramV1;

use super::LogRecord;

/// The version 1 payload: as [`LogRecord`], with a [`CommandV1`].
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(super) struct LogRecordV1 {
    pub version: u8,
    pub now: Millis,
    pub request: RequestV1,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(super) struct RequestV1 {
    pub idempotency_key: Option<String>,
    pub command: CommandV1,
}

/// `Command` as version 1 archived it: variant for variant the same, `UpsertProgram` inline.
/// Its in-memory size is the layout being read, so it stays as it is.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub(super) enum CommandV1 {
    UpsertProgram(ProgramV1),
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
    Spend {
        card_id: CardId,
        amount: Amount,
        method: Method,
        store: Option<String>,
    },
    Hold {
        card_id: CardId,
        amount: Amount,
        ttl_seconds: u32,
        method: Method,
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
    Reversal {
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
    Tick,
}

impl From<LogRecordV1> for LogRecord {
    fn from(r: LogRecordV1) -> LogRecord {
        use CommandV1 as V;
        let command = match r.request.command {
            V::UpsertProgram(p) => Command::UpsertProgram(p.into()),
            V::OpenCard {
                card_id,
                program,
                registered,
                birthday,
            } => Command::OpenCard {
                card_id,
                program,
                registered,
                birthday,
            },
            V::TopUp {
                card_id,
                amount,
                channel,
            } => Command::TopUp {
                card_id,
                amount,
                channel,
            },
            V::Spend {
                card_id,
                amount,
                method,
                store,
            } => Command::Spend {
                card_id,
                amount,
                method,
                store,
                allow_partial: false,
            },
            V::Hold {
                card_id,
                amount,
                ttl_seconds,
                method,
                store,
            } => Command::Hold {
                card_id,
                amount,
                ttl_seconds,
                method,
                store,
                allow_partial: false,
            },
            V::Capture { hold_id, amount } => Command::Capture { hold_id, amount },
            V::Void { hold_id } => Command::Void { hold_id },
            V::Refund { txn_id, amount } => Command::Refund { txn_id, amount },
            V::CashOut { card_id, reason } => Command::CashOut { card_id, reason },
            V::Reversal { key } => Command::Reversal {
                card_id: CardId(0),
                key,
            },
            V::RedeemPoints { card_id, points } => Command::RedeemPoints { card_id, points },
            V::Grant {
                card_id,
                bonus,
                points,
                reason,
            } => Command::Grant {
                card_id,
                bonus,
                points,
                reason,
            },
            V::Freeze { card_id } => Command::Freeze { card_id },
            V::Unfreeze { card_id } => Command::Unfreeze { card_id },
            V::Close { card_id } => Command::Close { card_id },
            V::Tick => Command::Tick,
        };
        LogRecord {
            // Kept: the version also names the money rules the record is decided by
            // (`rules_of`), and a version 1 record was written under the original ones.
            version: r.version,
            now: r.now,
            // Keys were hashed alone then.
            caller: CallerId::UNSCOPED,
            request: Request {
                idempotency_key: r.request.idempotency_key,
                command,
            },
        }
    }
}
