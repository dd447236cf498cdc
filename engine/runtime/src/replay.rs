//! `svault replay`: rebuild every shard's state offline from snapshot + WAL, without touching
//! the data directory, and report what the log says (records/s, float per program, digest).
//!
//! The originals are never written: each shard's archive and live log are read in place,
//! mapped read-only one segment at a time ([`wal::History::read_checked`]), and judged exactly
//! as a restart would judge them (corruption refused, naming segment, offset and LSN), except
//! that a torn tail a restart would cut is only reported. Snapshots are only read. (Replay used
//! to copy every log to a scratch directory first and open the copy: for a 2.4 GB log that copy
//! was 8 s of 22.)
//!
//! Point in time, per shard: `--until-lsn N` applies each shard's records with LSN ≤ N (LSNs
//! are per shard; with several shards the same N is a different instant in each).
//! `--until-time T` applies records whose batch time is < T in every shard, which is one
//! consistent instant across shards. When the newest snapshot is past the point asked for,
//! replay starts from an empty state and reads the log from LSN 1: the archive
//! (`shard-N/archive/`, the segments snapshots covered) and the live log together hold the
//! whole history unless `--log-retention-days` pruned it, in which case replay says it cannot
//! reach that point.

use crate::meta;
use crate::recovery::{self, RecoveryError, Until};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use svault_core::command::Millis;
use svault_core::outcome::FloatTotals;
use svault_core::state::{State, StateConfig};
use wal::Lsn;

/// What to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    pub until: Until,
    /// Re-check the state's invariants after replay.
    pub verify: bool,
    /// Replay from LSN 1 even when a snapshot exists (needs the whole log).
    pub ignore_snapshots: bool,
}

/// One shard's replay.
#[derive(Debug, Clone)]
pub struct ShardReplay {
    pub shard: usize,
    /// LSN covered by the snapshot used (0 ⇒ none).
    pub snapshot_lsn: u64,
    /// Records applied after the snapshot.
    pub records: u64,
    /// LSN of the last record applied.
    pub last_lsn: u64,
    /// Last LSN present in the log.
    pub log_last_lsn: u64,
    /// Batch time of the last record applied.
    pub last_time: Millis,
    pub stopped_early: bool,
    /// A torn tail the log ends in (a restart would cut it; replay leaves it), as text.
    pub torn_tail: Option<String>,
    pub digest: u64,
    pub cards: u64,
    /// `Some(Err)` names the first broken invariant when `verify` was asked.
    pub verify: Option<Result<(), String>>,
    /// This shard's time: reading the log, snapshot restore and records applied.
    pub elapsed: Duration,
}

/// The whole directory's replay.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    pub shards: Vec<ShardReplay>,
    /// Per-shard digests combined in shard order (`runtime::combine_digests`).
    pub digest: u64,
    pub float: Vec<(String, FloatTotals)>,
    pub records: u64,
    /// Replay time of the slowest shard (shards replay in parallel, one thread per core):
    /// reading the log, snapshot restore and records applied; digest and verification excluded.
    pub elapsed: Duration,
}

impl ReplayReport {
    /// Records applied per second of replay time.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
    /// `true` unless verification found a broken invariant.
    pub fn verified_ok(&self) -> bool {
        self.shards
            .iter()
            .all(|s| !matches!(s.verify, Some(Err(_))))
    }
}

/// Why replay could not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReplayError {
    #[error("{0} is not a svault data directory (no meta file)")]
    NotADataDir(PathBuf),
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("shard {shard}: {source}")]
    Shard { shard: usize, source: RecoveryError },
    #[error("shard {shard}: {reason}")]
    PointInTime { shard: usize, reason: String },
}

/// Replays every shard of `data`.
pub fn replay(data: &Path, options: &ReplayOptions) -> Result<ReplayReport, ReplayError> {
    let m = meta::read(data)?.ok_or_else(|| ReplayError::NotADataDir(data.to_path_buf()))?;
    // The state config the log was written under (the defaults for a directory from before it
    // was recorded, the only ones that server could run with); replay never writes `meta`.
    let state = m
        .state
        .clone()
        .unwrap_or_else(StateConfig::as_first_recorded);
    let state = &state;
    let mut shard_logs = Vec::with_capacity(m.shards);
    for k in 0..m.shards {
        let paths = recovery::shard_paths(data, k);
        // The archive (segments older snapshots covered) and the live log form one log.
        let history =
            wal::History::open(&[&paths.wal, &paths.archive]).map_err(|e| ReplayError::Shard {
                shard: k,
                source: e.into(),
            })?;
        shard_logs.push((k, history, paths.snapshots));
    }
    // Shards replay in parallel (they share nothing), at most one per core. Progress is over
    // the bytes of the log (segment files are preallocated, so the last one counts whole).
    let total: u64 = shard_logs.iter().map(|(_, h, _)| h.total_bytes()).sum();
    let progress = crate::progress::Progress::new(total, "replay");
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut shards = Vec::with_capacity(m.shards);
    let mut elapsed = Duration::ZERO;
    for wave in shard_logs.chunks(threads.max(1)) {
        let results: Vec<Result<Done, ReplayError>> = std::thread::scope(|scope| {
            let running: Vec<_> = wave
                .iter()
                .map(|(k, history, snapshots)| {
                    let progress = &progress;
                    scope.spawn(move || {
                        replay_shard(*k, history, snapshots, options, state, progress)
                    })
                })
                .collect();
            running
                .into_iter()
                .map(|h| match h.join() {
                    Ok(r) => r,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        // Shards of a wave run side by side: the wave takes as long as its slowest shard.
        let mut slowest = Duration::ZERO;
        for r in results {
            let done = r?;
            slowest = slowest.max(done.report.elapsed);
            shards.push(done);
        }
        elapsed += slowest;
    }
    progress.finish();
    let digests: Vec<u64> = shards.iter().map(|s| s.report.digest).collect();
    let floats: Vec<Vec<(String, FloatTotals)>> = shards.iter().map(|s| s.float.clone()).collect();
    let report = ReplayReport {
        digest: crate::combine_digests(&digests),
        float: crate::merge_floats(floats.iter().map(|f| f.as_slice())),
        records: shards.iter().map(|s| s.report.records).sum(),
        elapsed,
        shards: shards.into_iter().map(|s| s.report).collect(),
    };
    Ok(report)
}

struct Done {
    report: ShardReplay,
    float: Vec<(String, FloatTotals)>,
}

fn replay_shard(
    k: usize,
    history: &wal::History,
    snapshots: &Path,
    options: &ReplayOptions,
    config: &StateConfig,
    progress: &crate::progress::Progress,
) -> Result<Done, ReplayError> {
    let shard_err = |source: RecoveryError| ReplayError::Shard { shard: k, source };
    let started = Instant::now();
    let snapshot = if options.ignore_snapshots || !snapshots.exists() {
        None
    } else {
        wal::snapshot::read_latest(snapshots).map_err(|e| shard_err(e.into()))?
    };
    // Use the snapshot only if it is not past the point asked for.
    let mut start: Option<(Lsn, Millis, State)> = None;
    if let Some(s) = snapshot {
        let (now, _) = recovery::snapshot_parts(&s.bytes).map_err(shard_err)?;
        let usable = match options.until {
            Until::End => true,
            Until::Lsn(n) => s.lsn.0 <= n,
            Until::Time(t) => now < t,
        };
        if usable {
            let (now, state) =
                recovery::decode_snapshot(&s.bytes, s.lsn, config.clone()).map_err(shard_err)?;
            start = Some((s.lsn, now, state));
        }
    }
    let (snapshot_lsn, start_now, mut state) = match start {
        Some(s) => s,
        None => {
            if history.first_lsn().0 > 1 {
                return Err(ReplayError::PointInTime {
                    shard: k,
                    reason: format!(
                        "the log starts at lsn {} (older archived segments were pruned by the log retention) and no usable snapshot reaches the point asked for",
                        history.first_lsn().0
                    ),
                });
            }
            (Lsn(0), Millis(0), State::new(config.clone()))
        }
    };
    let from = Lsn(snapshot_lsn.0 + 1);
    let mut checked = wal::CheckedEnd::default();
    let replayed = recovery::replay_records(
        |each| {
            checked = history.read_checked(from, |segment| progress.inc(segment), each)?;
            Ok(())
        },
        &mut state,
        from,
        start_now,
        options.until,
        |_| {},
        |_, records| progress.inc_records(0, records),
    )
    .map_err(shard_err)?;
    // What a restart would check before replaying: the log continues the snapshot.
    let found = wal::Recovery {
        first_lsn: checked.first_lsn,
        last_lsn: checked.last_lsn,
        next_lsn: Lsn(checked.last_lsn.0 + 1),
        ..wal::Recovery::default()
    };
    recovery::check_continuity(snapshot_lsn, &found).map_err(shard_err)?;
    let elapsed = started.elapsed();
    let verify = options.verify.then(|| {
        // One shard at a time: the check's snapshot round trip holds a second copy of the
        // state, and shards replaying in parallel must not all hold theirs at once.
        static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        verify_state(&state, config)
    });
    let float = state.float();
    let report = ShardReplay {
        shard: k,
        snapshot_lsn: snapshot_lsn.0,
        records: replayed.records,
        last_lsn: replayed.last_lsn.0,
        log_last_lsn: found.last_lsn.0,
        last_time: replayed.last_now,
        stopped_early: replayed.stopped_early,
        torn_tail: checked.torn_tail.as_ref().map(|t| {
            format!(
                "segment {} offset {} ({} bytes)",
                t.segment.display(),
                t.offset,
                t.bytes_cut
            )
        }),
        digest: state.digest(),
        cards: float.iter().map(|(_, f)| f.cards).sum(),
        verify,
        elapsed,
    };
    Ok(Done { report, float })
}

/// Re-checks what must hold in any state the log can produce:
/// - the float kept incrementally equals the float recomputed card by card (conservation: no
///   money appears or vanishes outside the cards);
/// - no negative float, never more held than outstanding;
/// - every card passes the state's own snapshot validation (principal, bonus and held not
///   negative, bonus equal to its lots, held within funds), checked by a snapshot round trip
///   that must also reproduce the same digest.
pub fn verify_state(state: &State, config: &StateConfig) -> Result<(), String> {
    let kept = state.float();
    let recomputed = state.float_recomputed();
    if kept != recomputed {
        return Err(format!(
            "float kept {kept:?} differs from the sum of the cards {recomputed:?}"
        ));
    }
    for (program, f) in &kept {
        if f.principal.0 < 0 || f.bonus.0 < 0 || f.held.0 < 0 {
            return Err(format!("program {program}: negative float {f:?}"));
        }
        if f.held.0 > f.principal.0.saturating_add(f.bonus.0) {
            return Err(format!(
                "program {program}: more held than outstanding {f:?}"
            ));
        }
    }
    let restored = State::restore(&state.snapshot(), config.clone())
        .map_err(|e| format!("card invariants: {e}"))?;
    if restored.digest() != state.digest() {
        return Err("a snapshot round trip changes the digest".into());
    }
    Ok(())
}

/// Parses an RFC 3339 timestamp (`2026-11-24T09:30:00Z`, `2026-11-24T17:30:00.250+08:00`) into
/// milliseconds since the epoch. Fractions beyond milliseconds are truncated.
pub fn parse_rfc3339(s: &str) -> Option<Millis> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = b.get(r)?;
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(part).ok()?.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt ") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || day < 1
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut i = 19;
    let mut millis = 0i64;
    if sep(i, b".") {
        i += 1;
        let start = i;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start {
            return None;
        }
        let digits = b.get(start..i)?;
        for (n, d) in digits.iter().take(3).enumerate() {
            millis += i64::from(d - b'0') * 10i64.pow(2 - n as u32);
        }
    }
    let offset_minutes = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        c @ (b'+' | b'-') if i + 6 == b.len() && sep(i + 3, b":") => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 60 + m;
            if *c == b'-' {
                -o
            } else {
                o
            }
        }
        _ => return None,
    };
    let days = crate::report::time::days_from_civil(
        year,
        u32::try_from(month).ok()?,
        u32::try_from(day).ok()?,
    );
    let secs = days * 86_400 + hour * 3_600 + minute * 60 + second.min(59) - offset_minutes * 60;
    Some(Millis(secs * 1_000 + millis))
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(Millis(0)));
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z"),
            Some(Millis(951_868_800_000))
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T17:30:00.25+08:00"),
            Some(Millis(1_795_512_600_250))
        );
        assert_eq!(
            parse_rfc3339("2026-11-24T09:30:00.250Z"),
            parse_rfc3339("2026-11-24T17:30:00.250+08:00")
        );
        assert_eq!(
            parse_rfc3339("2024-02-29T12:00:00-01:30"),
            Some(Millis(1_709_213_400_000))
        );
        for bad in [
            "",
            "2026-11-24",
            "2026-13-01T00:00:00Z",
            "2026-02-30T00:00:00Z",
            "2026-11-24T25:00:00Z",
            "2026-11-24T09:30:00",
            "2026-11-24T09:30:00.Z",
            "2026-11-24T09:30:00+8:00",
            "2026-11-24T09:30:00Zjunk",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }
}
