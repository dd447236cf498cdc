//! The small value types of the public API.

use std::path::PathBuf;

/// Log sequence number: the position of a record in one log, starting at 1, each exactly previous + 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

/// How a log is laid out on disk.
#[derive(Debug, Clone)]
pub struct WalOptions {
    /// Size of each segment file; a multiple of 4096, at least 8192. Segments are
    /// preallocated and zero-filled whole, so this is also the disk cost of an empty log.
    pub segment_size_bytes: u64,
    /// How `commit` makes records durable (measured choice in the crate docs).
    pub sync_method: SyncMethod,
    /// How fast background writes go while nothing waits for them (bytes per second; 0: as
    /// fast as the disk takes them): the next segment's zero fill, and the snapshots a server
    /// writes beside its log. Every commit's device flush also carries what they handed the
    /// device since the commit before, so at full speed a 64 MiB fill made each commit during
    /// it take 4–8 ms instead of 0.2 ms on the disk measured; spread over a second, the same
    /// bytes cost each commit a few kilobytes. The log asks a fill for full speed once the
    /// active segment is half full and when it must rotate or close, so it never waits
    /// longer than an unthrottled fill would have made it; a server stopping does the same
    /// for its snapshot.
    pub background_bytes_per_sec: u64,
}

/// How a commit reaches the disk. Both have fdatasync semantics; the default was measured
/// (see the crate docs and `bench/RESULTS.md`, "## wal").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SyncMethod {
    /// Records are copied into the mapped segment; commit is `msync(MS_SYNC)` of the dirty pages.
    /// Every first store into a page takes a write fault on the append path.
    Msync,
    /// Records are staged in memory; commit is one `pwrite` of the page-padded batch plus
    /// `fdatasync`. Reads still come from the map (one page cache), 16-byte aligned.
    #[default]
    PwriteFdatasync,
}

impl Default for WalOptions {
    fn default() -> Self {
        WalOptions {
            segment_size_bytes: 64 << 20,
            sync_method: SyncMethod::default(),
            background_bytes_per_sec: 64 << 20,
        }
    }
}

/// What the log did besides appending, counted since open: a caller that times its batches
/// compares two readings to say what happened during a slow one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WalStats {
    /// Moves to a fresh segment (each syncs the pending batch and waits for preallocation).
    pub rotations: u64,
    /// Time spent inside rotations (µs), waiting for the next segment included.
    pub rotation_us: u64,
    /// Next segments whose preallocation (fallocate + zero fill) started.
    pub preallocations: u64,
}

/// Proof that every record up to `through` is durable: only `Wal::commit` makes one
/// (the type is `#[non_exhaustive]`, so no other crate can build it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Committed {
    /// Every record with an LSN up to and including this one is durable.
    pub through: Lsn,
}

impl Committed {
    pub(crate) fn new(through: Lsn) -> Committed {
        Committed { through }
    }

    /// `true` when `lsn` is durable according to this proof.
    pub fn covers(&self, lsn: Lsn) -> bool {
        lsn.0 >= 1 && lsn <= self.through
    }
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
    /// The LSN the next append gets (`last_lsn + 1`, or the first LSN of an empty segment).
    pub next_lsn: Lsn,
    /// The previous run ended with `Wal::close` (a seal record) and nothing was torn since.
    pub sealed: bool,
    /// Segment files found.
    pub segments: usize,
    /// Records validated (every checksum checked).
    pub records: u64,
    /// `true` when the directory held no log and a new one was created.
    pub created: bool,
}

/// A torn tail found and cut at open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The (last) segment that held it.
    pub segment: PathBuf,
    /// Where the valid records end and the cut begins.
    pub offset: u64,
    /// Bytes from `offset` to the last non-zero byte, all zeroed by the cut.
    pub bytes_cut: u64,
}
