//! The log handle: append, group commit, rotation, reading back, removing old segments.
//!
//! Invariants the writer keeps (and the recovery scan relies on):
//! - a batch starts on a page boundary and its first record carries `FLAG_BATCH_START`;
//! - nothing is written into a batch before every earlier byte of the log was synced,
//!   so a durable batch-start record proves everything before it was durable;
//! - after a commit the write position moves to the next page: acknowledged sectors are
//!   never written again;
//! - a segment is left only after its pending records were synced, and records never
//!   span segments.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crate::error::{corruption, from_io};
use crate::format::{
    align_up, encode_record, read_slot, record_size, SegmentHeader, Slot, FLAG_BATCH_START,
    FLAG_SEAL, PAGE_BYTES, PAYLOAD_MAX_BYTES, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};
use crate::poison::Poison;
use crate::storage::{FileStorage, Storage, StorageFile, StorageMap};
use crate::{Committed, Lsn, SyncMethod, WalError, WalOptions, WalStats};

/// The next segment's preallocation starts once the active one is 1/8 full: early enough
/// that zero-filling 64 MiB finishes before a 1 GB/s writer needs it, late enough that a
/// log opened and closed at once (tests, tools) does not zero a second segment.
const PREALLOC_START_DIVISOR: u64 = 8;

/// Name of the segment being preallocated in the background.
pub(crate) const PREALLOC_NAME: &str = "next-segment.wal.tmp";

/// File name of a segment: epoch first so names sort in log order, then its first LSN.
pub(crate) fn segment_name(h: &SegmentHeader) -> String {
    format!("{:010}-{:020}.wal", h.epoch, h.first_lsn)
}

/// One mapped segment file.
pub(crate) struct Segment<M> {
    pub name: String,
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub map: M,
    /// Offset just past the last durable record (recovered, synced at rotation, or committed).
    pub durable_end: u64,
}

/// The log: append records, commit them durably in groups, read them back.
///
/// Single-threaded by design: the shard thread that owns it is the only writer, and
/// `commit` blocks in msync, so it must never run on an async executor's worker.
///
/// `S` is where the segments live: real files ([`FileStorage`], the default) or, in
/// tests, a simulated disk ([`crate::sim::MemStorage`]).
pub struct Wal<S: Storage = FileStorage> {
    storage: S,
    options: WalOptions,
    /// Sorted by epoch; never empty; the last one is active.
    segments: Vec<Segment<S::Map>>,
    next_lsn: u64,
    durable_lsn: u64,
    /// Write position in the active segment.
    pos: u64,
    /// Page-aligned offset where the uncommitted batch starts in the active segment.
    batch_start: u64,
    /// `PwriteFdatasync` only: the bytes of `[batch_start, pos)`.
    staging: Vec<u8>,
    poison: Poison,
    prealloc: Option<Prealloc<S::File>>,
    stats: WalStats,
    _lock: S::Lock,
    #[cfg(any(test, svault_faults))]
    faults: Faults,
}

/// Injected failures for tests (disk full at segment creation, failed syncs).
#[cfg(any(test, svault_faults))]
#[derive(Debug, Default)]
struct Faults {
    commit_sync_fails: bool,
    rotation_sync_fails: bool,
    #[cfg(test)]
    prealloc_enospc: bool,
}

/// A failure a test can make the log suffer (only in builds with `cfg(svault_faults)`, which
/// svault's product never has).
#[cfg(svault_faults)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The next commit's batch is lost and its sync reports EIO, as a dying disk would.
    CommitSync,
    /// The next segment rotation (inside `append`) fails its sync with EIO: the pending batch,
    /// if any, is lost, and the record being appended is refused.
    RotationSync,
}

/// The next segment being zero-filled: on a thread (real disks), or created when needed.
enum Prealloc<F> {
    /// Filling in the background; setting the flag makes it finish at full speed.
    Thread(JoinHandle<io::Result<F>>, Arc<AtomicBool>),
    OnDemand,
}

impl<F> Prealloc<F> {
    /// Asks a background fill to finish as fast as the disk allows (the log needs it soon).
    fn hurry(&self) {
        if let Prealloc::Thread(_, hurry) = self {
            hurry.store(true, Ordering::Relaxed);
        }
    }
}

/// Waits for a background fill, hurried first (the log needs it now). `None`: it panicked.
fn hurry_and_join<F>(fill: JoinHandle<io::Result<F>>, hurry: &AtomicBool) -> Option<io::Result<F>> {
    hurry.store(true, Ordering::Relaxed);
    fill.join().ok()
}

impl Wal {
    /// Moves segments whose records are all below `lsn` (after a snapshot covers them) into
    /// `archive_dir`, keeping the whole history for point-in-time replay, reports and audits.
    /// The file keeps its name; both directories are fsynced. Returns the segments moved.
    pub fn archive_segments_before(
        &mut self,
        lsn: Lsn,
        archive_dir: &Path,
    ) -> Result<usize, WalError> {
        let mut moved = 0;
        while self.segments.len() > 1
            && self
                .segments
                .get(1)
                .is_some_and(|s| s.header.first_lsn <= lsn.0)
        {
            if moved == 0 {
                std::fs::create_dir_all(archive_dir)?;
            }
            let path = self
                .segments
                .first()
                .map(|s| s.path.clone())
                .unwrap_or_default();
            let name = path
                .file_name()
                .map(|n| n.to_os_string())
                .unwrap_or_default();
            std::fs::rename(&path, archive_dir.join(name))?;
            self.segments.remove(0);
            moved += 1;
        }
        if moved > 0 {
            crate::segment::sync_dir(archive_dir)?;
            crate::segment::sync_dir(self.storage.dir())?;
        }
        Ok(moved)
    }
}

impl<S: Storage> Wal<S> {
    pub(crate) fn from_recovered(
        storage: S,
        options: WalOptions,
        segments: Vec<Segment<S::Map>>,
        next_lsn: u64,
        lock: S::Lock,
    ) -> Wal<S> {
        let pos = segments.last().map_or(SEGMENT_HEADER_BYTES, |s| {
            align_up(s.durable_end, PAGE_BYTES)
        });
        Wal {
            storage,
            options,
            segments,
            next_lsn,
            durable_lsn: next_lsn.saturating_sub(1),
            pos,
            batch_start: pos,
            staging: Vec::new(),
            poison: Poison::default(),
            prealloc: None,
            stats: WalStats::default(),
            _lock: lock,
            #[cfg(any(test, svault_faults))]
            faults: Faults::default(),
        }
    }

    /// Stages one record; not durable until `commit` returns.
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, WalError> {
        self.poison.check()?;
        let len = payload.len() as u64;
        let max = max_payload(self.options.segment_size_bytes);
        if len > max {
            return Err(WalError::RecordTooLarge { len, max });
        }
        if self.pos + record_size(len) > self.active().header.segment_size_bytes {
            self.rotate()?;
        }
        let lsn = self.next_lsn;
        self.stage(lsn, 0, payload)?;
        self.next_lsn += 1;
        let size = self.active().header.segment_size_bytes;
        if self.prealloc.is_none() && self.pos > size / PREALLOC_START_DIVISOR {
            self.start_prealloc();
        } else if self.pos > size / 2 {
            if let Some(p) = &self.prealloc {
                p.hurry();
            }
        }
        Ok(Lsn(lsn))
    }

    /// Makes every appended record durable with one sync.
    pub fn commit(&mut self) -> Result<Committed, WalError> {
        self.poison.check()?;
        let last = self.next_lsn - 1;
        if last > self.durable_lsn {
            #[cfg(any(test, svault_faults))]
            if std::mem::take(&mut self.faults.commit_sync_fails) {
                return Err(self.injected_eio());
            }
            if self.pos != self.batch_start {
                self.sync_batch()?;
            }
            self.durable_lsn = last;
        }
        Ok(Committed::new(Lsn(self.durable_lsn)))
    }

    /// The LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        Lsn(self.next_lsn)
    }

    /// Every record up to this LSN is durable (Lsn(0) when none).
    pub fn durable_lsn(&self) -> Lsn {
        Lsn(self.durable_lsn)
    }

    /// Commits what is pending and writes a seal: the next open knows the shutdown was clean,
    /// and a damaged record in the last batch is then refused instead of cut as a torn tail.
    pub fn close(mut self) -> Result<(), WalError> {
        self.commit()?;
        if self.pos + RECORD_HEADER_BYTES > self.active().header.segment_size_bytes {
            // No room for the seal: it opens the next segment, which vouches for this one.
            self.rotate()?;
        }
        self.stage(self.durable_lsn, FLAG_SEAL, &[])?;
        self.sync_batch()?;
        Ok(())
    }

    /// Calls `f` for every durable record with LSN ≥ `from`, in order; the payload slice is
    /// 16-byte aligned and borrowed from the map (no allocation per record).
    ///
    /// Only committed (or recovered) records are visited. Every checksum is verified again;
    /// a mismatch (memory or disk changed since open) is `WalError::Corruption`.
    pub fn read_from<E: From<WalError>>(
        &self,
        from: Lsn,
        mut f: impl FnMut(Lsn, &[u8]) -> Result<(), E>,
    ) -> Result<(), E> {
        let from = from.0.max(1);
        if from > self.durable_lsn {
            return Ok(());
        }
        let start = self
            .segments
            .partition_point(|s| s.header.first_lsn <= from)
            .saturating_sub(1);
        for seg in self.segments.iter().skip(start) {
            if seg.header.first_lsn > self.durable_lsn {
                break;
            }
            read_segment(seg, from, self.durable_lsn, &mut f)?;
        }
        Ok(())
    }

    /// Deletes segments whose records are all below `lsn` (after a snapshot covers them).
    /// The active segment is never deleted.
    pub fn remove_segments_before(&mut self, lsn: Lsn) -> Result<(), WalError> {
        let mut removed = false;
        while self.segments.len() > 1
            && self
                .segments
                .get(1)
                .is_some_and(|s| s.header.first_lsn <= lsn.0)
        {
            let name = self
                .segments
                .first()
                .map(|s| s.name.clone())
                .unwrap_or_default();
            self.storage.remove(&name)?;
            self.segments.remove(0);
            removed = true;
        }
        if removed {
            self.storage.sync_dir()?;
        }
        Ok(())
    }

    /// Segment files currently held by the log, oldest first.
    pub fn segment_paths(&self) -> Vec<PathBuf> {
        self.segments.iter().map(|s| s.path.clone()).collect()
    }

    /// Rotations and preallocations since open (see [`WalStats`]).
    pub fn stats(&self) -> WalStats {
        self.stats
    }

    /// `true` once a sync failed; see [`WalError::Poisoned`].
    pub fn is_poisoned(&self) -> bool {
        self.poison.is_set()
    }

    fn active(&self) -> &Segment<S::Map> {
        // `segments` is never empty: open creates or finds at least one, removal keeps the last.
        #[allow(clippy::indexing_slicing)]
        &self.segments[self.segments.len() - 1]
    }

    fn active_mut(&mut self) -> &mut Segment<S::Map> {
        let n = self.segments.len() - 1;
        #[allow(clippy::indexing_slicing)]
        &mut self.segments[n]
    }

    /// Encodes a record at `pos` (into the map, or into staging) and advances `pos`.
    fn stage(&mut self, lsn: u64, flags: u32, payload: &[u8]) -> Result<(), WalError> {
        let size = record_size(payload.len() as u64);
        let flags = if self.pos == self.batch_start {
            flags | FLAG_BATCH_START
        } else {
            flags
        };
        let (pos, batch_start) = (self.pos, self.batch_start);
        let epoch = self.active().header.epoch;
        debug_assert!(pos + size <= self.active().header.segment_size_bytes);
        let ok = match self.options.sync_method {
            SyncMethod::Msync => {
                let dst = self
                    .active_mut()
                    .map
                    .bytes_mut()
                    .get_mut(pos as usize..(pos + size) as usize);
                dst.is_some_and(|d| encode_record(d, epoch, lsn, flags, payload))
            }
            SyncMethod::PwriteFdatasync => {
                let off = (pos - batch_start) as usize;
                self.staging.resize(off + size as usize, 0);
                let dst = self.staging.get_mut(off..off + size as usize);
                dst.is_some_and(|d| encode_record(d, epoch, lsn, flags, payload))
            }
        };
        if !ok {
            return Err(WalError::Io(io::Error::other(
                "record does not fit the segment (internal error)",
            )));
        }
        self.pos += size;
        Ok(())
    }

    /// Makes `[batch_start, pos)` of the active segment durable and starts the next batch
    /// on the next page. Any failure poisons the log.
    fn sync_batch(&mut self) -> Result<(), WalError> {
        let (from, to) = (self.batch_start, align_up(self.pos, PAGE_BYTES));
        let result = match self.options.sync_method {
            SyncMethod::Msync => self.active_mut().map.sync_range(from, to),
            SyncMethod::PwriteFdatasync => {
                self.staging.resize((to - from) as usize, 0);
                let n = self.segments.len() - 1;
                match self.segments.get_mut(n) {
                    Some(seg) => seg
                        .map
                        .write_all_at(&self.staging, from)
                        .and_then(|()| seg.map.sync_data()),
                    None => Err(io::Error::other("no active segment (internal error)")),
                }
            }
        };
        self.staging.clear();
        if let Err(e) = result {
            return Err(self.poison.set(e));
        }
        let pos = self.pos;
        self.active_mut().durable_end = pos;
        self.pos = to;
        self.batch_start = to;
        Ok(())
    }

    /// An injected sync failure: the pending batch never reaches the file (with `Msync` its
    /// bytes are already in the mapped page cache and may still be written back, as after a
    /// real EIO) and the log is poisoned.
    #[cfg(any(test, svault_faults))]
    fn injected_eio(&mut self) -> WalError {
        self.staging.clear();
        self.poison.set(io::Error::from_raw_os_error(libc::EIO))
    }

    /// Test hook (`cfg(svault_faults)` only): arms one failure, so callers can test what a
    /// dying disk does to them. Each fires once, at the next sync of its kind.
    #[cfg(svault_faults)]
    pub fn inject(&mut self, fault: Fault) {
        match fault {
            Fault::CommitSync => self.faults.commit_sync_fails = true,
            Fault::RotationSync => self.faults.rotation_sync_fails = true,
        }
    }

    fn start_prealloc(&mut self) {
        self.stats.preallocations += 1;
        if !S::BACKGROUND_PREALLOC {
            self.prealloc = Some(Prealloc::OnDemand);
            return;
        }
        let storage = self.storage.clone();
        let size = self.options.segment_size_bytes;
        let rate = self.options.background_bytes_per_sec;
        let hurry = Arc::new(AtomicBool::new(false));
        let hurry_fill = hurry.clone();
        self.prealloc = Some(Prealloc::Thread(
            std::thread::spawn(move || {
                storage.create_zeroed_paced(PREALLOC_NAME, size, rate, &hurry_fill)
            }),
            hurry,
        ));
    }

    /// Moves to a fresh segment. Errors before the old segment is synced (no space for the
    /// new one) leave the log exactly as it was.
    fn rotate(&mut self) -> Result<(), WalError> {
        let started = std::time::Instant::now();
        let r = self.rotate_inner();
        self.stats.rotations += 1;
        self.stats.rotation_us += started.elapsed().as_micros() as u64;
        r
    }

    fn rotate_inner(&mut self) -> Result<(), WalError> {
        if self.prealloc.is_none() {
            self.start_prealloc();
        }
        let joined = match self.prealloc.take() {
            Some(Prealloc::Thread(h, hurry)) => hurry_and_join(h, &hurry),
            Some(Prealloc::OnDemand) => Some(
                self.storage
                    .create_zeroed(PREALLOC_NAME, self.options.segment_size_bytes),
            ),
            None => None,
        };
        #[cfg(test)]
        if self.faults.prealloc_enospc {
            return Err(from_io(io::Error::from_raw_os_error(libc::ENOSPC)));
        }
        #[cfg(any(test, svault_faults))]
        if std::mem::take(&mut self.faults.rotation_sync_fails) {
            return Err(self.injected_eio());
        }
        let file = match joined {
            Some(Ok(file)) => file,
            Some(Err(e)) => return Err(from_io(e)),
            None => {
                return Err(WalError::Io(io::Error::other(
                    "segment preallocation thread died",
                )))
            }
        };
        if self.pos != self.batch_start {
            self.sync_batch()?;
        }
        let prev = self.active().header;
        let header = SegmentHeader {
            log_id: prev.log_id,
            epoch: prev.epoch + 1,
            first_lsn: self.next_lsn,
            segment_size_bytes: self.options.segment_size_bytes,
        };
        let seg = activate(&self.storage, file, header, &mut self.poison)?;
        self.segments.push(seg);
        self.pos = SEGMENT_HEADER_BYTES;
        self.batch_start = SEGMENT_HEADER_BYTES;
        Ok(())
    }
}

impl<S: Storage> Drop for Wal<S> {
    fn drop(&mut self) {
        // Let a running preallocation finish, so a reopen in this process never races it.
        if let Some(Prealloc::Thread(h, hurry)) = self.prealloc.take() {
            let _ = hurry_and_join(h, &hurry);
        }
    }
}

// The runtime moves a `Wal` into its shard thread.
const _: fn() = || {
    fn assert_send<T: Send>() {}
    assert_send::<Wal>();
};

/// Largest payload a segment of `segment_size_bytes` can hold.
pub(crate) fn max_payload(segment_size_bytes: u64) -> u64 {
    (segment_size_bytes - SEGMENT_HEADER_BYTES - RECORD_HEADER_BYTES).min(PAYLOAD_MAX_BYTES)
}

/// Gives a zero-filled preallocated file its header and final name, durably.
/// A failed sync poisons; a failed rename leaves the log as it was.
pub(crate) fn activate<S: Storage>(
    storage: &S,
    mut file: S::File,
    header: SegmentHeader,
    poison: &mut Poison,
) -> Result<Segment<S::Map>, WalError> {
    let mut page = vec![0u8; SEGMENT_HEADER_BYTES as usize];
    let encoded = header.encode();
    if let Some(dst) = page.get_mut(..encoded.len()) {
        dst.copy_from_slice(&encoded);
    }
    file.write_all_at(&page, 0).map_err(from_io)?;
    file.sync_data().map_err(|e| poison.set(e))?;
    let name = segment_name(&header);
    storage.rename(PREALLOC_NAME, &name).map_err(from_io)?;
    storage.sync_dir().map_err(|e| poison.set(e))?;
    let map = storage.map(file, header.segment_size_bytes)?;
    Ok(Segment {
        path: storage.path(&name),
        name,
        header,
        map,
        durable_end: SEGMENT_HEADER_BYTES,
    })
}

/// Visits the records of one segment with `from ≤ lsn ≤ through`.
fn read_segment<M: StorageMap, E: From<WalError>>(
    seg: &Segment<M>,
    from: u64,
    through: u64,
    f: &mut impl FnMut(Lsn, &[u8]) -> Result<(), E>,
) -> Result<(), E> {
    let bytes = seg.map.bytes();
    let epoch = seg.header.epoch;
    let mut pos = SEGMENT_HEADER_BYTES;
    let mut expected = seg.header.first_lsn;
    while pos < seg.durable_end && expected <= through {
        // Records below `from` are only skipped: their checksums were verified at open.
        match read_slot(bytes, pos, epoch, expected >= from) {
            Slot::Zero => {
                let next = align_up(pos + 1, PAGE_BYTES);
                if pos % PAGE_BYTES == 0 {
                    let e = corruption(
                        seg.path.clone(),
                        pos,
                        Some(expected),
                        "unexpected end of records",
                    );
                    return Err(E::from(e));
                }
                pos = next;
            }
            Slot::Bad(reason) => {
                return Err(E::from(corruption(
                    seg.path.clone(),
                    pos,
                    Some(expected),
                    reason,
                )))
            }
            Slot::Record(r) => {
                if r.flags & FLAG_SEAL == 0 {
                    if r.lsn != expected {
                        let reason = crate::format::BadRecord::LsnGap {
                            expected,
                            found: r.lsn,
                        };
                        return Err(E::from(corruption(
                            seg.path.clone(),
                            pos,
                            Some(expected),
                            reason,
                        )));
                    }
                    if r.lsn >= from {
                        f(Lsn(r.lsn), r.payload)?;
                    }
                    expected += 1;
                }
                pos += r.size;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn records(log: &Wal) -> Vec<(u64, Vec<u8>)> {
        let mut out = Vec::new();
        log.read_from(Lsn(1), |l, p| -> Result<(), WalError> {
            out.push((l.0, p.to_vec()));
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn a_failed_sync_poisons_for_good() {
        for method in [SyncMethod::Msync, SyncMethod::PwriteFdatasync] {
            let dir = tempfile::tempdir().unwrap();
            let opts = WalOptions {
                segment_size_bytes: 16 << 10,
                sync_method: method,
                ..WalOptions::default()
            };
            let (mut log, _) = Wal::open(dir.path(), opts.clone()).unwrap();
            log.append(b"acked").unwrap();
            log.commit().unwrap();
            log.append(b"lost").unwrap();
            log.faults.commit_sync_fails = true;
            assert!(matches!(log.commit(), Err(WalError::Sync(_))));
            assert!(log.is_poisoned());
            // Never retried: every later call fails fast, even though syncs would work again.
            assert!(matches!(log.commit(), Err(WalError::Poisoned)));
            assert!(matches!(log.append(b"more"), Err(WalError::Poisoned)));
            assert_eq!(log.durable_lsn(), Lsn(1));
            drop(log);
            let (log, rec) = Wal::open(dir.path(), opts).unwrap();
            assert!(rec.last_lsn >= Lsn(1));
            assert_eq!(records(&log).first(), Some(&(1, b"acked".to_vec())));
        }
    }

    /// A fill paced at 1 byte a second would take a day: the log must hurry it when half the
    /// active segment is used, at every rotation and when it closes, or this never ends.
    #[test]
    fn a_throttled_segment_fill_never_holds_up_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size_bytes: 64 << 10,
            sync_method: SyncMethod::PwriteFdatasync,
            background_bytes_per_sec: 1,
        };
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let path = dir.path().to_path_buf();
        let o = opts.clone();
        std::thread::spawn(move || {
            let (mut log, _) = Wal::open(&path, o).unwrap();
            let rec = vec![5u8; 1000];
            // Past 1/8 of the segment: the fill starts, throttled.
            for _ in 0..10 {
                log.append(&rec).unwrap();
            }
            log.commit().unwrap();
            assert!(matches!(log.prealloc, Some(Prealloc::Thread(..))));
            // Past half: the fill is hurried and ends without a rotation.
            for _ in 0..25 {
                log.append(&rec).unwrap();
            }
            log.commit().unwrap();
            if let Some(Prealloc::Thread(h, _)) = &log.prealloc {
                while !h.is_finished() {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
            }
            assert_eq!(log.stats().rotations, 0);
            // Records larger than half a segment: each rotation waits for a fill that nothing
            // hurried before it.
            let big = vec![6u8; 40 << 10];
            for _ in 0..4 {
                log.append(&big).unwrap();
                log.commit().unwrap();
            }
            assert_eq!(log.stats().rotations, 4, "{:?}", log.stats());
            // Closing while the fill the last record started runs, throttled.
            assert!(matches!(log.prealloc, Some(Prealloc::Thread(..))));
            drop(log);
            done_tx.send(()).unwrap();
        });
        assert!(
            done_rx
                .recv_timeout(std::time::Duration::from_secs(60))
                .is_ok(),
            "the log waited for a throttled fill (or failed: see the thread's panic)"
        );
        let (log, rec) = Wal::open(dir.path(), opts).unwrap();
        assert_eq!(rec.last_lsn, Lsn(39));
        assert_eq!(records(&log).len(), 39);
    }

    #[test]
    fn a_failed_sync_at_rotation_loses_the_pending_batch_and_poisons() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_size_bytes: 8192,
            sync_method: SyncMethod::PwriteFdatasync,
            ..WalOptions::default()
        };
        let (mut log, _) = Wal::open(dir.path(), opts.clone()).unwrap();
        let rec = vec![3u8; 1000];
        assert_eq!(log.append(&rec).unwrap(), Lsn(1));
        log.commit().unwrap();
        assert_eq!(log.append(&rec).unwrap(), Lsn(2));
        log.faults.rotation_sync_fails = true;
        let mut refused = None;
        for _ in 0..8 {
            if let Err(e) = log.append(&rec) {
                refused = Some(e);
                break;
            }
        }
        assert!(matches!(refused, Some(WalError::Sync(_))), "{refused:?}");
        assert!(matches!(log.commit(), Err(WalError::Poisoned)));
        assert_eq!(log.durable_lsn(), Lsn(1));
        drop(log);
        let (log, rec_found) = Wal::open(dir.path(), opts).unwrap();
        assert_eq!(
            rec_found.last_lsn,
            Lsn(1),
            "the uncommitted batch never reached the file"
        );
        assert_eq!(records(&log), vec![(1, rec.clone())]);
    }

    #[test]
    fn disk_full_at_segment_creation_harms_nothing() {
        for method in [SyncMethod::Msync, SyncMethod::PwriteFdatasync] {
            let dir = tempfile::tempdir().unwrap();
            let opts = WalOptions {
                segment_size_bytes: 8192,
                sync_method: method,
                ..WalOptions::default()
            };
            let (mut log, _) = Wal::open(dir.path(), opts.clone()).unwrap();
            let big = vec![7u8; 3000];
            log.append(&big).unwrap();
            log.commit().unwrap();
            log.faults.prealloc_enospc = true;
            // The next record needs a new segment: refused, typed, and nothing changes.
            assert!(matches!(log.append(&big), Err(WalError::DiskFull)));
            assert!(matches!(log.append(&big), Err(WalError::DiskFull)));
            assert!(!log.is_poisoned());
            assert_eq!(log.next_lsn(), Lsn(2));
            assert_eq!(log.commit().unwrap().through, Lsn(1));
            // Space is back: the log goes on.
            log.faults.prealloc_enospc = false;
            assert_eq!(log.append(&big).unwrap(), Lsn(2));
            assert_eq!(log.commit().unwrap().through, Lsn(2));
            drop(log);
            let (log, rec) = Wal::open(dir.path(), opts).unwrap();
            assert_eq!(rec.last_lsn, Lsn(2));
            assert_eq!(records(&log), vec![(1, big.clone()), (2, big.clone())]);
        }
    }
}
