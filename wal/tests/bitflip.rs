//! Bit flips: flip every bit of a record in the middle of a log; recovery must refuse
//! with `Corruption` naming that segment, offset and LSN. Flipping a bit of the tail record
//! of a crashed run cuts it as a torn tail; after a clean `close` (a seal vouches for the
//! last batch) the same flip is refused. Each flipped log is first read with
//! `History::read_checked`, which must judge it exactly as opening it does, without changing
//! a byte.

mod common;

use std::os::unix::fs::FileExt;
use std::path::Path;

use common::*;
use wal::{Lsn, Wal, WalError, WalOptions};

const SEGMENT: u64 = 64 << 10;

fn opts() -> WalOptions {
    WalOptions {
        segment_size_bytes: SEGMENT,
        ..Default::default()
    }
}

/// Flips each bit of `rec` in `seg_path` in turn and hands the open result to `check`.
fn flip_each_bit(
    dir: &Path,
    seg_path: &Path,
    rec: Placed,
    mut check: impl FnMut(u64, Result<(Wal, wal::Recovery), WalError>),
) -> Result<(), WalError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(seg_path)?;
    let mut pristine = vec![0u8; rec.size as usize];
    file.read_exact_at(&mut pristine, rec.offset)?;
    let bits = rec.size * 8;
    // Sample so the test stays fast: every bit of the 16-byte header, every 3rd bit after.
    for bit in (0..128).chain((128..bits).step_by(3)) {
        let mut bytes = pristine.clone();
        bytes[(bit / 8) as usize] ^= 1 << (bit % 8);
        file.write_all_at(&bytes, rec.offset)?;
        let before = std::fs::read(seg_path)?;
        let checked = read_checked(dir);
        assert!(
            std::fs::read(seg_path)? == before,
            "bit {bit}: read_checked changed the segment"
        );
        let opened = Wal::open(dir, opts());
        same_judgement(bit, &checked, &opened);
        check(bit, opened);
        file.write_all_at(&pristine, rec.offset)?;
    }
    let (log, _) = Wal::open(dir, opts())?;
    verify_all(&log)?;
    Ok(())
}

fn expect_corruption(
    seg_path: &Path,
    rec: Placed,
) -> impl FnMut(u64, Result<(Wal, wal::Recovery), WalError>) + '_ {
    move |bit, result| match result {
        Err(WalError::Corruption {
            segment,
            offset,
            lsn,
            reason,
        }) => {
            assert_eq!(segment, seg_path, "bit {bit}: {reason}");
            assert_eq!(offset, rec.offset, "bit {bit}: {reason}");
            assert_eq!(lsn, Some(rec.lsn), "bit {bit}: {reason}");
        }
        Err(e) => panic!("bit {bit}: expected corruption, got {e}"),
        Ok((_, r)) => panic!(
            "bit {bit} of lsn {} at {}: opened silently: {r:?}",
            rec.lsn, rec.offset
        ),
    }
}

#[test]
fn flip_in_a_finished_segment_is_refused() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    build_log(dir.path(), 2000, 5, opts())?;
    let segs = segment_files(dir.path());
    assert!(segs.len() >= 3);
    let seg = &segs[1];
    let recs = records_of(&std::fs::read(seg)?);
    let rec = recs[recs.len() / 2];
    flip_each_bit(dir.path(), seg, rec, expect_corruption(seg, rec))
}

#[test]
fn flip_in_the_middle_of_the_last_segment_is_refused() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    build_log(dir.path(), 550, 20, opts())?;
    let seg = segment_files(dir.path()).pop().expect("segment");
    let recs = records_of(&std::fs::read(&seg)?);
    assert!(recs.len() > 20);
    // The first record of a batch, and one in the middle of a batch, both well before the tail.
    for rec in [recs[recs.len() / 2], recs[recs.len() / 2 + 1], recs[0]] {
        flip_each_bit(dir.path(), &seg, rec, expect_corruption(&seg, rec))?;
    }
    Ok(())
}

#[test]
fn flip_in_the_tail_record_cuts_it_after_a_crash() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    build_log(dir.path(), 300, 4, opts())?; // dropped without close: as after a crash
    let seg = segment_files(dir.path()).pop().expect("segment");
    let recs = records_of(&std::fs::read(&seg)?);
    let tail = *recs.last().expect("records");
    flip_each_bit(dir.path(), &seg, tail, |bit, result| match result {
        Ok((log, rec)) => {
            assert_eq!(rec.last_lsn, Lsn(tail.lsn - 1), "bit {bit}");
            let torn = rec.torn_tail.expect("torn tail reported");
            assert_eq!(torn.offset, tail.offset, "bit {bit}");
            assert_eq!(verify_all(&log).expect("readable"), tail.lsn - 1);
        }
        Err(e) => panic!("bit {bit}: {e}"),
    })
}

#[test]
fn flip_in_the_tail_record_is_refused_after_close() -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    build_log(dir.path(), 300, 4, opts())?;
    let (log, _) = Wal::open(dir.path(), opts())?;
    log.close()?;
    let mut segs = segment_files(dir.path());
    let (seg, recs) = loop {
        let seg = segs.pop().expect("a segment with records");
        let recs = records_of(&std::fs::read(&seg)?);
        if !recs.is_empty() {
            break (seg, recs);
        }
    };
    let tail = *recs.last().expect("records");
    flip_each_bit(dir.path(), &seg, tail, expect_corruption(&seg, tail))
}
