//! Segment files: preallocation, mapping, the directory lock. The only module with `unsafe`.
//!
//! A segment is created under a temporary name, reserved with `fallocate` and zero-filled
//! once, in 256 KiB writes (measured on this disk: a durable 4 KiB write into a pre-zeroed
//! file is ~40% cheaper than into a sparse or merely fallocated one; 256 KiB writes do the
//! fill with 64 times fewer system calls than 4 KiB ones), each handed to the device as soon
//! as it is written ([`Paced`]) so the fill never queues 64 MiB ahead of a commit, and at a
//! bounded rate while the log does not need the segment yet (`create_zeroed_paced`). Only
//! then does it get its header and its final name.
//!
//! Mapped files are never truncated or shrunk: a store or load past the end of a file
//! is a SIGBUS, not an errno. The log owns its directory (an exclusive `flock` on
//! `LOCK`); another process truncating a mapped segment behind our back would crash us
//! with SIGBUS, which is why nothing but the log may write there.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use memmap2::{MmapMut, MmapOptions};

use crate::format::PAGE_BYTES;

/// A segment file mapped read-write over its whole (fixed, preallocated) length.
pub struct SegmentMap {
    file: File,
    map: MmapMut,
}

impl SegmentMap {
    /// Maps the first `len` bytes of `file` shared, read-write.
    ///
    /// The caller guarantees the file is at least `len` bytes long (it checks `metadata().len()`
    /// right before) and that every block is allocated (fallocate + zero fill).
    pub fn map(file: File, len: u64) -> io::Result<SegmentMap> {
        let actual = file.metadata()?.len();
        if actual < len {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "segment file shorter than its size",
            ));
        }
        let len_usize =
            usize::try_from(len).map_err(|_| io::Error::other("segment too large to map"))?;
        // SAFETY: `MmapMut` is unsafe because the memory may change or vanish under us if
        // the file is modified or truncated by someone else. The file lies in a directory
        // this process holds an exclusive `flock` on; the log never truncates or shrinks a
        // segment while it is mapped (torn tails are cut by zeroing), and we checked above
        // that the file covers `len` bytes. If another process truncated it anyway, a later
        // access past the new end would raise SIGBUS and kill the process: loud, and no
        // acknowledged record is lost (acknowledged bytes were synced before the ack).
        // Concurrent writes by another process would only change bytes we re-validate
        // (every read path checks framing and checksums and never trusts lengths), so no
        // undefined behaviour in Rust terms results from the bytes themselves.
        let map = unsafe { MmapOptions::new().len(len_usize).map_mut(&file)? };
        Ok(SegmentMap { file, map })
    }

    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.map
    }

    pub fn file(&self) -> &File {
        &self.file
    }

    /// `msync(MS_SYNC)` of the pages covering `[from, to)`: fdatasync semantics over the range.
    pub fn sync_range(&self, from: u64, to: u64) -> io::Result<()> {
        let start = from - from % PAGE_BYTES;
        let len = to.saturating_sub(start);
        if len == 0 {
            return Ok(());
        }
        self.map.flush_range(start as usize, len as usize)
    }

    /// Asks the kernel to read the mapping ahead (best effort).
    pub fn advise_sequential(&self) {
        let _ = self.map.advise(memmap2::Advice::Sequential);
    }
}

/// Reserves `len` bytes for `file` with `fallocate(2)` (no hole, no SIGBUS on a full disk later).
pub fn fallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len)
        .map_err(|_| io::Error::other("segment length overflows off_t"))?;
    loop {
        // SAFETY: `fallocate` reads no memory of ours; the descriptor is valid for the life of `file`.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Evicts the file's clean pages from the page cache (`posix_fadvise(DONTNEED)`), so the
/// next reads come from the disk. Best effort: dirty, locked or mapped pages stay.
pub fn drop_clean_cache(file: &File) -> io::Result<()> {
    // SAFETY: `posix_fadvise` reads no memory of ours; the descriptor is valid for the life of `file`.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// Creates `path` (replacing a stale one), reserves `len` bytes and zero-fills them with
/// large writes, then makes the zeros durable. The file is ready to be mapped.
pub fn create_zeroed(path: &Path, len: u64) -> io::Result<File> {
    create_zeroed_paced(path, len, 0, &AtomicBool::new(true))
}

/// [`create_zeroed`] at no more than `bytes_per_sec` (0: unlimited) until `hurry` is set (see
/// [`Paced::throttled`]; at full speed, a 15 000/s open loop saw p99 43–150 ms from the fills,
/// every few seconds as segments rotated).
pub fn create_zeroed_paced(
    path: &Path,
    len: u64,
    bytes_per_sec: u64,
    hurry: &AtomicBool,
) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)?;
    match fallocate(&file, len) {
        // A file system without fallocate: the zero fill below allocates every block anyway.
        Err(e) if e.raw_os_error() == Some(libc::EOPNOTSUPP) => {}
        other => other?,
    }
    // Paced (see `Paced`): never more than two pieces ahead of a commit's sync.
    let zeros = vec![0u8; PACED_CHUNK_BYTES];
    let mut paced = Paced::new(&file, 0).throttled(bytes_per_sec, hurry);
    let mut off = 0;
    while off < len {
        let n = (len - off).min(PACED_CHUNK_BYTES as u64);
        paced.put(&zeros[..n as usize])?;
        off += n;
    }
    file.sync_all()?;
    Ok(file)
}

/// `file` mapped read-only over its whole length: a large file (a snapshot) read once, in
/// place, from the page cache, instead of copied onto the heap first.
pub(crate) fn map_read_only(file: &File) -> io::Result<memmap2::Mmap> {
    // SAFETY: as for segments (`SegmentMap::open`), the mapped bytes may change or vanish if
    // another process modifies or truncates the file while it is mapped. Snapshot files are
    // written under a temporary name and renamed into place once synced, and svault never
    // writes, truncates or shrinks a file under a final name; a deleted file stays mapped
    // intact. A truncation by someone else would raise SIGBUS on access, loud rather than
    // silent; changed bytes fail the crc and the validation that every reader performs.
    unsafe { memmap2::Mmap::map(file) }
}

/// Bytes written between two writeback steps of a large background write (a segment's zero
/// fill, a snapshot). A commit's flush waits for at most two of them: 1 MiB pieces made
/// commits during a fill take 4–8 ms on the disk measured.
pub(crate) const PACED_CHUNK_BYTES: usize = 256 << 10;

/// A file written front to back in pieces of at most [`PACED_CHUNK_BYTES`], each piece's
/// writeback started as soon as it is written and the one before it waited for, so at most two
/// pieces are dirty or in flight at any time. Not durable by itself: the caller syncs at the
/// end.
///
/// Why: a log commit's `fdatasync` ends with a device flush that waits for every write queued
/// before it. Written whole and then synced, 64 MiB of zeros (or gigabytes of snapshot) sit in
/// the device queue at once and every commit behind them waits for all of it (measured here:
/// 4 KiB commits took up to 44–84 ms while one 64 MiB fill + fsync ran, 24–48 ms without).
/// Paced, a commit waits for two pieces at most; the total written is the same.
pub(crate) struct Paced<'f> {
    file: &'f File,
    at: u64,
    previous: Option<(u64, usize)>,
    throttle: Option<Throttle<'f>>,
}

/// A bound on a background write's rate, lifted when whoever waits for the write asks.
pub(crate) struct Throttle<'f> {
    bytes_per_sec: u64,
    hurry: &'f AtomicBool,
    started: Instant,
    written: u64,
}

impl<'f> Paced<'f> {
    /// The first piece goes at `offset`.
    pub(crate) fn new(file: &'f File, offset: u64) -> Self {
        Paced {
            file,
            at: offset,
            previous: None,
            throttle: None,
        }
    }

    /// At most `bytes_per_sec` (0: no bound) until `hurry` is set, then as fast as the disk
    /// takes it. Why: each log commit's device flush also carries what this write handed the
    /// device since the commit before, so at full speed every commit during it took 4–8 ms
    /// instead of 0.2 ms on the disk measured.
    pub(crate) fn throttled(mut self, bytes_per_sec: u64, hurry: &'f AtomicBool) -> Self {
        self.throttle = (bytes_per_sec > 0).then(|| Throttle {
            bytes_per_sec,
            hurry,
            started: Instant::now(),
            written: 0,
        });
        self
    }

    /// Writes `piece` next, starts its writeback and waits for the piece before it.
    pub(crate) fn put(&mut self, piece: &[u8]) -> io::Result<()> {
        debug_assert!(piece.len() <= PACED_CHUNK_BYTES);
        if piece.is_empty() {
            return Ok(());
        }
        let at = self.at;
        self.file.write_all_at(piece, at)?;
        writeback(self.file, at, piece.len(), libc::SYNC_FILE_RANGE_WRITE)?;
        if let Some((p_at, p_len)) = self.previous {
            writeback(
                self.file,
                p_at,
                p_len,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )?;
        }
        self.previous = Some((at, piece.len()));
        self.at += piece.len() as u64;
        if let Some(t) = &mut self.throttle {
            t.written += piece.len() as u64;
            t.wait();
        }
        Ok(())
    }
}

impl Throttle<'_> {
    /// Waits until a write at `bytes_per_sec` would have got this far, in short naps so that
    /// a hurry is noticed within a few milliseconds.
    fn wait(&self) {
        let due = Duration::from_nanos(
            u64::try_from(
                u128::from(self.written) * 1_000_000_000 / u128::from(self.bytes_per_sec),
            )
            .unwrap_or(u64::MAX),
        );
        while !self.hurry.load(Ordering::Relaxed) {
            let Some(ahead) = due.checked_sub(self.started.elapsed()) else {
                return;
            };
            std::thread::sleep(ahead.min(Duration::from_millis(2)));
        }
    }
}

/// `sync_file_range(2)` over `[offset, offset + len)`: starts and/or waits for the writeback
/// of those pages. Makes nothing durable (no metadata, no device flush); it only shapes when
/// the page cache hands the bytes to the device.
fn writeback(file: &File, offset: u64, len: usize, flags: libc::c_uint) -> io::Result<()> {
    let offset = libc::off64_t::try_from(offset)
        .map_err(|_| io::Error::other("offset overflows off64_t"))?;
    let len =
        libc::off64_t::try_from(len).map_err(|_| io::Error::other("length overflows off64_t"))?;
    loop {
        // SAFETY: `sync_file_range` reads no memory of ours; the descriptor is valid for the
        // life of `file`.
        let rc = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A file system without it: the caller's final sync writes everything anyway.
            Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP) | Some(libc::ESPIPE) => return Ok(()),
            _ => return Err(err),
        }
    }
}

/// An exclusive advisory lock on `<dir>/LOCK`, held while the log is open.
pub struct DirLock {
    _file: File,
}

impl DirLock {
    /// Fails with `WouldBlock` if another `Wal` (in any process) holds the directory.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join("LOCK"))?;
        // SAFETY: `flock` reads no memory of ours; the descriptor is valid for the life of `file`,
        // and the lock is released when `file` is closed.
        let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(DirLock { _file: file })
    }
}

/// fsyncs a directory so that creations, renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paced_writes_land_every_byte_where_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        // Two and a half pieces at an offset: the last piece is short.
        let bytes: Vec<u8> = (0..PACED_CHUNK_BYTES * 5 / 2)
            .map(|i| (i % 251) as u8)
            .collect();
        let mut paced = Paced::new(&file, 4096);
        for piece in bytes.chunks(PACED_CHUNK_BYTES) {
            paced.put(piece).unwrap();
        }
        file.sync_all().unwrap();
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len(), 4096 + bytes.len());
        assert!(back[..4096].iter().all(|b| *b == 0));
        assert_eq!(&back[4096..], &bytes[..]);
        let zeroed = create_zeroed(&dir.path().join("z"), 3 << 20).unwrap();
        assert_eq!(zeroed.metadata().unwrap().len(), 3 << 20);
    }

    /// A fill throttled to 1 MiB/s and hurried after a few pieces still leaves every byte zero.
    #[test]
    fn a_paced_fill_hurried_midway_is_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p");
        std::fs::write(&path, vec![9u8; 1 << 20]).unwrap();
        let hurry = AtomicBool::new(false);
        let len = 5 * PACED_CHUNK_BYTES as u64 / 2;
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(300));
                hurry.store(true, Ordering::Relaxed);
            });
            create_zeroed_paced(&path, len, 1 << 20, &hurry).unwrap();
        });
        let back = std::fs::read(&path).unwrap();
        assert_eq!(back.len() as u64, len);
        assert!(back.iter().all(|b| *b == 0));
    }
}
