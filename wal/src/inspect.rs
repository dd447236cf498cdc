//! `inspect`: what a log directory holds, read-only (files are read, never mapped or written).
//!
//! It runs the very scan and judgement `Wal::open` runs, so its `refusal` says exactly what
//! open would refuse, and each segment's `torn_tail` what open would cut.

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::path::Path;

use crate::format::{SegmentHeader, SEGMENT_HEADER_BYTES};
use crate::recovery::judge;
use crate::scan::{scan_segment, Stop};
use crate::storage::list_segment_paths;
use crate::{snapshot, Lsn, TornTail, WalError};

/// What `inspect` found in a log directory (read-only; nothing is modified).
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// Segment files in log order (those with unreadable headers last, by name).
    pub segments: Vec<SegmentInfo>,
    /// Snapshot files, newest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// What `Wal::open` would do: `None` if it would open, or the corruption it would refuse.
    pub refusal: Option<String>,
}

/// One segment file as `inspect` saw it.
#[derive(Debug, Clone, Default)]
pub struct SegmentInfo {
    /// File name inside the directory.
    pub file_name: String,
    /// Length of the file.
    pub size_bytes: u64,
    /// `false` when the segment header is unreadable (bad magic, version or checksum).
    pub header_ok: bool,
    /// Segment epoch from the header (0 if unreadable).
    pub epoch: u64,
    /// First LSN from the header (Lsn(0) if unreadable).
    pub first_lsn: Lsn,
    /// Last valid record in this segment, if any.
    pub last_lsn: Option<Lsn>,
    /// Records whose checksum verified.
    pub records_ok: u64,
    /// The first bad record (offset, reason), if any.
    pub bad_record: Option<(u64, String)>,
    /// A torn tail that `open` would cut, if any.
    pub torn_tail: Option<TornTail>,
    /// The segment ends with a clean-shutdown seal.
    pub sealed: bool,
}

/// One snapshot file as `inspect` saw it.
#[derive(Debug, Clone, Default)]
pub struct SnapshotInfo {
    /// File name inside the directory.
    pub file_name: String,
    /// Length of the file.
    pub size_bytes: u64,
    /// LSN the file name promises.
    pub lsn: Option<Lsn>,
    /// `true` when magic, checksum and LSN all verified.
    pub valid: bool,
    /// Why it is invalid, if it is.
    pub problem: Option<String>,
}

/// Reads a log directory and reports what is there, without modifying anything.
pub fn inspect(dir: &Path) -> Result<Inspection, WalError> {
    inspect_with_progress(dir, |_, _| {})
}

/// [`inspect`], calling `progress(bytes, records)` after each file is read (a segment: its
/// length and the records that verified; a snapshot: its length and 0), so a caller can draw
/// a progress bar over the directory's total size. One segment is in memory at a time.
pub fn inspect_with_progress(
    dir: &Path,
    mut progress: impl FnMut(u64, u64),
) -> Result<Inspection, WalError> {
    let mut out = Inspection::default();
    let mut good = Vec::new();
    for path in list_segment_paths(dir)? {
        // The header only: the segments are read one at a time below.
        let mut head = Vec::new();
        std::fs::File::open(&path)?
            .take(SEGMENT_HEADER_BYTES)
            .read_to_end(&mut head)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut info = SegmentInfo {
            file_name,
            size_bytes: std::fs::metadata(&path)?.len(),
            ..SegmentInfo::default()
        };
        match SegmentHeader::decode(&head) {
            Ok(h) => {
                info.header_ok = true;
                info.epoch = h.epoch;
                info.first_lsn = Lsn(h.first_lsn);
                good.push((path, h, info));
            }
            Err(why) => {
                progress(info.size_bytes, 0);
                info.bad_record = Some((0, why.to_string()));
                if out.refusal.is_none() {
                    out.refusal = Some(format!(
                        "corruption in {} at offset 0: {why}",
                        path.display()
                    ));
                }
                out.segments.push(info);
            }
        }
    }
    let bad_headers = std::mem::take(&mut out.segments);
    good.sort_by_key(|(_, h, _)| h.epoch);
    let count = good.len();
    let mut prev: Option<(SegmentHeader, u64)> = None;
    for (i, (path, h, mut info)) in good.into_iter().enumerate() {
        let mut bytes = std::fs::read(&path)?;
        info.size_bytes = bytes.len() as u64;
        // Open would extend a short last segment with zeros; read it the same way.
        if (bytes.len() as u64) < h.segment_size_bytes {
            bytes.resize(h.segment_size_bytes as usize, 0);
        }
        let seg = bytes.get(..h.segment_size_bytes as usize).unwrap_or(&bytes);
        let scan = scan_segment(seg, h.epoch, h.first_lsn);
        progress(info.size_bytes, scan.records);
        info.records_ok = scan.records;
        info.last_lsn = (scan.records > 0).then(|| Lsn(scan.next_lsn - 1));
        info.sealed = scan.sealed;
        if let Stop::Bad { offset, reason } = scan.stop {
            info.bad_record = Some((offset, reason.to_string()));
        }
        let is_last = i + 1 == count;
        let mut verdict = judge(&path, &h, &scan, is_last);
        if let Some((p, next)) = prev {
            if h.log_id != p.log_id || h.epoch != p.epoch + 1 || h.first_lsn != next {
                verdict = Err(crate::error::corruption(
                    path.clone(),
                    0,
                    Some(next),
                    "segment does not follow the previous one",
                ));
            }
        }
        if info.size_bytes > h.segment_size_bytes
            || (!is_last && info.size_bytes != h.segment_size_bytes)
        {
            verdict = Err(crate::error::corruption(
                path.clone(),
                0,
                None,
                "file length differs from its header",
            ));
        }
        match verdict {
            Ok(torn) => info.torn_tail = torn,
            Err(e) => {
                if out.refusal.is_none() {
                    out.refusal = Some(e.to_string());
                }
            }
        }
        prev = Some((h, scan.next_lsn));
        out.segments.push(info);
    }
    out.segments.extend(bad_headers);

    for (lsn, path) in snapshot::list(dir)? {
        let bytes = std::fs::read(&path)?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        progress(bytes.len() as u64, 0);
        let check = snapshot::decode(&bytes, Some(lsn));
        out.snapshots.push(SnapshotInfo {
            file_name,
            size_bytes: bytes.len() as u64,
            lsn: Some(lsn),
            valid: check.is_ok(),
            problem: check.err(),
        });
    }
    Ok(out)
}
