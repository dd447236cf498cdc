//! Torn writes: cut the last segment at every byte offset of its last records (by zeroing
//! what follows, as an unwritten preallocated file looks, and by truncating the file) and
//! reopen. Recovery must end exactly at the last whole record: never later, never earlier, and
//! `History::read_checked` must say the same without changing the file.

mod common;

use common::*;
use std::os::unix::fs::FileExt;

use wal::{Lsn, Wal, WalError, WalOptions};

fn from_to_end(tail: &[Placed]) -> u64 {
    tail.last().map_or(0, |r| r.offset + r.size)
}

const SEGMENT: u64 = 64 << 10;

fn opts() -> WalOptions {
    WalOptions {
        segment_size_bytes: SEGMENT,
        ..Default::default()
    }
}

fn cut_everywhere(batch: u64, truncate: bool) -> Result<(), WalError> {
    let dir = tempfile::tempdir()?;
    let n = if batch == 1 { 40 } else { 250 };
    build_log(dir.path(), n, batch, opts())?;
    let last = segment_files(dir.path()).pop().expect("a segment");
    let pristine = std::fs::read(&last)?;
    let recs = records_of(&pristine);
    assert!(
        recs.len() >= 6,
        "last segment holds too few records: {}",
        recs.len()
    );
    let tail = &recs[recs.len() - 6..];
    // Every byte offset inside the last records, plus the edges of the padding between them.
    let mut cuts: Vec<u64> = tail
        .iter()
        .flat_map(|r| r.offset..=r.offset + r.size)
        .collect();
    cuts.extend(tail.iter().map(|r| r.offset.saturating_sub(1)));
    cuts.sort_unstable();
    cuts.dedup();
    if truncate {
        // Each truncation costs a metadata sync (open extends the file back): sample.
        cuts = cuts
            .into_iter()
            .step_by(7)
            .chain([from_to_end(tail)])
            .collect();
    }
    let before = segment_files(dir.path());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&last)?;
    for cut in cuts {
        if truncate {
            file.set_len(cut)?;
        } else {
            file.write_all_at(&vec![0; pristine.len() - cut as usize], cut)?;
        }
        let whole = recs
            .iter()
            .filter(|r| r.nonzero_end <= cut)
            .map(|r| r.lsn)
            .max()
            .unwrap_or(0);
        let checked = read_checked(dir.path());
        let opened = Wal::open(dir.path(), opts());
        same_judgement(cut, &checked, &opened);
        let (mut log, rec) = opened?;
        assert_eq!(
            rec.last_lsn,
            Lsn(whole),
            "cut at {cut}: recovery must end at the last whole record"
        );
        let torn_expected = recs.iter().any(|r| r.offset < cut && r.nonzero_end > cut);
        assert_eq!(
            rec.torn_tail.is_some(),
            torn_expected,
            "cut at {cut}: {:?}",
            rec.torn_tail
        );
        if let Some(t) = &rec.torn_tail {
            let valid_end = recs
                .iter()
                .find(|r| r.lsn == whole)
                .map_or(wal::SEGMENT_HEADER_BYTES, |r| r.offset + r.size);
            assert_eq!(t.offset, valid_end, "cut at {cut}");
            assert!(t.offset + t.bytes_cut <= cut, "cut at {cut}: {t:?}");
        }
        assert_eq!(verify_all(&log)?, whole);
        // The log goes on after the cut, and the next open sees exactly that.
        assert_eq!(log.append(&small_payload(whole + 1))?, Lsn(whole + 1));
        log.commit()?;
        drop(log);
        let (log, rec) = Wal::open(dir.path(), opts())?;
        assert_eq!(
            rec.last_lsn,
            Lsn(whole + 1),
            "cut at {cut}: after appending"
        );
        assert!(rec.torn_tail.is_none());
        assert_eq!(verify_all(&log)?, whole + 1);
        drop(log);
        file.write_all_at(&pristine, 0)?;
        for extra in segment_files(dir.path())
            .into_iter()
            .filter(|p| !before.contains(p))
        {
            std::fs::remove_file(extra)?;
        }
    }
    Ok(())
}

#[test]
fn torn_tail_zeroed_after_cut_one_record_batches() -> Result<(), WalError> {
    cut_everywhere(1, false)
}

#[test]
fn torn_tail_zeroed_after_cut_multi_record_batches() -> Result<(), WalError> {
    cut_everywhere(4, false)
}

#[test]
fn torn_tail_truncated_file() -> Result<(), WalError> {
    cut_everywhere(3, true)
}
