//! Rebuilding one shard's state from disk: the newest valid snapshot, then every WAL record
//! after it, in LSN order, through the same pure `State::apply`. Used by `Engine::open` (on the
//! shard's own thread) and by `svault replay` (on a copy of the log).
//!
//! What is cut and what is refused is the log's business (`Wal::open` cuts a torn tail and
//! refuses corruption in the middle, naming segment and offset); this module refuses what the
//! log cannot see: a record whose checksum is fine but whose payload is not a `LogRecord`, a
//! snapshot the state refuses, and a gap between the snapshot and the first record kept.

use std::path::{Path, PathBuf};
use svault_core::command::Millis;
use svault_core::outcome::{Event, Reply};
use svault_core::record::{self, LogRecord};
use svault_core::state::{Frozen, State, StateConfig};
use wal::{Lsn, Wal, WalError};

/// Where shard `k` keeps its log and snapshots under the data directory.
#[derive(Debug, Clone)]
pub struct ShardPaths {
    pub root: PathBuf,
    pub wal: PathBuf,
    pub snapshots: PathBuf,
    /// Segments a snapshot covers, moved out of `wal` and kept (the whole history).
    pub archive: PathBuf,
}

/// `data/shard-K/{wal,snapshots,archive}`.
pub fn shard_paths(data: &Path, k: usize) -> ShardPaths {
    let root = data.join(format!("shard-{k}"));
    ShardPaths {
        wal: root.join("wal"),
        snapshots: root.join("snapshots"),
        archive: root.join("archive"),
        root,
    }
}

/// Magic at the start of a snapshot body (before the state's own bytes).
const SNAPSHOT_MAGIC: &[u8; 8] = b"SVSNAP01";
/// Header: magic (8) + last batch time (i64 LE, 8). 16 bytes keeps the state bytes 16-aligned
/// relative to the start of the body.
const SNAPSHOT_HEADER_BYTES: usize = 16;

/// Serialises a frozen shard for a snapshot: a 16-byte header carrying the last batch time (so
/// batch time never goes backwards across a restart even when no record follows the snapshot),
/// then the state's snapshot bytes. In memory: for tests and the simulator's disk.
pub fn encode_snapshot(state: &Frozen, last_now: Millis) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing into memory cannot fail short of allocation failure.
    write_snapshot(state, last_now, &mut out).expect("a snapshot serialises into memory");
    out
}

/// [`encode_snapshot`]'s bytes written to `out` as they are produced: the snapshot writer
/// streams them to the file, so a shard's gigabytes are never held in memory.
pub fn write_snapshot(
    state: &Frozen,
    last_now: Millis,
    out: &mut dyn std::io::Write,
) -> std::io::Result<()> {
    out.write_all(SNAPSHOT_MAGIC)?;
    out.write_all(&last_now.0.to_le_bytes())?;
    state.write_to(out).map(|_| ())
}

/// Splits a snapshot body into its last batch time and the state's bytes.
pub fn snapshot_parts(bytes: &[u8]) -> Result<(Millis, &[u8]), RecoveryError> {
    let (header, body) = bytes
        .split_at_checked(SNAPSHOT_HEADER_BYTES)
        .ok_or_else(|| RecoveryError::Snapshot {
            lsn: None,
            reason: "shorter than its header".into(),
        })?;
    let (magic, now) = header.split_at(8);
    if magic != SNAPSHOT_MAGIC {
        return Err(RecoveryError::Snapshot {
            lsn: None,
            reason: "bad magic".into(),
        });
    }
    let mut now_bytes = [0u8; 8];
    now_bytes.copy_from_slice(now);
    Ok((Millis(i64::from_le_bytes(now_bytes)), body))
}

/// Restores a state from a snapshot body.
pub fn decode_snapshot(
    bytes: &[u8],
    lsn: Lsn,
    config: StateConfig,
) -> Result<(Millis, State), RecoveryError> {
    let (now, body) = snapshot_parts(bytes).map_err(|e| match e {
        RecoveryError::Snapshot { reason, .. } => RecoveryError::Snapshot {
            lsn: Some(lsn.0),
            reason,
        },
        other => other,
    })?;
    let state = State::restore(body, config).map_err(|e| RecoveryError::Snapshot {
        lsn: Some(lsn.0),
        reason: e.to_string(),
    })?;
    Ok((now, state))
}

/// Why a shard could not be rebuilt.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// The log refused (corruption in the middle names segment and offset) or i/o failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A record passed the log's checksum but is not a valid `LogRecord`.
    #[error("record at lsn {lsn} is not a valid log record: {reason}")]
    Record { lsn: u64, reason: String },
    /// A record decodes but carries a request that breaks an input rule (an amount out of
    /// bounds, a bad program id): refused, never applied.
    #[error("record at lsn {lsn} carries an invalid request: {invalid}")]
    InvalidRequest {
        lsn: u64,
        invalid: svault_core::rules::Invalid,
    },
    /// The snapshot's bytes were refused.
    #[error("snapshot (lsn {lsn:?}) refused: {reason}")]
    Snapshot { lsn: Option<u64>, reason: String },
    /// The records right after the snapshot are missing (or the snapshot is ahead of the log).
    #[error("log does not continue the snapshot: snapshot covers lsn {snapshot_lsn}, log holds {first_lsn}..={last_lsn}")]
    Gap {
        snapshot_lsn: u64,
        first_lsn: u64,
        last_lsn: u64,
    },
}

/// Where replay stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Until {
    /// Every record.
    #[default]
    End,
    /// Records with LSN ≤ N (per shard).
    Lsn(u64),
    /// Records whose batch time is < T: the first record at or after T stops replay.
    Time(Millis),
}

/// What replaying a log did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Replayed {
    /// Records applied.
    pub records: u64,
    /// LSN of the last record applied (the snapshot's when none).
    pub last_lsn: Lsn,
    /// Batch time of the last record applied (the snapshot's when none).
    pub last_now: Millis,
    /// Batch time of the first record applied (`None` when none was).
    pub first_now: Option<Millis>,
    /// `true` when `until` stopped replay before the end of the log.
    pub stopped_early: bool,
}

/// How many decoded records replay holds ahead of the one it applies, prefetching their state
/// (see `State::prefetch_ahead`; its farthest stage looks 16 ahead).
const REPLAY_AHEAD: usize = 16;

/// Applies every record of `wal` with LSN ≥ `from` to `state`, stopping at `until`.
/// `on_events` receives the events each record produced.
pub fn replay_wal<S: wal::Storage>(
    wal: &Wal<S>,
    state: &mut State,
    from: Lsn,
    start_now: Millis,
    until: Until,
    on_events: impl FnMut(&mut Vec<Event>),
) -> Result<Replayed, RecoveryError> {
    replay_wal_with_progress(wal, state, from, start_now, until, on_events, |_, _| {})
}

/// Records read between two calls of a progress callback.
const PROGRESS_EVERY_RECORDS: u64 = 65_536;

/// [`replay_wal`], calling `on_progress(bytes, records)` after every 64 Ki records read and once
/// at the end with the rest (progress bars of offline tools: records, records/s, time left).
pub fn replay_wal_with_progress<S: wal::Storage>(
    wal: &Wal<S>,
    state: &mut State,
    from: Lsn,
    start_now: Millis,
    until: Until,
    on_events: impl FnMut(&mut Vec<Event>),
    on_progress: impl FnMut(u64, u64),
) -> Result<Replayed, RecoveryError> {
    replay_records(
        |each| wal.read_from(from, each),
        state,
        from,
        start_now,
        until,
        on_events,
        on_progress,
    )
}

/// [`replay_wal_with_progress`] over any reader of the log: `read` must call its argument for
/// every record with LSN ≥ `from`, in LSN order (the open log's `read_from`, or
/// `wal::History::read_checked` over archive and log for `svault replay`, which reads the
/// files in place). Once `until` is reached the records that follow are still read (so the
/// reader checks the whole log) but not applied.
pub fn replay_records(
    read: impl FnOnce(
        &mut dyn FnMut(Lsn, &[u8]) -> Result<(), RecoveryError>,
    ) -> Result<(), RecoveryError>,
    state: &mut State,
    from: Lsn,
    start_now: Millis,
    until: Until,
    on_events: impl FnMut(&mut Vec<Event>),
    on_progress: impl FnMut(u64, u64),
) -> Result<Replayed, RecoveryError> {
    replay_observed(
        read,
        state,
        from,
        start_now,
        until,
        &mut EventsOnly(on_events),
        on_progress,
    )
}

/// What a reader of the log learns from replay, record by record. Recovery only forwards
/// the events; `svault report` adds up every answer as the server gave it. Both go through
/// [`replay_observed`], so each record is decided exactly as the server decided it: as its
/// caller, under the rules it was logged with.
pub trait Observe {
    /// Why observing can fail (replay's own failures convert into it).
    type Error: From<RecoveryError>;
    /// Called right before `rec` is applied, with the state as the record found it.
    fn before(&mut self, _lsn: Lsn, _rec: &LogRecord, _state: &State) -> Result<(), Self::Error> {
        Ok(())
    }
    /// Called right after: the answer and the events `rec` produced (cleared afterwards).
    fn after(
        &mut self,
        lsn: Lsn,
        rec: &LogRecord,
        reply: &Reply,
        events: &mut Vec<Event>,
        state: &State,
    ) -> Result<(), Self::Error>;
}

/// Recovery's observer: events go to `on_events` (the server's event ring), answers nowhere.
struct EventsOnly<F>(F);

impl<F: FnMut(&mut Vec<Event>)> Observe for EventsOnly<F> {
    type Error = RecoveryError;
    fn after(
        &mut self,
        _: Lsn,
        _: &LogRecord,
        _: &Reply,
        events: &mut Vec<Event>,
        _: &State,
    ) -> Result<(), RecoveryError> {
        if !events.is_empty() {
            (self.0)(events);
        }
        Ok(())
    }
}

/// [`replay_records`] telling `observer` about every record it applies. Records are decoded
/// and their state prefetched `REPLAY_AHEAD` records before they are applied, so the cache
/// misses of consecutive records overlap.
pub fn replay_observed<O: Observe>(
    read: impl FnOnce(&mut dyn FnMut(Lsn, &[u8]) -> Result<(), O::Error>) -> Result<(), O::Error>,
    state: &mut State,
    from: Lsn,
    start_now: Millis,
    until: Until,
    observer: &mut O,
    mut on_progress: impl FnMut(u64, u64),
) -> Result<Replayed, O::Error> {
    let mut read_bytes = 0u64;
    let mut read_records = 0u64;
    let mut done = Replayed {
        records: 0,
        last_lsn: Lsn(from.0.saturating_sub(1)),
        last_now: start_now,
        first_now: None,
        stopped_early: false,
    };
    let mut events = Vec::new();
    // Records decoded but not yet applied, in LSN order.
    let mut ahead: std::collections::VecDeque<(Lsn, LogRecord)> =
        std::collections::VecDeque::with_capacity(REPLAY_AHEAD + 1);
    let mut apply = |state: &mut State, lsn: Lsn, rec: LogRecord| -> Result<(), O::Error> {
        observer.before(lsn, &rec, state)?;
        // Each record is decided by the rules it was written under, as its caller.
        let reply = state.apply_logged(
            &rec.request,
            rec.caller,
            rec.now,
            svault_core::record::rules_of(rec.version),
            &mut events,
        );
        observer.after(lsn, &rec, &reply, &mut events, state)?;
        events.clear();
        done.records += 1;
        done.last_lsn = lsn;
        done.last_now = rec.now;
        done.first_now.get_or_insert(rec.now);
        Ok(())
    };
    let mut stopped = false;
    read(&mut |lsn, bytes| {
        read_bytes += bytes.len() as u64 + 16;
        read_records += 1;
        if read_records == PROGRESS_EVERY_RECORDS {
            on_progress(
                std::mem::take(&mut read_bytes),
                std::mem::take(&mut read_records),
            );
        }
        if stopped {
            return Ok(());
        }
        if let Until::Lsn(n) = until {
            if lsn.0 > n {
                stopped = true;
                return Ok(());
            }
        }
        let rec = record::decode(bytes).map_err(|e| match e {
            record::RecordError::Command(invalid) => RecoveryError::InvalidRequest {
                lsn: lsn.0,
                invalid,
            },
            e => RecoveryError::Record {
                lsn: lsn.0,
                reason: e.to_string(),
            },
        })?;
        if let Until::Time(t) = until {
            if rec.now >= t {
                stopped = true;
                return Ok(());
            }
        }
        ahead.push_back((lsn, rec));
        state.prefetch_ahead(|d| ahead.get(d).map(|(_, r)| (&r.request, r.caller)));
        if ahead.len() > REPLAY_AHEAD {
            if let Some((lsn, rec)) = ahead.pop_front() {
                apply(state, lsn, rec)?;
            }
        }
        Ok(())
    })?;
    on_progress(read_bytes, read_records);
    // Everything still held precedes the end or the stop point.
    for (lsn, rec) in ahead.drain(..) {
        apply(state, lsn, rec)?;
    }
    done.stopped_early = stopped;
    Ok(done)
}

/// Checks that the log continues a snapshot covering `snapshot_lsn`: the log must hold
/// `snapshot_lsn + 1` (or end exactly at `snapshot_lsn`).
pub fn check_continuity(snapshot_lsn: Lsn, recovery: &wal::Recovery) -> Result<(), RecoveryError> {
    let first = recovery.first_lsn.0;
    let last = recovery.last_lsn.0;
    let holds_next = if snapshot_lsn.0 == 0 {
        // No snapshot: the log must start at LSN 1, or never have held a record. One that
        // starts later lost its beginning with the snapshot that covered it (damaged, removed):
        // replaying it into an empty state would drop every earlier record without a word.
        first == 1 || (first == 0 && recovery.next_lsn.0 <= 1)
    } else {
        first != 0 && first <= snapshot_lsn.0 + 1 && last >= snapshot_lsn.0
    };
    if holds_next {
        Ok(())
    } else {
        Err(RecoveryError::Gap {
            snapshot_lsn: snapshot_lsn.0,
            first_lsn: first,
            last_lsn: last,
        })
    }
}

#[cfg(test)]
mod continuity_tests {
    use super::*;

    fn found(first: u64, last: u64, next: u64) -> wal::Recovery {
        wal::Recovery {
            first_lsn: Lsn(first),
            last_lsn: Lsn(last),
            next_lsn: Lsn(next),
            ..wal::Recovery::default()
        }
    }

    /// Engine simulator, seed 10034 (and 1207): the only snapshot was damaged (a latent sector
    /// error), the segments it covered had left the live log, and recovery replayed the rest
    /// into an empty state: every card and every acknowledged top-up before LSN 167 was gone,
    /// without an error.
    #[test]
    fn without_a_snapshot_the_log_must_start_at_lsn_1() {
        assert!(matches!(
            check_continuity(Lsn(0), &found(167, 200, 201)),
            Err(RecoveryError::Gap {
                snapshot_lsn: 0,
                first_lsn: 167,
                last_lsn: 200
            })
        ));
        // Every record covered and removed, no snapshot left: refused as well.
        assert!(check_continuity(Lsn(0), &found(0, 0, 167)).is_err());
        assert!(check_continuity(Lsn(0), &found(1, 200, 201)).is_ok());
        assert!(check_continuity(Lsn(0), &found(0, 0, 1)).is_ok());
        // With a snapshot, as before.
        assert!(check_continuity(Lsn(166), &found(150, 200, 201)).is_ok());
        assert!(check_continuity(Lsn(166), &found(168, 200, 201)).is_err());
    }
}
