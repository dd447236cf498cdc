//! The WAL payload of one mutating request: the request as the client sent it (validated) plus
//! the batch time it was applied at.
//!
//! Why requests and not outcomes: the state machine is pure, so `(now, request)` in LSN order is
//! all replay needs to reach the same state bit for bit, and a request is smaller than the
//! balances it changes. Payloads are rkyv archives; decoding always validates
//! (`rkyv::access` with bytecheck), never the unchecked path, because the bytes come from disk.

use crate::command::{CallerId, Millis, Request};
use crate::state::Rules;
use rkyv::rancor;
use rkyv::util::AlignedVec;

/// Version of the payload layout; bumped when `LogRecord` changes shape or when a money rule
/// changes what a request does (so old records replay under their own rules, [`rules_of`]).
/// 2: `Command::UpsertProgram` archived out of line (records of other commands ~3× smaller).
/// 3: same layout as 2; decided by [`Rules::Current`] (balance caps limit principal,
///    proportional `merchant_fault` cash-outs, low-balance reminders on every path, captures in
///    merchant amounts, reversed captures reopen their hold).
/// 4: the caller is logged (keys are namespaced by caller and card) and `Command::Reversal`
///    names its card; decided by [`Rules::Current`]. Versions 2 and 3 still decode
///    ([`legacy`]).
pub const LOG_RECORD_VERSION: u8 = 4;

/// The money rules a record of `version` is decided by.
pub fn rules_of(version: u8) -> Rules {
    if version >= 3 {
        Rules::Current
    } else {
        Rules::Original
    }
}

/// One logged request: what replay feeds back to `State::apply_as`.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogRecord {
    /// Layout version ([`LOG_RECORD_VERSION`]).
    pub version: u8,
    /// Batch time the request was applied at (never decreasing within a shard).
    pub now: Millis,
    /// Who sent it: its idempotency key is looked up in this caller's namespace.
    /// [`CallerId::UNSCOPED`] for records decoded from versions 2 and 3.
    pub caller: CallerId,
    /// The request exactly as it was applied.
    pub request: Request,
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not a valid archive of a `LogRecord`.
    #[error("invalid log record: {0}")]
    Invalid(String),
    /// The record was written by a newer (or unknown) layout.
    #[error("unsupported log record version {0}")]
    Version(u8),
}

/// Serialises `record` into `buf` (cleared first); the buffer is reused across requests so the
/// hot path allocates nothing for the frame itself.
pub fn encode_into(record: &LogRecord, buf: &mut AlignedVec) -> Result<(), RecordError> {
    buf.clear();
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(record, &mut *buf)
        .map(|_| ())
        .map_err(|e| RecordError::Invalid(e.to_string()))
}

/// Validates and decodes one payload. Accepts any alignment: unaligned bytes are copied into
/// an aligned buffer first (the WAL hands out 16-byte-aligned slices, so that copy is rare).
pub fn decode(bytes: &[u8]) -> Result<LogRecord, RecordError> {
    if (bytes.as_ptr() as usize) & 15 != 0 {
        let mut aligned = AlignedVec::<16>::with_capacity(bytes.len());
        aligned.extend_from_slice(bytes);
        return decode_aligned(&aligned);
    }
    decode_aligned(bytes)
}

fn decode_aligned(bytes: &[u8]) -> Result<LogRecord, RecordError> {
    // Try today's layout; a record of another version fails its validation or names its
    // version, and versions 2 and 3 are then read with their own layout.
    let current = rkyv::access::<ArchivedLogRecord, rancor::Error>(bytes);
    if let Ok(archived) = &current {
        if archived.version == LOG_RECORD_VERSION {
            return rkyv::deserialize::<LogRecord, rancor::Error>(*archived)
                .map_err(|e| RecordError::Invalid(e.to_string()));
        }
    }
    match legacy::decode_v2(bytes) {
        Ok(record) => Ok(record),
        Err(e2) => Err(match current {
            Ok(archived) => RecordError::Version(archived.version),
            Err(e) if matches!(e2, RecordError::Version(_)) => RecordError::Invalid(e.to_string()),
            Err(_) => e2,
        }),
    }
}

/// Records of versions 2 and 3: the layout before callers were logged and reversals named
/// their card (the two versions differ only in the money rules that decide them).
///
/// Decoded into today's [`LogRecord`] with [`CallerId::UNSCOPED`] (keys hashed alone, as they
/// were) and reversals with card 0 (a v2 reversal was broadcast; each shard reverses the key
/// wherever it had it). Nothing writes this layout any more.
pub mod legacy {
    use super::{LogRecord, RecordError};
    use crate::command::{
        CallerId, CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, MonthDay,
        Request, TxnId,
    };
    use crate::money::Amount;
    use crate::program::Program;
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
                CommandV2::UpsertProgram(p) => Command::UpsertProgram(p),
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
    /// version (it names the money rules, `rules_of`).
    pub(super) fn decode_v2(bytes: &[u8]) -> Result<LogRecord, RecordError> {
        let archived = rkyv::access::<ArchivedLogRecordV2, rancor::Error>(bytes)
            .map_err(|e| RecordError::Invalid(e.to_string()))?;
        if !(V2..=V3).contains(&archived.version) {
            return Err(RecordError::Version(archived.version));
        }
        let old = rkyv::deserialize::<LogRecordV2, rancor::Error>(archived)
            .map_err(|e| RecordError::Invalid(e.to_string()))?;
        Ok(LogRecord {
            version: old.version,
            now: old.now,
            caller: CallerId::UNSCOPED,
            request: Request {
                idempotency_key: old.request.idempotency_key,
                command: old.request.command.into(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CardId, Channel, Command};
    use crate::money::Amount;

    fn unhex(s: &str) -> AlignedVec {
        let mut v = AlignedVec::new();
        for i in (0..s.len()).step_by(2) {
            v.push(u8::from_str_radix(&s[i..i + 2], 16).unwrap());
        }
        v
    }

    #[test]
    fn version_2_records_written_before_callers_were_logged_still_decode() {
        // Bytes written by the previous release (record version 2): a keyed top-up, and a
        // reversal that named only a key.
        let top_up = unhex("02000000000000007b68e5cf8b0100000100000000000000742d31ffffffffffffffffffffffffff02000000000000002a0000000000000010270000000000000000000000000000000000000000000000000000000000000000000000000000");
        let reversal = unhex("02000000000000007b68e5cf8b01000001000000000000007276ffffffffffffffffffffffffffff0900000000000000742d31ffffffffffffffffffffffffff0000000000000000000000000000000000000000000000000000000000000000");
        let old = |key: &str, command| LogRecord {
            version: legacy::V2,
            now: Millis(1_700_000_000_123),
            caller: CallerId::UNSCOPED,
            request: Request {
                idempotency_key: Some(key.into()),
                command,
            },
        };
        assert_eq!(
            decode(&top_up).unwrap(),
            old(
                "t-1",
                Command::TopUp {
                    card_id: CardId(42),
                    amount: Amount(10_000),
                    channel: Channel::Wechat,
                }
            )
        );
        assert_eq!(
            decode(&reversal).unwrap(),
            old(
                "rv",
                Command::Reversal {
                    card_id: CardId(0),
                    key: "t-1".into(),
                }
            )
        );
    }

    fn sample() -> LogRecord {
        LogRecord {
            version: LOG_RECORD_VERSION,
            now: Millis(1_700_000_000_123),
            caller: CallerId(7),
            request: Request {
                idempotency_key: Some("k-1".into()),
                command: Command::TopUp {
                    card_id: CardId(42),
                    amount: Amount(10_000),
                    channel: Channel::Wechat,
                },
            },
        }
    }

    #[test]
    fn round_trips() {
        let mut buf = AlignedVec::new();
        encode_into(&sample(), &mut buf).unwrap();
        assert_eq!(decode(&buf).unwrap(), sample());
    }

    #[test]
    fn a_keyed_spend_is_small_and_a_program_round_trips_out_of_line() {
        // Every logged byte is written, checksummed and read back at replay: a spend must not
        // carry the size of the largest command.
        let spend = LogRecord {
            version: LOG_RECORD_VERSION,
            now: Millis(1_700_000_000_123),
            caller: CallerId(7),
            request: Request {
                idempotency_key: Some("pos-7f3a9c-000123456".into()),
                command: Command::Spend {
                    card_id: CardId(42),
                    amount: Amount(1_250),
                    method: crate::command::Method::Qr,
                    store: None,
                },
            },
        };
        let mut buf = AlignedVec::new();
        encode_into(&spend, &mut buf).unwrap();
        assert!(
            buf.len() <= 128,
            "a keyed spend archives to {} bytes",
            buf.len()
        );
        let program = LogRecord {
            version: LOG_RECORD_VERSION,
            now: Millis(1),
            caller: CallerId::DEFAULT,
            request: Request {
                idempotency_key: None,
                command: Command::UpsertProgram(crate::program::Program::demo()),
            },
        };
        encode_into(&program, &mut buf).unwrap();
        assert_eq!(decode(&buf).unwrap(), program);
    }

    #[test]
    fn decodes_unaligned_copies() {
        let mut buf = AlignedVec::new();
        encode_into(&sample(), &mut buf).unwrap();
        let mut shifted = vec![0u8; buf.len() + 1];
        shifted[1..].copy_from_slice(&buf);
        assert_eq!(decode(&shifted[1..]).unwrap(), sample());
    }

    #[test]
    fn refuses_garbage_without_panicking() {
        let mut buf = AlignedVec::new();
        encode_into(&sample(), &mut buf).unwrap();
        for i in 0..buf.len() {
            let mut bad = AlignedVec::<16>::new();
            bad.extend_from_slice(&buf);
            bad[i] ^= 0xff;
            let _ = decode(&bad);
        }
        assert!(decode(&[]).is_err());
        assert!(decode(&[7u8; 5]).is_err());
    }

    #[test]
    fn version_2_and_3_records_decode_and_keep_their_rules() {
        for (version, rules) in [(2, Rules::Original), (3, Rules::Current)] {
            let old = legacy::LogRecordV2 {
                version,
                now: Millis(5),
                request: legacy::RequestV2 {
                    idempotency_key: Some("k".into()),
                    command: legacy::CommandV2::Freeze {
                        card_id: CardId(9),
                    },
                },
            };
            let bytes = rkyv::to_bytes::<rancor::Error>(&old).unwrap();
            let back = decode(&bytes).unwrap();
            assert_eq!(back.version, version);
            assert_eq!(back.caller, CallerId::UNSCOPED);
            assert_eq!(back.request.command, Command::Freeze { card_id: CardId(9) });
            assert_eq!(rules_of(back.version), rules);
        }
        assert_eq!(rules_of(LOG_RECORD_VERSION), Rules::Current);
    }

    #[test]
    fn refuses_unknown_version() {
        let mut rec = sample();
        rec.version = 9;
        let mut buf = AlignedVec::new();
        encode_into(&rec, &mut buf).unwrap();
        assert!(matches!(decode(&buf), Err(RecordError::Version(9))));
    }
}
