//! svault's write-ahead log. (Interface stub: the wal work fills this in.)
//!
//! The API below is the contract the runtime codes against; keep these names and
//! signatures, add what you need.

use std::path::{Path, PathBuf};

/// Log sequence number: the position of a record in one log, starting at 1, each exactly previous + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// How a log is laid out on disk.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size of each segment file; a multiple of 4096.
    pub segment_size_bytes: u64,
    /// How `commit` makes records durable (measured choice in the crate docs).
    pub sync_method: SyncMethod,
}

/// How a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMethod {
    /// Records are copied into the mapped segment; commit is `msync(MS_SYNC)` of the dirty pages.
    #[default]
    Msync,
    /// Records are staged in memory; commit is one `pwrite` of the batch plus `fdatasync`.
    PwriteFdatasync,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions { segment_size_bytes: 64 << 20, sync_method: SyncMethod::default() }
    }
}

/// Proof that every record up to `through` is durable: only `Wal::commit` makes one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub through: Lsn,
}

/// What opening a log found.
#[derive(Debug, Clone, Default)]
pub struct Recovery {
    /// First LSN still present in the log (Lsn(0) when empty).
    pub first_lsn: Lsn,
    /// Last valid LSN (Lsn(0) when empty).
    pub last_lsn: Lsn,
    /// A torn tail that was cut off, if any.
    pub torn_tail: Option<TornTail>,
}

/// A torn tail found and cut at open.
#[derive(Debug, Clone)]
pub struct TornTail {
    pub segment: PathBuf,
    pub offset: u64,
    pub bytes_cut: u64,
}

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corruption in {segment} at offset {offset} (lsn {lsn:?}): {reason}")]
    Corruption { segment: PathBuf, offset: u64, lsn: Option<u64>, reason: String },
    #[error("log is poisoned after a failed sync; restart to recover")]
    Poisoned,
    #[error("disk full")]
    DiskFull,
}

/// The log: append records, commit them durably in groups, read them back.
pub struct Wal {}

impl Wal {
    /// Opens (or creates) the log in `dir`, scanning and validating every segment, cutting a torn tail.
    pub fn open(dir: &Path, options: WalOptions) -> Result<(Wal, Recovery), WalError> {
        let _ = (dir, options);
        todo!()
    }
    /// Stages one record; not durable until `commit` returns.
    pub fn append(&mut self, payload: &[u8]) -> Result<Lsn, WalError> {
        let _ = payload;
        todo!()
    }
    /// Makes every appended record durable with one sync.
    pub fn commit(&mut self) -> Result<Committed, WalError> {
        todo!()
    }
    /// The LSN the next append gets.
    pub fn next_lsn(&self) -> Lsn {
        todo!()
    }
    /// Calls `f` for every record with LSN ≥ `from`, in order; the payload slice is 16-byte aligned.
    pub fn read_from<E: From<WalError>>(&self, from: Lsn, f: impl FnMut(Lsn, &[u8]) -> Result<(), E>) -> Result<(), E> {
        let _ = (from, f);
        todo!()
    }
    /// Every record up to this LSN is durable (Lsn(0) when none).
    pub fn durable_lsn(&self) -> Lsn {
        todo!()
    }
    /// Commits what is pending and writes a seal: the next open knows the shutdown was clean.
    pub fn close(self) -> Result<(), WalError> {
        todo!()
    }
    /// Deletes segments whose records are all below `lsn` (after a snapshot covers them).
    pub fn remove_segments_before(&mut self, lsn: Lsn) -> Result<(), WalError> {
        let _ = lsn;
        todo!()
    }
}

/// Snapshot files: written to a temp file, fsynced, renamed, directory fsynced.
pub mod snapshot {
    use super::{Lsn, WalError};
    use std::path::Path;

    /// A snapshot read back and validated.
    pub struct Snapshot {
        pub lsn: Lsn,
        pub bytes: Vec<u8>,
    }
    /// Durably writes a snapshot covering every record up to `lsn`.
    pub fn write(dir: &Path, lsn: Lsn, bytes: &[u8]) -> Result<(), WalError> {
        let _ = (dir, lsn, bytes);
        todo!()
    }
    /// The newest valid snapshot in `dir`, if any.
    pub fn read_latest(dir: &Path) -> Result<Option<Snapshot>, WalError> {
        let _ = dir;
        todo!()
    }
}

/// What `inspect` found in a log directory (read-only; nothing is modified).
#[derive(Debug, Clone, Default)]
pub struct Inspection {
    /// Segment files in log order.
    pub segments: Vec<SegmentInfo>,
    /// Snapshot files, newest first.
    pub snapshots: Vec<SnapshotInfo>,
    /// What `Wal::open` would do: `None` if it would open, or the corruption it would refuse.
    pub refusal: Option<String>,
}

/// One segment file as `inspect` saw it.
#[derive(Debug, Clone, Default)]
pub struct SegmentInfo {
    pub file_name: String,
    pub size_bytes: u64,
    /// `false` when the segment header is unreadable (bad magic, version or checksum).
    pub header_ok: bool,
    pub epoch: u64,
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
    pub file_name: String,
    pub size_bytes: u64,
    pub lsn: Option<Lsn>,
    /// `true` when magic, checksum and LSN all verified.
    pub valid: bool,
}

/// Reads a log directory and reports what is there, without modifying anything.
pub fn inspect(dir: &Path) -> Result<Inspection, WalError> {
    let _ = dir;
    todo!()
}
