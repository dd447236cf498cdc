//! One shard: a plain OS thread that owns a `State` and a `Wal` and is their only user.
//!
//! The loop: block for the first message, drain up to `batch_requests_max` requests, take the
//! batch time once (wall clock, never below the previous batch), and for each request append its
//! log record and then apply it. One `commit` (one sync) per batch under `group`, one per request
//! under `sync`, a 10 ms timer under `async`. Every answer (reads too) carries the LSN of its
//! record and leaves only once a commit covers that LSN (`replies`), so nothing a client sees is
//! ahead of the log.
//!
//! Append before apply: a failed append (disk full) leaves the state untouched, the request is
//! refused with `Unavailable` and the shard keeps serving. A failed commit after apply, or a
//! failed sync inside an append (segment rotation), leaves the state ahead of the log: the shard
//! is poisoned, every answer not yet released fails, and it refuses everything until a restart
//! recovers from the log (never retry a sync).
//!
//! A panic here is a bug with the state possibly half-changed: the thread aborts the process
//! (crash-only, see `AbortOnPanic`); a restart recovers from the log.

use super::events::{EventRing, SeqClock};
use super::metrics::ShardMetrics;
use super::recovery::{self, ShardPaths, Until};
use super::replies::{FrameTx, OneTx, QueriesTx, QueryTx, Replies};
use super::{Durability, EngineError, SubmitError, Tuning};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use parking_lot::Mutex;
use rkyv::util::AlignedVec;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};
use svault_core::command::{CallerId, Command, Millis, Query, Request};
use svault_core::outcome::{Event, FloatTotals, Reply};
use svault_core::record::{self, LogRecord, LOG_RECORD_VERSION};
use svault_core::state::{Frozen, Leftover, QueryAnswer, State, Work};
use wal::{Lsn, Wal, WalError};

/// Who sent a message and which programs they may touch.
#[derive(Debug, Clone, Default)]
pub(crate) struct ScopeList {
    /// Programs the caller may touch; `None` ⇒ all.
    pub programs: Option<Arc<[String]>>,
    /// The caller: its keys are its own (logged with each request).
    pub caller: CallerId,
}

/// A closure run on the shard thread against its state (digest, verify, tests).
pub(crate) type StateCall = Box<dyn FnOnce(&State) + Send>;

/// What travels to a shard. Requests travel by value (no allocation per request); the
/// channel's slots are sized for the largest variant, a bounded cost (`queue_depth_max` slots).
#[allow(clippy::large_enum_variant)]
pub(crate) enum Msg {
    Submit {
        request: Request,
        scope: ScopeList,
        reply: OneTx,
        /// When it was handed to the queue (queue wait).
        sent: Instant,
    },
    Batch {
        requests: Vec<(usize, Request)>,
        scope: ScopeList,
        reply: FrameTx,
        sent: Instant,
    },
    Query {
        query: Query,
        scope: ScopeList,
        reply: QueryTx,
        sent: Instant,
    },
    /// A binary frame's reads on this shard, each with its index in the frame.
    Queries {
        queries: Vec<(usize, Query)>,
        scope: ScopeList,
        reply: QueriesTx,
        sent: Instant,
    },
    Call(StateCall),
    /// A reader of the events feed: move the batch time to at least `at` (past the newest event
    /// any shard has published) and raise the floor, so every event answered before the read
    /// is visible to it; then answer.
    Floor {
        at: Millis,
        reply: tokio::sync::oneshot::Sender<()>,
    },
    /// Test hook: a failure injected into this shard.
    #[cfg(svault_faults)]
    Inject(super::faults::Fault),
    Shutdown,
}

impl Msg {
    fn weight(&self) -> usize {
        match self {
            Msg::Batch { requests, .. } => requests.len().max(1),
            Msg::Queries { queries, .. } => queries.len().max(1),
            _ => 1,
        }
    }

    /// When a request-carrying message entered the queue.
    fn sent(&self) -> Option<Instant> {
        match self {
            Msg::Submit { sent, .. }
            | Msg::Batch { sent, .. }
            | Msg::Query { sent, .. }
            | Msg::Queries { sent, .. } => Some(*sent),
            _ => None,
        }
    }
}

/// Where one batch's time went, and what else the shard did since the previous batch ended:
/// the parts of a slow-batch log line.
#[derive(Default)]
struct BatchTimes {
    /// Syncs during the batch (`Wal::commit`), µs.
    commit_us: u64,
    commits: u64,
    /// Publishing events and releasing answers after those syncs, µs.
    reply_us: u64,
    /// Snapshot freezes since the previous batch ended, µs (each delays the next batch).
    snapshot_freeze_us: u64,
}

/// A batch of messages, or the work an idle shard does on its own (tick, flush, snapshot).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Batch,
    Idle,
}

/// Counters read at the end of every batch, to tell what the next one did.
#[derive(Default, Clone, Copy)]
struct Seen {
    wal: wal::WalStats,
    work: Work,
}

/// What opening a shard found; logged and kept for `Engine::recovery_reports`.
#[derive(Debug, Clone)]
pub struct RecoveryReport {
    pub shard: usize,
    /// LSN covered by the snapshot restored (0 ⇒ none).
    pub snapshot_lsn: u64,
    /// Records replayed after the snapshot.
    pub records: u64,
    /// Last LSN in the log after recovery.
    pub last_lsn: u64,
    /// A torn tail cut by the log, as text.
    pub torn_tail: Option<String>,
    /// Reading and restoring the snapshot (the rest of `elapsed` is the log's scan and replay):
    /// it grows with the cards and the live idempotency keys, the replay with the records.
    pub snapshot_elapsed: Duration,
    /// Cards and idempotency keys held once recovered.
    pub cards: usize,
    pub keys: usize,
    pub elapsed: Duration,
}

/// Everything the shard thread shares with the engine handle.
pub(crate) struct Shared {
    pub events: Arc<EventRing>,
    pub float: Arc<Mutex<Vec<(String, FloatTotals)>>>,
    pub metrics: Arc<ShardMetrics>,
}

/// What the writer answers for each job: the snapshot's LSN once durable (`None`: writing it
/// failed), and what is left of the frozen state, for the shard to drop.
struct Written {
    lsn: Option<Lsn>,
    leftover: Leftover,
}

/// A snapshot handed to the writer thread: the frozen state, serialised there.
struct SnapshotJob {
    lsn: Lsn,
    last_now: Millis,
    state: Frozen,
    /// Test hook: the writer panics on this job.
    #[cfg(svault_faults)]
    panic: bool,
}

pub(crate) struct Shard {
    k: usize,
    state: State,
    wal: Wal,
    rx: Receiver<Msg>,
    tuning: Tuning,
    durability: Durability,
    shared: Shared,
    /// Last batch time: batch time never goes backwards.
    last_now: Millis,
    /// Batch time of the last `tick_due` check: ticks follow the runtime's clock.
    last_tick_check: Millis,
    /// The last tick reached its bound (`timers_per_tick_max`) with timers still due: the next
    /// one is logged as soon as the shard is free, not after `idle_tick_ms`.
    tick_backlog: bool,
    /// Readers of the events feed waiting for this batch to end (`Msg::Floor`).
    floor_readers: Vec<(Millis, tokio::sync::oneshot::Sender<()>)>,
    /// `Some(reason)` once a commit failed: everything is refused until restart.
    poisoned: Option<String>,
    buf: AlignedVec,
    events: Vec<Event>,
    /// Answers waiting for the commit that covers their LSN.
    replies: Replies,
    /// Numbers this shard's events (`runtime::events`).
    seqs: SeqClock,
    /// Records appended since the last commit.
    uncommitted: u64,
    committed: Lsn,
    last_commit: Instant,
    records_since_snapshot: u64,
    last_snapshot: Instant,
    snapshot_tx: Option<Sender<SnapshotJob>>,
    /// Answers of the writer, one per job.
    snapshot_done_rx: Receiver<Written>,
    /// Card chunks of written snapshots, dropped a few per loop turn by this thread.
    leftovers: Vec<Leftover>,
    /// A frozen state is with the writer: no second freeze until it answers (each live freeze
    /// makes the shard copy chunks on write).
    snapshot_in_flight: bool,
    snapshot_writer: Option<std::thread::JoinHandle<()>>,
    /// Set when the shard stops: the writer finishes its snapshot at full speed.
    snapshot_hurry: Arc<AtomicBool>,
    snapshot_dir: std::path::PathBuf,
    /// Test hooks armed for this shard.
    #[cfg(svault_faults)]
    faults: super::faults::Armed,
    archive_dir: std::path::PathBuf,
    /// The batch being timed (slow-batch log, stage histograms).
    times: BatchTimes,
    seen: Seen,
}

/// Where the snapshot timer starts after a recovery: the log time the replayed tail covers (its
/// last record's batch time minus `since`: the snapshot's, or with no snapshot the first
/// record's) has already run, so a server restarted more often than `snapshot_every_secs` still
/// snapshots and its restarts do not replay an ever longer log. Log time, not file times: a
/// copied directory behaves the same; a clock stepped back counts nothing.
fn last_snapshot_at_start(since: Option<Millis>, last_now: Millis, tuning: &Tuning) -> Instant {
    let every = Duration::from_secs(tuning.snapshot_every_secs);
    let covered = match since {
        None => Duration::ZERO,
        Some(at) => {
            Duration::from_millis(u64::try_from(last_now.0.saturating_sub(at.0)).unwrap_or(0))
        }
    };
    let now = Instant::now();
    now.checked_sub(covered.min(every)).unwrap_or(now)
}

/// Recovers shard `k` and returns it ready to run.
pub(crate) fn open(
    k: usize,
    paths: &ShardPaths,
    rx: Receiver<Msg>,
    tuning: Tuning,
    durability: Durability,
    shared: Shared,
) -> Result<(Shard, RecoveryReport), EngineError> {
    let started = Instant::now();
    let recovery_err = |e: recovery::RecoveryError| match e {
        recovery::RecoveryError::Wal(w) => EngineError::Wal(w),
        other => EngineError::Recovery {
            shard: k,
            reason: other.to_string(),
        },
    };
    for dir in [&paths.wal, &paths.snapshots] {
        std::fs::create_dir_all(dir).map_err(|e| EngineError::Wal(WalError::Io(e)))?;
    }
    let snapshot = wal::snapshot::read_latest(&paths.snapshots)?;
    if let Some(s) = &snapshot {
        for (path, why) in &s.skipped {
            tracing::warn!(shard = k, path = %path.display(), reason = %why, "damaged snapshot passed over");
        }
    }
    let snapshot_started = Instant::now();
    let (mut state, snapshot_lsn, snap_now) = match snapshot {
        Some(s) => {
            let (now, state) = recovery::decode_snapshot(&s.bytes, s.lsn, tuning.state.clone())
                .map_err(recovery_err)?;
            (state, s.lsn, now)
        }
        None => (State::new(tuning.state.clone()), Lsn(0), Millis(0)),
    };
    let snapshot_elapsed = snapshot_started.elapsed();
    let (wal, found) = Wal::open(&paths.wal, tuning.wal.clone())?;
    recovery::check_continuity(snapshot_lsn, &found).map_err(recovery_err)?;
    let events = shared.events.clone();
    let mut seqs = SeqClock::new(k);
    let replayed = recovery::replay_wal(
        &wal,
        &mut state,
        Lsn(snapshot_lsn.0 + 1),
        snap_now,
        Until::End,
        |evs| events.push_all(&mut seqs, evs),
    )
    .map_err(recovery_err)?;
    events.set_floor(k, seqs.floor(replayed.last_now));
    let committed = Lsn(wal.next_lsn().0.saturating_sub(1));
    let report = RecoveryReport {
        shard: k,
        snapshot_lsn: snapshot_lsn.0,
        records: replayed.records,
        last_lsn: committed.0,
        torn_tail: found.torn_tail.as_ref().map(|t| {
            format!(
                "{} at offset {} ({} bytes cut)",
                t.segment.display(),
                t.offset,
                t.bytes_cut
            )
        }),
        snapshot_elapsed,
        cards: state.card_count(),
        keys: state.key_count(),
        elapsed: started.elapsed(),
    };
    shared.metrics.committed_lsn.store(committed.0, Relaxed);
    shared.metrics.snapshot_lsn.store(snapshot_lsn.0, Relaxed);
    *shared.float.lock() = state.float();

    let (snapshot_tx, job_rx) = crossbeam_channel::bounded::<SnapshotJob>(1);
    let (done_tx, snapshot_done_rx) = crossbeam_channel::bounded::<Written>(4);
    let snap_dir = paths.snapshots.clone();
    let writer_metrics = Arc::clone(&shared.metrics);
    let snapshot_hurry = Arc::new(AtomicBool::new(false));
    let pace = WritePace {
        bytes_per_sec: tuning.wal.background_bytes_per_sec,
        hurry: Arc::clone(&snapshot_hurry),
    };
    let snapshot_writer = std::thread::Builder::new()
        .name(format!("svault-snap-{k}"))
        .spawn(move || {
            let _crash_only = abort_on_panic("snapshot writer", k);
            snapshot_writer(k, snap_dir, job_rx, done_tx, writer_metrics, pace)
        })
        .map_err(|e| EngineError::Wal(WalError::Io(e)))?;

    let shard = Shard {
        k,
        state,
        wal,
        rx,
        durability,
        shared,
        last_now: replayed.last_now,
        last_tick_check: replayed.last_now,
        tick_backlog: false,
        floor_readers: Vec::new(),
        poisoned: None,
        buf: AlignedVec::with_capacity(256),
        events: Vec::new(),
        replies: Replies::new(committed, tuning.batch_requests_max.min(65_536)),
        seqs,
        uncommitted: 0,
        committed,
        last_commit: Instant::now(),
        records_since_snapshot: replayed.records,
        last_snapshot: last_snapshot_at_start(
            if snapshot_lsn.0 > 0 {
                Some(snap_now)
            } else {
                replayed.first_now
            },
            replayed.last_now,
            &tuning,
        ),
        snapshot_tx: Some(snapshot_tx),
        snapshot_done_rx,
        leftovers: Vec::new(),
        snapshot_in_flight: false,
        snapshot_writer: Some(snapshot_writer),
        snapshot_hurry,
        snapshot_dir: paths.snapshots.clone(),
        #[cfg(svault_faults)]
        faults: Default::default(),
        archive_dir: paths.archive.clone(),
        tuning,
        times: BatchTimes::default(),
        seen: Seen::default(),
    };
    let mut shard = shard;
    shard.seen = Seen {
        wal: shard.wal.stats(),
        work: shard.state.work(),
    };
    Ok((shard, report))
}

/// How fast the snapshot writer writes while the shard runs (`WalOptions::background_bytes_per_sec`).
struct WritePace {
    bytes_per_sec: u64,
    hurry: Arc<AtomicBool>,
}

/// Serialises and writes snapshots off the shard thread (the shard only pays for the freeze).
/// The bytes go to the file as they are produced, at a bounded rate so that the log's commits
/// do not wait behind them; the frozen state is dropped once the last is written, after which
/// the shard stops copying chunks before writing them.
fn snapshot_writer(
    k: usize,
    dir: std::path::PathBuf,
    jobs: Receiver<SnapshotJob>,
    done: Sender<Written>,
    metrics: Arc<ShardMetrics>,
    pace: WritePace,
) {
    lower_this_thread_priority(k);
    for job in jobs {
        let started = Instant::now();
        #[cfg(svault_faults)]
        if job.panic {
            panic!(
                "{}: snapshot writer of shard {k}",
                super::faults::PANIC_MESSAGE
            );
        }
        let SnapshotJob {
            lsn,
            last_now,
            state,
            ..
        } = job;
        // Serialised straight into the file: the bytes are never held whole (a large shard's
        // snapshot is gigabytes, and holding them was most of a snapshot's memory).
        let written = wal::snapshot::write_streamed_throttled(
            &dir,
            lsn,
            pace.bytes_per_sec,
            &pace.hurry,
            |out| recovery::write_snapshot(&state, last_now, out),
        );
        // The card chunks go back to the shard thread, which allocated them (see `Leftover`).
        let leftover = state.into_leftover();
        let lsn = match written {
            Ok(bytes) => {
                let ms = started.elapsed().as_millis() as u64;
                metrics.snapshot_write_ms_last.store(ms, Relaxed);
                tracing::info!(shard = k, lsn = lsn.0, bytes, ms, "snapshot written");
                Some(lsn)
            }
            Err(e) => {
                tracing::error!(shard = k, lsn = lsn.0, error = %e, "snapshot write failed; the log still holds every record");
                None
            }
        };
        let _ = done.send(Written { lsn, leftover });
    }
}

/// Aborts the process if the thread that holds it unwinds from a panic.
///
/// Crash-only: a panic in a shard or a snapshot writer is a bug that may have left the state
/// half-changed (a shard) or stopped snapshots for good (a writer). Limping on would answer
/// `503` forever or let the log grow without bound; aborting lets the supervisor restart the
/// process, and recovery rebuilds every shard from its snapshot and log, which hold every
/// acknowledged request. A guard (not `panic = "abort"`) so it holds in every build, tests
/// included, and only for these threads.
pub(crate) struct AbortOnPanic {
    what: &'static str,
    k: usize,
}

/// Arms [`AbortOnPanic`] for the rest of the calling scope.
pub(crate) fn abort_on_panic(what: &'static str, k: usize) -> AbortOnPanic {
    AbortOnPanic { what, k }
}

impl Drop for AbortOnPanic {
    fn drop(&mut self) {
        if std::thread::panicking() {
            tracing::error!(
                shard = self.k,
                thread = self.what,
                "panic: aborting the process; a restart recovers from the log"
            );
            eprintln!(
                "svault: {} of shard {} panicked; aborting (a restart recovers from the log)",
                self.what, self.k
            );
            std::process::abort();
        }
    }
}

/// Nice value of the snapshot writer threads.
const SNAPSHOT_WRITER_NICE: i32 = 10;

/// Lowers the calling thread's CPU priority: serialising a large snapshot is seconds of CPU,
/// and it should use what the shard threads leave rather than take the cores from them. Under
/// full load a snapshot then takes longer (the log keeps every record meanwhile).
#[allow(unsafe_code)]
fn lower_this_thread_priority(k: usize) {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: plain integer arguments, no memory passed. On Linux the nice value is per
        // thread, and PRIO_PROCESS with a thread id names that one thread.
        let rc = unsafe {
            libc::setpriority(
                libc::PRIO_PROCESS,
                libc::gettid() as libc::id_t,
                SNAPSHOT_WRITER_NICE,
            )
        };
        if rc != 0 {
            tracing::debug!(shard = k, error = %std::io::Error::last_os_error(), "snapshot writer keeps its priority");
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = k;
}

impl Shard {
    /// Runs until `Shutdown` or until every sender is gone.
    pub(crate) fn run(mut self) {
        let mut batch: Vec<Msg> = Vec::new();
        loop {
            let timeout = self.wait_timeout();
            match self.rx.recv_timeout(timeout) {
                Ok(m) => batch.push(m),
                Err(RecvTimeoutError::Timeout) => {
                    self.shed_leftovers();
                    self.on_idle();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            }
            let drain_max = if self.durability == Durability::Sync {
                1
            } else {
                self.tuning.batch_requests_max
            };
            let mut weight = batch.iter().map(Msg::weight).sum::<usize>();
            while weight < drain_max {
                match self.rx.try_recv() {
                    Ok(m) => {
                        weight += m.weight();
                        batch.push(m);
                    }
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            if self.process(&mut batch) {
                break;
            }
            self.maybe_snapshot();
            self.shed_leftovers();
        }
        self.finish();
        let (k, poisoned) = (self.k, self.poisoned.is_some());
        if !poisoned {
            if let Err(e) = self.wal.close() {
                tracing::error!(shard = k, error = %e, "closing the log failed");
            }
        }
    }

    fn wait_timeout(&self) -> Duration {
        if self.tick_backlog || !self.leftovers.is_empty() {
            return Duration::ZERO;
        }
        let idle = Duration::from_millis(self.tuning.idle_tick_ms);
        if self.uncommitted > 0 {
            let flush = Duration::from_millis(self.tuning.async_flush_ms);
            return flush.saturating_sub(self.last_commit.elapsed()).min(idle);
        }
        idle
    }

    /// Batch time: wall clock (or the test clock), never below the previous batch.
    fn clock(&mut self) -> Millis {
        let wall = (self.tuning.clock)();
        if wall > self.last_now {
            self.last_now = wall;
        }
        if self.events.is_empty() {
            // Every event given so far is published; later ones come at this time or later.
            self.shared
                .events
                .set_floor(self.k, self.seqs.floor(self.last_now));
        }
        self.last_now
    }

    fn on_idle(&mut self) {
        let started = Instant::now();
        if self.uncommitted > 0 {
            self.commit();
        }
        let now = self.clock();
        self.maybe_tick(now);
        if self.uncommitted > 0 {
            self.commit();
        }
        self.publish();
        self.maybe_snapshot();
        let total_us = started.elapsed().as_micros() as u64;
        self.end_turn(Turn::Idle, 0, total_us, total_us, 0, 0);
    }

    /// Handles one drained batch; `true` ⇒ shut down.
    fn process(&mut self, batch: &mut Vec<Msg>) -> bool {
        let started = Instant::now();
        let mut oldest_wait_us = 0u64;
        let messages = batch.len();
        for m in batch.iter() {
            if let Some(sent) = m.sent() {
                let us = started.saturating_duration_since(sent).as_micros() as u64;
                self.shared.metrics.stages.queue_wait.record(us);
                oldest_wait_us = oldest_wait_us.max(us);
            }
        }
        let now = self.clock();
        self.maybe_tick(now);
        let mut stop = false;
        let mut requests = 0u64;
        self.state
            .prefetch_first(|d| batch.get(d).and_then(first_request));
        let mut msgs = batch.drain(..);
        while let Some(msg) = msgs.next() {
            let upcoming = msgs.as_slice();
            self.state
                .prefetch_ahead(|d| upcoming.get(d - 1).and_then(first_request));
            match msg {
                Msg::Submit {
                    request,
                    scope,
                    reply,
                    ..
                } => {
                    requests += 1;
                    let (r, lsn) = self.exec(request, &scope, now);
                    self.replies.one(reply, r, lsn);
                    if self.durability == Durability::Sync {
                        self.commit();
                    }
                }
                Msg::Batch {
                    requests: reqs,
                    scope,
                    reply,
                    ..
                } => {
                    requests += reqs.len() as u64;
                    self.replies.open_frame(reply, reqs.len());
                    let caller = scope.caller;
                    self.state
                        .prefetch_first(|d| reqs.get(d).map(|(_, r)| (r, caller)));
                    let mut reqs = reqs.into_iter();
                    while let Some((i, request)) = reqs.next() {
                        let upcoming = reqs.as_slice();
                        self.state
                            .prefetch_ahead(|d| upcoming.get(d - 1).map(|(_, r)| (r, caller)));
                        let (r, lsn) = self.exec(request, &scope, now);
                        self.replies.frame_answer(i, r, lsn);
                        if self.durability == Durability::Sync {
                            self.commit();
                        }
                    }
                    self.replies.close_frame();
                }
                Msg::Query {
                    query,
                    scope,
                    reply,
                    ..
                } => {
                    self.shared.metrics.queries.fetch_add(1, Relaxed);
                    let r = self.read(&query, &scope, now);
                    let seen = self.last_appended();
                    self.replies.query(reply, r, seen);
                }
                Msg::Queries {
                    queries,
                    scope,
                    reply,
                    ..
                } => {
                    self.shared
                        .metrics
                        .queries
                        .fetch_add(queries.len() as u64, Relaxed);
                    let answers = queries
                        .into_iter()
                        .map(|(i, q)| (i, self.read(&q, &scope, now)))
                        .collect();
                    let seen = self.last_appended();
                    self.replies.queries(reply, answers, seen);
                }
                Msg::Call(f) => f(&self.state),
                // Answered after the batch: its own records are stamped with its batch time.
                Msg::Floor { at, reply } => self.floor_readers.push((at, reply)),
                #[cfg(svault_faults)]
                Msg::Inject(fault) => self.inject(fault),
                Msg::Shutdown => stop = true,
            }
        }
        let looped_us = started.elapsed().as_micros() as u64;
        self.shared.metrics.requests.fetch_add(requests, Relaxed);
        self.shared.metrics.observe_batch(requests);
        let async_due =
            self.last_commit.elapsed() >= Duration::from_millis(self.tuning.async_flush_ms);
        if self.uncommitted > 0 && (self.durability != Durability::Async || async_due || stop) {
            self.commit();
        }
        self.publish();
        if self.durability == Durability::Async && self.poisoned.is_none() {
            // What async promised: answers leave once appended, the sync follows on a timer.
            self.replies.release_unsynced(self.last_appended());
        }
        self.answer_floor_readers();
        let total_us = started.elapsed().as_micros() as u64;
        self.end_turn(
            Turn::Batch,
            oldest_wait_us,
            looped_us,
            total_us,
            requests,
            messages,
        );
        stop
    }

    /// Records a batch's stages and logs it when it was slow; an idle turn (a tick, an async
    /// flush, a snapshot freeze without requests) is only logged. `looped_us`: from the start
    /// to the end of its appends and applies (syncs inside them, under `sync`, included);
    /// `total_us`: to its last answer released.
    fn end_turn(
        &mut self,
        turn: Turn,
        oldest_wait_us: u64,
        looped_us: u64,
        total_us: u64,
        requests: u64,
        messages: usize,
    ) {
        let times = std::mem::take(&mut self.times);
        let apply_us = looped_us.saturating_sub(times.commit_us + times.reply_us);
        let reply_us = total_us.saturating_sub(apply_us + times.commit_us);
        if turn == Turn::Batch {
            let stages = &self.shared.metrics.stages;
            stages.apply.record(apply_us);
            stages.reply.record(reply_us);
        }
        let seen = Seen {
            wal: self.wal.stats(),
            work: self.state.work(),
        };
        let before = std::mem::replace(&mut self.seen, seen);
        let slow_us = self.tuning.slow_batch_ms.saturating_mul(1000);
        if oldest_wait_us + total_us < slow_us {
            return;
        }
        self.shared.metrics.slow_batches.fetch_add(1, Relaxed);
        tracing::warn!(
            shard = self.k,
            total_us = oldest_wait_us + total_us,
            queue_wait_us = oldest_wait_us,
            apply_us,
            commit_us = times.commit_us,
            reply_us,
            requests,
            messages,
            commits = times.commits,
            rotations = seen.wal.rotations - before.wal.rotations,
            rotation_us = seen.wal.rotation_us - before.wal.rotation_us,
            preallocations = seen.wal.preallocations - before.wal.preallocations,
            snapshot_freeze_us = times.snapshot_freeze_us,
            snapshot_writing = self.snapshot_in_flight,
            tick_timers = seen.work.timers_fired - before.work.timers_fired,
            index_rehashes = seen.work.index_rehashes - before.work.index_rehashes,
            idle = turn == Turn::Idle,
            "slow batch"
        );
    }

    /// Moves the batch time to the latest `at` readers of the events feed asked for (it only
    /// moves forward, as at a snapshot: later records are stamped at it or later), raises the
    /// floor when every event is published, and answers them.
    fn answer_floor_readers(&mut self) {
        if self.floor_readers.is_empty() {
            return;
        }
        for (at, _) in &self.floor_readers {
            self.last_now = self.last_now.max(*at);
        }
        if self.events.is_empty() {
            self.shared
                .events
                .set_floor(self.k, self.seqs.floor(self.last_now));
        }
        for (_, reply) in self.floor_readers.drain(..) {
            let _ = reply.send(());
        }
    }

    /// LSN of the last record appended (durable or not); Lsn(0) for an empty log.
    fn last_appended(&self) -> Lsn {
        Lsn(self.wal.next_lsn().0.saturating_sub(1))
    }

    /// Appends the request's record, then applies it. Never applies what was not appended.
    /// Returns the answer and the LSN that must be durable before it leaves: its record's, or
    /// (refused without a record) the last one appended, whose state the refusal may reflect.
    fn exec(
        &mut self,
        request: Request,
        scope: &ScopeList,
        now: Millis,
    ) -> (Result<Reply, SubmitError>, Lsn) {
        let r = self.exec_inner(request, scope, now);
        (r, self.last_appended())
    }

    fn exec_inner(
        &mut self,
        request: Request,
        scope: &ScopeList,
        now: Millis,
    ) -> Result<Reply, SubmitError> {
        #[cfg(svault_faults)]
        self.fault_from_request(&request);
        if let Some(reason) = &self.poisoned {
            return Err(SubmitError::Unavailable(reason.clone()));
        }
        if !self.allowed(scope, &request.command) {
            return Err(SubmitError::Forbidden);
        }
        let rec = LogRecord {
            version: LOG_RECORD_VERSION,
            now,
            caller: scope.caller,
            request,
        };
        if let Err(e) = record::encode_into(&rec, &mut self.buf) {
            return Err(SubmitError::Unavailable(format!(
                "cannot encode log record: {e}"
            )));
        }
        match self.wal.append(&self.buf) {
            Ok(_) => {}
            Err(WalError::DiskFull) => return Err(SubmitError::Unavailable("disk full".into())),
            Err(e) => {
                let reason = format!("log append failed: {e}");
                tracing::error!(shard = self.k, error = %e, "log append failed; shard stops acknowledging");
                self.poison(reason.clone());
                return Err(SubmitError::Unavailable(reason));
            }
        }
        self.uncommitted += 1;
        self.records_since_snapshot += 1;
        Ok(self.state.apply_logged(
            &rec.request,
            rec.caller,
            now,
            record::rules_of(rec.version),
            &mut self.events,
        ))
    }

    fn read(
        &self,
        query: &Query,
        scope: &ScopeList,
        now: Millis,
    ) -> Result<QueryAnswer, SubmitError> {
        if let Some(reason) = &self.poisoned {
            return Err(SubmitError::Unavailable(reason.clone()));
        }
        if let Some(list) = &scope.programs {
            let card = query.card();
            if let Some(p) = self.state.program_of(card) {
                if !list.iter().any(|x| x == p) {
                    return Err(SubmitError::Forbidden);
                }
            }
        }
        Ok(self.state.query(query, now))
    }

    /// Gateway scope: the card's program (OpenCard: the command's) must be listed. Unknown cards
    /// pass (the state answers 404). Reversals are checked on their card like everything else;
    /// ticks are internal.
    fn allowed(&self, scope: &ScopeList, command: &Command) -> bool {
        let Some(list) = &scope.programs else {
            return true;
        };
        let program: Option<&str> = match command {
            Command::OpenCard { program, .. } => Some(program),
            Command::UpsertProgram(p) => Some(&p.id),
            Command::Tick => return false,
            other => other.card().and_then(|c| self.state.program_of(c)),
        };
        match program {
            None => true,
            Some(p) => list.iter().any(|x| x == p),
        }
    }

    /// Checks `tick_due` when `idle_tick_ms` of batch time passed since the last check: ticks
    /// follow the runtime's clock, so a test that moves its clock gets its tick on the next
    /// message, without waiting. A tick handles at most `timers_per_tick_max` timers; while
    /// some stay due, one bounded tick runs between every two batches.
    fn maybe_tick(&mut self, now: Millis) {
        let since = now.0.saturating_sub(self.last_tick_check.0);
        if self.poisoned.is_some()
            || (since < self.tuning.idle_tick_ms as i64 && !self.tick_backlog)
        {
            return;
        }
        self.last_tick_check = now;
        if self.state.tick_due(now) {
            let tick = Request {
                idempotency_key: None,
                command: Command::Tick,
            };
            if let Err(e) = self.exec_inner(tick, &ScopeList::default(), now) {
                tracing::warn!(shard = self.k, error = %e, "tick not logged");
            }
        }
        self.tick_backlog = self.poisoned.is_none() && self.state.tick_due(now);
    }

    /// One sync for everything appended since the last commit.
    fn commit(&mut self) {
        if self.uncommitted == 0 || self.poisoned.is_some() {
            return;
        }
        let started = Instant::now();
        match self.wal.commit() {
            Ok(c) => {
                self.committed = c.through;
                self.uncommitted = 0;
                self.last_commit = Instant::now();
                let us = self.last_commit.duration_since(started).as_micros() as u64;
                self.shared.metrics.observe_commit(us);
                self.shared.metrics.stages.commit.record(us);
                self.times.commit_us += us;
                self.times.commits += 1;
                self.shared
                    .metrics
                    .committed_lsn
                    .store(c.through.0, Relaxed);
                self.flush_events();
                self.publish();
                self.replies.release(c);
                self.times.reply_us += self.last_commit.elapsed().as_micros() as u64;
            }
            Err(e) => {
                tracing::error!(shard = self.k, error = %e, "commit failed; shard poisoned until restart");
                self.poison(format!("commit failed: {e}"));
            }
        }
    }

    /// State is (or may be) ahead of the log: refuse everything, including every answer
    /// already computed whose record is not durable.
    fn poison(&mut self, reason: String) {
        self.shared.metrics.poisoned.store(1, Relaxed);
        self.replies.fail(SubmitError::Unavailable(reason.clone()));
        self.events.clear();
        self.uncommitted = 0;
        self.poisoned = Some(reason);
    }

    fn flush_events(&mut self) {
        self.shared
            .events
            .push_all(&mut self.seqs, &mut self.events);
        self.shared
            .events
            .set_floor(self.k, self.seqs.floor(self.last_now));
    }

    fn publish(&mut self) {
        if self.poisoned.is_none() {
            *self.shared.float.lock() = self.state.float();
        }
    }

    /// Every N records or M seconds: freeze on this thread (the pause), serialise and write on
    /// the writer thread.
    fn maybe_snapshot(&mut self) {
        self.on_snapshots_written();
        if self.records_since_snapshot == 0 || self.poisoned.is_some() || self.uncommitted > 0 {
            return;
        }
        self.start_snapshot();
    }

    /// Snapshots the writer finished: count them, and move what they cover to the archive.
    fn on_snapshots_written(&mut self) {
        while let Ok(Written { lsn, leftover }) = self.snapshot_done_rx.try_recv() {
            self.snapshot_in_flight = false;
            self.leftovers.push(leftover);
            let Some(lsn) = lsn else { continue };
            self.shared.metrics.snapshots.fetch_add(1, Relaxed);
            self.shared.metrics.snapshot_lsn.store(lsn.0, Relaxed);
            if self.tuning.remove_covered_segments {
                // Keep in the live log what every kept snapshot needs (if the newest one is
                // later found damaged, recovery falls back to the previous one); the rest
                // moves to the archive.
                let keep = wal::snapshot::keep_log_from(&self.snapshot_dir);
                let archive = &self.archive_dir;
                if let Err(e) =
                    keep.and_then(|keep| self.wal.archive_segments_before(keep, archive))
                {
                    tracing::warn!(shard = self.k, error = %e, "could not archive covered segments");
                }
            }
            if let Some(days) = self.tuning.log_retention_days {
                match wal::prune_archive(&self.archive_dir, u64::from(days) * 86_400) {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        shard = self.k,
                        segments = n,
                        days,
                        "archived segments past retention deleted"
                    ),
                    Err(e) => {
                        tracing::warn!(shard = self.k, error = %e, "could not prune the archive")
                    }
                }
            }
        }
    }

    /// Drops `crate::LEFTOVER_CARDS_PER_TURN` cards of written snapshots; the
    /// loop does not wait for messages while some are left.
    fn shed_leftovers(&mut self) {
        if let Some(last) = self.leftovers.last_mut() {
            if !last.shed(crate::LEFTOVER_CARDS_PER_TURN) {
                self.leftovers.pop();
            }
        }
    }

    /// Freezes the state and hands it to the writer thread when a snapshot is due.
    fn start_snapshot(&mut self) {
        #[cfg(svault_faults)]
        let forced = self.faults.snapshot_writer_panics;
        #[cfg(not(svault_faults))]
        let forced = false;
        let due = forced
            || self.records_since_snapshot >= self.tuning.snapshot_every_records
            || self.last_snapshot.elapsed() >= Duration::from_secs(self.tuning.snapshot_every_secs);
        if !due {
            return;
        }
        let Some(tx) = &self.snapshot_tx else { return };
        if self.snapshot_in_flight {
            return; // the previous one is still being written
        }
        // Records after the snapshot get a later millisecond than every event before it, so a
        // shard restored from it numbers the following events as this run does.
        self.last_now = self.last_now.max(self.seqs.time_after_last());
        let started = Instant::now();
        let state = self.state.freeze();
        let pause = started.elapsed();
        self.times.snapshot_freeze_us += pause.as_micros() as u64;
        self.shared
            .metrics
            .snapshot_pause_us_last
            .store(pause.as_micros() as u64, Relaxed);
        tracing::info!(
            shard = self.k,
            lsn = self.committed.0,
            cards = state.cards(),
            pause_us = pause.as_micros() as u64,
            "snapshot frozen"
        );
        let job = SnapshotJob {
            lsn: self.committed,
            last_now: self.last_now,
            state,
            #[cfg(svault_faults)]
            panic: std::mem::take(&mut self.faults.snapshot_writer_panics),
        };
        if tx.try_send(job).is_ok() {
            self.snapshot_in_flight = true;
        }
        self.records_since_snapshot = 0;
        self.last_snapshot = Instant::now();
    }

    fn finish(&mut self) {
        self.commit();
        self.flush_events();
        if !self.replies.is_empty() {
            // Only after a failed log (or a commit that did not happen): never answer approved.
            self.replies.fail(SubmitError::Unavailable(
                "shard stopped before its log was committed".into(),
            ));
        }
        // Drain anything still queued: the engine is going away.
        while let Ok(m) = self.rx.try_recv() {
            refuse(m, SubmitError::ShuttingDown);
        }
        self.snapshot_tx = None;
        self.snapshot_hurry.store(true, Relaxed);
        if let Some(h) = self.snapshot_writer.take() {
            let _ = h.join();
        }
        // A snapshot finished while the shard was stopping covers log like any other.
        self.on_snapshots_written();
    }
}

#[cfg(svault_faults)]
impl Shard {
    /// Arms or fires an injected failure.
    fn inject(&mut self, fault: super::faults::Fault) {
        use super::faults::{Fault, MARKER, PANIC_MESSAGE};
        tracing::warn!(shard = self.k, ?fault, "{MARKER}: fault injected");
        match fault {
            Fault::CommitFails => self.wal.inject(wal::Fault::CommitSync),
            Fault::RotationFails => self.wal.inject(wal::Fault::RotationSync),
            Fault::ShardPanics => panic!("{PANIC_MESSAGE}: shard {}", self.k),
            Fault::SnapshotWriterPanics => self.faults.snapshot_writer_panics = true,
        }
    }

    /// A request whose idempotency key names a fault arms it (black-box tests of a server).
    fn fault_from_request(&mut self, request: &Request) {
        if let Some(fault) = request
            .idempotency_key
            .as_deref()
            .and_then(super::faults::from_key)
        {
            self.inject(fault);
        }
    }
}

/// Answers a message that will not be processed.
pub(crate) fn refuse(m: Msg, err: SubmitError) {
    match m {
        Msg::Submit { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Msg::Batch {
            requests, reply, ..
        } => {
            let _ = reply.send(
                requests
                    .into_iter()
                    .map(|(i, _)| (i, Err(err.clone())))
                    .collect(),
            );
        }
        Msg::Query { reply, .. } => {
            let _ = reply.send(Err(err));
        }
        Msg::Queries { queries, reply, .. } => {
            let _ = reply.send(
                queries
                    .into_iter()
                    .map(|(i, _)| (i, Err(err.clone())))
                    .collect(),
            );
        }
        Msg::Call(_) | Msg::Floor { .. } | Msg::Shutdown => {}
        #[cfg(svault_faults)]
        Msg::Inject(_) => {}
    }
}

/// The request of a message the shard prefetches for (a frame's first), with its caller.
fn first_request(m: &Msg) -> Option<(&Request, CallerId)> {
    match m {
        Msg::Submit { request, scope, .. } => Some((request, scope.caller)),
        Msg::Batch {
            requests, scope, ..
        } => requests.first().map(|(_, r)| (r, scope.caller)),
        _ => None,
    }
}
