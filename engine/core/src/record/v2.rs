//! Log record versions 2 and 3, read so that logs written before callers were logged still
//! replay.
//!
//! The layout before callers were logged and reversals named their card (the two versions
//! differ only in the money rules that decide them). Decoded into today's [`LogRecord`] with
//! [`CallerId::UNSCOPED`] (keys hashed alone, as they were) and reversals with card 0 (a v2
//! reversal was broadcast; each shard reverses the key wherever it had it). Nothing writes this
//! layout any more (but the tests, which pin its bytes).

use super::{LogRecord, RecordError};
use crate::command::{
    CallerId, CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, MonthDay,
    Request, TxnId,
};
use crate::money::Amount;
use crate::program::v1::ProgramV1;
use rkyv::rancor;

/// The first version byte of this layout.
pub const V2: u8 = 2;
/// The last version byte of this layout.
pub const V3: u8 = 3;

/// `LogRecord` of version 2.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogRecordV2 {
    pub version: u8,
    pub now: Millis,
    pub request: RequestV2,
}

/// `Request` of version 2.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct RequestV2 {
    pub idempotency_key: Option<String>,
    pub command: CommandV2,
}

/// `Command` of version 2: variant for variant the same order and fields, except that
/// `Reversal` named only a key.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[allow(missing_docs, clippy::large_enum_variant)] // as `Command`: the layout it mirrors
pub enum CommandV2 {
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

impl From<CommandV2> for Command {
    fn from(c: CommandV2) -> Command {
        match c {
            CommandV2::UpsertProgram(p) => Command::UpsertProgram(p.into()),
            CommandV2::OpenCard {
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
            CommandV2::TopUp {
                card_id,
                amount,
                channel,
            } => Command::TopUp {
                card_id,
                amount,
                channel,
            },
            CommandV2::Spend {
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
            CommandV2::Hold {
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
            CommandV2::Capture { hold_id, amount } => Command::Capture { hold_id, amount },
            CommandV2::Void { hold_id } => Command::Void { hold_id },
            CommandV2::Refund { txn_id, amount } => Command::Refund { txn_id, amount },
            CommandV2::CashOut { card_id, reason } => Command::CashOut { card_id, reason },
            CommandV2::Reversal { key } => Command::Reversal {
                card_id: CardId(0),
                key,
            },
            CommandV2::RedeemPoints { card_id, points } => {
                Command::RedeemPoints { card_id, points }
            }
            CommandV2::Grant {
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
            CommandV2::Freeze { card_id } => Command::Freeze { card_id },
            CommandV2::Unfreeze { card_id } => Command::Unfreeze { card_id },
            CommandV2::Close { card_id } => Command::Close { card_id },
            CommandV2::Tick => Command::Tick,
        }
    }
}

/// Decodes a version-2 or -3 payload (16-byte aligned) into today's record, keeping its
/// version (it names the money rules, `rules_of`). `None` when the bytes are not this layout
/// or name another version, so the caller tries the next older layout.
pub(super) fn decode(bytes: &[u8]) -> Option<Result<LogRecord, RecordError>> {
    let archived = rkyv::access::<ArchivedLogRecordV2, rancor::Error>(bytes).ok()?;
    if !(V2..=V3).contains(&archived.version) {
        return None;
    }
    Some(
        rkyv::deserialize::<LogRecordV2, rancor::Error>(archived)
            .map_err(|e| RecordError::Invalid(e.to_string()))
            .map(|old| LogRecord {
                version: old.version,
                now: old.now,
                caller: CallerId::UNSCOPED,
                request: Request {
                    idempotency_key: old.request.idempotency_key,
                    command: old.request.command.into(),
                },
            }),
    )
}
