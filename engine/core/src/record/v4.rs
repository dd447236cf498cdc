//! Log record version 4, read so that logs written before partial approvals, incremental
//! authorizations and the programs' `spend` block still replay.
//!
//! The layout with the caller logged and reversals naming their card, before `Spend` and `Hold`
//! carried `allow_partial`, before `IncrementHold`, and with programs in the layout of
//! [`ProgramV1`]. Decoded into today's [`LogRecord`] (no partial approvals, programs without
//! spend limits). Nothing writes this layout any more (but the tests, which pin its bytes).

use super::{LogRecord, RecordError};
use crate::command::{
    CallerId, CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, MonthDay,
    Request, TxnId,
};
use crate::money::Amount;
use crate::program::v1::ProgramV1;
use rkyv::rancor;

/// The version byte of this layout.
pub const V4: u8 = 4;

/// `LogRecord` of version 4.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogRecordV4 {
    pub version: u8,
    pub now: Millis,
    pub caller: CallerId,
    pub request: RequestV4,
}

/// `Request` of version 4.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RequestV4 {
    pub idempotency_key: Option<String>,
    pub command: CommandV4,
}

/// `Command` of version 4: today's variants up to `Tick`, without `allow_partial`, programs
/// in the old layout.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[allow(missing_docs, clippy::large_enum_variant)] // as `Command`: the layout it mirrors
pub enum CommandV4 {
    UpsertProgram(#[rkyv(with = rkyv::with::AsBox)] ProgramV1),
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
    Tick,
}

impl From<CommandV4> for Command {
    fn from(c: CommandV4) -> Command {
        match c {
            CommandV4::UpsertProgram(p) => Command::UpsertProgram(p.into()),
            CommandV4::OpenCard {
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
            CommandV4::TopUp {
                card_id,
                amount,
                channel,
            } => Command::TopUp {
                card_id,
                amount,
                channel,
            },
            CommandV4::Spend {
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
            CommandV4::Hold {
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
            CommandV4::Capture { hold_id, amount } => Command::Capture { hold_id, amount },
            CommandV4::Void { hold_id } => Command::Void { hold_id },
            CommandV4::Refund { txn_id, amount } => Command::Refund { txn_id, amount },
            CommandV4::CashOut { card_id, reason } => Command::CashOut { card_id, reason },
            CommandV4::Reversal { card_id, key } => Command::Reversal { card_id, key },
            CommandV4::RedeemPoints { card_id, points } => {
                Command::RedeemPoints { card_id, points }
            }
            CommandV4::Grant {
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
            CommandV4::Freeze { card_id } => Command::Freeze { card_id },
            CommandV4::Unfreeze { card_id } => Command::Unfreeze { card_id },
            CommandV4::Close { card_id } => Command::Close { card_id },
            CommandV4::Tick => Command::Tick,
        }
    }
}

/// Decodes a version-4 payload (16-byte aligned) into today's record, keeping its version.
/// `None` when the bytes are not this layout or name another version, so the caller tries the
/// next older layout.
pub(super) fn decode(bytes: &[u8]) -> Option<Result<LogRecord, RecordError>> {
    let archived = rkyv::access::<ArchivedLogRecordV4, rancor::Error>(bytes).ok()?;
    if archived.version != V4 {
        return None;
    }
    Some(
        rkyv::deserialize::<LogRecordV4, rancor::Error>(archived)
            .map_err(|e| RecordError::Invalid(e.to_string()))
            .map(|old| LogRecord {
                version: old.version,
                now: old.now,
                caller: old.caller,
                request: Request {
                    idempotency_key: old.request.idempotency_key,
                    command: old.request.command.into(),
                },
            }),
    )
}
