//! The WAL payload of one mutating request: the request as the client sent it (validated) plus
//! the batch time it was applied at.
//!
//! Why requests and not outcomes: the state machine is pure, so `(now, request)` in LSN order is
//! all replay needs to reach the same state bit for bit, and a request is smaller than the
//! balances it changes. Payloads are rkyv archives; decoding always validates
//! (`rkyv::access` with bytecheck), never the unchecked path, because the bytes come from disk.

use crate::command::{Millis, Request};
use crate::state::Rules;
use rkyv::rancor;
use rkyv::util::AlignedVec;

/// Version of the payload layout; bumped when `LogRecord` changes shape or when a money rule
/// changes what a request does (so old records replay under their own rules, [`rules_of`]).
/// 2: `Command::UpsertProgram` archived out of line (records of other commands ~3× smaller).
/// 3: same layout as 2; decided by [`Rules::Current`] (balance caps limit principal,
///    proportional `merchant_fault` cash-outs, low-balance reminders on every path, captures in
///    merchant amounts, reversed captures reopen their hold).
pub const LOG_RECORD_VERSION: u8 = 3;

/// The oldest version with today's layout: records of versions `LAYOUT_SINCE..=LOG_RECORD_VERSION`
/// decode alike and differ only in the rules that decide them.
const LAYOUT_SINCE: u8 = 2;

/// The money rules a record of `version` is decided by.
pub fn rules_of(version: u8) -> Rules {
    if version >= 3 {
        Rules::Current
    } else {
        Rules::Original
    }
}

/// One logged request: what replay feeds back to `State::apply`.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LogRecord {
    /// Layout version ([`LOG_RECORD_VERSION`]).
    pub version: u8,
    /// Batch time the request was applied at (never decreasing within a shard).
    pub now: Millis,
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
    let archived = rkyv::access::<ArchivedLogRecord, rancor::Error>(bytes)
        .map_err(|e| RecordError::Invalid(e.to_string()))?;
    if !(LAYOUT_SINCE..=LOG_RECORD_VERSION).contains(&archived.version) {
        return Err(RecordError::Version(archived.version));
    }
    rkyv::deserialize::<LogRecord, rancor::Error>(archived)
        .map_err(|e| RecordError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::command::{CardId, Channel, Command};
    use crate::money::Amount;

    fn sample() -> LogRecord {
        LogRecord {
            version: LOG_RECORD_VERSION,
            now: Millis(1_700_000_000_123),
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
    fn version_2_records_decode_and_keep_the_original_rules() {
        let mut rec = sample();
        rec.version = 2;
        let mut buf = AlignedVec::new();
        encode_into(&rec, &mut buf).unwrap();
        let back = decode(&buf).unwrap();
        assert_eq!(back, rec);
        assert_eq!(rules_of(back.version), Rules::Original);
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
