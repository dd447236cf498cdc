//! The log's error type.
//!
//! `DiskFull` and `Io` on `append`/`commit` leave the log usable: nothing acknowledged is
//! harmed and the caller may retry once space is back. `Sync` is the one failure that
//! cannot be retried (see [`crate::poison`]): every later call answers `Poisoned`.

use std::io;
use std::path::PathBuf;

/// Errors of the log.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WalError {
    /// An I/O error before any sync failed: nothing acknowledged is harmed; retry is allowed.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Bytes that were acknowledged once are not what was written: start-up must stop.
    #[error("corruption in {segment} at offset {offset} (lsn {lsn:?}): {reason}")]
    Corruption {
        /// The segment (or snapshot) file.
        segment: PathBuf,
        /// Byte offset of the bad spot in that file.
        offset: u64,
        /// The LSN expected at that spot, when known.
        lsn: Option<u64>,
        /// What is wrong, in words.
        reason: String,
    },
    /// A sync failed earlier; nothing more is acknowledged until a restart recovers from disk.
    #[error("log is poisoned after a failed sync; restart to recover")]
    Poisoned,
    /// No space to create the next segment (`ENOSPC`/`EDQUOT`): refuse writes (503), retry later.
    #[error("disk full")]
    DiskFull,
    /// The sync (msync/fdatasync/fsync) that just failed; the log is now poisoned.
    #[error("sync failed, log poisoned: {0}")]
    Sync(std::io::Error),
    /// A payload larger than a segment can hold.
    #[error("record of {len} bytes exceeds the maximum of {max}")]
    RecordTooLarge {
        /// Payload bytes asked for.
        len: u64,
        /// Largest payload the configured segment size allows.
        max: u64,
    },
    /// Another open `Wal` (in this or another process) holds the directory.
    #[error("log directory {0} is locked by another open log")]
    Locked(PathBuf),
    /// `WalOptions` that cannot work (e.g. a segment size that is not a multiple of 4096).
    #[error("invalid options: {0}")]
    InvalidOptions(&'static str),
}

/// Maps `ENOSPC`/`EDQUOT` to `DiskFull`, everything else to `Io`.
pub(crate) fn from_io(e: io::Error) -> WalError {
    match e.raw_os_error() {
        Some(libc::ENOSPC) | Some(libc::EDQUOT) => WalError::DiskFull,
        _ => WalError::Io(e),
    }
}

/// A `Corruption` error with its reason rendered from a typed cause.
pub(crate) fn corruption(
    segment: PathBuf,
    offset: u64,
    lsn: Option<u64>,
    reason: impl std::fmt::Display,
) -> WalError {
    WalError::Corruption {
        segment,
        offset,
        lsn,
        reason: reason.to_string(),
    }
}
