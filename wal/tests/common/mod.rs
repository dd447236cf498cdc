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

/// Every record `History::read_checked` hands out from LSN 1, and where it says the log ends.
pub fn read_checked(dir: &Path) -> Result<(wal::CheckedEnd, Vec<u64>), WalError> {
    let history = wal::History::open(&[dir])?;
    let mut lsns = Vec::new();
    let end = history.read_checked::<WalError>(
        Lsn(1),
        |_| {},
        |lsn, _| {
            lsns.push(lsn.0);
            Ok(())
        },
    )?;
    Ok((end, lsns))
}

/// The read-only check and opening the log agree: the same corruption (segment, offset, LSN),
/// or the same records, end and torn tail.
pub fn same_judgement(
    what: u64,
    checked: &Result<(wal::CheckedEnd, Vec<u64>), WalError>,
    opened: &Result<(Wal, wal::Recovery), WalError>,
) {
    match (checked, opened) {
        (
            Err(WalError::Corruption {
                segment,
                offset,
                lsn,
                ..
            }),
            Err(WalError::Corruption {
                segment: s2,
                offset: o2,
                lsn: l2,
                ..
            }),
        ) => assert_eq!((segment, offset, lsn), (s2, o2, l2), "at {what}"),
        (Ok((end, lsns)), Ok((_, rec))) => {
            assert_eq!(end.last_lsn, rec.last_lsn, "at {what}");
            assert_eq!(end.first_lsn, rec.first_lsn, "at {what}");
            assert_eq!(end.torn_tail, rec.torn_tail, "at {what}");
            let expected: Vec<u64> = (rec.first_lsn.0..=rec.last_lsn.0)
                .filter(|&l| l > 0)
                .collect();
            assert_eq!(lsns, &expected, "at {what}");
        }
        (c, o) => panic!(
            "at {what}: read_checked said {:?}, opening said {:?}",
            c.as_ref().map(|(end, _)| end),
            o.as_ref().map(|(_, rec)| rec)
        ),
    }
}
