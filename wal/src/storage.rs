//! Where segment files live: the [`Storage`] trait, and [`FileStorage`], the real directory.
//!
//! Why a trait: a crash test that kills a process keeps every written byte in the page
//! cache, so it proves "acknowledged ⇒ written", not "acknowledged ⇒ survives power loss".
//! With the log's I/O behind this trait, [`crate::sim::MemStorage`] can keep a durable and
//! a volatile image of every file and lose, tear or corrupt what a real disk would.
//!
//! The trait is exactly the operations the log performs, no more: a directory of named
//! files, each read and written at offsets, synced whole or by range, and mapped for
//! reading in place. `Wal` is generic over it with [`FileStorage`] as the default, so the
//! real log is monomorphised over the same calls as before (no dynamic dispatch).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use crate::segment::{self, DirLock, SegmentMap};
use crate::WalError;

/// A directory of segment files, as the log uses it.
///
/// Durability contract (what a real file system promises and `MemStorage` enforces): bytes
/// written to a file are durable only after a successful `sync_data`/`sync_range` covering
/// them; a create, rename or remove is durable only after a successful `sync_dir`.
pub trait Storage: Clone + Send + 'static {
    /// An open, not yet mapped file.
    type File: StorageFile;
    /// A file mapped for reading (and, with `SyncMethod::Msync`, writing) in place.
    type Map: StorageMap;
    /// Held while the log is open; dropping it releases the directory.
    type Lock: Send;
    /// `true` when the next segment is zero-filled on a background thread (real disks:
    /// it takes milliseconds); `false` creates it when needed, keeping a run deterministic.
    const BACKGROUND_PREALLOC: bool;

    /// Creates the directory if needed and takes it exclusively ([`WalError::Locked`] if taken).
    fn lock(&self) -> Result<Self::Lock, WalError>;
    /// The path that names `name` in errors and in [`crate::Wal::segment_paths`].
    fn path(&self, name: &str) -> PathBuf;
    /// Names of the segment files (`*.wal`), unsorted.
    fn list_segments(&self) -> io::Result<Vec<String>>;
    /// Names of every file, unsorted (snapshots kept on a storage list theirs with it).
    fn list_files(&self) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> io::Result<Self::File>;
    /// Creates `name` (replacing a stale one) as `len` zero bytes, durable (`sync_data`).
    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<Self::File>;
    /// [`Storage::create_zeroed`] at no more than `bytes_per_sec` (0: no limit) until `hurry`
    /// is set, then as fast as the disk takes it (see `WalOptions::background_bytes_per_sec`).
    fn create_zeroed_paced(
        &self,
        name: &str,
        len: u64,
        bytes_per_sec: u64,
        hurry: &AtomicBool,
    ) -> io::Result<Self::File> {
        let _ = (bytes_per_sec, hurry);
        self.create_zeroed(name, len)
    }
    /// Renames a file (durable after `sync_dir`).
    fn rename(&self, from: &str, to: &str) -> io::Result<()>;
    /// Removes a file (durable after `sync_dir`); `NotFound` when there is none.
    fn remove(&self, name: &str) -> io::Result<()>;
    /// Makes creations, renames and removals durable.
    fn sync_dir(&self) -> io::Result<()>;
    /// Maps the first `len` bytes of `file`, which must be at least that long.
    fn map(&self, file: Self::File, len: u64) -> io::Result<Self::Map>;
    /// The id of a new log (random; a simulated disk draws it from its seed).
    fn new_log_id(&self) -> u64 {
        crate::recovery::random_log_id()
    }
}

/// An open file of a [`Storage`], before it is mapped.
pub trait StorageFile: Send + 'static {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// `true` when the file holds no bytes.
    fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }
    /// Reads exactly `buf.len()` bytes at `offset` (`UnexpectedEof` past the end).
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    /// Writes all of `buf` at `offset` (not durable until synced).
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every written byte durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Extends the file with zeros to `len` bytes, allocated (`fallocate`).
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// Forgets cached pages that are clean, so later reads see what the disk holds. After a
    /// failed writeback Linux keeps the unwritten pages cached and marks them clean; a new
    /// process would read them as if they were durable, and its fsync would not write them.
    fn drop_clean_cache(&mut self) -> io::Result<()>;
}

/// A mapped file of a [`Storage`]: the log reads records in place from [`StorageMap::bytes`].
pub trait StorageMap: Send + 'static {
    /// The whole mapped length, as the page cache sees it (durable or not).
    fn bytes(&self) -> &[u8];
    /// The same bytes, writable (stores are not durable until `sync_range`).
    fn bytes_mut(&mut self) -> &mut [u8];
    /// Writes all of `buf` at `offset` through the file (`pwrite`), visible in `bytes`.
    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;
    /// Makes every written byte of the file durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
    /// Makes the pages covering `[from, to)` durable (`msync(MS_SYNC)`).
    fn sync_range(&mut self, from: u64, to: u64) -> io::Result<()>;
    /// Hints that the map is about to be read front to back (best effort).
    fn advise_sequential(&self) {}
}

/// The real backend: segment files in a directory, mapped with `mmap`. The default.
#[derive(Debug, Clone)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    /// Segments in `dir` (created on open if missing).
    pub fn new(dir: &Path) -> FileStorage {
        FileStorage {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Segment files (`*.wal`) in `dir`, unsorted, as full paths.
pub(crate) fn list_segment_paths(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name.to_string_lossy().ends_with(".wal") && entry.file_type()?.is_file() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

impl Storage for FileStorage {
    type File = File;
    type Map = SegmentMap;
    type Lock = DirLock;
    const BACKGROUND_PREALLOC: bool = true;

    fn lock(&self) -> Result<DirLock, WalError> {
        std::fs::create_dir_all(&self.dir)?;
        DirLock::acquire(&self.dir).map_err(|e| match e.kind() {
            io::ErrorKind::WouldBlock => WalError::Locked(self.dir.clone()),
            _ => WalError::Io(e),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn list_segments(&self) -> io::Result<Vec<String>> {
        Ok(list_segment_paths(&self.dir)?
            .into_iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }

    fn list_files(&self) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        Ok(out)
    }

    fn open(&self, name: &str) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.dir.join(name))
    }

    fn create_zeroed(&self, name: &str, len: u64) -> io::Result<File> {
        segment::create_zeroed(&self.dir.join(name), len)
    }

    fn create_zeroed_paced(
        &self,
        name: &str,
        len: u64,
        bytes_per_sec: u64,
        hurry: &AtomicBool,
    ) -> io::Result<File> {
        segment::create_zeroed_paced(&self.dir.join(name), len, bytes_per_sec, hurry)
    }

    fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        std::fs::rename(self.dir.join(from), self.dir.join(to))
    }

    fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.dir.join(name))
    }

    fn sync_dir(&self) -> io::Result<()> {
        segment::sync_dir(&self.dir)
    }

    fn map(&self, file: File, len: u64) -> io::Result<SegmentMap> {
        SegmentMap::map(file, len)
    }
}

impl StorageFile for File {
    fn len(&self) -> io::Result<u64> {
        Ok(self.metadata()?.len())
    }

    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        FileExt::read_exact_at(self, buf, offset)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self, buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        File::sync_data(self)
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        segment::fallocate(self, len)
    }

    fn drop_clean_cache(&mut self) -> io::Result<()> {
        segment::drop_clean_cache(self)
    }
}

impl StorageMap for SegmentMap {
    #[inline]
    fn bytes(&self) -> &[u8] {
        SegmentMap::bytes(self)
    }

    #[inline]
    fn bytes_mut(&mut self) -> &mut [u8] {
        SegmentMap::bytes_mut(self)
    }

    fn write_all_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        FileExt::write_all_at(self.file(), buf, offset)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file().sync_data()
    }

    fn sync_range(&mut self, from: u64, to: u64) -> io::Result<()> {
        SegmentMap::sync_range(self, from, to)
    }

    fn advise_sequential(&self) {
        SegmentMap::advise_sequential(self)
    }
}
