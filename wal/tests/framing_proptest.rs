//! Property tests of the decoders: any byte string decodes to records, a clean end, or a
//! typed error, never a panic; and a decoder never invents a record that was not written.

mod common;

use proptest::prelude::*;
use wal::decode::{encode_record, read_slot, record_size, scan_segment, SegmentHeader, Slot};
use wal::{snapshot, Lsn, Wal, WalError, WalOptions, PAGE_BYTES, SEGMENT_HEADER_BYTES};

const FLAG_BATCH_START: u32 = 1 << 31;

/// A segment image with `payloads` written as batches of `batch` records (4 KiB-aligned).
fn build_segment(payloads: &[Vec<u8>], batch: usize, epoch: u64) -> (Vec<u8>, usize) {
    let mut seg = vec![0u8; 64 << 10];
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut written = 0;
    for (i, p) in payloads.iter().enumerate() {
        let size = record_size(p.len() as u64);
        let start = i % batch == 0;
        if start {
            pos = pos.next_multiple_of(PAGE_BYTES);
        }
        if pos + size > seg.len() as u64 {
            break;
        }
        let flags = if start { FLAG_BATCH_START } else { 0 };
        assert!(encode_record(
            &mut seg[pos as usize..(pos + size) as usize],
            epoch,
            i as u64 + 1,
            flags,
            p
        ));
        pos += size;
        written += 1;
    }
    (seg, written)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn read_slot_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512), pos in 0u64..600, epoch: u64) {
        let _ = read_slot(&bytes, pos, epoch, true);
        let _ = read_slot(&bytes, pos, epoch, false);
    }

    #[test]
    fn header_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
        let _ = SegmentHeader::decode(&bytes);
    }

    #[test]
    fn snapshot_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100), lsn: u64) {
        let _ = snapshot::decode(&bytes, Some(Lsn(lsn)));
    }

    #[test]
    fn scan_of_random_bytes_is_consistent(
        bytes in proptest::collection::vec(any::<u8>(), 0..20_000),
        epoch: u64,
        first in 1u64..1000,
    ) {
        let s = scan_segment(&bytes, epoch, first);
        prop_assert!(s.end >= SEGMENT_HEADER_BYTES);
        prop_assert!(s.dirty_end >= s.end);
        prop_assert_eq!(s.next_lsn, first + s.records);
    }

    /// Valid records round-trip exactly, in order.
    #[test]
    fn records_round_trip(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..80),
        batch in 1usize..10,
        epoch in 1u64..u64::MAX,
    ) {
        let (seg, written) = build_segment(&payloads, batch, epoch);
        let s = scan_segment(&seg, epoch, 1);
        prop_assert!(s.is_clean(), "{:?}", s);
        prop_assert_eq!(s.records, written as u64);
        let mut pos = SEGMENT_HEADER_BYTES;
        let mut i = 0;
        while i < written {
            match read_slot(&seg, pos, epoch, true) {
                Slot::Zero => pos = pos.next_multiple_of(PAGE_BYTES),
                Slot::Record(r) => {
                    prop_assert_eq!(r.lsn, i as u64 + 1);
                    prop_assert_eq!(r.payload, payloads[i].as_slice());
                    prop_assert_eq!((seg.as_ptr() as usize + pos as usize + 16) % 16, (seg.as_ptr() as usize) % 16);
                    pos += r.size;
                    i += 1;
                }
                Slot::Bad(b) => prop_assert!(false, "bad record {:?} at {}", b, pos),
            }
        }
    }

    /// Damage anywhere: the scan never panics and never reports more records than written,
    /// and what it accepts before the damage is exactly what was written.
    #[test]
    fn damaged_segments_never_invent_records(
        payloads in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 1..60),
        batch in 1usize..6,
        damage in proptest::collection::vec((0usize..(64 << 10), any::<u8>()), 1..8),
    ) {
        let (mut seg, written) = build_segment(&payloads, batch, 7);
        for (at, x) in damage {
            seg[at] ^= x | 1;
        }
        let s = scan_segment(&seg, 7, 1);
        prop_assert!(s.records <= written as u64);
        let mut pos = SEGMENT_HEADER_BYTES;
        let mut lsn = 1;
        while pos < s.end {
            match read_slot(&seg, pos, 7, true) {
                Slot::Zero => pos = pos.next_multiple_of(PAGE_BYTES),
                Slot::Record(r) => {
                    prop_assert_eq!(r.payload, payloads[lsn as usize - 1].as_slice());
                    pos += r.size;
                    lsn += 1;
                }
                Slot::Bad(b) => prop_assert!(false, "accepted a bad record {:?}", b),
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Open on a segment whose body is arbitrary bytes: a log, or a typed error. Never a panic.
    #[test]
    fn open_on_garbage_is_typed(body in proptest::collection::vec(any::<u8>(), 0..12_000), zeros_from in 0usize..12_000) {
        let dir = tempfile::tempdir().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let header = SegmentHeader { log_id: 1, epoch: 1, first_lsn: 1, segment_size_bytes: 16 << 10 }.encode();
        let mut file = vec![0u8; 16 << 10];
        file[..header.len()].copy_from_slice(&header);
        let n = body.len().min(zeros_from);
        file[4096..4096 + n].copy_from_slice(&body[..n]);
        std::fs::write(dir.path().join("0000000001-00000000000000000001.wal"), &file)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        match Wal::open(dir.path(), WalOptions { segment_size_bytes: 16 << 10, ..Default::default() }) {
            Ok(_) | Err(WalError::Corruption { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected error {}", e),
        }
    }
}
