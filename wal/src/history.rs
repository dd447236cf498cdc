//! The whole history of one log, read-only: archived segments, then the live ones.
//!
//! Why a second reader: `Wal::open` takes the directory lock and cuts a torn tail, which a
//! report or an audit running next to the server must never do. [`History`] never locks or
//! writes a file: [`History::read`] only reads them, so it is safe while the server appends;
//! [`History::read_checked`] maps them read-only and judges them as `Wal::open` would, for a
//! log at rest (`svault replay`).
//!
//! What it tolerates and what it refuses:
//! - the end of the newest segment is read up to the first record that does not verify (a
//!   batch being written, or a torn tail a restart would cut): that is where history ends
//!   for this reader;
//! - a segment moved from the log to the archive while the history is read is found under
//!   its other directory (same file name);
//! - a gap (a segment that does not start right after the previous one's last record, or a
//!   damaged record anywhere but at the very end) is [`WalError::Corruption`], naming the
//!   segment: a report must never silently skip part of the history.

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};

use crate::error::corruption;
use crate::format::{
    align_up, read_slot, SegmentHeader, Slot, FLAG_SEAL, PAGE_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::recovery::{check_follows, judge, read_header};
use crate::scan::scan_segment;
use crate::storage::list_segment_paths as list_segments;
use crate::{Lsn, TornTail, WalError};

/// One segment of the history.
#[derive(Debug, Clone)]
pub struct HistorySegment {
    /// File name (the same in the log and in the archive).
    pub file_name: String,
    /// Directory it was listed in.
    pub dir: PathBuf,
    /// Segment epoch.
    pub epoch: u64,
    /// LSN of its first record.
    pub first_lsn: Lsn,
    /// File length.
    pub size_bytes: u64,
}

/// What [`History::read_checked`] found: the log as opening it would judge it, nothing cut.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckedEnd {
    /// LSN of the oldest record (Lsn(0) when the history holds none).
    pub first_lsn: Lsn,
    /// LSN of the newest valid record of the whole history (Lsn(0) when none), whatever
    /// `from` was.
    pub last_lsn: Lsn,
    /// The bytes opening the log would cut from the newest segment; left in place here.
    pub torn_tail: Option<TornTail>,
}

/// The segments of one log's history, oldest first.
#[derive(Debug, Clone, Default)]
pub struct History {
    dirs: Vec<PathBuf>,
    /// Sorted by epoch, one per epoch.
    pub segments: Vec<HistorySegment>,
}

/// Where reading stopped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoryEnd {
    /// Last record read (Lsn(0) when none).
    pub last_lsn: Lsn,
    /// `true` when the newest segment ended in bytes that do not verify (a batch in flight
    /// or a torn tail).
    pub partial_tail: bool,
}

impl History {
    /// Lists the segments in `dirs` (e.g. `archive/` then `wal/`); missing directories are
    /// empty. List the live log before the archive: a segment moved in between is then seen
    /// twice (and kept once), never missed.
    pub fn open(dirs: &[&Path]) -> Result<History, WalError> {
        let mut segments: Vec<HistorySegment> = Vec::new();
        for dir in dirs {
            let paths = match list_segments(dir) {
                Ok(p) => p,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            };
            for path in paths {
                let file = match File::open(&path) {
                    Ok(f) => f,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue, // moved: listed again
                    Err(e) => return Err(e.into()),
                };
                let h = read_header(&path, &file)?;
                if segments.iter().any(|s| s.epoch == h.epoch) {
                    continue;
                }
                segments.push(HistorySegment {
                    file_name: path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    dir: dir.to_path_buf(),
                    epoch: h.epoch,
                    first_lsn: Lsn(h.first_lsn),
                    size_bytes: file.metadata()?.len(),
                });
            }
        }
        segments.sort_by_key(|s| s.epoch);
        Ok(History {
            dirs: dirs.iter().map(|d| d.to_path_buf()).collect(),
            segments,
        })
    }

    /// LSN of the oldest record the history holds (Lsn(0) when empty).
    pub fn first_lsn(&self) -> Lsn {
        self.segments.first().map_or(Lsn(0), |s| s.first_lsn)
    }

    /// Bytes of all segment files (for progress).
    pub fn total_bytes(&self) -> u64 {
        self.segments.iter().map(|s| s.size_bytes).sum()
    }

    /// Opens a segment's file, from wherever it is now.
    fn open_segment(&self, s: &HistorySegment) -> Result<(PathBuf, File), WalError> {
        let first = s.dir.join(&s.file_name);
        let mut tried = vec![first];
        tried.extend(self.dirs.iter().map(|d| d.join(&s.file_name)));
        for path in tried {
            match File::open(&path) {
                Ok(file) => return Ok((path, file)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(corruption(
            s.dir.join(&s.file_name),
            0,
            Some(s.first_lsn.0),
            "segment vanished while the history was read (pruned?)",
        ))
    }

    /// Reads a segment's bytes, from wherever it is now.
    fn read_segment(&self, s: &HistorySegment) -> Result<(PathBuf, Vec<u8>), WalError> {
        use std::io::Read;
        let (path, mut file) = self.open_segment(s)?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok((path, bytes))
    }

    /// Calls `f` for every record with LSN ≥ `from`, in order, and `progress` with the bytes
    /// of each segment once it is read. Memory: one segment at a time.
    pub fn read<E: From<WalError>>(
        &self,
        from: Lsn,
        mut progress: impl FnMut(u64),
        mut f: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<HistoryEnd, E> {
        let mut end = HistoryEnd::default();
        let mut expected: Option<u64> = None;
        let count = self.segments.len();
        for (i, s) in self.segments.iter().enumerate() {
            if let Some(next) = self.segments.get(i + 1) {
                if next.first_lsn.0 <= from.0 && expected.is_none() {
                    progress(s.size_bytes);
                    continue;
                }
            }
            let (path, bytes) = self.read_segment(s)?;
            let header = SegmentHeader::decode(&bytes)
                .map_err(|why| E::from(corruption(path.clone(), 0, None, why)))?;
            if let Some(e) = expected {
                if header.first_lsn != e {
                    return Err(E::from(corruption(
                        path,
                        0,
                        Some(e),
                        format!(
                            "history has a gap: segment starts at lsn {}",
                            header.first_lsn
                        ),
                    )));
                }
            }
            let len = (bytes.len() as u64).min(header.segment_size_bytes);
            let seg = bytes.get(..len as usize).unwrap_or(&bytes);
            let mut pos = SEGMENT_HEADER_BYTES;
            let mut next_lsn = header.first_lsn;
            let mut clean = true;
            while pos < len {
                match read_slot(seg, pos, header.epoch, true) {
                    Slot::Zero => {
                        if pos % PAGE_BYTES == 0 {
                            break;
                        }
                        pos = align_up(pos, PAGE_BYTES);
                    }
                    Slot::Bad(_) => {
                        clean = false;
                        break;
                    }
                    Slot::Record(r) => {
                        if r.flags & FLAG_SEAL != 0 {
                            pos += r.size;
                            continue;
                        }
                        if r.lsn != next_lsn {
                            clean = false;
                            break;
                        }
                        if r.lsn >= from.0 {
                            f(Lsn(r.lsn), r.payload)?;
                            end.last_lsn = Lsn(r.lsn);
                        }
                        next_lsn += 1;
                        pos += r.size;
                    }
                }
            }
            progress(s.size_bytes);
            if i + 1 == count {
                end.partial_tail = !clean;
            }
            expected = Some(next_lsn);
        }
        Ok(end)
    }
}

impl History {
    /// Like [`History::read`], but judges every segment exactly as opening the log would
    /// (`Wal::open`): the segments must be one log (same id, consecutive epochs and LSNs, full
    /// length), damage anywhere but in the newest segment's unvouched tail is
    /// [`WalError::Corruption`] naming segment, offset and LSN, and the torn tail a restart
    /// would cut is reported instead of cut. Every segment is checked, also those before
    /// `from` and after a caller stops using the records.
    ///
    /// Why: `svault replay` must see the log as a restart would without changing it (it is the
    /// evidence), and without first copying gigabytes to a scratch directory. Segments are
    /// mapped read-only, one at a time. For a log no writer is appending to: a batch being
    /// written looks like damage (use [`History::read`] next to a running server).
    pub fn read_checked<E: From<WalError>>(
        &self,
        from: Lsn,
        mut progress: impl FnMut(u64),
        mut f: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<CheckedEnd, E> {
        let mut end = CheckedEnd::default();
        let mut prev: Option<(SegmentHeader, PathBuf, u64)> = None;
        let mut next_lsn = 0u64;
        let count = self.segments.len();
        for (i, s) in self.segments.iter().enumerate() {
            let is_last = i + 1 == count;
            let (path, file) = self.open_segment(s)?;
            let header = read_header(&path, &file)?;
            if let Some((p, p_path, p_end)) = &prev {
                check_follows(p, p_path, *p_end, &header, &path, next_lsn)?;
            }
            let len = file.metadata().map_err(WalError::from)?.len();
            // A newest segment shortened behind the log's back reads as zeros past its end
            // (opening the log extends it); any other length mismatch is refused.
            let shortened_tail =
                is_last && len < header.segment_size_bytes && len >= SEGMENT_HEADER_BYTES;
            if len != header.segment_size_bytes && !shortened_tail {
                let why = format!(
                    "file is {len} bytes, its header says {}",
                    header.segment_size_bytes
                );
                return Err(E::from(corruption(path, 0, None, why)));
            }
            let (map, mut padded);
            let bytes: &[u8] = if shortened_tail {
                // Zero-extended in memory, as opening extends the file: the last record's
                // alignment padding may be what was cut.
                padded = std::fs::read(&path).map_err(WalError::from)?;
                let want = usize::try_from(header.segment_size_bytes).unwrap_or(usize::MAX);
                if padded
                    .try_reserve_exact(want.saturating_sub(padded.len()))
                    .is_err()
                {
                    let why = format!("segment size {want} too large to read");
                    return Err(E::from(corruption(path, 0, None, why)));
                }
                padded.resize(want, 0);
                &padded
            } else {
                map = crate::segment::map_read_only(&file).map_err(WalError::from)?;
                // Read front to back, twice (scan, then records): read ahead (best effort).
                let _ = map.advise(memmap2::Advice::Sequential);
                &map
            };
            let scan = scan_segment(bytes, header.epoch, header.first_lsn);
            if let Some(torn) = judge(&path, &header, &scan, is_last)? {
                end.torn_tail = Some(torn);
            }
            if scan.next_lsn > from.0 {
                // Every record up to `scan.end` was verified by the scan.
                let mut pos = SEGMENT_HEADER_BYTES;
                while pos < scan.end {
                    match read_slot(bytes, pos, header.epoch, false) {
                        Slot::Zero => pos = align_up(pos + 1, PAGE_BYTES),
                        Slot::Record(r) => {
                            if r.flags & FLAG_SEAL == 0 && r.lsn >= from.0 {
                                f(Lsn(r.lsn), r.payload)?;
                            }
                            pos += r.size;
                        }
                        Slot::Bad(why) => {
                            // The scan accepted these bytes: a second read disagreeing means
                            // the file changed under the map.
                            return Err(E::from(corruption(
                                path,
                                pos,
                                None,
                                format!("{why} (the segment changed while it was read)"),
                            )));
                        }
                    }
                }
            }
            progress(s.size_bytes);
            if i == 0 {
                end.first_lsn = Lsn(header.first_lsn);
            }
            next_lsn = scan.next_lsn;
            prev = Some((header, path, scan.end));
        }
        end.last_lsn = Lsn(next_lsn.saturating_sub(1));
        if end.last_lsn.0 < end.first_lsn.0 {
            end.first_lsn = Lsn(0);
        }
        Ok(end)
    }
}

/// Deletes the segments of an archive directory whose file was last written more than
/// `older_than_secs` ago (a segment's modification time is its last record's write; moving it
/// to the archive keeps it). Returns how many were deleted. Only for an explicit retention:
/// by default the whole history is kept.
pub fn prune_archive(dir: &Path, older_than_secs: u64) -> Result<usize, WalError> {
    let paths = match list_segments(dir) {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    let now = std::time::SystemTime::now();
    let mut removed = 0;
    for path in paths {
        let modified = std::fs::metadata(&path)?.modified()?;
        let age = now.duration_since(modified).unwrap_or_default();
        if age.as_secs() > older_than_secs {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    if removed > 0 {
        crate::segment::sync_dir(dir)?;
    }
    Ok(removed)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::{Wal, WalOptions};

    fn opts() -> WalOptions {
        WalOptions {
            segment_size_bytes: 16 * 4096,
            ..WalOptions::default()
        }
    }

    fn collect(h: &History, from: u64) -> (Vec<(u64, Vec<u8>)>, HistoryEnd) {
        let mut out = Vec::new();
        let end = h
            .read::<WalError>(
                Lsn(from),
                |_| {},
                |lsn, p| {
                    out.push((lsn.0, p.to_vec()));
                    Ok(())
                },
            )
            .unwrap();
        (out, end)
    }

    #[test]
    fn reads_archive_then_log_while_the_writer_holds_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let (log, archive) = (dir.path().join("wal"), dir.path().join("archive"));
        let (mut wal, _) = Wal::open(&log, opts()).unwrap();
        for i in 0..2_000u32 {
            wal.append(&i.to_le_bytes().repeat(10)).unwrap();
            if i % 50 == 49 {
                wal.commit().unwrap();
            }
        }
        wal.commit().unwrap();
        let moved = wal.archive_segments_before(Lsn(1_500), &archive).unwrap();
        assert!(moved > 0);
        assert!(wal.segment_paths().len() < 10);
        // The writer still holds the log: the reader neither locks nor writes.
        let h = History::open(&[&log, &archive]).unwrap();
        assert_eq!(h.first_lsn(), Lsn(1));
        let (all, end) = collect(&h, 1);
        assert_eq!(all.len(), 2_000);
        for (i, (lsn, p)) in all.iter().enumerate() {
            assert_eq!(*lsn, i as u64 + 1);
            assert_eq!(p, &(i as u32).to_le_bytes().repeat(10));
        }
        assert_eq!(
            end,
            HistoryEnd {
                last_lsn: Lsn(2_000),
                partial_tail: false
            }
        );
        let (tail, _) = collect(&h, 1_990);
        assert_eq!(tail.first().map(|r| r.0), Some(1_990));
        assert_eq!(tail.len(), 11);
    }

    #[test]
    fn a_torn_tail_ends_the_history_and_a_gap_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("wal");
        {
            let (mut wal, _) = Wal::open(&log, opts()).unwrap();
            for i in 0..400u32 {
                wal.append(&i.to_le_bytes().repeat(30)).unwrap();
                wal.commit().unwrap();
            }
        }
        let h = History::open(&[&log]).unwrap();
        let newest = h.segments.last().unwrap().clone();
        let path = log.join(&newest.file_name);
        let mut bytes = std::fs::read(&path).unwrap();
        // Damage the last record's payload: the reader stops right before it.
        let last = bytes.iter().rposition(|&b| b != 0).unwrap();
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        let (all, end) = collect(&h, 1);
        assert_eq!(all.len(), 399);
        assert!(end.partial_tail);
        // Remove a middle segment: the history has a gap, which is refused.
        assert!(h.segments.len() >= 3);
        std::fs::remove_file(log.join(&h.segments[1].file_name)).unwrap();
        let h = History::open(&[&log]).unwrap();
        let err = h
            .read::<WalError>(Lsn(1), |_| {}, |_, _| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("gap"), "{err}");
    }
}
