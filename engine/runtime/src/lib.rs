//! svault's runtime: the pure state machine (svault-core) run durably, one thread per shard
//! over the write-ahead log (wal), plus the offline tools over a data directory.
//!
//! ```text
//! submit ─► router (card → shard) ─► bounded channel ─► shard thread k: drain a batch,
//!                                                        append + apply each, one commit,
//! reply ◄───────────── oneshot per request (or per batch) ◄─ then reply
//! ```
//! Each shard owns its cards, its log (`shard-K/wal`) and its snapshots (`shard-K/snapshots`);
//! the number of shards is fixed per data directory (`meta`). See `docs/ARCHITECTURE.md`.
//!
//! - [`Engine`]: open a data directory, `submit`/`query`, shut down; [`router`]: card → shard;
//! - `shard`: one thread's loop (batch, append, apply, commit, release replies by LSN, snapshot);
//! - [`recovery`]: snapshot + log tail → state; [`meta`]: the directory's fixed settings;
//! - [`events`], [`metrics`]: what the doors read back; [`pages`]: small pages for the process;
//! - [`replay`], [`inspect`], [`report`]: offline tools over a data directory (the `svault`
//!   command calls them); [`progress`]: their progress bars.
//!
//! May depend on: svault-core, wal, threads, channels, files and tracing. Not on sockets, HTTP,
//! the binary protocol or the command line (those are svault-server's). The test hooks
//! (`faults`) compile only under `cfg(svault_faults)` (tests/with-faults/runtime).
//! Start reading at [`Engine::open`], then `shard::Shard::run`.

pub mod events;
#[cfg(svault_faults)]
pub mod faults;
pub mod inspect;
pub mod meta;
pub mod metrics;
pub mod pages;
pub mod progress;
pub mod recovery;
pub mod replay;
mod replies;
pub mod report;
pub mod router;
mod shard;

pub use shard::RecoveryReport;

use crossbeam_channel::{Sender, TrySendError};
use parking_lot::Mutex;
use router::Route;
use shard::{Msg, ScopeList, Shared};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use svault_core::command::{CallerId, Millis, Query, Request};
use svault_core::outcome::{Event, FloatTotals, Outcome, Reply};
use svault_core::state::{QueryAnswer, State, StateConfig};
use tokio::sync::oneshot;

/// When a reply may be sent (SPEC "Durability").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync every batch before replying (batches are small).
    Sync,
    /// one fsync shared by every request that arrived together (default).
    #[default]
    Group,
    /// reply before the fsync; a timer flushes. Loses a window on crash.
    Async,
}

/// How to open the engine.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Fixed per data directory; `None` ⇒ what the directory says, or 2 for a new one.
    pub shards: Option<usize>,
    pub durability: Durability,
}

/// Shards of a new data directory when none is asked for (one per core of the target machine).
pub const SHARDS_DEFAULT: usize = 2;

/// The wall clock in milliseconds since the Unix epoch.
pub fn wall_clock() -> Millis {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0);
    Millis(ms)
}

/// Where batch time comes from (tests drive it by hand).
pub type Clock = Arc<dyn Fn() -> Millis + Send + Sync>;

/// Default [`Tuning::slow_batch_ms`]: well under a gateway's timeout, well over a healthy batch.
pub const SLOW_BATCH_MS_DEFAULT: u64 = 10;

/// Cards of a written snapshot the shard drops per loop turn (see
/// `svault_core::state::Leftover`): the cards copied since the freeze and their histories,
/// a fraction of a millisecond to free. Public so the `snapshot_stall` bench sheds as the
/// shard does.
pub const LEFTOVER_CARDS_PER_TURN: usize = 8192;

/// Limits and intervals of the runtime; every one has a sensible default.
#[derive(Clone)]
pub struct Tuning {
    /// Messages waiting per shard before `submit` answers `Overloaded` (a `submit_batch` frame
    /// is one message).
    pub queue_depth_max: usize,
    /// Requests drained into one batch (one commit) at most.
    pub batch_requests_max: usize,
    /// A snapshot after this many records since the last one...
    pub snapshot_every_records: u64,
    /// ...or after this many seconds (if anything was logged).
    pub snapshot_every_secs: u64,
    /// Move log segments a durable snapshot covers out of `shard-N/wal/` into
    /// `shard-N/archive/` (off ⇒ they stay in the live log). Either way the whole history is
    /// kept for point-in-time replay, reports and audits.
    pub remove_covered_segments: bool,
    /// Delete archived segments last written more than this many days ago (`None`: keep all).
    pub log_retention_days: Option<u32>,
    /// How often an idle shard wakes to check `tick_due`.
    pub idle_tick_ms: u64,
    /// Commit interval under `async` durability.
    pub async_flush_ms: u64,
    /// Events kept for `events_after`.
    pub events_max: usize,
    /// A batch whose queue wait, apply, commit and reply add up to at least this many
    /// milliseconds is logged (`tracing` warn, with its parts and what else happened).
    pub slow_batch_ms: u64,
    pub wal: wal::WalOptions,
    pub state: StateConfig,
    pub clock: Clock,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            queue_depth_max: 16_384,
            batch_requests_max: 8_192,
            snapshot_every_records: 10_000_000,
            snapshot_every_secs: 600,
            remove_covered_segments: true,
            log_retention_days: None,
            idle_tick_ms: 250,
            async_flush_ms: 10,
            events_max: events::EVENTS_MAX_DEFAULT,
            slow_batch_ms: SLOW_BATCH_MS_DEFAULT,
            wal: wal::WalOptions::default(),
            state: StateConfig::default(),
            clock: Arc::new(wall_clock),
        }
    }
}

impl std::fmt::Debug for Tuning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tuning")
            .field("queue_depth_max", &self.queue_depth_max)
            .field("batch_requests_max", &self.batch_requests_max)
            .field("snapshot_every_records", &self.snapshot_every_records)
            .field("snapshot_every_secs", &self.snapshot_every_secs)
            .field("remove_covered_segments", &self.remove_covered_segments)
            .field("log_retention_days", &self.log_retention_days)
            .field("idle_tick_ms", &self.idle_tick_ms)
            .field("async_flush_ms", &self.async_flush_ms)
            .field("events_max", &self.events_max)
            .field("slow_batch_ms", &self.slow_batch_ms)
            .field("wal", &self.wal)
            .finish_non_exhaustive()
    }
}

/// Which programs a caller may touch (gateway keys are limited to listed programs).
#[derive(Debug, Clone, Default)]
pub enum Scope {
    #[default]
    All,
    Programs(Arc<[String]>),
}

impl Scope {
    fn list(&self, caller: CallerId) -> ScopeList {
        let programs = match self {
            Scope::All => None,
            Scope::Programs(p) => Some(p.clone()),
        };
        ScopeList { programs, caller }
    }
}

/// Why a request got no answer from the state machine.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum SubmitError {
    /// The shard's queue is full: `503` with `Retry-After`.
    #[error("overloaded")]
    Overloaded,
    /// The card belongs to a program outside the caller's scope: `403`.
    #[error("forbidden")]
    Forbidden,
    /// The log cannot be written (disk full, poisoned after a sync error): `503`.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("shutting down")]
    ShuttingDown,
    /// The request breaks an input rule ([`svault_core::rules::check_request`]): refused before
    /// it is logged, so the log never holds a record replay refuses. The doors check each field
    /// as they parse it; only a caller of the Engine API that skips them meets this.
    #[error("invalid request: {0}")]
    Invalid(svault_core::rules::Invalid),
}

/// Errors opening the engine (recovery refused, wrong shard count, i/o).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    #[error(transparent)]
    Wal(#[from] wal::WalError),
    #[error("{0}")]
    Config(String),
    /// A shard's log or snapshot could not be turned back into state.
    #[error("recovery of shard {shard} refused: {reason}")]
    Recovery { shard: usize, reason: String },
}

/// One shard's counters since the engine opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShardStats {
    pub requests: u64,
    pub batches: u64,
    pub commits: u64,
    /// Time spent in commits (µs), for a mean commit latency.
    pub commit_us_total: u64,
    pub committed_lsn: u64,
    /// Snapshots written (durably) since open.
    pub snapshots: u64,
    pub snapshot_lsn: u64,
    /// Freeze time of the last snapshot: how long the shard stopped serving for it.
    pub snapshot_pause_us: u64,
    /// Serialise + write + fsync time of the last snapshot, off the shard thread.
    pub snapshot_write_ms: u64,
    pub poisoned: bool,
}

/// Combines per-shard digests (in shard order) into the data directory's digest.
pub fn combine_digests(digests: &[u64]) -> u64 {
    let bytes: Vec<u8> = digests.iter().flat_map(|d| d.to_le_bytes()).collect();
    xxhash_rust::xxh3::xxh3_64(&bytes)
}

/// Refuses to open `dir` with a state config other than the one its log was written under; a
/// directory from before the config was recorded ran with the defaults of then, which are
/// written into its `meta` now (logged), so later opens and `svault replay` see them. The tick
/// bound is the directory's own (asked for by nobody): the one in `meta` is returned in the
/// config to run with.
fn check_state_config(
    dir: &std::path::Path,
    found: &meta::Meta,
    asked: &StateConfig,
) -> Result<StateConfig, EngineError> {
    let stored = found
        .state
        .clone()
        .unwrap_or_else(StateConfig::as_first_recorded);
    let asked = &StateConfig {
        timers_per_tick_max: stored.timers_per_tick_max,
        ..asked.clone()
    };
    let differ = meta::state_differences(&stored, asked);
    if !differ.is_empty() {
        return Err(EngineError::Config(format!(
            "{} was written under another state config ({}); these settings change what the log means, so the directory must be opened with the ones in its meta",
            dir.display(),
            differ.join(", ")
        )));
    }
    if found.state.is_none() {
        tracing::info!(
            "{}: meta predates the recorded state config; recording the defaults it ran with ({stored:?})",
            dir.display()
        );
        let m = meta::Meta {
            shards: found.shards,
            state: Some(stored),
        };
        meta::write(dir, &m).map_err(|e| EngineError::Config(e.to_string()))?;
    }
    Ok(asked.clone())
}

/// Sums per-program float totals of several shards, sorted by program id. The bound holds per
/// shard (a shard refuses what would take its float past 10^12); the sum over shards may pass
/// it and still fits an `i64` a thousand times over.
pub fn merge_floats<'a>(
    parts: impl IntoIterator<Item = &'a [(String, FloatTotals)]>,
) -> Vec<(String, FloatTotals)> {
    let mut merged: std::collections::BTreeMap<String, FloatTotals> = Default::default();
    for part in parts {
        for (program, t) in part {
            let m = merged.entry(program.clone()).or_default();
            // Each shard's float is within 10^12 (10^14 fen) and a directory has at most
            // `meta::SHARDS_MAX` shards, so these checked sums cannot overflow; never saturate.
            m.principal += t.principal;
            m.bonus += t.bonus;
            m.held += t.held;
            m.cards += t.cards;
        }
    }
    merged.into_iter().collect()
}

/// One shard's float, published after every batch (read by `Engine::float` without a message).
type FloatSlot = Arc<Mutex<Vec<(String, FloatTotals)>>>;

struct Inner {
    senders: Vec<Sender<Msg>>,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
    shut: AtomicBool,
    created_new: bool,
    events: Arc<events::EventRing>,
    floats: Vec<FloatSlot>,
    metrics: Vec<Arc<metrics::ShardMetrics>>,
    queue_depth_max: usize,
    reports: Vec<RecoveryReport>,
}

impl Inner {
    fn stop(&self) {
        if self.shut.swap(true, Ordering::SeqCst) {
            return;
        }
        for tx in &self.senders {
            // A blocking send: shutdown waits its turn behind what is queued.
            let _ = tx.send(Msg::Shutdown);
        }
        let threads = std::mem::take(&mut *self.threads.lock());
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A handle to the running engine; cheap to clone, shared by all connections.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Opens the data directory, recovers every shard, starts the shard threads.
    pub fn open(config: EngineConfig) -> Result<Engine, EngineError> {
        Engine::open_with(config, Tuning::default())
    }

    /// `open` with explicit limits and intervals.
    pub fn open_with(config: EngineConfig, mut tuning: Tuning) -> Result<Engine, EngineError> {
        let dir = &config.data_dir;
        std::fs::create_dir_all(dir)
            .map_err(|e| EngineError::Config(format!("cannot create {}: {e}", dir.display())))?;
        let found = meta::read(dir).map_err(|e| EngineError::Config(e.to_string()))?;
        let created_new = found.is_none();
        if let Some(m) = &found {
            tuning.state = check_state_config(dir, m, &tuning.state)?;
        }
        let shards = match (found, config.shards) {
            (Some(m), Some(n)) if m.shards != n => {
                return Err(EngineError::Config(format!(
                    "{} was created with {} shards; it cannot be opened with {n} (the card → shard mapping depends on it)",
                    dir.display(),
                    m.shards
                )))
            }
            (Some(m), _) => m.shards,
            (None, n) => {
                let n = n.unwrap_or(SHARDS_DEFAULT);
                if n == 0 || n > meta::SHARDS_MAX {
                    return Err(EngineError::Config(format!("shards must be 1..={}, got {n}", meta::SHARDS_MAX)));
                }
                if recovery::shard_paths(dir, 0).root.exists() {
                    return Err(EngineError::Config(format!(
                        "{} holds shard directories but no meta file; refusing to guess the shard count",
                        dir.display()
                    )));
                }
                let m = meta::Meta { shards: n, state: Some(tuning.state.clone()) };
                meta::write(dir, &m).map_err(|e| EngineError::Config(e.to_string()))?;
                n
            }
        };
        if config.durability == Durability::Async {
            let msg = format!(
                "durability=async: replies are sent BEFORE the log is synced (flushed every {} ms); a crash loses the last window of acknowledged requests",
                tuning.async_flush_ms
            );
            tracing::warn!("{msg}");
            eprintln!("WARNING: {msg}");
        }

        let events = Arc::new(events::EventRing::new(tuning.events_max, shards));
        let mut senders = Vec::with_capacity(shards);
        let mut floats = Vec::with_capacity(shards);
        let mut metrics_v = Vec::with_capacity(shards);
        let mut threads = Vec::with_capacity(shards);
        let mut opened = Vec::with_capacity(shards);
        for k in 0..shards {
            let (tx, rx) = crossbeam_channel::bounded(tuning.queue_depth_max.max(1));
            let float = Arc::new(Mutex::new(Vec::new()));
            let m = Arc::new(metrics::ShardMetrics::default());
            let shared = Shared {
                events: events.clone(),
                float: float.clone(),
                metrics: m.clone(),
            };
            let paths = recovery::shard_paths(dir, k);
            let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
            let t = tuning.clone();
            let durability = config.durability;
            let handle = std::thread::Builder::new()
                .name(format!("svault-shard-{k}"))
                .spawn(
                    move || match shard::open(k, &paths, rx, t, durability, shared) {
                        Ok((s, report)) => {
                            let _ = ready_tx.send(Ok(report));
                            let _crash_only = shard::abort_on_panic("shard thread", k);
                            s.run();
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                        }
                    },
                )
                .map_err(|e| EngineError::Config(format!("cannot start shard thread: {e}")))?;
            senders.push(tx);
            floats.push(float);
            metrics_v.push(m);
            threads.push(handle);
            opened.push(ready_rx);
        }
        let mut reports = Vec::with_capacity(shards);
        let mut failure = None;
        for (k, rx) in opened.into_iter().enumerate() {
            match rx.recv() {
                Ok(Ok(r)) => reports.push(r),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert(EngineError::Recovery {
                        shard: k,
                        reason: "shard thread died".into(),
                    });
                }
            }
        }
        let inner = Inner {
            senders,
            threads: Mutex::new(threads),
            shut: AtomicBool::new(false),
            created_new,
            events,
            floats,
            metrics: metrics_v,
            queue_depth_max: tuning.queue_depth_max,
            reports,
        };
        if let Some(e) = failure {
            inner.stop();
            return Err(e);
        }
        for r in &inner.reports {
            // The replay's rate, without the snapshot's restore.
            let replay = r.elapsed.saturating_sub(r.snapshot_elapsed);
            let secs = replay.as_secs_f64().max(1e-9);
            tracing::info!(
                shard = r.shard,
                snapshot_lsn = r.snapshot_lsn,
                snapshot_ms = r.snapshot_elapsed.as_millis() as u64,
                records = r.records,
                last_lsn = r.last_lsn,
                cards = r.cards,
                keys = r.keys,
                ms = r.elapsed.as_millis() as u64,
                records_per_s = (r.records as f64 / secs) as u64,
                "shard recovered"
            );
            if let Some(t) = &r.torn_tail {
                tracing::warn!(shard = r.shard, "torn tail cut: {t}");
            }
        }
        Ok(Engine {
            inner: Arc::new(inner),
        })
    }

    /// `true` when `open` found no data and created a new directory (serve then creates `demo`).
    pub fn created_new(&self) -> bool {
        self.inner.created_new
    }

    /// Number of shards of this data directory.
    pub fn shards(&self) -> usize {
        self.inner.senders.len()
    }

    /// What recovery found, per shard (snapshot LSN, records replayed, torn tail, time taken).
    pub fn recovery_reports(&self) -> &[RecoveryReport] {
        &self.inner.reports
    }

    fn send(&self, k: usize, msg: Msg) -> Result<(), SubmitError> {
        if self.inner.shut.load(Ordering::Relaxed) {
            return Err(SubmitError::ShuttingDown);
        }
        let tx = self.inner.senders.get(k).ok_or(SubmitError::ShuttingDown)?;
        match tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                if let Some(m) = self.inner.metrics.get(k) {
                    m.overloaded.fetch_add(1, Ordering::Relaxed);
                }
                Err(SubmitError::Overloaded)
            }
            Err(TrySendError::Disconnected(_)) => Err(SubmitError::ShuttingDown),
        }
    }

    fn gone(&self) -> SubmitError {
        if self.inner.shut.load(Ordering::Relaxed) {
            SubmitError::ShuttingDown
        } else {
            SubmitError::Unavailable("shard stopped".into())
        }
    }

    /// Submits one mutating request of the default caller (see [`Engine::submit_as`]).
    pub async fn submit(&self, request: Request, scope: &Scope) -> Result<Reply, SubmitError> {
        self.submit_as(request, scope, CallerId::DEFAULT).await
    }

    /// Submits one mutating request of `caller` (its idempotency key is the caller's own);
    /// resolves once its WAL record is durable (per durability).
    pub async fn submit_as(
        &self,
        request: Request,
        scope: &Scope,
        caller: CallerId,
    ) -> Result<Reply, SubmitError> {
        svault_core::rules::check_request(&request).map_err(SubmitError::Invalid)?;
        let shards = self.shards();
        let list = scope.list(caller);
        match router::route(&request.command, shards) {
            Route::Shard(k) => {
                let (tx, rx) = oneshot::channel();
                self.send(
                    k,
                    Msg::Submit {
                        request,
                        scope: list,
                        reply: tx,
                        sent: Instant::now(),
                    },
                )?;
                rx.await.map_err(|_| self.gone())?
            }
            Route::Broadcast => {
                let mut waits = Vec::with_capacity(shards);
                for k in 0..shards {
                    let (tx, rx) = oneshot::channel();
                    match self.send(
                        k,
                        Msg::Submit {
                            request: request.clone(),
                            scope: list.clone(),
                            reply: tx,
                            sent: Instant::now(),
                        },
                    ) {
                        Ok(()) => waits.push(rx),
                        Err(e) => {
                            // Shards already sent to apply it; a retry with the same key completes
                            // the rest and is answered from their idempotency records.
                            for w in waits {
                                let _ = w.await;
                            }
                            return Err(e);
                        }
                    }
                }
                let mut replies = Vec::with_capacity(shards);
                for w in waits {
                    replies.push(w.await.map_err(|_| self.gone())?);
                }
                merge_broadcast(replies)
            }
        }
    }

    /// [`Engine::submit_batch_as`] for the default caller.
    pub async fn submit_batch(
        &self,
        requests: Vec<Request>,
        scope: &Scope,
    ) -> Vec<Result<Reply, SubmitError>> {
        self.submit_batch_as(requests, scope, CallerId::DEFAULT)
            .await
    }

    /// Submits many requests of `caller` at once (the binary protocol's frames); answers in
    /// the same order.
    ///
    /// Requests are grouped into one message per shard (one queue slot, one wake-up), in frame
    /// order within each shard. A broadcast (program upsert) is a barrier: everything before it
    /// in the frame is answered first, everything after it is sent after it.
    pub async fn submit_batch_as(
        &self,
        requests: Vec<Request>,
        scope: &Scope,
        caller: CallerId,
    ) -> Vec<Result<Reply, SubmitError>> {
        let shards = self.shards();
        let list = scope.list(caller);
        let n = requests.len();
        let mut out: Vec<Option<Result<Reply, SubmitError>>> = (0..n).map(|_| None).collect();
        let mut per_shard: Vec<Vec<(usize, Request)>> = (0..shards).map(|_| Vec::new()).collect();
        for (i, r) in requests.into_iter().enumerate() {
            if let Err(invalid) = svault_core::rules::check_request(&r) {
                // Refused alone, before anything is logged; the rest of the frame goes on.
                if let Some(slot) = out.get_mut(i) {
                    *slot = Some(Err(SubmitError::Invalid(invalid)));
                }
                continue;
            }
            match router::route(&r.command, shards) {
                Route::Shard(k) => {
                    if let Some(v) = per_shard.get_mut(k) {
                        v.push((i, r));
                    }
                }
                Route::Broadcast => {
                    self.send_groups(&mut per_shard, &list, &mut out).await;
                    let reply = self.submit_as(r, scope, caller).await;
                    if let Some(slot) = out.get_mut(i) {
                        *slot = Some(reply);
                    }
                }
            }
        }
        self.send_groups(&mut per_shard, &list, &mut out).await;
        answered(out)
    }

    /// Sends each non-empty per-shard group of a frame's mutations as one message and waits
    /// for all of them.
    async fn send_groups(
        &self,
        per_shard: &mut [Vec<(usize, Request)>],
        scope: &ScopeList,
        out: &mut [Option<Result<Reply, SubmitError>>],
    ) {
        self.scatter(per_shard, out, |requests, reply| Msg::Batch {
            requests,
            scope: scope.clone(),
            reply,
            sent: Instant::now(),
        })
        .await;
    }

    /// Many reads (a binary frame's), answered in their order. Each shard gets its share as one
    /// message, as a frame's mutations do ([`Engine::submit_batch_as`]): a frame of reads costs
    /// a shard one turn, not one round trip per card, and takes one place in its queue.
    pub async fn query_batch(
        &self,
        queries: Vec<Query>,
        scope: &Scope,
    ) -> Vec<Result<QueryAnswer, SubmitError>> {
        let shards = self.shards();
        let list = scope.list(CallerId::DEFAULT);
        let mut out: Vec<Option<Result<QueryAnswer, SubmitError>>> =
            (0..queries.len()).map(|_| None).collect();
        let mut per_shard: Vec<Vec<(usize, Query)>> = (0..shards).map(|_| Vec::new()).collect();
        for (i, q) in queries.into_iter().enumerate() {
            if let Some(v) = per_shard.get_mut(router::shard_of(q.card(), shards)) {
                v.push((i, q));
            }
        }
        self.scatter(&mut per_shard, &mut out, |queries, reply| Msg::Queries {
            queries,
            scope: list.clone(),
            reply,
            sent: Instant::now(),
        })
        .await;
        answered(out)
    }

    /// Sends each non-empty group of `per_shard` (items with their index in the frame) to its
    /// shard as the one message `msg` makes, and puts every answer at its index in `out`: a
    /// group the shard refused, or lost, is answered with that error.
    async fn scatter<I, T>(
        &self,
        per_shard: &mut [Vec<(usize, I)>],
        out: &mut [Option<Result<T, SubmitError>>],
        msg: impl Fn(Vec<(usize, I)>, Gather<T>) -> Msg,
    ) {
        let mut waits = Vec::new();
        for (k, group) in per_shard.iter_mut().enumerate() {
            if group.is_empty() {
                continue;
            }
            let group = std::mem::take(group);
            let idx: Vec<usize> = group.iter().map(|(i, _)| *i).collect();
            let (tx, rx) = oneshot::channel();
            match self.send(k, msg(group, tx)) {
                Ok(()) => waits.push((idx, rx)),
                Err(e) => fill(out, &idx, &e),
            }
        }
        for (idx, rx) in waits {
            match rx.await {
                Ok(results) => {
                    for (i, r) in results {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = Some(r);
                        }
                    }
                }
                Err(_) => fill(out, &idx, &self.gone()),
            }
        }
    }

    /// A read, answered by the card's shard from memory.
    pub async fn query(&self, query: Query, scope: &Scope) -> Result<QueryAnswer, SubmitError> {
        let k = router::shard_of(query.card(), self.shards());
        let (tx, rx) = oneshot::channel();
        self.send(
            k,
            Msg::Query {
                query,
                scope: scope.list(CallerId::DEFAULT),
                reply: tx,
                sent: Instant::now(),
            },
        )?;
        rx.await.map_err(|_| self.gone())?
    }

    /// Outstanding principal/bonus/held per program, summed over shards.
    pub fn float(&self) -> Vec<(String, FloatTotals)> {
        let parts: Vec<Vec<(String, FloatTotals)>> =
            self.inner.floats.iter().map(|f| f.lock().clone()).collect();
        merge_floats(parts.iter().map(|p| p.as_slice()))
    }

    /// Events with seq > `after`, in seq order, at most `limit`, as far as every shard's floor
    /// allows (see `runtime::events`; an idle shard raises its floor every idle tick).
    pub fn events_after(&self, after: u64, limit: usize) -> Vec<(u64, Event)> {
        self.inner.events.after(after, limit)
    }

    /// `events_after`, once every shard with room in its queue has moved its batch time past
    /// the newest event published and raised its floor: every event of a request answered
    /// before the call is shown, without waiting for idle ticks (an event of shard 0 may carry
    /// a later millisecond, or a later index in the same one, than shard 1's clock reads).
    pub async fn events(&self, after: u64, limit: usize) -> Vec<(u64, Event)> {
        let newest = self.inner.events.newest_seq();
        let at = if newest == 0 {
            Millis(0)
        } else {
            Millis(events::seq_parts(newest).0 + 1)
        };
        let mut waits = Vec::with_capacity(self.shards());
        for sender in &self.inner.senders {
            let (tx, rx) = oneshot::channel::<()>();
            if sender.try_send(Msg::Floor { at, reply: tx }).is_ok() {
                waits.push(rx);
            }
        }
        for rx in waits {
            let _ = rx.await;
        }
        self.events_after(after, limit)
    }

    /// Appends the runtime's Prometheus lines (batch sizes, commit latency histogram, queue depth,
    /// shard LSNs) to `out`; the HTTP layer adds request counts, declines and the float.
    pub fn render_metrics(&self, out: &mut String) {
        let depths: Vec<usize> = self.inner.senders.iter().map(|s| s.len()).collect();
        metrics::render(
            out,
            &self.inner.metrics,
            &depths,
            self.inner.queue_depth_max,
        );
    }

    /// Runs `f` against every shard's state, in shard order, in line with that shard's requests
    /// (blocking; for tools and tests, not the hot path).
    pub fn with_states<T: Send + 'static>(
        &self,
        f: impl Fn(&State) -> T + Send + Sync + 'static,
    ) -> Result<Vec<T>, SubmitError> {
        let f = Arc::new(f);
        let mut waits = Vec::with_capacity(self.shards());
        for k in 0..self.shards() {
            let (tx, rx) = crossbeam_channel::bounded(1);
            let f = f.clone();
            let call: shard::StateCall = Box::new(move |s: &State| {
                let _ = tx.send(f(s));
            });
            if self.inner.shut.load(Ordering::Relaxed) {
                return Err(SubmitError::ShuttingDown);
            }
            let sender = self.inner.senders.get(k).ok_or(SubmitError::ShuttingDown)?;
            sender
                .send(Msg::Call(call))
                .map_err(|_| SubmitError::ShuttingDown)?;
            waits.push(rx);
        }
        waits
            .into_iter()
            .map(|rx| rx.recv().map_err(|_| self.gone()))
            .collect()
    }

    /// Test hook (`cfg(svault_faults)`, never in the `svault` binary): arms `fault` on shard
    /// `k`, in line with that shard's requests.
    #[cfg(svault_faults)]
    pub fn inject(&self, k: usize, fault: faults::Fault) -> Result<(), SubmitError> {
        let sender = self.inner.senders.get(k).ok_or(SubmitError::ShuttingDown)?;
        sender
            .send(Msg::Inject(fault))
            .map_err(|_| SubmitError::ShuttingDown)
    }

    /// Counters of every shard, in shard order (the same numbers `/metrics` shows).
    pub fn shard_stats(&self) -> Vec<ShardStats> {
        let r = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        self.inner
            .metrics
            .iter()
            .map(|m| ShardStats {
                requests: r(&m.requests),
                batches: r(&m.batches),
                commits: r(&m.commits),
                commit_us_total: r(&m.commit_us_sum),
                committed_lsn: r(&m.committed_lsn),
                snapshots: r(&m.snapshots),
                snapshot_lsn: r(&m.snapshot_lsn),
                snapshot_pause_us: r(&m.snapshot_pause_us_last),
                snapshot_write_ms: r(&m.snapshot_write_ms_last),
                poisoned: r(&m.poisoned) != 0,
            })
            .collect()
    }

    /// The data directory's state digest: per-shard `State::digest` combined in shard order
    /// (the same number `svault replay` prints for the same log).
    pub fn digest(&self) -> Result<u64, SubmitError> {
        Ok(combine_digests(&self.with_states(|s| s.digest())?))
    }

    /// Stops taking requests, commits what is in flight, writes seal records, joins the shards.
    pub fn shutdown(&self) {
        self.inner.stop();
    }
}

/// One answer for a broadcast (a program upsert): the first refusal if any shard refused, else
/// shard 0's approval, flagged `replayed` only when every shard replayed it.
fn merge_broadcast(replies: Vec<Result<Reply, SubmitError>>) -> Result<Reply, SubmitError> {
    let mut oks = Vec::with_capacity(replies.len());
    for r in replies {
        oks.push(r?);
    }
    let all_replayed = oks.iter().all(|r| r.replayed);
    let pick = oks
        .iter()
        .position(|r| !matches!(r.outcome, Outcome::Approved(_)))
        .unwrap_or(0);
    if pick >= oks.len() {
        return Err(SubmitError::Unavailable("no shard answered".into()));
    }
    let mut reply = oks.swap_remove(pick);
    if matches!(reply.outcome, Outcome::Approved(_)) {
        reply.replayed = all_replayed;
    }
    Ok(reply)
}

/// Where a shard sends its share of a frame's answers, each with its index in the frame.
type Gather<T> = oneshot::Sender<Vec<(usize, Result<T, SubmitError>)>>;

/// A frame's answers, every one given (a slot left empty is a bug, answered as unavailable).
fn answered<T>(out: Vec<Option<Result<T, SubmitError>>>) -> Vec<Result<T, SubmitError>> {
    out.into_iter()
        .map(|r| r.unwrap_or_else(|| Err(SubmitError::Unavailable("no answer".into()))))
        .collect()
}

/// Sets the answers at `idx` to `err` (a shard's share of a frame that was refused or lost).
fn fill<T>(out: &mut [Option<Result<T, SubmitError>>], idx: &[usize], err: &SubmitError) {
    for &i in idx {
        if let Some(slot) = out.get_mut(i) {
            *slot = Some(Err(err.clone()));
        }
    }
}
