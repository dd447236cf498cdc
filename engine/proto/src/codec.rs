//! The binary protocol's frames, byte by byte (docs/protocol.md is the reference).
//!
//! Why hand-rolled little-endian: the hot operations are a few fixed-width integers each;
//! a documented layout is easy to implement in any gateway language, and decoding is a
//! bounds-checked walk with no allocation per field. Decoding never panics: every read goes
//! through [`Reader`], which returns [`DecodeError`] on short input.
#![deny(
    clippy::indexing_slicing,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic
)]

use svault_core::command::{CardId, Channel, Command, Method, Request, TxnId};
use svault_core::money::Amount;
use svault_core::outcome::{CardStatus, DeclineCode, TxnKind};
use svault_core::rules;

/// First bytes of a HELLO body.
pub const MAGIC: [u8; 4] = *b"SVLT";
/// Protocol version spoken by this build.
pub const VERSION: u16 = 1;
/// Largest frame body (after the 4-byte length), in bytes.
pub const FRAME_BYTES_MAX: u32 = 8 << 20;
/// Most requests in one BATCH frame.
pub const REQUESTS_PER_FRAME_MAX: u32 = 65_536;
/// Longest idempotency key, in bytes.
pub const KEY_LEN_MAX: usize = rules::IDEMPOTENCY_KEY_LEN_MAX;
/// Longest API key in a HELLO, in bytes.
pub const API_KEY_LEN_MAX: usize = 256;
/// Size of one result record in a RESULTS frame.
pub const RESULT_BYTES: usize = 80;
/// Smallest encoded request (req_id, op, key_len, card id).
const REQUEST_BYTES_MIN: usize = 8 + 1 + 1 + 8;
/// Largest amount a request may carry, in minor units: the currency's (CNY is the only one).
pub const AMOUNT_MINOR_MAX: i64 = rules::REQUEST_CURRENCY.max_amount().0;
/// Largest card id: 19 digits.
pub const CARD_ID_MAX: u64 = CardId::MAX.0;

/// Frame kinds.
pub mod kind {
    /// Client → server: magic, version and API key; answered WELCOME or ERROR.
    pub const HELLO: u8 = 0x01;
    /// Client → server: up to `REQUESTS_PER_FRAME_MAX` requests, answered by one RESULTS frame.
    pub const BATCH: u8 = 0x02;
    /// Server → client: the answer to an accepted HELLO, carrying the server's `VERSION`.
    pub const WELCOME: u8 = 0x81;
    /// Server → client: one 80-byte result per request of one BATCH, in the BATCH's order.
    pub const RESULTS: u8 = 0x82;
    /// Server → client: a code from `error_code` and a message; the connection then closes.
    pub const ERROR: u8 = 0xFF;
}

/// Operation codes inside a BATCH.
pub mod op {
    /// Opens a card (`registered`, program id); one with a birthday is HTTP-only.
    pub const OPEN_CARD: u8 = 0x01;
    /// Credits principal paid through a channel (plus any ladder bonus).
    pub const TOP_UP: u8 = 0x02;
    /// Charges the card at once; the method byte may carry `ALLOW_PARTIAL`.
    pub const SPEND: u8 = 0x03;
    /// Reserves an amount until captured, voided or expired after `ttl_seconds`.
    pub const HOLD: u8 = 0x04;
    /// Settles a hold, whole (amount 0) or in part; the rest is released.
    pub const CAPTURE: u8 = 0x05;
    /// Releases a whole hold without charging it.
    pub const VOID: u8 = 0x06;
    /// Gives back (part of) a spend or capture, named by its transaction id.
    pub const REFUND: u8 = 0x07;
    /// Reads a card's balances; served after the batch's mutations, so it sees them.
    pub const GET_CARD: u8 = 0x08;
    /// Raises an open hold by a merchant amount, checked like a spend of it.
    pub const INCREMENT: u8 = 0x09;
}

/// Bit of the method byte of SPEND and HOLD: `allow_partial` (partial approval). The low bits
/// are the method; a client that never sets it speaks the protocol as before.
pub const ALLOW_PARTIAL: u8 = 0x80;

/// Codes of an ERROR frame (the connection closes after it).
pub mod error_code {
    /// A frame that cannot be walked: empty, truncated, an unknown op, trailing bytes, or
    /// more requests than a BATCH may hold.
    pub const MALFORMED: u16 = 1;
    /// A frame length above `FRAME_BYTES_MAX` (8 MiB): the body is never read.
    pub const TOO_LARGE: u16 = 2;
    /// A HELLO with an unknown API key, or (when the server has keys) a BATCH before HELLO.
    pub const UNAUTHORIZED: u16 = 3;
    /// A HELLO that does not decode: wrong magic, unsupported version, a bad or overlong key.
    pub const BAD_HELLO: u16 = 4;
    /// A frame kind the server does not take from a client (only HELLO and BATCH).
    pub const UNEXPECTED_FRAME: u16 = 5;
    /// The server got SIGTERM: frames in flight were answered, nothing more will be.
    pub const SHUTTING_DOWN: u16 = 6;
}

/// Why bytes could not be decoded (the connection gets an ERROR frame and closes).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated at byte {at}")]
    Truncated { at: usize },
    #[error("unknown operation {op:#04x} at byte {at}")]
    UnknownOp { op: u8, at: usize },
    #[error("{count} requests in one frame, limit {REQUESTS_PER_FRAME_MAX}")]
    TooManyRequests { count: u32 },
    #[error("{extra} trailing bytes")]
    Trailing { extra: usize },
    #[error("bad hello: {0}")]
    BadHello(&'static str),
    #[error("bad result record: {0}")]
    BadResult(&'static str),
    #[error("bad error frame: {0}")]
    BadError(&'static str),
}

/// A bounds-checked cursor over a frame body.
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A cursor at byte 0 of `buf`; error positions count from there.
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader { buf, pos: 0 }
    }
    /// Bytes read so far: where the next read starts, as errors report it.
    pub fn position(&self) -> usize {
        self.pos
    }
    /// Bytes left unread; zero once the body has been walked to its end.
    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
    /// The next `n` bytes, borrowed from the frame (no copy); `Truncated` if fewer remain.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let at = self.pos;
        let end = at.checked_add(n).ok_or(DecodeError::Truncated { at })?;
        let s = self.buf.get(at..end).ok_or(DecodeError::Truncated { at })?;
        self.pos = end;
        Ok(s)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let at = self.pos;
        <[u8; N]>::try_from(self.take(N)?).map_err(|_| DecodeError::Truncated { at })
    }
    /// One byte (an op, a flag, a length).
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array()?))
    }
    /// A little-endian `u16` (the version, key and message lengths, error codes).
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    /// A little-endian `u32` (counts, transaction seqs, ttl seconds).
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }
    /// A little-endian `u64` (req ids, card ids).
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    /// A little-endian `i64` (amounts in minor units).
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    /// A string prefixed by a u8 length; raw bytes (validated by the caller).
    pub fn bytes_u8(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    /// Call once the body is decoded: leftover bytes are `Trailing`, a malformed frame.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::Trailing { extra }),
        }
    }
}

/// One request of a BATCH: a mutation, which is core's [`Request`] as the state machine
/// applies and the log stores it (decoded through core's input rules, [`svault_core::rules`],
/// the ones the HTTP door parses with), or GET_CARD, the one read the protocol carries.
///
/// The protocol carries the hot subset of the commands ([`op_code`] says which); the client
/// may build any value (an invalid card id too: the server answers INVALID, as it does to any
/// gateway).
// Almost every call is a write; boxing the request would cost an allocation per call to save
// memory only on reads.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Write(Request),
    GetCard { card_id: CardId },
}

impl Call {
    /// A mutation with its idempotency key (none ⇒ no deduplication).
    pub fn new(idempotency_key: Option<String>, command: Command) -> Call {
        Call::Write(Request {
            idempotency_key,
            command,
        })
    }
    /// A read of a card's balances.
    pub fn get_card(card_id: CardId) -> Call {
        Call::GetCard { card_id }
    }
}

/// A call the binary protocol has no frame for (a command only the HTTP API carries, or an
/// open with a birthday).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the binary protocol carries no {0}")]
pub struct NotOnTheWire(pub &'static str);

/// The operation code a call travels as, or why it cannot travel.
pub fn op_code(call: &Call) -> Result<u8, NotOnTheWire> {
    let command = match call {
        Call::GetCard { .. } => return Ok(op::GET_CARD),
        Call::Write(r) => &r.command,
    };
    Ok(match command {
        Command::OpenCard { birthday: None, .. } => op::OPEN_CARD,
        Command::OpenCard { .. } => return Err(NotOnTheWire("birthday")),
        Command::TopUp { .. } => op::TOP_UP,
        Command::Spend { .. } => op::SPEND,
        Command::Hold { .. } => op::HOLD,
        Command::IncrementHold { .. } => op::INCREMENT,
        Command::Capture { .. } => op::CAPTURE,
        Command::Void { .. } => op::VOID,
        Command::Refund { .. } => op::REFUND,
        Command::UpsertProgram(_) => return Err(NotOnTheWire("program change")),
        Command::CashOut { .. } => return Err(NotOnTheWire("cash-out")),
        Command::Reversal { .. } => return Err(NotOnTheWire("reversal")),
        Command::RedeemPoints { .. } => return Err(NotOnTheWire("points redemption")),
        Command::Grant { .. } => return Err(NotOnTheWire("grant")),
        Command::Freeze { .. } | Command::Unfreeze { .. } | Command::Close { .. } => {
            return Err(NotOnTheWire("card status change"))
        }
        Command::Tick => return Err(NotOnTheWire("tick")),
    })
}

/// Which field of a well-framed request holds a bad value (`detail` of an INVALID result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum InvalidField {
    /// Refused by the program's rules (the state machine's `Invalid`).
    Rules = 0,
    CardId = 1,
    Amount = 2,
    Channel = 3,
    Method = 4,
    IdempotencyKey = 5,
    Store = 6,
    Program = 7,
    TtlSeconds = 8,
    TxnId = 9,
    Registered = 10,
}

// Each field goes through core's rule for it (`svault_core::rules`), the one the HTTP door and
// replay use too; only the name of the field at fault is the protocol's own.

fn card(raw: u64) -> Result<CardId, InvalidField> {
    rules::check_card(CardId(raw)).map_err(|_| InvalidField::CardId)
}

fn amount(raw: i64) -> Result<Amount, InvalidField> {
    rules::check_amount(Amount(raw)).map_err(|_| InvalidField::Amount)
}

fn ttl(raw: u32) -> Result<u32, InvalidField> {
    rules::check_hold_ttl(raw)
        .map(|()| raw)
        .map_err(|_| InvalidField::TtlSeconds)
}

fn txn(card_raw: u64, seq: u32) -> Result<TxnId, InvalidField> {
    rules::check_txn(TxnId {
        card: CardId(card_raw),
        seq,
    })
    .map_err(|_| InvalidField::TxnId)
}

/// UTF-8 text that `rule` accepts, or `field` as the invalid one.
fn text(
    bytes: &[u8],
    field: InvalidField,
    rule: fn(&str) -> Result<(), &'static str>,
) -> Result<String, InvalidField> {
    let s = std::str::from_utf8(bytes).map_err(|_| field)?;
    rule(s).map_err(|_| field)?;
    Ok(s.to_string())
}

/// An optional text field: empty on the wire ⇒ absent.
fn optional_text(
    bytes: &[u8],
    field: InvalidField,
    rule: fn(&str) -> Result<(), &'static str>,
) -> Result<Option<String>, InvalidField> {
    if bytes.is_empty() {
        Ok(None)
    } else {
        text(bytes, field, rule).map(Some)
    }
}

fn enum_byte<T: Copy>(all: &[T], b: u8, field: InvalidField) -> Result<T, InvalidField> {
    all.get(usize::from(b)).copied().ok_or(field)
}

/// One decoded request: its id and the call, or the field holding a bad value.
pub type DecodedRequest = (u64, Result<Call, InvalidField>);

/// Decodes a BATCH body. Structural damage fails the whole frame; bad values fail one request.
pub fn decode_batch(body: &[u8]) -> Result<Vec<DecodedRequest>, DecodeError> {
    let mut r = Reader::new(body);
    let count = r.u32()?;
    if count > REQUESTS_PER_FRAME_MAX {
        return Err(DecodeError::TooManyRequests { count });
    }
    let plausible = r.remaining() / REQUEST_BYTES_MIN;
    let mut out = Vec::with_capacity((count as usize).min(plausible));
    for _ in 0..count {
        out.push(decode_request(&mut r)?);
    }
    r.finish()?;
    Ok(out)
}

fn decode_request(r: &mut Reader<'_>) -> Result<DecodedRequest, DecodeError> {
    let req_id = r.u64()?;
    let at = r.position();
    let code = r.u8()?;
    let key = optional_text(
        r.bytes_u8()?,
        InvalidField::IdempotencyKey,
        rules::check_idempotency_key,
    );
    let store = |s| optional_text(s, InvalidField::Store, rules::check_store);
    let method = |m: u8| enum_byte(Method::ALL, m & !ALLOW_PARTIAL, InvalidField::Method);
    // Fields are read first (a short frame fails whole), then checked in wire order (the
    // first bad one is named).
    let command: Result<Command, InvalidField> = match code {
        op::OPEN_CARD => {
            let (c, reg, program) = (r.u64()?, r.u8()?, r.bytes_u8()?);
            (|| {
                let registered = match reg {
                    0 => false,
                    1 => true,
                    _ => return Err(InvalidField::Registered),
                };
                let program = text(program, InvalidField::Program, rules::check_program_id)?;
                Ok(Command::OpenCard {
                    card_id: card(c)?,
                    program,
                    registered,
                    birthday: None,
                })
            })()
        }
        op::TOP_UP => {
            let (c, a, ch) = (r.u64()?, r.i64()?, r.u8()?);
            (|| {
                Ok(Command::TopUp {
                    card_id: card(c)?,
                    amount: amount(a)?,
                    channel: enum_byte(Channel::ALL, ch, InvalidField::Channel)?,
                })
            })()
        }
        op::SPEND => {
            let (c, a, m, s) = (r.u64()?, r.i64()?, r.u8()?, r.bytes_u8()?);
            (|| {
                Ok(Command::Spend {
                    card_id: card(c)?,
                    amount: amount(a)?,
                    method: method(m)?,
                    store: store(s)?,
                    allow_partial: m & ALLOW_PARTIAL != 0,
                })
            })()
        }
        op::HOLD => {
            let (c, a, t, m, s) = (r.u64()?, r.i64()?, r.u32()?, r.u8()?, r.bytes_u8()?);
            (|| {
                let ttl_seconds = ttl(t)?;
                Ok(Command::Hold {
                    card_id: card(c)?,
                    amount: amount(a)?,
                    ttl_seconds,
                    method: method(m)?,
                    store: store(s)?,
                    allow_partial: m & ALLOW_PARTIAL != 0,
                })
            })()
        }
        op::INCREMENT => {
            let (c, seq, a, t) = (r.u64()?, r.u32()?, r.i64()?, r.u32()?);
            (|| {
                // 0 on the wire: keep the hold's expiry.
                let ttl_seconds = if t == 0 { None } else { Some(ttl(t)?) };
                Ok(Command::IncrementHold {
                    hold_id: txn(c, seq)?,
                    amount: amount(a)?,
                    ttl_seconds,
                })
            })()
        }
        op::CAPTURE => {
            let (c, seq, a) = (r.u64()?, r.u32()?, r.i64()?);
            (|| {
                // 0 on the wire: capture the whole hold.
                let amount = if a == 0 { None } else { Some(amount(a)?) };
                Ok(Command::Capture {
                    hold_id: txn(c, seq)?,
                    amount,
                })
            })()
        }
        op::VOID => {
            let (c, seq) = (r.u64()?, r.u32()?);
            txn(c, seq).map(|hold_id| Command::Void { hold_id })
        }
        op::REFUND => {
            let (c, seq, a) = (r.u64()?, r.u32()?, r.i64()?);
            (|| {
                Ok(Command::Refund {
                    txn_id: txn(c, seq)?,
                    amount: amount(a)?,
                })
            })()
        }
        op::GET_CARD => {
            let c = r.u64()?;
            // A read carries no key to check beyond its framing (as before: a bad key on a
            // GET_CARD is still named).
            let call = key
                .and_then(|_| card(c))
                .map(|card_id| Call::GetCard { card_id });
            return Ok((req_id, call));
        }
        other => return Err(DecodeError::UnknownOp { op: other, at }),
    };
    let call = key.and_then(|idempotency_key| {
        command.map(|command| {
            Call::Write(Request {
                idempotency_key,
                command,
            })
        })
    });
    Ok((req_id, call))
}

fn put_bytes_u8(out: &mut Vec<u8>, b: &[u8]) {
    // Lengths above 255 cannot be framed: encode them cut (the server refuses them as invalid
    // values only if they are malformed; callers validate lengths first).
    let n = b.len().min(255);
    out.push(n as u8);
    out.extend_from_slice(b.get(..n).unwrap_or_default());
}

fn enum_index<T: PartialEq>(all: &[T], v: &T) -> u8 {
    all.iter().position(|x| x == v).unwrap_or(0xFF) as u8
}

/// The method byte of SPEND and HOLD: the method's index, [`ALLOW_PARTIAL`] when set.
fn method_byte(method: &Method, allow_partial: bool) -> u8 {
    let m = enum_index(Method::ALL, method);
    if allow_partial {
        m | ALLOW_PARTIAL
    } else {
        m
    }
}

/// Appends one request to a BATCH body; a call the protocol has no frame for ([`op_code`])
/// appends nothing.
pub fn encode_request(out: &mut Vec<u8>, req_id: u64, call: &Call) -> Result<(), NotOnTheWire> {
    let code = op_code(call)?;
    out.extend_from_slice(&req_id.to_le_bytes());
    out.push(code);
    let (key, command) = match call {
        Call::GetCard { card_id } => {
            put_bytes_u8(out, b"");
            out.extend_from_slice(&card_id.0.to_le_bytes());
            return Ok(());
        }
        Call::Write(r) => (r.idempotency_key.as_deref(), &r.command),
    };
    put_bytes_u8(out, key.unwrap_or("").as_bytes());
    let store_bytes = |s: &Option<String>| s.as_deref().unwrap_or("").as_bytes().to_vec();
    match command {
        Command::OpenCard {
            card_id,
            program,
            registered,
            birthday: _,
        } => {
            out.extend_from_slice(&card_id.0.to_le_bytes());
            out.push(u8::from(*registered));
            put_bytes_u8(out, program.as_bytes());
        }
        Command::TopUp {
            card_id,
            amount,
            channel,
        } => {
            out.extend_from_slice(&card_id.0.to_le_bytes());
            out.extend_from_slice(&amount.0.to_le_bytes());
            out.push(enum_index(Channel::ALL, channel));
        }
        Command::Spend {
            card_id,
            amount,
            method,
            store,
            allow_partial,
        } => {
            out.extend_from_slice(&card_id.0.to_le_bytes());
            out.extend_from_slice(&amount.0.to_le_bytes());
            out.push(method_byte(method, *allow_partial));
            put_bytes_u8(out, &store_bytes(store));
        }
        Command::Hold {
            card_id,
            amount,
            ttl_seconds,
            method,
            store,
            allow_partial,
        } => {
            out.extend_from_slice(&card_id.0.to_le_bytes());
            out.extend_from_slice(&amount.0.to_le_bytes());
            out.extend_from_slice(&ttl_seconds.to_le_bytes());
            out.push(method_byte(method, *allow_partial));
            put_bytes_u8(out, &store_bytes(store));
        }
        Command::IncrementHold {
            hold_id,
            amount,
            ttl_seconds,
        } => {
            out.extend_from_slice(&hold_id.card.0.to_le_bytes());
            out.extend_from_slice(&hold_id.seq.to_le_bytes());
            out.extend_from_slice(&amount.0.to_le_bytes());
            out.extend_from_slice(&ttl_seconds.unwrap_or(0).to_le_bytes());
        }
        Command::Capture { hold_id, amount } => {
            out.extend_from_slice(&hold_id.card.0.to_le_bytes());
            out.extend_from_slice(&hold_id.seq.to_le_bytes());
            out.extend_from_slice(&amount.map_or(0, |a| a.0).to_le_bytes());
        }
        Command::Void { hold_id } => {
            out.extend_from_slice(&hold_id.card.0.to_le_bytes());
            out.extend_from_slice(&hold_id.seq.to_le_bytes());
        }
        Command::Refund { txn_id, amount } => {
            out.extend_from_slice(&txn_id.card.0.to_le_bytes());
            out.extend_from_slice(&txn_id.seq.to_le_bytes());
            out.extend_from_slice(&amount.0.to_le_bytes());
        }
        // `op_code` refused every other command above.
        Command::UpsertProgram(_)
        | Command::CashOut { .. }
        | Command::Reversal { .. }
        | Command::RedeemPoints { .. }
        | Command::Grant { .. }
        | Command::Freeze { .. }
        | Command::Unfreeze { .. }
        | Command::Close { .. }
        | Command::Tick => {}
    }
    Ok(())
}

/// Starts a frame of `kind` in `out`; returns the offset of its length field for [`end_frame`].
pub fn begin_frame(out: &mut Vec<u8>, kind: u8) -> usize {
    let at = out.len();
    out.extend_from_slice(&0u32.to_le_bytes());
    out.push(kind);
    at
}

/// Writes the length of the frame started at `at`.
pub fn end_frame(out: &mut [u8], at: usize) {
    let len = (out.len() - at - 4) as u32;
    if let Some(slot) = out.get_mut(at..at + 4) {
        slot.copy_from_slice(&len.to_le_bytes());
    }
}

/// A whole BATCH frame (length prefix included) of consecutive request ids from `first_id`;
/// refused whole (`out` as it was) if one call has no frame ([`op_code`]).
pub fn encode_batch_frame<'a>(
    out: &mut Vec<u8>,
    first_id: u64,
    calls: impl ExactSizeIterator<Item = &'a Call>,
) -> Result<(), NotOnTheWire> {
    let at = begin_frame(out, kind::BATCH);
    out.extend_from_slice(&(calls.len() as u32).to_le_bytes());
    for (i, call) in calls.enumerate() {
        if let Err(e) = encode_request(out, first_id + i as u64, call) {
            out.truncate(at);
            return Err(e);
        }
    }
    end_frame(out, at);
    Ok(())
}

/// A HELLO frame: magic, version, API key (empty when none).
pub fn encode_hello(out: &mut Vec<u8>, api_key: Option<&str>) {
    let at = begin_frame(out, kind::HELLO);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    let key = api_key.unwrap_or("").as_bytes();
    let key = key
        .get(..key.len().min(API_KEY_LEN_MAX))
        .unwrap_or_default();
    out.extend_from_slice(&(key.len() as u16).to_le_bytes());
    out.extend_from_slice(key);
    end_frame(out, at);
}

/// Decodes a HELLO body into the API key presented (`None` if empty).
pub fn decode_hello(body: &[u8]) -> Result<Option<String>, DecodeError> {
    let mut r = Reader::new(body);
    if r.take(4)? != MAGIC {
        return Err(DecodeError::BadHello("wrong magic"));
    }
    if r.u16()? != VERSION {
        return Err(DecodeError::BadHello("unsupported version"));
    }
    let n = usize::from(r.u16()?);
    if n > API_KEY_LEN_MAX {
        return Err(DecodeError::BadHello("key too long"));
    }
    let key =
        std::str::from_utf8(r.take(n)?).map_err(|_| DecodeError::BadHello("key is not UTF-8"))?;
    r.finish()?;
    Ok(if key.is_empty() {
        None
    } else {
        Some(key.to_string())
    })
}

/// A WELCOME frame.
pub fn encode_welcome(out: &mut Vec<u8>) {
    let at = begin_frame(out, kind::WELCOME);
    out.extend_from_slice(&VERSION.to_le_bytes());
    end_frame(out, at);
}

/// An ERROR frame: code and a short UTF-8 message.
pub fn encode_error(out: &mut Vec<u8>, code: u16, message: &str) {
    let at = begin_frame(out, kind::ERROR);
    out.extend_from_slice(&code.to_le_bytes());
    // At most ERROR_MESSAGE_MAX_BYTES, cut on a character boundary (the message is UTF-8).
    let mut n = message.len().min(ERROR_MESSAGE_MAX_BYTES);
    while !message.is_char_boundary(n) {
        n -= 1;
    }
    let m = message.as_bytes().get(..n).unwrap_or_default();
    out.extend_from_slice(&(m.len() as u16).to_le_bytes());
    out.extend_from_slice(m);
    end_frame(out, at);
}

/// Longest message of an ERROR frame, in bytes.
pub const ERROR_MESSAGE_MAX_BYTES: usize = 1024;

/// Decodes an ERROR body into its code and message. Refuses what the encoder never sends
/// (found by fuzzing: a longer or non-UTF-8 message did not survive a round trip).
pub fn decode_error(body: &[u8]) -> Result<(u16, String), DecodeError> {
    let mut r = Reader::new(body);
    let code = r.u16()?;
    let n = usize::from(r.u16()?);
    if n > ERROR_MESSAGE_MAX_BYTES {
        return Err(DecodeError::BadError("message longer than 1024 bytes"));
    }
    let msg = std::str::from_utf8(r.take(n)?)
        .map_err(|_| DecodeError::BadError("message is not UTF-8"))?
        .to_string();
    r.finish()?;
    Ok((code, msg))
}

/// What happened to one request (`status` byte of a result).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Status {
    Approved = 0,
    /// `detail` = decline code (index in SPEC's list, see [`DeclineCode::ALL`]).
    Declined = 1,
    /// A GET_CARD answer; the card is in the balances.
    Card = 2,
    /// `detail`: 0 card, 1 hold, 2 transaction, 3 program, 4 idempotency key.
    NotFound = 3,
    IdempotencyKeyReused = 4,
    CardExists = 5,
    /// `detail` = [`InvalidField`].
    Invalid = 6,
    /// Retry later (the shard's queue is full).
    Overloaded = 7,
    Forbidden = 8,
    /// The log cannot be written or the server is stopping.
    Unavailable = 9,
}

impl Status {
    const ALL: [Status; 10] = [
        Status::Approved,
        Status::Declined,
        Status::Card,
        Status::NotFound,
        Status::IdempotencyKeyReused,
        Status::CardExists,
        Status::Invalid,
        Status::Overloaded,
        Status::Forbidden,
        Status::Unavailable,
    ];
    fn from_u8(b: u8) -> Option<Status> {
        Status::ALL.get(usize::from(b)).copied()
    }
}

/// Every transaction kind, in wire order (`kind` byte of a result).
pub const TXN_KINDS: [TxnKind; 18] = [
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
    TxnKind::Increment,
];
const CARD_STATUSES: [CardStatus; 3] = [CardStatus::Active, CardStatus::Frozen, CardStatus::Closed];

/// A card's balances as a result carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Balances {
    pub principal: Amount,
    pub bonus: Amount,
    pub held: Amount,
    pub available: Amount,
    pub points: u64,
    pub status: CardStatus,
}

/// One result record (80 bytes on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    pub req_id: u64,
    pub status: Status,
    pub detail: u8,
    /// A stored answer to an earlier request with the same key.
    pub replayed: bool,
    pub kind: Option<TxnKind>,
    /// The transaction (for holds, the hold id).
    pub txn_id: Option<TxnId>,
    /// What was charged or credited.
    pub amount: Amount,
    /// Bonus credited (ladder bonus of a top-up).
    pub bonus_granted: Amount,
    /// The card after the operation.
    pub card: Option<Balances>,
    /// A spend or hold approved for less than requested (`allow_partial`): `amount` is what
    /// was approved; the request's own amount is what was requested.
    pub partial: bool,
}

impl Answer {
    /// An answer with only a status and detail.
    pub fn bare(req_id: u64, status: Status, detail: u8) -> Answer {
        Answer {
            req_id,
            status,
            detail,
            replayed: false,
            kind: None,
            txn_id: None,
            amount: Amount::ZERO,
            bonus_granted: Amount::ZERO,
            card: None,
            partial: false,
        }
    }
    /// The decline code of a declined request.
    pub fn decline_code(&self) -> Option<DeclineCode> {
        match self.status {
            Status::Declined => DeclineCode::ALL.get(usize::from(self.detail)).copied(),
            _ => None,
        }
    }
}

const FLAG_REPLAYED: u8 = 1;
const FLAG_CARD: u8 = 2;
const FLAG_TXN: u8 = 16;
const FLAG_PARTIAL: u8 = 32;
const NO_KIND: u8 = 0xFF;

/// Appends one result record.
pub fn encode_answer(out: &mut Vec<u8>, a: &Answer) {
    let start = out.len();
    out.extend_from_slice(&a.req_id.to_le_bytes());
    out.push(a.status as u8);
    out.push(a.detail);
    let mut flags = 0u8;
    if a.replayed {
        flags |= FLAG_REPLAYED;
    }
    if let Some(c) = &a.card {
        flags |= FLAG_CARD | (enum_index(&CARD_STATUSES, &c.status) & 3) << 2;
    }
    if a.txn_id.is_some() {
        flags |= FLAG_TXN;
    }
    if a.partial {
        flags |= FLAG_PARTIAL;
    }
    out.push(flags);
    out.push(a.kind.map_or(NO_KIND, |k| enum_index(&TXN_KINDS, &k)));
    out.extend_from_slice(&a.txn_id.map_or(0, |t| t.seq).to_le_bytes());
    out.extend_from_slice(&a.txn_id.map_or(0, |t| t.card.0).to_le_bytes());
    out.extend_from_slice(&a.amount.0.to_le_bytes());
    out.extend_from_slice(&a.bonus_granted.0.to_le_bytes());
    let c = a.card;
    for v in [
        c.map_or(0, |c| c.principal.0),
        c.map_or(0, |c| c.bonus.0),
        c.map_or(0, |c| c.held.0),
        c.map_or(0, |c| c.available.0),
    ] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(&c.map_or(0, |c| c.points).to_le_bytes());
    debug_assert_eq!(out.len() - start, RESULT_BYTES);
}

/// A whole RESULTS frame.
pub fn encode_results_frame(out: &mut Vec<u8>, answers: &[Answer]) {
    out.reserve(9 + answers.len() * RESULT_BYTES);
    let at = begin_frame(out, kind::RESULTS);
    out.extend_from_slice(&(answers.len() as u32).to_le_bytes());
    for a in answers {
        encode_answer(out, a);
    }
    end_frame(out, at);
}

/// Decodes a RESULTS body.
pub fn decode_results(body: &[u8]) -> Result<Vec<Answer>, DecodeError> {
    let mut r = Reader::new(body);
    let count = r.u32()?;
    if count > REQUESTS_PER_FRAME_MAX {
        return Err(DecodeError::TooManyRequests { count });
    }
    if r.remaining() != count as usize * RESULT_BYTES {
        return Err(DecodeError::BadResult("length is not count × 80"));
    }
    let mut out = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let req_id = r.u64()?;
        let status = Status::from_u8(r.u8()?).ok_or(DecodeError::BadResult("unknown status"))?;
        let detail = r.u8()?;
        let flags = r.u8()?;
        let kind_b = r.u8()?;
        let kind = if kind_b == NO_KIND {
            None
        } else {
            Some(
                *TXN_KINDS
                    .get(usize::from(kind_b))
                    .ok_or(DecodeError::BadResult("unknown kind"))?,
            )
        };
        let seq = r.u32()?;
        let txn_card = r.u64()?;
        let amount = Amount(r.i64()?);
        let bonus_granted = Amount(r.i64()?);
        let (p, b, h, av, pts) = (r.i64()?, r.i64()?, r.i64()?, r.i64()?, r.u64()?);
        let card = if flags & FLAG_CARD != 0 {
            let status = *CARD_STATUSES
                .get(usize::from((flags >> 2) & 3))
                .ok_or(DecodeError::BadResult("unknown card status"))?;
            Some(Balances {
                principal: Amount(p),
                bonus: Amount(b),
                held: Amount(h),
                available: Amount(av),
                points: pts,
                status,
            })
        } else {
            None
        };
        let txn_id = (flags & FLAG_TXN != 0).then_some(TxnId {
            card: CardId(txn_card),
            seq,
        });
        out.push(Answer {
            req_id,
            status,
            detail,
            replayed: flags & FLAG_REPLAYED != 0,
            partial: flags & FLAG_PARTIAL != 0,
            kind,
            txn_id,
            amount,
            bonus_granted,
            card,
        });
    }
    r.finish()?;
    Ok(out)
}

/// Reads one frame from `r`: `Ok(None)` at a clean end of stream before a frame starts.
pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(
    r: &mut R,
) -> Result<Option<(u8, Vec<u8>)>, FrameError> {
    use tokio::io::AsyncReadExt;
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(FrameError::Io(e)),
    }
    let len = u32::from_le_bytes(len);
    if len == 0 {
        return Err(FrameError::Empty);
    }
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len });
    }
    let mut kind = [0u8; 1];
    r.read_exact(&mut kind).await.map_err(FrameError::Io)?;
    let mut body = vec![0u8; len as usize - 1];
    r.read_exact(&mut body).await.map_err(FrameError::Io)?;
    Ok(Some((kind[0], body)))
}

/// Why a frame could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("i/o: {0}")]
    Io(std::io::Error),
    #[error("frame of {len} bytes, limit {FRAME_BYTES_MAX}")]
    TooLarge { len: u32 },
    #[error("empty frame")]
    Empty,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use svault_core::command::{CashOutReason, MonthDay};

    fn sample_calls() -> Vec<Call> {
        let c = CardId(6_200_000_000_000_001);
        let t = TxnId { card: c, seq: 3 };
        vec![
            Call::new(
                Some("open-1".into()),
                Command::OpenCard {
                    card_id: c,
                    program: "demo".into(),
                    registered: true,
                    birthday: None,
                },
            ),
            Call::new(
                Some("t-1".into()),
                Command::TopUp {
                    card_id: c,
                    amount: Amount(10000),
                    channel: Channel::Alipay,
                },
            ),
            Call::new(
                None,
                Command::Spend {
                    card_id: c,
                    amount: Amount(1),
                    method: Method::Voice,
                    store: Some("s9".into()),
                    allow_partial: false,
                },
            ),
            Call::new(
                Some("h".into()),
                Command::Hold {
                    card_id: c,
                    amount: Amount(500),
                    ttl_seconds: 60,
                    method: Method::Card,
                    store: None,
                    allow_partial: false,
                },
            ),
            Call::new(
                Some("sp".into()),
                Command::Spend {
                    card_id: c,
                    amount: Amount(9_999),
                    method: Method::Voice,
                    store: None,
                    allow_partial: true,
                },
            ),
            Call::new(
                Some("hp".into()),
                Command::Hold {
                    card_id: c,
                    amount: Amount(700),
                    ttl_seconds: 60,
                    method: Method::Qr,
                    store: Some("s1".into()),
                    allow_partial: true,
                },
            ),
            Call::new(
                Some("i".into()),
                Command::IncrementHold {
                    hold_id: t,
                    amount: Amount(250),
                    ttl_seconds: Some(900),
                },
            ),
            Call::new(
                Some("i2".into()),
                Command::IncrementHold {
                    hold_id: t,
                    amount: Amount(1),
                    ttl_seconds: None,
                },
            ),
            Call::new(
                Some("c".into()),
                Command::Capture {
                    hold_id: t,
                    amount: None,
                },
            ),
            Call::new(
                Some("c2".into()),
                Command::Capture {
                    hold_id: t,
                    amount: Some(Amount(7)),
                },
            ),
            Call::new(Some("v".into()), Command::Void { hold_id: t }),
            Call::new(
                Some("r".into()),
                Command::Refund {
                    txn_id: t,
                    amount: Amount(3),
                },
            ),
            Call::get_card(c),
        ]
    }

    fn body_of(frame: &[u8]) -> &[u8] {
        &frame[5..]
    }

    #[test]
    fn batch_round_trips() {
        let calls = sample_calls();
        let mut f = Vec::new();
        encode_batch_frame(&mut f, 100, calls.iter()).unwrap();
        assert_eq!(
            u32::from_le_bytes(f[..4].try_into().unwrap()) as usize,
            f.len() - 4
        );
        assert_eq!(f[4], kind::BATCH);
        let decoded = decode_batch(body_of(&f)).unwrap();
        assert_eq!(decoded.len(), calls.len());
        for (i, ((id, call), want)) in decoded.into_iter().zip(&calls).enumerate() {
            assert_eq!(id, 100 + i as u64);
            assert_eq!(&call.unwrap(), want);
        }
    }

    #[test]
    fn golden_top_up_bytes() {
        let mut f = Vec::new();
        let call = Call::new(
            Some("k".into()),
            Command::TopUp {
                card_id: CardId(7),
                amount: Amount(10000),
                channel: Channel::Wechat,
            },
        );
        encode_batch_frame(&mut f, 1, std::iter::once(&call)).unwrap();
        let want: Vec<u8> = [
            &[33u8, 0, 0, 0][..],            // len = 33: everything after this field
            &[0x02],                         // BATCH
            &[1, 0, 0, 0],                   // count
            &[1, 0, 0, 0, 0, 0, 0, 0],       // req_id
            &[0x02],                         // TOP_UP
            &[1, b'k'],                      // key
            &[7, 0, 0, 0, 0, 0, 0, 0],       // card
            &[0x10, 0x27, 0, 0, 0, 0, 0, 0], // 10000 fen
            &[0],                            // wechat
        ]
        .concat();
        assert_eq!(f, want);
    }

    #[test]
    fn bad_values_fail_one_request_not_the_frame() {
        let mut body = Vec::new();
        body.extend_from_slice(&3u32.to_le_bytes());
        let ok = Call::get_card(CardId(1));
        encode_request(&mut body, 1, &ok).unwrap();
        encode_request(
            &mut body,
            2,
            &Call::new(
                None,
                Command::TopUp {
                    card_id: CardId(1),
                    amount: Amount(0),
                    channel: Channel::Cash,
                },
            ),
        )
        .unwrap();
        encode_request(&mut body, 3, &Call::get_card(CardId(u64::MAX))).unwrap();
        let d = decode_batch(&body).unwrap();
        assert_eq!(d[0].1, Ok(ok));
        assert_eq!(d[1].1, Err(InvalidField::Amount));
        assert_eq!(d[2].1, Err(InvalidField::CardId));
    }

    /// The binary door holds a program id to the rule the HTTP door and the program spec use
    /// (`rules::check_program_id`); it once took any UTF-8 without control characters.
    #[test]
    fn an_open_card_names_a_program_by_the_one_program_id_rule() {
        let open = |program: &str| {
            let mut body = Vec::new();
            body.extend_from_slice(&1u32.to_le_bytes());
            let call = Call::new(
                None,
                Command::OpenCard {
                    card_id: CardId(1),
                    program: program.into(),
                    registered: false,
                    birthday: None,
                },
            );
            encode_request(&mut body, 1, &call).unwrap();
            decode_batch(&body).unwrap().remove(0).1.map(|_| ())
        };
        assert_eq!(open("demo"), Ok(()));
        assert_eq!(open(&"p".repeat(64)), Ok(()));
        for bad in ["", "a.b", "a b", "café", "p/q"] {
            assert_eq!(open(bad), Err(InvalidField::Program), "{bad:?}");
        }
        assert_eq!(open(&"p".repeat(65)), Err(InvalidField::Program));
    }

    /// Commands only the HTTP API carries have no frame: the encoder refuses them and writes
    /// nothing, so no frame goes out that the server would take for another operation.
    #[test]
    fn http_only_commands_have_no_frame() {
        let c = CardId(1);
        for call in [
            Call::new(None, Command::Freeze { card_id: c }),
            Call::new(
                None,
                Command::CashOut {
                    card_id: c,
                    reason: CashOutReason::Consumer,
                },
            ),
            Call::new(None, Command::Tick),
            Call::new(
                None,
                Command::OpenCard {
                    card_id: c,
                    program: "demo".into(),
                    registered: true,
                    birthday: Some(MonthDay { month: 7, day: 14 }),
                },
            ),
        ] {
            let mut out = vec![9];
            assert!(op_code(&call).is_err(), "{call:?}");
            assert!(encode_request(&mut out, 1, &call).is_err());
            assert!(encode_batch_frame(&mut out, 1, std::iter::once(&call)).is_err());
            assert_eq!(out, vec![9]);
        }
    }

    #[test]
    fn structural_damage_fails_the_frame() {
        let mut body = Vec::new();
        body.extend_from_slice(&1u32.to_le_bytes());
        body.extend_from_slice(&1u64.to_le_bytes());
        body.push(0x77);
        body.push(0);
        assert!(matches!(
            decode_batch(&body),
            Err(DecodeError::UnknownOp { op: 0x77, .. })
        ));
        let mut body = Vec::new();
        body.extend_from_slice(&(REQUESTS_PER_FRAME_MAX + 1).to_le_bytes());
        assert!(matches!(
            decode_batch(&body),
            Err(DecodeError::TooManyRequests { .. })
        ));
        let mut f = Vec::new();
        encode_batch_frame(&mut f, 1, sample_calls().iter()).unwrap();
        let mut body = body_of(&f).to_vec();
        body.push(0);
        assert_eq!(decode_batch(&body), Err(DecodeError::Trailing { extra: 1 }));
    }

    #[test]
    fn results_and_hello_round_trip() {
        let a = Answer {
            req_id: 9,
            status: Status::Approved,
            detail: 0,
            replayed: true,
            kind: Some(TxnKind::Hold),
            txn_id: Some(TxnId {
                card: CardId(5),
                seq: 2,
            }),
            amount: Amount(500),
            bonus_granted: Amount(0),
            card: Some(Balances {
                principal: Amount(1),
                bonus: Amount(2),
                held: Amount(500),
                available: Amount(-497),
                points: 4,
                status: CardStatus::Frozen,
            }),
            partial: true,
        };
        let b = Answer::bare(10, Status::Declined, 3);
        let c = Answer {
            kind: Some(TxnKind::Increment),
            partial: false,
            ..a
        };
        let d = Answer::bare(11, Status::Declined, 16);
        let mut f = Vec::new();
        encode_results_frame(&mut f, &[a, b, c, d]);
        assert_eq!(f.len(), 4 + 1 + 4 + 4 * RESULT_BYTES);
        let got = decode_results(body_of(&f)).unwrap();
        assert_eq!(got, vec![a, b, c, d]);
        assert_eq!(got[1].decline_code(), Some(DeclineCode::OverSingleTopUp));
        assert_eq!(got[3].decline_code(), Some(DeclineCode::OverDailyCount));
        let mut h = Vec::new();
        encode_hello(&mut h, Some("key-1"));
        assert_eq!(decode_hello(body_of(&h)).unwrap().as_deref(), Some("key-1"));
        let mut h = Vec::new();
        encode_hello(&mut h, None);
        assert_eq!(decode_hello(body_of(&h)).unwrap(), None);
        assert!(decode_hello(b"XXXX\x01\x00\x00\x00").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn decoders_never_panic_on_random_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode_batch(&bytes);
            let _ = decode_results(&bytes);
            let _ = decode_hello(&bytes);
            let _ = decode_error(&bytes);
        }

        #[test]
        fn truncated_or_flipped_batches_are_refused_or_decoded_without_panic(
            cut in 0usize..400, flip_at in 0usize..400, flip in any::<u8>()
        ) {
            let mut f = Vec::new();
            encode_batch_frame(&mut f, 1, sample_calls().iter()).unwrap();
            let body = body_of(&f).to_vec();
            if cut < body.len() {
                prop_assert!(decode_batch(&body[..cut]).is_err());
            }
            let mut flipped = body.clone();
            if let Some(b) = flipped.get_mut(flip_at) { *b ^= flip; }
            let _ = decode_batch(&flipped);
        }

        #[test]
        fn any_encoded_top_up_round_trips(card in 1u64..=CARD_ID_MAX, amount in 1i64..=AMOUNT_MINOR_MAX, ch in 0usize..4, id in any::<u64>()) {
            let call = Call::new(Some(format!("k{id}")), Command::TopUp { card_id: CardId(card), amount: Amount(amount), channel: Channel::ALL[ch] });
            let mut f = Vec::new();
            encode_batch_frame(&mut f, id, std::iter::once(&call)).unwrap();
            let d = decode_batch(body_of(&f)).unwrap();
            prop_assert_eq!(d, vec![(id, Ok(call))]);
        }
    }
}
