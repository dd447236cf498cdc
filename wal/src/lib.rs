//! svault's write-ahead log: memory-mapped segments, 16-byte aligned framing, group
//! commit, a recovery scan that cuts torn tails and refuses corruption, snapshot files.
//!
//! The log knows bytes only, no domain. One thread owns a `Wal` (the shard thread): it
//! appends any number of records, then one [`Wal::commit`] makes them all durable with a
//! single sync and returns a [`Committed`] proof; only that proof may trigger replies.
//!
//! ```
//! # fn main() -> Result<(), wal::WalError> {
//! let dir = tempfile::tempdir()?;
//! let opts = wal::WalOptions { segment_size_bytes: 1 << 20, ..Default::default() };
//! let (mut log, recovery) = wal::Wal::open(dir.path(), opts.clone())?;
//! assert_eq!(recovery.last_lsn, wal::Lsn(0));
//! let a = log.append(b"top_up card=7 amount=1000")?;
//! let b = log.append(b"spend card=7 amount=250")?;
//! let done = log.commit()?; // one sync for both
//! assert!(done.covers(a) && done.covers(b));
//! drop(log);
//!
//! let (log, recovery) = wal::Wal::open(dir.path(), opts)?;
//! assert_eq!(recovery.last_lsn, b);
//! let mut seen = 0;
//! log.read_from(wal::Lsn(1), |_lsn, payload| -> Result<(), wal::WalError> {
//!     assert_eq!(payload.as_ptr() as usize % 16, 0); // rkyv can access it in place
//!     seen += 1;
//!     Ok(())
//! })?;
//! assert_eq!(seen, 2);
//! # Ok(()) }
//! ```
//!
//! # Restart, in four steps
//!
//! 1. `let (log, recovery) = Wal::open(dir, options)?;` refuses corruption, cuts a torn tail.
//! 2. `snapshot::read_latest(dir)?` gives the state image covering records up to `snap.lsn`.
//! 3. `log.read_from(Lsn(snap.lsn.0 + 1), |lsn, payload| ...)` replays the rest in place,
//!    without an allocation per record.
//! 4. After each new snapshot, `log.remove_segments_before(snapshot::keep_log_from(dir)?)`
//!    keeps the log replayable from both kept snapshots.
//!
//! # How a commit reaches the disk
//!
//! Segments are memory-mapped: recovery and replay read records in place from the map.
//! Appends go to a staging buffer, and `commit` is one `pwrite` of the batch (padded to
//! the next 4 KiB boundary, so no later write touches a sector holding acknowledged
//! bytes) followed by one `fdatasync` ([`SyncMethod::PwriteFdatasync`], the default).
//! The alternative, [`SyncMethod::Msync`], copies records straight into the map and
//! commits with `msync(MS_SYNC)` over the dirty pages. Measured on this disk (2 shared
//! cores, ext4 on virtio; `bench/RESULTS.md`, "## wal"):
//! - a one-record commit costs the same with either, and the same as a raw 4 KiB
//!   pwrite+fdatasync or store+msync probe run interleaved with it: the device flush
//!   dominates;
//! - appending costs about half the CPU with staging (43 vs 89 ns per 64-byte record):
//!   stores into the map take a write fault on every fresh page;
//! - big batches commit faster with pwrite+fdatasync (4096 records: ~4.1 vs ~5.8 ms),
//!   as an earlier probe found (~2.7× cheaper per MiB at 64 KiB).
//!
//! That earlier quiet-disk probe measured one dirty 4 KiB page at ~71 µs with msync vs
//! ~119 µs with pwrite+fdatasync; if single-request latency on an idle disk matters more
//! than throughput, choose `Msync`. Both write the same bytes, and each reads the other's logs.
//!
//! # Failure model
//!
//! - kill -9 / power loss: only the batch being committed can be torn; recovery cuts it
//!   (by zeroing, never by truncating a mapped file) and reports it in [`Recovery`].
//! - A bad record with a later committed batch behind it is corruption:
//!   [`WalError::Corruption`] names the segment, offset and LSN; nothing is skipped.
//! - The first failed sync poisons the log ([`WalError::Poisoned`]); no sync is retried.
//! - No space for the next segment is [`WalError::DiskFull`]; the log goes on once space is back.
//!
//! The byte layout is drawn in `wal/FORMAT.md` and pinned by golden-bytes tests.

#![deny(unsafe_code)]
#![deny(clippy::unwrap_used, clippy::expect_used)]
#![warn(missing_docs)]
// `u64::is_multiple_of` is newer than the workspace MSRV (1.85).
#![allow(clippy::manual_is_multiple_of)]

mod error;
mod format;
mod history;
mod inspect;
mod poison;
mod recovery;
mod scan;
#[allow(unsafe_code)]
mod segment;
pub mod sim;
pub mod snapshot;
mod storage;
#[doc(hidden)]
pub mod testkit;
mod types;
mod writer;

pub use error::WalError;
pub use format::{
    FORMAT_VERSION, PAGE_BYTES, PAYLOAD_MAX_BYTES, RECORD_ALIGN_BYTES, SEGMENT_HEADER_BYTES,
};
pub use history::{prune_archive, CheckedEnd, History, HistoryEnd, HistorySegment};
pub use inspect::{inspect, inspect_with_progress, Inspection, SegmentInfo, SnapshotInfo};
pub use storage::{FileStorage, Storage, StorageFile, StorageMap};
pub use types::{Committed, Lsn, Recovery, SyncMethod, TornTail, WalOptions, WalStats};
#[cfg(svault_faults)]
pub use writer::Fault;
pub use writer::Wal;

/// Decoding internals exposed for property tests and fuzzing; not a stable API.
#[doc(hidden)]
pub mod decode {
    pub use crate::format::{
        encode_record, read_slot, record_size, BadRecord, RawRecord, SegmentHeader, Slot,
    };
    pub use crate::scan::{scan_segment, SegmentScan, Stop};
}
