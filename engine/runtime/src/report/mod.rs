//! `svault report`: the finance and marketing views, computed from the log.
//!
//! Why from the log: the log is the one complete, ordered record of every decision, and the
//! state machine is pure, so replaying it from the start gives, record by record, exactly what
//! the server answered (amounts charged, bonus credited, discounts, points, expiries). The
//! report replays each shard's whole history — `shard-N/archive/` then `shard-N/wal/` — from an
//! empty state through `State::apply` and adds up what it sees ([`tally`]).
//!
//! Safe while the server runs: segments are read with [`wal::History`], which only reads files
//! (no lock, no map, no write) and stops at the first record that does not verify (a batch
//! being written). Records at or after `--to` are never applied, so a report with a `--to` in
//! the past is the same whether the server is running, stopped, restarted or snapshotted.
//!
//! Memory: one segment of log at a time, the state (as the server holds it), and a few facts
//! per card (cohort, activity, channel counts) — O(cards), independent of the log's length.
//!
//! With `--parquet DIR` the same replay also writes the transaction journal and the events as
//! Parquet files partitioned by local day ([`journal`], [`hive`]), in bounded memory too.
//!
//! Only when `--log-retention-days` pruned the archive does the report start from the newest
//! snapshot the remaining history continues, and it says so: lifetime figures (cohorts,
//! conversion, first top-ups) then start at that snapshot.

pub mod figures;
pub mod hive;
pub mod journal;
pub mod tally;
pub mod time;

use crate::progress::Progress;
use crate::{meta, recovery};
use journal::{ExportCounts, ShardExport};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use svault_core::command::Millis;
use svault_core::money::Rate;
use svault_core::outcome::{Event, Reply};
use svault_core::record::LogRecord;
use svault_core::state::{State, StateConfig};
use tally::{ProgramTally, ShardTally, Window};
use wal::{Lsn, WalError};

/// What to report on.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    /// Records with batch time ≥ `from` (default: the first record).
    pub from: Option<Millis>,
    /// Records with batch time < `to` (default: just after the last record).
    pub to: Option<Millis>,
    /// Only this program (default: every program, each on its own).
    pub program: Option<String>,
    /// A card with no activity in this many days before `to` has churned.
    pub churn_days: u32,
    /// Custody ratio (存管比例) applied to the last quarter-end outstanding principal.
    pub custody_ratio: Rate,
    /// Share of top-ups the payback period counts (回笼周期 = top-ups × factor ÷ daily spend).
    pub payback_factor: Rate,
    /// Draw a progress bar on a terminal.
    pub progress: bool,
    /// Also write the journal and the events as Parquet under this directory.
    pub parquet: Option<PathBuf>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            from: None,
            to: None,
            program: None,
            churn_days: 30,
            custody_ratio: Rate(400_000),
            payback_factor: Rate(300_000),
            progress: false,
            parquet: None,
        }
    }
}

/// Why a report could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    #[error("{0} is not a svault data directory (no meta file)")]
    NotADataDir(PathBuf),
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
    #[error("shard {shard}: {source}")]
    Wal { shard: usize, source: WalError },
    #[error("shard {shard}: record at lsn {lsn} is not a valid log record: {reason}")]
    Record {
        shard: usize,
        lsn: u64,
        reason: String,
    },
    #[error("shard {shard}: {reason}")]
    History { shard: usize, reason: String },
    #[error("--parquet {dir}: {reason}")]
    ParquetDir { dir: PathBuf, reason: String },
    #[error("shard {shard}: parquet export: {source}")]
    Parquet {
        shard: usize,
        source: hive::HiveError,
    },
}

/// What one shard's scan read.
#[derive(Debug, Clone)]
pub struct ShardScan {
    pub shard: usize,
    /// Records applied (all of history up to `--to`).
    pub records: u64,
    /// LSN the scan started after (0: the whole history from an empty state).
    pub snapshot_lsn: u64,
    pub last_lsn: u64,
    pub first_time: Option<Millis>,
    pub last_time: Option<Millis>,
    /// The newest segment ended in bytes that do not verify yet (a batch being written).
    pub partial_tail: bool,
}

/// A program's figures and the rules needed to print them.
#[derive(Debug, Clone)]
pub struct ProgramReport {
    pub program: svault_core::program::Program,
    pub tally: ProgramTally,
}

/// The whole report.
#[derive(Debug, Clone)]
pub struct Report {
    pub from: Millis,
    pub to: Millis,
    pub options: ReportOptions,
    pub programs: Vec<ProgramReport>,
    pub shards: Vec<ShardScan>,
    /// Things the reader must know (a pruned history).
    pub warnings: Vec<String>,
    pub records: u64,
    pub elapsed: Duration,
    /// What `--parquet` wrote.
    pub parquet: Option<ExportCounts>,
}

impl Report {
    /// Records applied per second.
    pub fn records_per_sec(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Why one shard's scan stopped: replay refused the log, or the Parquet export failed.
enum ScanError {
    Replay(recovery::RecoveryError),
    Export(hive::HiveError),
}

impl From<recovery::RecoveryError> for ScanError {
    fn from(e: recovery::RecoveryError) -> Self {
        ScanError::Replay(e)
    }
}

impl From<WalError> for ScanError {
    fn from(e: WalError) -> Self {
        ScanError::Replay(e.into())
    }
}

fn replay_error(shard: usize, e: recovery::RecoveryError) -> ReportError {
    use recovery::RecoveryError as R;
    match e {
        R::Wal(source) => ReportError::Wal { shard, source },
        R::Record { lsn, reason } => ReportError::Record { shard, lsn, reason },
        R::InvalidRequest { lsn, invalid } => ReportError::Record {
            shard,
            lsn,
            reason: format!("invalid request: {invalid}"),
        },
        other => ReportError::History {
            shard,
            reason: other.to_string(),
        },
    }
}

/// Adds up each record's answer as replay applies it: the tally, and the Parquet rows.
struct Adder {
    tally: ShardTally,
    export: Option<ShardExport>,
}

impl recovery::Observe for Adder {
    type Error = ScanError;
    fn before(&mut self, _: Lsn, rec: &LogRecord, state: &State) -> Result<(), ScanError> {
        self.tally.before(rec.now, state);
        Ok(())
    }
    fn after(
        &mut self,
        lsn: Lsn,
        rec: &LogRecord,
        reply: &Reply,
        events: &mut Vec<Event>,
        state: &State,
    ) -> Result<(), ScanError> {
        self.tally
            .observe(rec.now, &rec.request, reply, events, state);
        if let Some(x) = self.export.as_mut() {
            x.observe(lsn.0, rec.now, &rec.request, reply, events, state)
                .map_err(ScanError::Export)?;
        }
        Ok(())
    }
}

struct Scanned {
    scan: ShardScan,
    export: Option<ExportCounts>,
    tally: ShardTally,
    state: State,
    warnings: Vec<String>,
}

/// Computes the report over `data`, read-only.
pub fn run(data: &Path, options: &ReportOptions) -> Result<Report, ReportError> {
    let started = Instant::now();
    let m = meta::read(data)?.ok_or_else(|| ReportError::NotADataDir(data.to_path_buf()))?;
    let window = Window {
        from: options.from.unwrap_or(Millis(i64::MIN)),
        to: options.to.unwrap_or(Millis(i64::MAX)),
        program: options.program.clone(),
        churn_days: options.churn_days,
    };
    if let Some(dir) = &options.parquet {
        prepare_parquet_dir(dir)?;
    }
    let mut histories = Vec::with_capacity(m.shards);
    for k in 0..m.shards {
        let paths = recovery::shard_paths(data, k);
        // The live log first: a segment archived in between is listed twice, never missed.
        let h = wal::History::open(&[&paths.wal, &paths.archive])
            .map_err(|source| ReportError::Wal { shard: k, source })?;
        histories.push((k, paths, h));
    }
    let total: u64 = histories.iter().map(|(_, _, h)| h.total_bytes()).sum();
    let progress = if options.progress {
        Progress::new(total, "report")
    } else {
        Progress::hidden()
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The config the log was written under: key TTL, history limit and tick bound decide what
    // each record did, so the report replays with them.
    let config = m
        .state
        .clone()
        .unwrap_or_else(StateConfig::as_first_recorded);
    let mut scanned: Vec<Scanned> = Vec::with_capacity(m.shards);
    for wave in histories.chunks(threads.max(1)) {
        let results: Vec<Result<Scanned, ReportError>> = std::thread::scope(|scope| {
            let running: Vec<_> = wave
                .iter()
                .map(|(k, paths, h)| {
                    let (window, progress) = (window.clone(), progress.clone());
                    let config = config.clone();
                    let parquet = options.parquet.as_deref();
                    scope
                        .spawn(move || scan_shard(*k, paths, h, window, config, parquet, &progress))
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
        for r in results {
            scanned.push(r?);
        }
    }
    progress.finish();
    let first = scanned.iter().filter_map(|s| s.scan.first_time).min();
    let last = scanned.iter().filter_map(|s| s.scan.last_time).max();
    let from = options.from.or(first).unwrap_or(Millis(0));
    let to = options
        .to
        .or(last.map(|t| Millis(t.0 + 1)))
        .unwrap_or(Millis(from.0 + 1));
    let mut merged: BTreeMap<String, ProgramTally> = BTreeMap::new();
    let mut programs: BTreeMap<String, svault_core::program::Program> = BTreeMap::new();
    let mut shards = Vec::with_capacity(scanned.len());
    let mut warnings = Vec::new();
    let mut parquet: Option<ExportCounts> = None;
    for s in scanned {
        if let Some(c) = &s.export {
            parquet.get_or_insert_with(ExportCounts::default).merge(c);
        }
        for p in s.state.programs() {
            programs.entry(p.id.clone()).or_insert_with(|| p.clone());
        }
        for (id, t) in s.tally.finish(&s.state, to) {
            merged.entry(id).or_default().merge(&t);
        }
        warnings.extend(s.warnings);
        shards.push(s.scan);
    }
    let programs = programs
        .into_iter()
        .filter(|(id, _)| options.program.as_deref().is_none_or(|p| p == id))
        .map(|(id, program)| ProgramReport {
            tally: merged.remove(&id).unwrap_or_default(),
            program,
        })
        .collect();
    Ok(Report {
        from,
        to,
        options: options.clone(),
        programs,
        records: shards.iter().map(|s| s.records).sum(),
        shards,
        warnings,
        elapsed: started.elapsed(),
        parquet,
    })
}

/// `--parquet DIR` must not hold an earlier export's tables: their files would mix with ours.
fn prepare_parquet_dir(dir: &Path) -> Result<(), ReportError> {
    let err = |reason: String| ReportError::ParquetDir {
        dir: dir.to_path_buf(),
        reason,
    };
    for t in [&journal::JOURNAL, &journal::EVENTS] {
        if dir.join(t.name).exists() {
            return Err(err(format!(
                "already holds {}/ (an earlier export?); give an empty or new directory",
                t.name
            )));
        }
    }
    std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))
}

fn scan_shard(
    k: usize,
    paths: &recovery::ShardPaths,
    history: &wal::History,
    window: Window,
    config: StateConfig,
    parquet: Option<&Path>,
    progress: &Progress,
) -> Result<Scanned, ReportError> {
    let export = match parquet {
        Some(dir) => Some(
            ShardExport::new(dir, k, window.clone())
                .map_err(|source| ReportError::Parquet { shard: k, source })?,
        ),
        None => None,
    };
    let wal_err = |source| ReportError::Wal { shard: k, source };
    let mut warnings = Vec::new();
    let first_lsn = history.first_lsn();
    let (mut state, snapshot_lsn) = if first_lsn.0 <= 1 {
        (State::new(config), Lsn(0))
    } else {
        // Pruned by retention: start from the newest snapshot the history still continues.
        let snap = wal::snapshot::read_latest(&paths.snapshots).map_err(wal_err)?;
        match snap {
            Some(s) if s.lsn.0 + 1 >= first_lsn.0 => {
                let (_, state) =
                    recovery::decode_snapshot(&s.bytes, s.lsn, config).map_err(|e| {
                        ReportError::History {
                            shard: k,
                            reason: e.to_string(),
                        }
                    })?;
                warnings.push(format!(
                    "shard {k}: the history before lsn {} was pruned by the log retention; figures start at the snapshot of lsn {} (cohorts and first top-ups of older cards are not known)",
                    first_lsn.0, s.lsn.0
                ));
                (state, s.lsn)
            }
            _ => {
                return Err(ReportError::History {
                    shard: k,
                    reason: format!(
                        "the history starts at lsn {} (pruned) and no snapshot continues it",
                        first_lsn.0
                    ),
                })
            }
        }
    };
    let mut scan = ShardScan {
        shard: k,
        records: 0,
        snapshot_lsn: snapshot_lsn.0,
        last_lsn: snapshot_lsn.0,
        first_time: None,
        last_time: None,
        partial_tail: false,
    };
    let until = match window.to {
        Millis(i64::MAX) => recovery::Until::End,
        to => recovery::Until::Time(to),
    };
    let mut adder = Adder {
        tally: ShardTally::new(window),
        export,
    };
    let from = Lsn(snapshot_lsn.0 + 1);
    let mut end = wal::HistoryEnd::default();
    let result = recovery::replay_observed(
        |each| {
            end = history.read(from, |_| {}, each)?;
            Ok(())
        },
        &mut state,
        from,
        Millis(0),
        until,
        &mut adder,
        |bytes, records| progress.inc_records(bytes, records),
    );
    let replayed = match result {
        Ok(r) => r,
        Err(ScanError::Export(source)) => return Err(ReportError::Parquet { shard: k, source }),
        Err(ScanError::Replay(e)) => return Err(replay_error(k, e)),
    };
    scan.partial_tail = end.partial_tail;
    scan.records = replayed.records;
    if replayed.records > 0 {
        scan.last_lsn = replayed.last_lsn.0;
        scan.first_time = replayed.first_now;
        scan.last_time = Some(replayed.last_now);
    }
    let Adder { tally, export } = adder;
    let export = match export {
        Some(x) => Some(
            x.finish()
                .map_err(|source| ReportError::Parquet { shard: k, source })?,
        ),
        None => None,
    };
    Ok(Scanned {
        scan,
        export,
        tally,
        state,
        warnings,
    })
}
