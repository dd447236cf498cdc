//! Scanning one segment: where its valid records end, and what lies beyond.
//!
//! The scan only describes; [`crate::recovery`] decides what to cut and what to refuse,
//! and [`crate::inspect`] reports the same facts without touching the files.
//!
//! The rules, in the words of the writer's promises:
//! - a batch (everything one commit makes durable) starts on a page boundary with a
//!   record flagged `BATCH_START`, and is written only after every earlier byte was
//!   synced; the bytes between the end of a batch and the next page are zero;
//! - so after the first bad spot, a valid `BATCH_START` record further on proves that
//!   the bad spot was durable and acknowledged once: that is corruption, never a torn tail.

#![allow(missing_docs)] // crate-internal; re-exported only as hidden `wal::decode`
#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use crate::format::{
    align_up, is_zero, read_slot, BadRecord, Slot, FLAG_BATCH_START, FLAG_SEAL, PAGE_BYTES,
    RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

/// Why the record-by-record walk stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// A zero header on a page boundary, or the end of the segment.
    Clean,
    /// A bad record or non-zero padding at `offset`.
    Bad { offset: u64, reason: BadRecord },
}

/// The facts about one segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentScan {
    /// Valid user records.
    pub records: u64,
    /// The LSN the next record after this segment's valid ones would get.
    pub next_lsn: u64,
    /// Offset just past the last valid record (or seal); `SEGMENT_HEADER_BYTES` if none.
    pub end: u64,
    /// The last valid thing in the segment is a clean-shutdown seal.
    pub sealed: bool,
    pub stop: Stop,
    /// Offset of a valid batch-start record beyond `end`: proof of a later, acknowledged batch.
    pub later_batch: Option<u64>,
    /// Offset just past the last non-zero byte at or after `end` (`end` when all zero).
    pub dirty_end: u64,
}

impl SegmentScan {
    /// Nothing but zeros after the valid records, and the walk ended cleanly.
    pub fn is_clean(&self) -> bool {
        self.stop == Stop::Clean && self.later_batch.is_none() && self.dirty_end == self.end
    }
}

/// Walks every record of `seg` (a whole segment file, header included).
pub fn scan_segment(seg: &[u8], epoch: u64, first_lsn: u64) -> SegmentScan {
    let len = seg.len() as u64;
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut next_lsn = first_lsn;
    let mut records = 0u64;
    let mut end = pos;
    let mut sealed = false;
    let mut need_batch_start = true;
    let stop = loop {
        if pos + RECORD_HEADER_BYTES > len {
            break Stop::Clean;
        }
        match read_slot(seg, pos, epoch, true) {
            Slot::Zero => {
                if pos % PAGE_BYTES == 0 {
                    break Stop::Clean;
                }
                let next = align_up(pos, PAGE_BYTES).min(len);
                let pad = seg.get(pos as usize..next as usize).unwrap_or(&[]);
                if !is_zero(pad) {
                    break Stop::Bad {
                        offset: pos,
                        reason: BadRecord::NonZeroCommitPad,
                    };
                }
                pos = next;
                need_batch_start = true;
            }
            Slot::Bad(reason) => {
                break Stop::Bad {
                    offset: pos,
                    reason,
                }
            }
            Slot::Record(r) => {
                let batch_start = r.flags & FLAG_BATCH_START != 0;
                if batch_start && pos % PAGE_BYTES != 0 {
                    break Stop::Bad {
                        offset: pos,
                        reason: BadRecord::MisplacedBatchStart,
                    };
                }
                if need_batch_start && !batch_start {
                    break Stop::Bad {
                        offset: pos,
                        reason: BadRecord::MissingBatchStart,
                    };
                }
                if r.flags & FLAG_SEAL != 0 {
                    if !batch_start
                        || !r.payload.is_empty()
                        || r.lsn.checked_add(1) != Some(next_lsn)
                    {
                        break Stop::Bad {
                            offset: pos,
                            reason: BadRecord::BadSeal,
                        };
                    }
                    sealed = true;
                } else {
                    if r.lsn != next_lsn {
                        break Stop::Bad {
                            offset: pos,
                            reason: BadRecord::LsnGap {
                                expected: next_lsn,
                                found: r.lsn,
                            },
                        };
                    }
                    next_lsn += 1;
                    records += 1;
                    sealed = false;
                }
                pos += r.size;
                end = pos;
                need_batch_start = false;
            }
        }
    };

    // Beyond the valid records: find the last non-zero byte, and any later batch start.
    let mut dirty_end = end;
    let mut later_batch = None;
    let mut page = end - end % PAGE_BYTES;
    while page < len {
        let from = page.max(end);
        let to = (page + PAGE_BYTES).min(len);
        let bytes = seg.get(from as usize..to as usize).unwrap_or(&[]);
        if !is_zero(bytes) {
            if let Some(i) = bytes.iter().rposition(|&b| b != 0) {
                dirty_end = from + i as u64 + 1;
            }
            if later_batch.is_none() && page >= end {
                if let Slot::Record(r) = read_slot(seg, page, epoch, true) {
                    if r.flags & FLAG_BATCH_START != 0 {
                        later_batch = Some(page);
                    }
                }
            }
        }
        page += PAGE_BYTES;
    }
    SegmentScan {
        records,
        next_lsn,
        end,
        sealed,
        stop,
        later_batch,
        dirty_end,
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing, clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::format::{encode_record, record_size};

    fn put(seg: &mut [u8], pos: u64, lsn: u64, flags: u32, payload: &[u8]) -> u64 {
        let size = record_size(payload.len() as u64);
        assert!(encode_record(
            &mut seg[pos as usize..(pos + size) as usize],
            1,
            lsn,
            flags,
            payload
        ));
        pos + size
    }

    #[test]
    fn empty_segment_is_clean() {
        let seg = vec![0u8; 3 * PAGE_BYTES as usize];
        let s = scan_segment(&seg, 1, 10);
        assert!(s.is_clean());
        assert_eq!(
            (s.records, s.next_lsn, s.end),
            (0, 10, SEGMENT_HEADER_BYTES)
        );
    }

    #[test]
    fn batches_with_padding() {
        let mut seg = vec![0u8; 4 * PAGE_BYTES as usize];
        let p = put(&mut seg, 4096, 1, FLAG_BATCH_START, b"a");
        put(&mut seg, p, 2, 0, b"bb");
        let p = put(&mut seg, 8192, 3, FLAG_BATCH_START, b"c");
        let s = scan_segment(&seg, 1, 1);
        assert!(s.is_clean(), "{s:?}");
        assert_eq!((s.records, s.next_lsn, s.end), (3, 4, p));
    }

    #[test]
    fn torn_first_batch_record_vs_later_batch() {
        let mut seg = vec![0u8; 4 * PAGE_BYTES as usize];
        put(&mut seg, 4096, 1, FLAG_BATCH_START, b"a");
        put(&mut seg, 8192, 2, FLAG_BATCH_START, b"b");
        seg[8192 + 17] ^= 1;
        let s = scan_segment(&seg, 1, 1);
        assert!(matches!(s.stop, Stop::Bad { offset: 8192, .. }));
        assert_eq!(s.later_batch, None);
        assert_eq!(s.end, 4096 + 32);
        // A later batch behind the bad one turns it into proof of corruption.
        put(&mut seg, 12288, 3, FLAG_BATCH_START, b"c");
        let s = scan_segment(&seg, 1, 1);
        assert_eq!(s.later_batch, Some(12288));
    }

    #[test]
    fn lost_page_inside_batch_is_not_a_later_batch() {
        let mut seg = vec![0u8; 4 * PAGE_BYTES as usize];
        // one batch spanning two pages; its second page survives while the first is lost
        let mut p = 4096;
        let mut lsn = 1;
        let mut flags = FLAG_BATCH_START;
        while p < 8192 + 64 {
            p = put(&mut seg, p, lsn, flags, &[7u8; 100]);
            flags = 0;
            lsn += 1;
        }
        seg[4096..8192].fill(0);
        let s = scan_segment(&seg, 1, 1);
        assert_eq!(s.stop, Stop::Clean);
        assert_eq!(s.later_batch, None);
        assert_eq!(s.end, 4096);
        assert!(s.dirty_end > 8192 && s.dirty_end <= p, "{s:?}");
    }

    #[test]
    fn seal_is_accepted_and_not_counted() {
        let mut seg = vec![0u8; 4 * PAGE_BYTES as usize];
        put(&mut seg, 4096, 1, FLAG_BATCH_START, b"a");
        let end = put(&mut seg, 8192, 1, FLAG_BATCH_START | FLAG_SEAL, b"");
        let s = scan_segment(&seg, 1, 1);
        assert!(s.is_clean());
        assert!(s.sealed);
        assert_eq!((s.records, s.next_lsn, s.end), (1, 2, end));
    }
}
