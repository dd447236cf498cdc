//! The on-disk format: layout constants, the segment header and record framing.
//!
//! `wal/FORMAT.md` draws the same layout as byte tables; the golden-bytes test in this
//! module pins it. Everything here is pure (no I/O) and cannot panic on hostile bytes:
//! every read goes through `get` and returns a typed [`BadRecord`] instead.

#![allow(missing_docs)] // crate-internal; re-exported only as hidden `wal::decode`
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::fmt;

/// The unit of commit padding and of batch alignment: every commit ends on a page
/// boundary so a later write never touches a sector holding acknowledged bytes.
pub const PAGE_BYTES: u64 = 4096;
/// The segment header occupies the whole first page; records start at this offset.
pub const SEGMENT_HEADER_BYTES: u64 = PAGE_BYTES;
/// Bytes of the encoded header fields (the rest of the header page is zero).
pub const SEGMENT_HEADER_USED_BYTES: usize = 64;
/// `len_flags u32 | crc32c u32 | lsn u64`.
pub const RECORD_HEADER_BYTES: u64 = 16;
/// Records start on this alignment so an rkyv archive can be accessed in place.
pub const RECORD_ALIGN_BYTES: u64 = 16;
/// Smallest legal segment: the header page plus one page of records.
pub const SEGMENT_SIZE_MIN_BYTES: u64 = 2 * PAGE_BYTES;
/// Largest legal segment (1 TiB); keeps every offset comfortably inside `u64`/`usize`.
pub const SEGMENT_SIZE_MAX_BYTES: u64 = 1 << 40;

/// First 8 bytes of every segment file.
pub const SEGMENT_MAGIC: [u8; 8] = *b"SVWALSEG";
/// Bumped on any change of the byte layout.
pub const FORMAT_VERSION: u32 = 1;

/// Set on the first record written after a sync: every byte before it was durable
/// before it was written. Such records always start on a page boundary.
pub const FLAG_BATCH_START: u32 = 1 << 31;
/// A clean-shutdown seal: `len` 0, `lsn` = the last record's LSN; not a user record.
pub const FLAG_SEAL: u32 = 1 << 30;
/// The low 30 bits of `len_flags` are the payload length.
pub const LEN_MASK: u32 = FLAG_SEAL - 1;
/// Largest payload a record may carry (also bounded by the segment size).
pub const PAYLOAD_MAX_BYTES: u64 = LEN_MASK as u64;

const _: () = assert!(PAGE_BYTES.is_power_of_two());
const _: () = assert!(SEGMENT_HEADER_BYTES % PAGE_BYTES == 0);
const _: () = assert!(SEGMENT_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(SEGMENT_HEADER_USED_BYTES as u64 <= SEGMENT_HEADER_BYTES);
const _: () = assert!(RECORD_HEADER_BYTES == 16);
const _: () = assert!(RECORD_HEADER_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(PAGE_BYTES % RECORD_ALIGN_BYTES == 0);
const _: () = assert!(SEGMENT_SIZE_MIN_BYTES % PAGE_BYTES == 0);
const _: () = assert!(FLAG_BATCH_START & FLAG_SEAL == 0);
const _: () = assert!(LEN_MASK & (FLAG_BATCH_START | FLAG_SEAL) == 0);
const _: () = assert!(
    std::mem::size_of::<usize>() >= 8,
    "offsets are u64 and must fit usize"
);

/// Rounds `x` up to a multiple of `to` (a power of two).
pub const fn align_up(x: u64, to: u64) -> u64 {
    (x + to - 1) & !(to - 1)
}

/// Bytes a record with `payload_len` bytes occupies on disk (header + payload + pad).
pub const fn record_size(payload_len: u64) -> u64 {
    RECORD_HEADER_BYTES + align_up(payload_len, RECORD_ALIGN_BYTES)
}

/// The fixed fields at the start of every segment file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Random id chosen when the log was created; every segment of a log carries it.
    pub log_id: u64,
    /// 1 for the first segment, previous + 1 for each new one; mixed into every record CRC.
    pub epoch: u64,
    /// LSN of the first record this segment holds (or will hold).
    pub first_lsn: u64,
    /// Full length of the segment file.
    pub segment_size_bytes: u64,
}

/// Why a segment header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadHeader {
    Short,
    Magic,
    Version(u32),
    Checksum { stored: u32, computed: u32 },
    Field(&'static str),
}

impl fmt::Display for BadHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadHeader::Short => write!(f, "segment header: file too short"),
            BadHeader::Magic => write!(f, "segment header: bad magic"),
            BadHeader::Version(v) => write!(f, "segment header: unknown format version {v}"),
            BadHeader::Checksum { stored, computed } => {
                write!(
                    f,
                    "segment header: crc32c stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            BadHeader::Field(what) => write!(f, "segment header: invalid {what}"),
        }
    }
}

pub(crate) fn get_u32(b: &[u8], at: usize) -> Option<u32> {
    let s = b.get(at..at.checked_add(4)?)?;
    Some(u32::from_le_bytes(s.try_into().ok()?))
}

pub(crate) fn get_u64(b: &[u8], at: usize) -> Option<u64> {
    let s = b.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(s.try_into().ok()?))
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

impl SegmentHeader {
    /// The 64 header bytes (the rest of the header page is zero).
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_USED_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_USED_BYTES];
        put(&mut b, 0, &SEGMENT_MAGIC);
        put(&mut b, 8, &FORMAT_VERSION.to_le_bytes());
        put(&mut b, 12, &(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        put(&mut b, 16, &self.log_id.to_le_bytes());
        put(&mut b, 24, &self.epoch.to_le_bytes());
        put(&mut b, 32, &self.first_lsn.to_le_bytes());
        put(&mut b, 40, &self.segment_size_bytes.to_le_bytes());
        let crc = crc32c::crc32c(b.get(..60).unwrap_or(&[]));
        put(&mut b, 60, &crc.to_le_bytes());
        b
    }

    /// Parses and validates a header from the start of a segment file.
    pub fn decode(b: &[u8]) -> Result<SegmentHeader, BadHeader> {
        let used = b.get(..SEGMENT_HEADER_USED_BYTES).ok_or(BadHeader::Short)?;
        if used.get(..8) != Some(&SEGMENT_MAGIC[..]) {
            return Err(BadHeader::Magic);
        }
        let version = get_u32(used, 8).ok_or(BadHeader::Short)?;
        if version != FORMAT_VERSION {
            return Err(BadHeader::Version(version));
        }
        let stored = get_u32(used, 60).ok_or(BadHeader::Short)?;
        let computed = crc32c::crc32c(used.get(..60).ok_or(BadHeader::Short)?);
        if stored != computed {
            return Err(BadHeader::Checksum { stored, computed });
        }
        if get_u32(used, 12) != Some(SEGMENT_HEADER_BYTES as u32) {
            return Err(BadHeader::Field("header size"));
        }
        if used.get(48..60).is_none_or(|r| r.iter().any(|&x| x != 0)) {
            return Err(BadHeader::Field("reserved bytes"));
        }
        let h = SegmentHeader {
            log_id: get_u64(used, 16).ok_or(BadHeader::Short)?,
            epoch: get_u64(used, 24).ok_or(BadHeader::Short)?,
            first_lsn: get_u64(used, 32).ok_or(BadHeader::Short)?,
            segment_size_bytes: get_u64(used, 40).ok_or(BadHeader::Short)?,
        };
        if h.epoch == 0 {
            return Err(BadHeader::Field("epoch"));
        }
        if h.first_lsn == 0 || h.first_lsn >= u64::MAX / 2 {
            return Err(BadHeader::Field("first lsn"));
        }
        if !valid_segment_size(h.segment_size_bytes) {
            return Err(BadHeader::Field("segment size"));
        }
        Ok(h)
    }
}

/// A segment size is a multiple of the page, at least two pages, at most 1 TiB.
pub const fn valid_segment_size(bytes: u64) -> bool {
    bytes % PAGE_BYTES == 0 && bytes >= SEGMENT_SIZE_MIN_BYTES && bytes <= SEGMENT_SIZE_MAX_BYTES
}

/// crc32c over `epoch | len_flags | lsn | payload` (all little-endian).
pub fn record_crc(epoch: u64, len_flags: u32, lsn: u64, payload: &[u8]) -> u32 {
    let mut pre = [0u8; 20];
    put(&mut pre, 0, &epoch.to_le_bytes());
    put(&mut pre, 8, &len_flags.to_le_bytes());
    put(&mut pre, 12, &lsn.to_le_bytes());
    crc32c::crc32c_append(crc32c::crc32c(&pre), payload)
}

/// Writes one record into `dst`, which must be exactly `record_size(payload.len())` long.
///
/// Returns `false` (writing nothing) if `dst` has the wrong length or the payload is too big.
pub fn encode_record(dst: &mut [u8], epoch: u64, lsn: u64, flags: u32, payload: &[u8]) -> bool {
    let len = payload.len() as u64;
    if len > PAYLOAD_MAX_BYTES || dst.len() as u64 != record_size(len) || flags & LEN_MASK != 0 {
        return false;
    }
    let len_flags = len as u32 | flags;
    let crc = record_crc(epoch, len_flags, lsn, payload);
    let (head, rest) = dst.split_at_mut(RECORD_HEADER_BYTES as usize);
    put(head, 0, &len_flags.to_le_bytes());
    put(head, 4, &crc.to_le_bytes());
    put(head, 8, &lsn.to_le_bytes());
    let (body, pad) = rest.split_at_mut(payload.len());
    body.copy_from_slice(payload);
    pad.fill(0);
    true
}

/// Why bytes at some offset are not a valid record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadRecord {
    /// Fewer than 16 bytes left, but not all zero.
    Truncated,
    /// `len` runs past the end of the segment.
    LenOutOfBounds { len: u32 },
    /// Stored and computed crc32c differ.
    Checksum { stored: u32, computed: u32 },
    /// Bytes between a payload and the next 16-byte boundary are not zero.
    NonZeroRecordPad,
    /// Bytes between the end of a commit and the next page are not zero.
    NonZeroCommitPad,
    /// The LSN is not exactly previous + 1.
    LsnGap { expected: u64, found: u64 },
    /// The first record after a page of padding (or of a segment) lacks the batch-start flag.
    MissingBatchStart,
    /// A batch-start record that is not on a page boundary.
    MisplacedBatchStart,
    /// A seal with a payload, without the batch-start flag, or naming the wrong LSN.
    BadSeal,
}

impl fmt::Display for BadRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadRecord::Truncated => write!(f, "truncated record header"),
            BadRecord::LenOutOfBounds { len } => {
                write!(f, "record length {len} runs past the segment end")
            }
            BadRecord::Checksum { stored, computed } => {
                write!(
                    f,
                    "record crc32c stored {stored:#010x}, computed {computed:#010x}"
                )
            }
            BadRecord::NonZeroRecordPad => write!(f, "non-zero record padding"),
            BadRecord::NonZeroCommitPad => write!(f, "non-zero bytes in commit padding"),
            BadRecord::LsnGap { expected, found } => {
                write!(f, "lsn {found} where {expected} was expected")
            }
            BadRecord::MissingBatchStart => {
                write!(f, "record after padding lacks the batch-start flag")
            }
            BadRecord::MisplacedBatchStart => write!(f, "batch-start record off a page boundary"),
            BadRecord::BadSeal => write!(f, "malformed seal record"),
        }
    }
}

/// A record that passed framing and checksum checks (LSN order is the caller's business).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawRecord<'a> {
    pub lsn: u64,
    pub flags: u32,
    pub payload: &'a [u8],
    /// Bytes the record occupies, header and padding included.
    pub size: u64,
}

/// What sits at one offset of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot<'a> {
    /// Sixteen zero bytes (or fewer, at the very end): padding or the end of the log.
    Zero,
    Record(RawRecord<'a>),
    Bad(BadRecord),
}

/// `true` when every byte is zero (written to vectorise: no early exit inside a chunk).
pub fn is_zero(b: &[u8]) -> bool {
    let mut chunks = b.chunks_exact(64);
    for c in &mut chunks {
        if c.iter().fold(0u8, |a, &x| a | x) != 0 {
            return false;
        }
    }
    chunks.remainder().iter().all(|&x| x == 0)
}

/// Decodes the slot at `pos` in `seg` (a whole segment), checking framing, checksum and padding.
pub fn read_slot(seg: &[u8], pos: u64, epoch: u64, verify_crc: bool) -> Slot<'_> {
    let Ok(p) = usize::try_from(pos) else {
        return Slot::Bad(BadRecord::Truncated);
    };
    let Some(rest) = seg.get(p..) else {
        return Slot::Bad(BadRecord::Truncated);
    };
    let Some(head) = rest.get(..RECORD_HEADER_BYTES as usize) else {
        return if is_zero(rest) {
            Slot::Zero
        } else {
            Slot::Bad(BadRecord::Truncated)
        };
    };
    let (Some(len_flags), Some(stored), Some(lsn)) =
        (get_u32(head, 0), get_u32(head, 4), get_u64(head, 8))
    else {
        return Slot::Bad(BadRecord::Truncated);
    };
    if len_flags == 0 && stored == 0 && lsn == 0 {
        return Slot::Zero;
    }
    let len = len_flags & LEN_MASK;
    let size = record_size(u64::from(len));
    let hdr = RECORD_HEADER_BYTES as usize;
    let Some(body) = rest.get(hdr..size as usize) else {
        return Slot::Bad(BadRecord::LenOutOfBounds { len });
    };
    let (payload, pad) = body.split_at(len as usize);
    if verify_crc {
        let computed = record_crc(epoch, len_flags, lsn, payload);
        if computed != stored {
            return Slot::Bad(BadRecord::Checksum { stored, computed });
        }
    }
    if !is_zero(pad) {
        return Slot::Bad(BadRecord::NonZeroRecordPad);
    }
    Slot::Record(RawRecord {
        lsn,
        flags: len_flags & !LEN_MASK,
        payload,
        size,
    })
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Pins the byte layout: if this test changes, FORMAT_VERSION must change too.
    #[test]
    fn golden_bytes_segment_header() {
        let h = SegmentHeader {
            log_id: 0x1122_3344_5566_7788,
            epoch: 3,
            first_lsn: 42,
            segment_size_bytes: 1 << 20,
        };
        let b = h.encode();
        let expected_prefix: [u8; 60] = [
            b'S', b'V', b'W', b'A', b'L', b'S', b'E', b'G', // magic
            1, 0, 0, 0, // version
            0, 0x10, 0, 0, // header bytes 4096
            0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, // log id
            3, 0, 0, 0, 0, 0, 0, 0, // epoch
            42, 0, 0, 0, 0, 0, 0, 0, // first lsn
            0, 0, 0x10, 0, 0, 0, 0, 0, // segment size 1 MiB
            0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
        ];
        assert_eq!(&b[..60], &expected_prefix[..]);
        assert_eq!(
            u32::from_le_bytes([b[60], b[61], b[62], b[63]]),
            crc32c::crc32c(&expected_prefix)
        );
        assert_eq!(SegmentHeader::decode(&b), Ok(h));
    }

    #[test]
    fn golden_bytes_record() {
        let mut buf = vec![0xAAu8; record_size(5) as usize];
        assert!(encode_record(&mut buf, 7, 9, FLAG_BATCH_START, b"hello"));
        let crc = record_crc(7, 5 | FLAG_BATCH_START, 9, b"hello");
        let mut pre = Vec::new();
        pre.extend_from_slice(&7u64.to_le_bytes());
        pre.extend_from_slice(&[5, 0, 0, 0x80]);
        pre.extend_from_slice(&9u64.to_le_bytes());
        pre.extend_from_slice(b"hello");
        assert_eq!(
            crc,
            crc32c::crc32c(&pre),
            "crc covers epoch | len_flags | lsn | payload"
        );
        let mut expected = vec![5, 0, 0, 0x80];
        expected.extend_from_slice(&crc.to_le_bytes());
        expected.extend_from_slice(&[9, 0, 0, 0, 0, 0, 0, 0]);
        expected.extend_from_slice(b"hello");
        expected.extend_from_slice(&[0; 11]);
        assert_eq!(buf, expected);
        match read_slot(&buf, 0, 7, true) {
            Slot::Record(r) => {
                assert_eq!(
                    (r.lsn, r.flags, r.payload, r.size),
                    (9, FLAG_BATCH_START, &b"hello"[..], 32)
                );
            }
            other => panic!("{other:?}"),
        }
        // The epoch is part of the checksum: the same bytes in another segment are invalid.
        assert!(matches!(
            read_slot(&buf, 0, 8, true),
            Slot::Bad(BadRecord::Checksum { .. })
        ));
    }

    #[test]
    fn header_rejects_every_single_bit_flip() {
        let b = SegmentHeader {
            log_id: 5,
            epoch: 1,
            first_lsn: 1,
            segment_size_bytes: 1 << 16,
        }
        .encode();
        for bit in 0..b.len() * 8 {
            let mut c = b;
            c[bit / 8] ^= 1 << (bit % 8);
            assert!(SegmentHeader::decode(&c).is_err(), "bit {bit}");
        }
    }

    #[test]
    fn zero_slot_and_truncation() {
        assert_eq!(read_slot(&[0u8; 32], 0, 1, true), Slot::Zero);
        assert_eq!(read_slot(&[0u8; 8], 0, 1, true), Slot::Zero);
        assert_eq!(
            read_slot(&[0u8, 1, 0], 0, 1, true),
            Slot::Bad(BadRecord::Truncated)
        );
        let mut buf = vec![0u8; 32];
        assert!(encode_record(&mut buf, 1, 1, 0, b"x"));
        assert_eq!(
            read_slot(&buf[..31], 0, 1, true),
            Slot::Bad(BadRecord::LenOutOfBounds { len: 1 })
        );
    }
}
