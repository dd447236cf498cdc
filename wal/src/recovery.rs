//! Opening a log: find the segments, validate every record, cut a torn tail, refuse the rest.
//!
//! The policy, in full:
//! - **cut**: in the last segment, bytes after the last valid record that no later
//!   committed batch vouches for (the batch a crash interrupted). They are zeroed in place
//!   and synced, never truncated (the file is mapped), and reported as [`TornTail`].
//! - **refuse** ([`WalError::Corruption`] naming segment, offset, LSN):
//!   - a bad header, a foreign log id, a gap in epochs or LSNs between segments;
//!   - any damage in a segment that is not the last (it was synced before the next began);
//!   - a bad spot in the last segment with a valid batch-start record after it: that
//!     later batch was only written after the bad spot had been synced and acknowledged.
//!     A clean shutdown's seal is such a batch, so after `close` even the last batch is
//!     protected.
//!
//! Everything accepted is durable before open returns: records a killed writer left
//! unsynced in the page cache become part of the log, and later batches will vouch for
//! them, so the last segment is synced, and so is the directory (a segment renamed into
//! place just before a kill). Then the last segment's clean cached pages are dropped, so
//! the scan reads what the disk holds: after a failed sync Linux keeps the unwritten pages
//! cached and marked clean, and a later fsync reports success without writing them.
//!
//! What cannot be told apart: damage inside the very last batch of a crashed run (never
//! vouched for by a later write) is cut like a torn write. That batch may have been
//! acknowledged just before the crash; this is the one window a single-copy log has.

#![deny(clippy::indexing_slicing, clippy::unwrap_used, clippy::expect_used)]

use std::fs::File;
use std::io;
use std::path::Path;

use crate::error::{corruption, from_io};
use crate::format::{valid_segment_size, SegmentHeader, PAGE_BYTES, SEGMENT_HEADER_BYTES};
use crate::poison::Poison;
use crate::scan::{scan_segment, SegmentScan, Stop};
use crate::storage::{FileStorage, Storage, StorageFile, StorageMap};
use crate::writer::{activate, Segment, Wal, PREALLOC_NAME};
use crate::{Lsn, Recovery, TornTail, WalError, WalOptions};

/// Reads and validates the header of a segment file.
pub(crate) fn read_header(path: &Path, file: &impl StorageFile) -> Result<SegmentHeader, WalError> {
    let mut buf = [0u8; crate::format::SEGMENT_HEADER_USED_BYTES];
    if let Err(e) = file.read_exact_at(&mut buf, 0) {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            return Err(corruption(
                path.to_path_buf(),
                0,
                None,
                crate::format::BadHeader::Short,
            ));
        }
        return Err(WalError::Io(e));
    }
    SegmentHeader::decode(&buf).map_err(|why| corruption(path.to_path_buf(), 0, None, why))
}

/// Checks one scanned segment against the ones before it; returns the torn tail to cut
/// (last segment only) or the corruption to refuse.
pub(crate) fn judge(
    path: &Path,
    header: &SegmentHeader,
    scan: &SegmentScan,
    is_last: bool,
) -> Result<Option<TornTail>, WalError> {
    let bad_at = |offset: u64, reason: String| {
        corruption(path.to_path_buf(), offset, Some(scan.next_lsn), reason)
    };
    let _ = header;
    if !is_last {
        return match scan.stop {
            Stop::Bad { offset, reason } => Err(bad_at(
                offset,
                format!("{reason} (in a segment already followed by another)"),
            )),
            Stop::Clean if scan.dirty_end > scan.end => Err(bad_at(
                scan.end,
                "non-zero bytes after the last record of a finished segment".into(),
            )),
            Stop::Clean => Ok(None),
        };
    }
    if let Some(later) = scan.later_batch {
        return Err(match scan.stop {
            Stop::Bad { offset, reason } => bad_at(
                offset,
                format!("{reason}; a later committed batch starts at offset {later}"),
            ),
            Stop::Clean => bad_at(
                scan.end,
                format!("records missing before a later committed batch at offset {later}"),
            ),
        });
    }
    if scan.dirty_end > scan.end {
        return Ok(Some(TornTail {
            segment: path.to_path_buf(),
            offset: scan.end,
            bytes_cut: scan.dirty_end - scan.end,
        }));
    }
    Ok(None)
}

/// Checks that segment `h` continues `prev` as opening the log does: same log, next epoch, the
/// next LSN.
pub(crate) fn check_follows(
    prev: &SegmentHeader,
    prev_path: &Path,
    prev_end: u64,
    h: &SegmentHeader,
    path: &Path,
    next_lsn: u64,
) -> Result<(), WalError> {
    if h.log_id != prev.log_id {
        let why = format!("log id {:#x} differs from {:#x}", h.log_id, prev.log_id);
        return Err(corruption(path.to_path_buf(), 0, None, why));
    }
    if h.epoch != prev.epoch + 1 {
        let why = format!("epoch {} follows epoch {}", h.epoch, prev.epoch);
        return Err(corruption(path.to_path_buf(), 0, None, why));
    }
    if h.first_lsn > next_lsn {
        let why = format!(
            "records {next_lsn}..{} missing at the end of this segment; the next segment {} starts at lsn {}",
            h.first_lsn - 1,
            path.display(),
            h.first_lsn
        );
        return Err(corruption(
            prev_path.to_path_buf(),
            prev_end,
            Some(next_lsn),
            why,
        ));
    }
    if h.first_lsn != next_lsn {
        let why = format!(
            "segment starts at lsn {}, but the previous one ends before {next_lsn}",
            h.first_lsn
        );
        return Err(corruption(path.to_path_buf(), 0, Some(next_lsn), why));
    }
    Ok(())
}

/// A fresh log id from the OS's random source (the time if there is none).
pub(crate) fn random_log_id() -> u64 {
    use std::io::Read;
    let mut b = [0u8; 8];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_ok()
    {
        return u64::from_le_bytes(b);
    }
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 32)
}

// Opening a log is recovering it: the writer's constructors live here, so the writer never
// calls back into recovery (recovery → writer, one way).
impl Wal {
    /// Opens (or creates) the log in `dir`, scanning and validating every segment, cutting a torn tail.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Recovery), WalError> {
        open(FileStorage::new(dir), options)
    }
}

impl<S: Storage> Wal<S> {
    /// [`Wal::open`] on any storage (a simulated disk in tests).
    pub fn open_on(storage: S, options: WalOptions) -> Result<(Wal<S>, Recovery), WalError> {
        open(storage, options)
    }
}

pub(crate) fn open<S: Storage>(
    storage: S,
    options: WalOptions,
) -> Result<(Wal<S>, Recovery), WalError> {
    if !valid_segment_size(options.segment_size_bytes) {
        return Err(WalError::InvalidOptions(
            "segment_size_bytes must be a multiple of 4096, at least 8192",
        ));
    }
    let lock = storage.lock()?;
    match storage.remove(PREALLOC_NAME) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(WalError::Io(e)),
    }

    // The names this process sees may include renames a killed writer never synced; records
    // appended from now on must not live in a file whose name the disk may yet forget.
    storage.sync_dir()?;
    let names = storage.list_segments()?;
    if names.is_empty() {
        return create(storage, options, lock);
    }

    let mut found = Vec::with_capacity(names.len());
    for name in names {
        let path = storage.path(&name);
        let file = storage.open(&name)?;
        let header = read_header(&path, &file)?;
        found.push((name, path, file, header));
    }
    found.sort_by_key(|(_, _, _, h)| h.epoch);

    let count = found.len();
    let mut segments: Vec<Segment<S::Map>> = Vec::with_capacity(count);
    let mut recovery = Recovery {
        segments: count,
        ..Recovery::default()
    };
    let mut next_lsn = 0u64;
    for (i, (name, path, mut file, header)) in found.into_iter().enumerate() {
        let is_last = i + 1 == count;
        if let Some(prev) = segments.last() {
            check_follows(
                &prev.header,
                &prev.path,
                prev.durable_end,
                &header,
                &path,
                next_lsn,
            )?;
        }
        let len = file.len()?;
        if len != header.segment_size_bytes {
            if is_last && len < header.segment_size_bytes && len >= SEGMENT_HEADER_BYTES {
                // Shortened behind our back (never by us): the missing bytes read as zeros.
                file.allocate(header.segment_size_bytes).map_err(from_io)?;
            } else {
                let why = format!(
                    "file is {len} bytes, its header says {}",
                    header.segment_size_bytes
                );
                return Err(corruption(path, 0, None, why));
            }
        }
        if is_last {
            // A killed writer leaves records in the page cache that were never synced. We
            // accept them, and the next batch will vouch for them: make them durable first.
            // Then read what the disk holds: pages whose sync failed earlier stay cached,
            // marked clean, and would read as durable although they are not (fsyncgate).
            file.sync_data()?;
            file.drop_clean_cache()?;
        }
        let mut map = storage.map(file, header.segment_size_bytes)?;
        map.advise_sequential();
        let scan = scan_segment(map.bytes(), header.epoch, header.first_lsn);
        if let Some(torn) = judge(&path, &header, &scan, is_last)? {
            let (from, to) = (scan.end as usize, scan.dirty_end as usize);
            if let Some(bytes) = map.bytes_mut().get_mut(from..to) {
                bytes.fill(0);
            }
            map.sync_range(scan.end, scan.dirty_end.next_multiple_of(PAGE_BYTES))?;
            recovery.torn_tail = Some(torn);
        }
        recovery.records += scan.records;
        recovery.sealed = is_last && scan.sealed && recovery.torn_tail.is_none();
        next_lsn = scan.next_lsn;
        segments.push(Segment {
            name,
            path,
            header,
            map,
            durable_end: scan.end,
        });
    }
    let first_lsn = segments.first().map_or(1, |s| s.header.first_lsn);
    recovery.last_lsn = Lsn(next_lsn - 1);
    recovery.first_lsn = if next_lsn > first_lsn {
        Lsn(first_lsn)
    } else {
        Lsn(0)
    };
    recovery.next_lsn = Lsn(next_lsn);
    Ok((
        Wal::from_recovered(storage, options, segments, next_lsn, lock),
        recovery,
    ))
}

/// A new, empty log: one zero-filled segment with a fresh log id.
fn create<S: Storage>(
    storage: S,
    options: WalOptions,
    lock: S::Lock,
) -> Result<(Wal<S>, Recovery), WalError> {
    let file = storage
        .create_zeroed(PREALLOC_NAME, options.segment_size_bytes)
        .map_err(from_io)?;
    let header = SegmentHeader {
        log_id: storage.new_log_id(),
        epoch: 1,
        first_lsn: 1,
        segment_size_bytes: options.segment_size_bytes,
    };
    let mut poison = Poison::default();
    let seg = activate(&storage, file, header, &mut poison)?;
    let recovery = Recovery {
        next_lsn: Lsn(1),
        segments: 1,
        created: true,
        ..Recovery::default()
    };
    Ok((
        Wal::from_recovered(storage, options, vec![seg], 1, lock),
        recovery,
    ))
}
