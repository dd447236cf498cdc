//! Helpers shared by the integration tests.
#![allow(dead_code, clippy::manual_is_multiple_of)]

use std::path::{Path, PathBuf};

use wal::decode::{read_slot, SegmentHeader, Slot};
use wal::{Lsn, Wal, WalError, WalOptions, PAGE_BYTES, SEGMENT_HEADER_BYTES};

/// Where one record sits in its segment file.
#[derive(Debug, Clone, Copy)]
pub struct Placed {
    pub lsn: u64,
    pub offset: u64,
    /// Offset just past the payload (the pad after it is zero, like unwritten bytes).
    pub payload_end: u64,
    pub size: u64,
    /// Offset just past the record's last non-zero byte: cutting after it loses nothing.
    pub nonzero_end: u64,
}

/// Walks a healthy segment file and lists its user records.
pub fn records_of(seg: &[u8]) -> Vec<Placed> {
    let h = SegmentHeader::decode(seg).expect("healthy header");
    let mut out = Vec::new();
    let mut pos = SEGMENT_HEADER_BYTES;
    loop {
        match read_slot(seg, pos, h.epoch, true) {
            Slot::Zero => {
                if pos % PAGE_BYTES == 0 {
                    return out;
                }
                pos = pos.next_multiple_of(PAGE_BYTES);
            }
            Slot::Record(r) => {
                if r.flags & (1 << 30) == 0 {
                    let payload_end = pos + 16 + r.payload.len() as u64;
                    let nonzero_end = pos
                        + 1
                        + seg[pos as usize..payload_end as usize]
                            .iter()
                            .rposition(|&b| b != 0)
                            .unwrap_or(0) as u64;
                    out.push(Placed {
                        lsn: r.lsn,
                        offset: pos,
                        payload_end,
                        size: r.size,
                        nonzero_end,
                    });
                }
                pos += r.size;
            }
            Slot::Bad(b) => panic!("healthy segment has a bad record at {pos}: {b:?}"),
        }
        if pos + 16 > seg.len() as u64 {
            return out;
        }
    }
}

/// Segment files of a log directory, in log order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("read dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    v.sort();
    v
}

/// Payload of `lsn` for logs built by `build_log`: 0..60 bytes derived from the LSN.
pub fn small_payload(lsn: u64) -> Vec<u8> {
    let len = (lsn.wrapping_mul(2_654_435_761) % 61) as usize;
    (0..len)
        .map(|i| (lsn as u8).wrapping_mul(31).wrapping_add(i as u8))
        .collect()
}

/// A log of `n` records committed in batches of `batch`, with small segments.
pub fn build_log(dir: &Path, n: u64, batch: u64, options: WalOptions) -> Result<(), WalError> {
    let (mut log, _) = Wal::open(dir, options)?;
    for lsn in 1..=n {
        assert_eq!(log.append(&small_payload(lsn))?, Lsn(lsn));
        if lsn % batch == 0 {
            log.commit()?;
        }
    }
    log.commit()?;
    Ok(())
}

/// Reads every record back and checks LSN order and payloads; returns the count.
pub fn verify_all(log: &Wal) -> Result<u64, WalError> {
    let mut expected = 1;
    log.read_from(Lsn(1), |lsn, p| -> Result<(), WalError> {
        assert_eq!(lsn.0, expected);
        assert_eq!(
            p,
            small_payload(lsn.0).as_slice(),
            "payload of lsn {}",
            lsn.0
        );
        expected += 1;
        Ok(())
    })?;
    Ok(expected - 1)
}
