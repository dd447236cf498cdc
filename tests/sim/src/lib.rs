//! svault's whole-engine deterministic simulator.
//!
//! One seed drives everything: clients (top-ups, spends with and without `allow_partial`,
//! holds, increments, captures, voids, refunds, cash-outs, reversals before and after their
//! request, retries and duplicates with the same idempotency key, program changes), the wall
//! clock (steps forward, jumps of days, steps back), every shard's batch (append its records to
//! the log, apply them, one commit, then the replies), process kills and power losses at any
//! point (between steps, between append and commit, after a commit before its replies, and
//! at any write, sync, create, rename or remove through [`fused::Fuse`]: inside a commit, a
//! segment rotation, a snapshot write or a recovery), restarts from snapshot + log, and the
//! simulated disk's faults (`wal::sim::MemStorage`: torn and dropped unsynced sectors, lost
//! directory operations, `EIO` on write and sync, `ENOSPC`, latent sector errors).
//!
//! The code under test is the real one: `State::apply_logged`, the log record encoding
//! (`record::encode_into`/`decode`), `wal::Wal` over the simulated disk, snapshot
//! encode/decode (`runtime::recovery::{encode_snapshot, decode_snapshot}`), the snapshot file
//! format (`wal::snapshot::write_on`/`read_latest_on`, the same steps as the real-file
//! `write`), and recovery (`check_continuity`, `replay_wal`). What is not the real code: the
//! shard loop itself. The runtime's shard is a thread fed by channels; here each shard's loop is
//! re-enacted single-threaded in simulated time, step for step as `runtime::shard` does it
//! (batch time never below the previous batch, ticks, append before apply, one commit per
//! batch, replies only after the commit, poisoned until restart after a failed sync, a
//! snapshot only when nothing is uncommitted, at the committed LSN).
//!
//! After every step: money is conserved to the fen in every shard (the cards' principal +
//! bonus = the journal of every reply's effects = the float the state keeps). After every
//! restart: no shard lost an acknowledged record (its log reaches past the last acknowledged
//! LSN; it holds no record that was never appended), the money check on the recovered state,
//! and re-sent idempotency keys answer as the first acknowledged answer did. Every few
//! restarts and at the end: replaying each log from scratch gives, record by record, the same
//! replies the live shards gave, and the same digest as the live (or recovered) state. At the
//! end every acknowledged key still within its TTL is re-sent and checked.

#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod fused;

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use fused::{Fuse, Fused};
use rkyv::util::AlignedVec;
use runtime::recovery::{self, RecoveryError, Until};
use svault_core::command::{
    CallerId, CardId, CashOutReason, Channel, Command, GrantReason, Method, Millis, Query, Request,
    TxnId,
};
use svault_core::money::Amount;
use svault_core::outcome::{DeclineCode, Event, EventKind, Outcome, Reply, TxnKind};
use svault_core::program::{Program, ProgramSpec};
use svault_core::record::{self, LogRecord, LOG_RECORD_VERSION};
use svault_core::state::{QueryAnswer, State, StateConfig};
use wal::sim::{Damage, FaultRates, FaultStats, MemStorage, SimConfig, SimRng};
use wal::{Lsn, Storage, Wal, WalError, WalOptions};

/// 2024-01-01T04:00:00Z: where every run's clock starts.
const T0: i64 = 1_704_081_600_000;
/// Cards a run uses (ids `CARD_BASE + 0..CARDS`).
const CARDS: u64 = 24;
const CARD_BASE: u64 = 6_200_000_000_000_001;
/// Stores spends and holds name; the `fast` program denies `s9`.
const STORES: [Option<&str>; 3] = [None, Some("s1"), Some("s9")];
/// Idle ticks: a shard checks for due timers when this much batch time passed (the runtime's
/// default `idle_tick_ms`).
const IDLE_TICK_MS: i64 = 250;
/// Callers: keys are namespaced by caller, so two callers may use the same key.
const CALLERS: [CallerId; 2] = [CallerId::DEFAULT, CallerId(0x5EED)];

/// What to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// The seed: every choice of the run follows from it.
    pub seed: u64,
    /// Steps (client batches, clock moves, idle ticks, crashes).
    pub ops: u64,
    /// Print every step to stderr.
    pub trace: bool,
    /// Chance (ppm) that a restart is followed by an extra from-scratch replay of every log
    /// (there is one whenever the logs doubled since the last one, and at the end of a run).
    pub full_replay_ppm: u32,
}

impl Options {
    /// `ops` steps of `seed`, from-scratch replays whenever the logs doubled and at the end.
    /// (A replay that differs stays in the log, so the next one finds it: extra replays at
    /// random restarts only find it sooner, at the cost of replaying the whole history.)
    pub fn new(seed: u64, ops: u64) -> Options {
        Options {
            seed,
            ops,
            trace: false,
            full_replay_ppm: 0,
        }
    }
}

/// A broken promise, with what reproduces it.
#[derive(Debug, Clone)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub what: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {} step {}: {} (reproduce: SIM_SEED={} cargo test -p svault-sim --test seeds one_seed -- --nocapture; trace with SIM_TRACE=1)",
            self.seed, self.step, self.what, self.seed
        )
    }
}

impl std::error::Error for Failure {}

/// What a run did and injected, summed over runs by [`Stats::add`].
#[derive(Debug, Clone, Default)]
pub struct Stats {
    pub seeds: u64,
    pub steps: u64,
    /// Requests sent (each shard's copy of a program change counts once).
    pub requests: u64,
    /// Answers released after their commit (acknowledged).
    pub acked: u64,
    /// Requests refused `Unavailable` (disk full, failed log, poisoned shard).
    pub unavailable: u64,
    /// Generated requests the doors' rules refuse (`rules::check_request`): never sent.
    pub door_refused: u64,
    /// Requests whose answer a crash swallowed (appended, maybe durable, never acknowledged).
    pub unanswered: u64,
    /// Acknowledged answers to a key seen before, checked equal to the first.
    pub retries_checked: u64,
    /// Keys re-sent at the end of a run and checked.
    pub final_keys_checked: u64,
    pub restarts: u64,
    /// Restarts after a kill (page cache kept).
    pub kills: u64,
    /// Restarts after a power loss (unsynced writes dropped or torn).
    pub power_losses: u64,
    /// Restarts after a clean close (sealed log).
    pub clean_restarts: u64,
    /// Crashes between a batch's appends and its commit.
    pub crash_after_append: u64,
    /// Crashes after a commit, before its replies left.
    pub crash_after_commit: u64,
    /// Deaths at a chosen write/sync/create/rename/remove: in a commit, a rotation (an
    /// append), a snapshot write, a recovery.
    pub death_in_commit: u64,
    pub death_in_append: u64,
    pub death_in_snapshot: u64,
    pub death_in_recovery: u64,
    pub death_elsewhere: u64,
    pub snapshots_written: u64,
    pub snapshots_failed: u64,
    /// Segments a snapshot covered, removed from the live log (kept aside as the archive).
    pub segments_archived: u64,
    /// Damaged or torn snapshot files recovery passed over for an older one.
    pub snapshots_passed_over: u64,
    /// Restarts that recovered from a snapshot (not from LSN 1).
    pub restored_from_snapshot: u64,
    pub torn_tails_cut: u64,
    /// Records appended but not acknowledged that recovery did not find (allowed).
    pub unacked_records_lost: u64,
    /// Shards poisoned by a failed sync or write (refuse all until restart).
    pub poisoned: u64,
    pub disk_full_spells: u64,
    pub clock_steps_back: u64,
    pub clock_jumps: u64,
    pub program_changes: u64,
    pub reversals: u64,
    pub reversals_before_request: u64,
    pub ticks: u64,
    /// Recoveries that failed with a transient fault (`EIO`, `ENOSPC`) and were retried.
    pub recovery_retries: u64,
    pub full_replays: u64,
    pub records_replayed_from_scratch: u64,
    /// Latent sector errors injected (synced sectors of segments before the last, snapshots).
    pub latent_injected: u64,
    /// Recoveries that refused a damaged log with a typed error (the run ends there).
    pub latent_refused: u64,
    /// Faults the simulated disks injected, logs and snapshot directories summed.
    pub disk: FaultStats,
}

impl Stats {
    /// Adds `o`'s counts to these.
    pub fn add(&mut self, o: &Stats) {
        macro_rules! sum {
            ($($f:ident),*) => { $(self.$f += o.$f;)* };
        }
        sum!(
            seeds,
            steps,
            requests,
            acked,
            unavailable,
            door_refused,
            unanswered,
            retries_checked,
            final_keys_checked,
            restarts,
            kills,
            power_losses,
            clean_restarts,
            crash_after_append,
            crash_after_commit,
            death_in_commit,
            death_in_append,
            death_in_snapshot,
            death_in_recovery,
            death_elsewhere,
            snapshots_written,
            snapshots_failed,
            segments_archived,
            snapshots_passed_over,
            restored_from_snapshot,
            torn_tails_cut,
            unacked_records_lost,
            poisoned,
            disk_full_spells,
            clock_steps_back,
            clock_jumps,
            program_changes,
            reversals,
            reversals_before_request,
            ticks,
            recovery_retries,
            full_replays,
            records_replayed_from_scratch,
            latent_injected,
            latent_refused
        );
        self.disk.add(&o.disk);
    }
}

/// Runs one seed. `Ok` holds what it did; `Err` the first broken promise.
pub fn run(opts: &Options) -> Result<Stats, Failure> {
    let mut sim = Sim::new(opts.clone());
    let result = sim.run_all();
    sim.collect_disk_stats();
    sim.stats.seeds = 1;
    result.map(|()| sim.stats)
}

/// One shard's disks: its log directory and its snapshot directory.
struct Disks {
    wal: MemStorage,
    snaps: MemStorage,
}

/// One shard's whole log as `svault replay` reads it: the segments removed from the live log
/// after a snapshot covered them (the runtime moves them to `archive/`), as they were on disk,
/// and copies of the live log's segments, in one directory on a reliable disk.
struct History {
    disk: MemStorage,
    /// The archived segments in `disk`; the other files are copies of the live log, replaced
    /// before every from-scratch replay.
    archived: BTreeSet<String>,
}

/// A running shard: what `runtime::shard::Shard` holds, minus threads and channels.
struct Proc {
    state: State,
    wal: Wal<Fused>,
    /// Batch time: never below the previous batch.
    last_now: i64,
    last_tick_check: i64,
    tick_backlog: bool,
    poisoned: bool,
    uncommitted: u64,
    since_snapshot: u64,
    buf: AlignedVec,
    events: Vec<Event>,
}

/// One record as the live shard applied it.
#[derive(Clone)]
struct Rec {
    /// Hash of the reply's full form.
    reply: u64,
    /// Σ(principal + bonus) the replies say the shard's cards hold after this record.
    journal: i64,
    /// The transaction this record's reply moved money for (first time only).
    counted: Option<TxnId>,
}

/// What the simulator knows of one shard across crashes.
#[derive(Default)]
struct Book {
    /// Every record appended and applied, by LSN − 1 (cut back to what recovery finds).
    hist: Vec<Rec>,
    /// Highest LSN whose answer was released.
    acked: u64,
    journal: i64,
    counted: HashSet<TxnId>,
}

impl Book {
    fn truncate(&mut self, lsn: u64) {
        while self.hist.len() as u64 > lsn {
            if let Some(r) = self.hist.pop() {
                if let Some(t) = r.counted {
                    self.counted.remove(&t);
                }
            }
        }
        self.journal = self.hist.last().map_or(0, |r| r.journal);
    }
}

/// A client's knowledge of one idempotency key on one shard.
struct KeyModel {
    caller: CallerId,
    request: Request,
    shard: usize,
    /// The wall clock when the client first made the request (traces, re-sends).
    first_sent: i64,
    /// A lower bound of the instant the engine recorded the key's current answer (or the
    /// reversal marker waiting for it): the engine keeps a key at least its TTL from then, so
    /// until `life_from + ttl` every answer must repeat the first one; from then on the key may
    /// have been forgotten and answered anew. A replay does not renew a key.
    life_from: i64,
    /// The first acknowledged answer (compared whole: every field).
    answer: Option<Outcome>,
    /// An acknowledged reversal approved: the next answer must be `declined: reversed`.
    must_be_reversed: bool,
    /// A reversal may have applied (unacknowledged, or declined): either answer is right.
    may_be_reversed: bool,
}

/// Where a crash struck.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Append,
    Commit,
    Snapshot,
    Recovery,
    Other,
}

/// Why a step stopped.
enum Stop {
    Died,
    Failed(Failure),
}

impl From<Failure> for Stop {
    fn from(f: Failure) -> Stop {
        Stop::Failed(f)
    }
}

/// One request of a client batch.
#[derive(Clone)]
struct Sent {
    caller: CallerId,
    request: Request,
    /// The wall clock when the client made the request (its key lives from about then).
    born: i64,
}

/// The answer a shard gave one request of a batch.
struct Answer {
    shard: usize,
    sent: Sent,
    /// `Ok(reply)`, or the refusal (`Unavailable`).
    reply: Result<Reply, String>,
    /// The LSN that must be durable before the answer leaves.
    lsn: u64,
}

struct Sim {
    opts: Options,
    seed: u64,
    rng: SimRng,
    step: u64,
    config: StateConfig,
    wal_opts: WalOptions,
    shards: usize,
    /// The wall clock (may step back; batch time does not).
    clock: i64,
    fuse: Arc<Fuse>,
    disks: Vec<Disks>,
    /// Per shard: the whole log as `svault replay` reads it, for from-scratch replays.
    history: Vec<History>,
    procs: Vec<Option<Proc>>,
    books: Vec<Book>,
    keys: Vec<KeyModel>,
    key_index: HashMap<(usize, CallerId, String), usize>,
    /// Per key without an acknowledged answer yet: the earliest batch time any shard applied it
    /// at (a lower bound of when the engine recorded it, for a first answer that is a replay of
    /// an application whose answer a crash swallowed).
    first_exec: HashMap<(usize, CallerId, String), i64>,
    /// Scratch space of [`reply_hash`].
    hash_buf: AlignedVec,
    /// Requests whose reversal was sent first, to be sent later.
    planned: Vec<Sent>,
    holds: Vec<TxnId>,
    txns: Vec<TxnId>,
    next_key: u64,
    snapshot_every: u64,
    /// Steps left in a disk-full spell (0: none).
    disk_full_left: u64,
    /// Chance (ppm) per restart of a latent sector error (0 for most seeds).
    latent_ppm: u32,
    /// A latent sector error was injected: recovery may refuse from now on.
    damaged: bool,
    /// The run ended early because recovery refused a damaged log (as it must).
    refused: bool,
    program_version: u64,
    /// The end of a run: no more crashes chosen by the run.
    calm: bool,
    /// Records (all shards) at which the next restart replays every log from scratch.
    next_full_replay: u64,
    phase: Phase,
    stats: Stats,
}

/// The hash of a reply's full form: every field of the outcome (its rkyv encoding, which
/// decodes back to the same value, so equal encodings are equal outcomes), and whether it was
/// replayed. `buf` is reused between calls.
fn reply_hash(r: &Reply, buf: &mut AlignedVec) -> u64 {
    buf.clear();
    let outcome =
        match rkyv::api::high::to_bytes_in::<_, rkyv::rancor::Error>(&r.outcome, &mut *buf) {
            Ok(_) => xxhash_rust::xxh3::xxh3_64(buf),
            // Every outcome encodes; if one did not, its text form stands in (slow, still exact).
            Err(_) => xxhash_rust::xxh3::xxh3_64(format!("{:?}", r.outcome).as_bytes()),
        };
    outcome ^ u64::from(r.replayed)
}

/// The full form of a reply (failure messages).
fn reply_form(r: &Reply) -> String {
    format!("{:?} replayed={}", r.outcome, r.replayed)
}

fn card(i: u64) -> CardId {
    CardId(CARD_BASE + i)
}

fn fast_program(version: u64) -> Program {
    // Program changes move limits, the bonus ladder and the discount: later requests are decided
    // by the new rules, replay must reach the same answers.
    let max_single = 400 + 50 * (version % 4);
    let rate = ["0.125", "0.1", "0.15", "0.2"][(version % 4) as usize];
    let discount = ["0.03", "0.05", "0", "0.08"][(version % 4) as usize];
    let json = format!(
        r#"{{"id":"fast","currency":"CNY","utc_offset":"-05:00",
        "top_up":{{"max_single":"{max_single}","max_daily":"600","max_balance":"900","max_balance_anonymous":"300"}},
        "bonus_ladder":[{{"nth":1,"bonus":"3.33"}},{{"nth":2,"min":"10","rate":"{rate}"}}],
        "bonus_expiry_days":2,"spend_order":"bonus_first",
        "points":{{"earn_per_unit":"2.5","redeem_rate":"7"}},
        "tiers":[{{"name":"t1","lifetime_top_up":"50","points_multiplier":"1.5","discount":"{discount}"}}],
        "discount_windows":[{{"from":"22:00","to":"02:00","rate":"0.07"}}],
        "velocity":{{"max_spends_per_minute":3,"max_daily_spend":"700"}},
        "refund_lock_days":1,"reminders":{{"low_balance":"5","bonus_expiring_days":1}},
        "spend":{{"max_single":"350","max_daily_count":6,"stores_deny":["s9"]}}}}"#
    );
    let spec: ProgramSpec = match serde_json::from_str(&json) {
        Ok(s) => s,
        Err(e) => panic!("the simulator's program spec does not parse: {e}"),
    };
    match Program::from_spec(&spec) {
        Ok(p) => p,
        Err(e) => panic!("the simulator's program spec is refused: {e}"),
    }
}

impl Sim {
    fn new(opts: Options) -> Sim {
        let seed = opts.seed;
        let mut rng = SimRng::new(seed ^ 0x51A1_u64.rotate_left(40));
        let shards = 1 + rng.below(3) as usize;
        let segment_size_bytes = [8192u64, 16384, 32768, 65536][rng.below(4) as usize];
        let wal_opts = WalOptions {
            segment_size_bytes,
            ..WalOptions::default()
        };
        let mut disks = Vec::with_capacity(shards);
        for k in 0..shards as u64 {
            let mut wal_cfg = SimConfig::from_seed(seed.wrapping_mul(31).wrapping_add(k));
            wal_cfg.faults = quarter(wal_cfg.faults);
            let mut snap_cfg = SimConfig::from_seed(seed.wrapping_mul(37).wrapping_add(k + 1000));
            snap_cfg.faults = quarter(snap_cfg.faults);
            disks.push(Disks {
                wal: MemStorage::new(wal_cfg),
                snaps: MemStorage::new(snap_cfg),
            });
        }
        let snapshot_every = 16 + rng.below(400);
        let latent_ppm = if rng.below(4) == 0 { 50_000 } else { 0 };
        Sim {
            seed,
            rng,
            step: 0,
            config: StateConfig {
                history_per_card_max: 64,
                ..StateConfig::default()
            },
            wal_opts,
            shards,
            clock: T0,
            fuse: Fuse::new(),
            procs: (0..shards).map(|_| None).collect(),
            history: (0..shards as u64)
                .map(|k| History {
                    disk: MemStorage::new(SimConfig::reliable(seed.wrapping_add(k))),
                    archived: BTreeSet::new(),
                })
                .collect(),
            books: (0..shards).map(|_| Book::default()).collect(),
            disks,
            keys: Vec::new(),
            key_index: HashMap::new(),
            first_exec: HashMap::new(),
            hash_buf: AlignedVec::with_capacity(1024),
            planned: Vec::new(),
            holds: Vec::new(),
            txns: Vec::new(),
            next_key: 0,
            snapshot_every,
            disk_full_left: 0,
            latent_ppm,
            damaged: false,
            refused: false,
            program_version: 0,
            calm: false,
            next_full_replay: 64,
            phase: Phase::Other,
            stats: Stats::default(),
            opts,
        }
    }

    fn fail(&self, what: impl fmt::Display) -> Failure {
        Failure {
            seed: self.seed,
            step: self.step,
            what: what.to_string(),
        }
    }

    fn trace(&self, what: impl fmt::Display) {
        if self.opts.trace {
            eprintln!("[{} {}] {what}", self.seed, self.step);
        }
    }

    fn collect_disk_stats(&mut self) {
        let mut total = FaultStats::default();
        for d in &self.disks {
            total.add(&d.wal.stats());
            total.add(&d.snaps.stats());
        }
        self.stats.disk = total;
    }

    fn chance(&mut self, ppm: u32) -> bool {
        self.rng.chance_ppm(ppm)
    }

    /// A crash the run chooses (never while calm).
    fn crash_now(&mut self, ppm: u32) -> bool {
        let hit = self.rng.chance_ppm(ppm);
        hit && !self.calm
    }

    fn fused(&self, disk: &MemStorage) -> Fused {
        Fused {
            disk: disk.clone(),
            fuse: self.fuse.clone(),
        }
    }

    // ---------------------------------------------------------------- the run

    fn run_all(&mut self) -> Result<(), Failure> {
        self.start()?;
        self.setup()?;
        while self.step < self.opts.ops && !self.refused {
            self.step += 1;
            self.stats.steps += 1;
            match self.one_step() {
                Ok(()) => {}
                Err(Stop::Failed(f)) => return Err(f),
                Err(Stop::Died) => self.restart_after_death()?,
            }
            if !self.refused {
                self.check_money_all()?;
            }
        }
        if self.refused {
            return Ok(());
        }
        self.finish()
    }

    /// First start: empty disks.
    fn start(&mut self) -> Result<(), Failure> {
        self.recover_all(false)
    }

    /// Programs and cards, retried until acknowledged.
    fn setup(&mut self) -> Result<(), Failure> {
        let mut batches: Vec<Vec<Sent>> = Vec::new();
        batches.push(vec![
            self.keyed(CallerId::DEFAULT, Command::UpsertProgram(Program::demo())),
            self.keyed(CallerId::DEFAULT, Command::UpsertProgram(fast_program(0))),
        ]);
        let mut opens = Vec::new();
        for c in 0..CARDS - 4 {
            let cmd = Command::OpenCard {
                card_id: card(c),
                program: if c % 2 == 0 { "demo" } else { "fast" }.to_string(),
                registered: c % 3 != 0,
                birthday: None,
            };
            opens.push(self.keyed(CallerId::DEFAULT, cmd));
        }
        batches.push(opens);
        for batch in batches {
            let mut tries = 0;
            loop {
                if self.refused {
                    return Ok(());
                }
                tries += 1;
                if tries > 200 {
                    return Err(self.fail("setup never acknowledged"));
                }
                match self.send_batch(&batch) {
                    Ok(answers) => {
                        if answers.iter().all(|a| a.reply.is_ok()) {
                            break;
                        }
                        self.restart_if_poisoned()?;
                    }
                    Err(Stop::Failed(f)) => return Err(f),
                    Err(Stop::Died) => self.restart_after_death()?,
                }
            }
        }
        Ok(())
    }

    fn one_step(&mut self) -> Result<(), Stop> {
        self.move_clock();
        self.disk_full_weather();
        if self.crash_now(800) {
            // Kill or power loss between steps.
            return Err(Stop::Died);
        }
        if self.crash_now(1_200) {
            // Die at one of the next few I/O calls, wherever they are.
            let n = self.rng.below(8);
            self.fuse.arm(n);
        }
        if self.chance(1_000) {
            self.clean_restart()?;
            return Ok(());
        }
        if self.procs.iter().flatten().any(|p| p.poisoned) && self.chance(300_000) {
            // The operator (or supervisor) restarts a process whose log failed.
            return Err(Stop::Died);
        }
        let r = self.rng.below(100);
        if r < 8 {
            self.idle_all()?;
        } else {
            let batch = self.client_batch();
            self.send_batch(&batch)?;
        }
        self.snapshots()?;
        if self.fuse.blown() {
            return Err(Stop::Died);
        }
        Ok(())
    }

    fn move_clock(&mut self) {
        let r = self.rng.below(1000);
        if r < 3 {
            self.stats.clock_jumps += 1;
            self.clock += 3_600_000 + self.rng.below(3 * 86_400_000) as i64;
        } else if r < 23 {
            self.stats.clock_steps_back += 1;
            self.clock -= self.rng.below(600_000) as i64;
        } else {
            self.clock += self.rng.below(3_000) as i64;
        }
    }

    fn disk_full_weather(&mut self) {
        if self.disk_full_left > 0 {
            self.disk_full_left -= 1;
            if self.disk_full_left == 0 {
                for d in &self.disks {
                    d.wal.set_capacity(u64::MAX);
                    d.snaps.set_capacity(u64::MAX);
                }
            }
            return;
        }
        if self.chance(2_000) {
            self.stats.disk_full_spells += 1;
            self.disk_full_left = 5 + self.rng.below(100);
            let seg = self.wal_opts.segment_size_bytes;
            for k in 0..self.disks.len() {
                let extra = self.rng.below(2 * seg);
                let d = &self.disks[k];
                d.wal.set_capacity(d.wal.used_bytes() + extra);
                d.snaps.set_capacity(d.snaps.used_bytes() + extra);
            }
        }
    }

    // ---------------------------------------------------------------- clients

    fn keyed(&mut self, caller: CallerId, command: Command) -> Sent {
        self.next_key += 1;
        Sent {
            caller,
            request: Request {
                idempotency_key: Some(format!("k{}", self.next_key)),
                command,
            },
            born: self.clock,
        }
    }

    fn pick_card(&mut self) -> CardId {
        card(self.rng.below(CARDS))
    }

    fn pick_ref(&mut self, holds: bool) -> TxnId {
        let v = if holds { &self.holds } else { &self.txns };
        if v.is_empty() {
            return TxnId {
                card: card(0),
                seq: 99,
            };
        }
        // Mostly recent ones: old holds are long captured or expired.
        let n = v.len() as u64;
        let i = if self.rng.below(4) == 0 {
            self.rng.below(n)
        } else {
            n - 1 - self.rng.below(n.min(8))
        };
        v[i as usize]
    }

    fn amount(&mut self) -> Amount {
        Amount(match self.rng.below(4) {
            0 => 1 + self.rng.below(60_000) as i64,
            1 => 10_000,
            _ => 1 + self.rng.below(2_000) as i64,
        })
    }

    fn caller(&mut self) -> CallerId {
        CALLERS[(self.rng.below(8) == 0) as usize]
    }

    /// A key model to retry or reverse: mostly recent ones.
    fn pick_key(&mut self) -> Option<usize> {
        if self.keys.is_empty() {
            return None;
        }
        let n = self.keys.len() as u64;
        Some(if self.rng.below(3) == 0 {
            self.rng.below(n)
        } else {
            n - 1 - self.rng.below(n.min(16))
        } as usize)
    }

    fn client_batch(&mut self) -> Vec<Sent> {
        let n = 1 + self.rng.below(6);
        let mut out = Vec::new();
        for _ in 0..n {
            self.one_request(&mut out);
        }
        out
    }

    fn one_request(&mut self, out: &mut Vec<Sent>) {
        let caller = self.caller();
        let r = self.rng.below(1000);
        let cmd = match r {
            0..=179 => Command::TopUp {
                card_id: self.pick_card(),
                amount: self.amount(),
                channel: Channel::ALL[self.rng.below(4) as usize],
            },
            180..=399 => Command::Spend {
                card_id: self.pick_card(),
                amount: if self.rng.below(3) == 0 {
                    self.amount()
                } else {
                    Amount(1 + self.rng.below(2_000) as i64)
                },
                method: Method::ALL[self.rng.below(3) as usize],
                allow_partial: self.rng.below(3) == 0,
                store: STORES[self.rng.below(3) as usize].map(str::to_string),
            },
            400..=489 => Command::Hold {
                card_id: self.pick_card(),
                amount: self.amount(),
                ttl_seconds: self.rng.below(600) as u32,
                method: Method::Card,
                allow_partial: self.rng.below(3) == 0,
                store: STORES[self.rng.below(2) as usize].map(str::to_string),
            },
            490..=539 => Command::IncrementHold {
                hold_id: self.pick_ref(true),
                amount: Amount(1 + self.rng.below(20_000) as i64),
                ttl_seconds: (self.rng.below(2) == 0).then(|| self.rng.below(600) as u32),
            },
            540..=609 => Command::Capture {
                hold_id: self.pick_ref(true),
                amount: (self.rng.below(2) == 0).then(|| Amount(1 + self.rng.below(30_000) as i64)),
            },
            610..=639 => Command::Void {
                hold_id: self.pick_ref(true),
            },
            640..=699 => Command::Refund {
                txn_id: self.pick_ref(false),
                amount: Amount(1 + self.rng.below(30_000) as i64),
            },
            700..=704 => Command::CashOut {
                card_id: self.pick_card(),
                reason: CashOutReason::ALL[self.rng.below(3) as usize],
            },
            705..=754 => {
                // Reversal of an earlier request (acknowledged or not) of the same caller.
                let Some(i) = self.pick_key() else { return };
                let k = &self.keys[i];
                let Some(card_id) = k.request.command.card() else {
                    return;
                };
                if matches!(k.request.command, Command::Reversal { .. }) {
                    return;
                }
                let key = k.request.idempotency_key.clone().unwrap_or_default();
                let caller = k.caller;
                let s = self.keyed(caller, Command::Reversal { card_id, key });
                out.push(s);
                return;
            }
            755..=774 => {
                // A reversal that arrives before its request (a gateway timeout, out of order).
                let mut tmp = Vec::new();
                let inner = loop {
                    self.one_request(&mut tmp);
                    match tmp.pop() {
                        Some(s)
                            if s.request.command.card().is_some()
                                && !matches!(
                                    s.request.command,
                                    Command::Reversal { .. }
                                        | Command::UpsertProgram(_)
                                        | Command::OpenCard { .. }
                                ) =>
                        {
                            break s
                        }
                        _ => continue,
                    }
                };
                let (Some(card_id), Some(key)) = (
                    inner.request.command.card(),
                    inner.request.idempotency_key.clone(),
                ) else {
                    return;
                };
                self.stats.reversals_before_request += 1;
                let rev = self.keyed(inner.caller, Command::Reversal { card_id, key });
                self.planned.push(inner);
                out.push(rev);
                return;
            }
            775..=799 => {
                if self.planned.is_empty() {
                    return;
                }
                let i = self.rng.below(self.planned.len() as u64) as usize;
                out.push(self.planned.swap_remove(i));
                return;
            }
            800..=824 => Command::RedeemPoints {
                card_id: self.pick_card(),
                points: 1 + self.rng.below(500),
            },
            825..=849 => Command::Grant {
                card_id: self.pick_card(),
                bonus: (self.rng.below(2) == 0).then(|| Amount(1 + self.rng.below(3_000) as i64)),
                points: (self.rng.below(2) == 0).then(|| 1 + self.rng.below(300)),
                reason: GrantReason::ALL[self.rng.below(4) as usize],
            },
            850..=859 => Command::Freeze {
                card_id: self.pick_card(),
            },
            860..=874 => Command::Unfreeze {
                card_id: self.pick_card(),
            },
            875 => Command::Close {
                card_id: self.pick_card(),
            },
            876..=884 => Command::OpenCard {
                card_id: card(CARDS - 4 + self.rng.below(4)),
                program: if self.rng.below(2) == 0 {
                    "demo"
                } else {
                    "fast"
                }
                .to_string(),
                registered: self.rng.below(2) == 0,
                birthday: None,
            },
            885..=969 => {
                // Retry of an earlier request with the same key (and sometimes twice at once).
                let Some(i) = self.pick_key() else { return };
                let k = &self.keys[i];
                let s = Sent {
                    caller: k.caller,
                    request: k.request.clone(),
                    born: k.first_sent,
                };
                if self.rng.below(4) == 0 {
                    out.push(s.clone());
                }
                out.push(s);
                return;
            }
            970..=974 => {
                self.program_version += 1;
                self.stats.program_changes += 1;
                Command::UpsertProgram(fast_program(self.program_version))
            }
            _ => {
                // A duplicate: the same new request twice in one batch.
                let cmd = Command::TopUp {
                    card_id: self.pick_card(),
                    amount: Amount(1 + self.rng.below(5_000) as i64),
                    channel: Channel::Cash,
                };
                let s = self.keyed(caller, cmd);
                out.push(s.clone());
                out.push(s);
                return;
            }
        };
        let s = self.keyed(caller, cmd);
        out.push(s);
    }

    // ---------------------------------------------------------------- shards

    /// Sends a batch: each shard handles its part as one batch (append, apply, one commit),
    /// then releases the answers. Program changes go to every shard.
    fn send_batch(&mut self, batch: &[Sent]) -> Result<Vec<Answer>, Stop> {
        let mut per_shard: Vec<Vec<Sent>> = vec![Vec::new(); self.shards];
        for s in batch {
            if svault_core::rules::check_request(&s.request).is_err() {
                // The doors refuse it (`400`) before any shard sees it.
                self.stats.door_refused += 1;
                continue;
            }
            match runtime::router::route(&s.request.command, self.shards) {
                runtime::router::Route::Shard(k) => per_shard[k].push(s.clone()),
                runtime::router::Route::Broadcast => {
                    for v in per_shard.iter_mut() {
                        v.push(s.clone());
                    }
                }
            }
        }
        let mut all = Vec::new();
        for (k, sents) in per_shard.into_iter().enumerate() {
            if sents.is_empty() {
                continue;
            }
            let answers = self.shard_batch(k, sents)?;
            all.extend(answers);
        }
        Ok(all)
    }

    /// One shard's batch, as `Shard::process` runs it.
    fn shard_batch(&mut self, k: usize, sents: Vec<Sent>) -> Result<Vec<Answer>, Stop> {
        let clock = self.clock;
        self.stats.requests += sents.len() as u64;
        let Some(p) = self.procs[k].as_mut() else {
            return Err(Stop::Died);
        };
        if clock > p.last_now {
            p.last_now = clock;
        }
        let now = p.last_now;
        self.maybe_tick(k, now)?;
        let mut answers = Vec::with_capacity(sents.len());
        for s in sents {
            match self.exec(k, &s, now) {
                Ok((reply, lsn)) => answers.push(Answer {
                    shard: k,
                    sent: s,
                    reply,
                    lsn,
                }),
                Err(e) => {
                    self.lost(&answers);
                    self.unacked(k, &s);
                    return Err(e);
                }
            }
        }
        if self.crash_now(600) {
            self.stats.crash_after_append += 1;
            self.lost(&answers);
            return Err(Stop::Died);
        }
        let committed = match self.commit(k) {
            Ok(c) => c,
            Err(e) => {
                self.lost(&answers);
                return Err(e);
            }
        };
        if self.crash_now(600) {
            self.stats.crash_after_commit += 1;
            self.lost(&answers);
            return Err(Stop::Died);
        }
        for a in &mut answers {
            if a.reply.is_ok() && !committed {
                a.reply = Err("commit failed".into());
            }
        }
        for a in &answers {
            self.deliver(a)?;
        }
        Ok(answers)
    }

    /// Answers a crash swallowed: the client saw nothing.
    fn lost(&mut self, answers: &[Answer]) {
        for a in answers {
            self.trace(format!(
                "lost shard {} {:?} key {:?}",
                a.shard, a.sent.caller, a.sent.request.idempotency_key
            ));
            self.stats.unanswered += 1;
            self.unacked(a.shard, &a.sent);
        }
    }

    /// A request the client got no answer for (or a refusal): a reversal may have applied.
    fn unacked(&mut self, shard: usize, s: &Sent) {
        if let Command::Reversal { card_id, key } = &s.request.command {
            let k = runtime::router::shard_of(*card_id, self.shards);
            if let Some(&i) = self.key_index.get(&(k, s.caller, key.clone())) {
                self.keys[i].may_be_reversed = true;
            }
        }
        let _ = shard;
    }

    /// Appends the request's record, then applies it (`Shard::exec_inner`).
    fn exec(&mut self, k: usize, s: &Sent, now: i64) -> Result<(Result<Reply, String>, u64), Stop> {
        self.phase = Phase::Append;
        let Some(p) = self.procs[k].as_mut() else {
            return Err(Stop::Died);
        };
        let last = |p: &Proc| p.wal.next_lsn().0.saturating_sub(1);
        if p.poisoned {
            return Ok((Err("poisoned".into()), last(p)));
        }
        let rec = LogRecord {
            version: LOG_RECORD_VERSION,
            now: Millis(now),
            caller: s.caller,
            request: s.request.clone(),
        };
        if let Err(e) = record::encode_into(&rec, &mut p.buf) {
            return Err(Stop::Failed(
                self.fail(format!("cannot encode a log record: {e}")),
            ));
        }
        match p.wal.append(&p.buf) {
            Ok(_) => {}
            Err(WalError::DiskFull) => return Ok((Err("disk full".into()), last(p))),
            Err(e) => {
                if self.fuse.blown() {
                    return Err(Stop::Died);
                }
                p.poisoned = true;
                self.stats.poisoned += 1;
                let l = last(p);
                return Ok((Err(format!("log append failed: {e}")), l));
            }
        }
        p.uncommitted += 1;
        p.since_snapshot += 1;
        let reply = p.state.apply_logged(
            &rec.request,
            rec.caller,
            Millis(now),
            record::rules_of(rec.version),
            &mut p.events,
        );
        let lsn = last(p);
        let mut expired = 0i64;
        for e in p.events.drain(..) {
            if let EventKind::BonusExpired { amount } = e.kind {
                expired += amount.0;
            }
        }
        if let Some(key) = &s.request.idempotency_key {
            let id = (k, s.caller, key.clone());
            let answered = self
                .key_index
                .get(&id)
                .is_some_and(|&i| self.keys[i].answer.is_some());
            if !answered {
                self.first_exec.entry(id).or_insert(now);
            }
        }
        let hash = reply_hash(&reply, &mut self.hash_buf);
        let book = &mut self.books[k];
        if book.hist.len() as u64 + 1 != lsn {
            return Err(Stop::Failed(self.fail(format!(
                "shard {k}: appended lsn {lsn} after {} records",
                self.books[k].hist.len()
            ))));
        }
        book.journal -= expired;
        let mut counted = None;
        if !reply.replayed {
            if let Outcome::Approved(a) = &reply.outcome {
                let again = a.txn_id.is_some_and(|t| book.counted.contains(&t));
                if again && a.kind != TxnKind::Reversal {
                    let f = self.fail(format!(
                        "shard {k}: only a second reversal answers with an earlier transaction: {reply:?}"
                    ));
                    return Err(Stop::Failed(f));
                }
                if !again {
                    if let Some(t) = a.txn_id {
                        book.counted.insert(t);
                        counted = Some(t);
                    }
                    let (pr, b) = (a.principal.0, a.bonus.0);
                    book.journal += match a.kind {
                        TxnKind::TopUp
                        | TxnKind::Refund
                        | TxnKind::Redeem
                        | TxnKind::Grant
                        | TxnKind::Reversal => pr + b,
                        TxnKind::Spend | TxnKind::Capture | TxnKind::CashOut | TxnKind::Close => {
                            -(pr + b)
                        }
                        _ => 0,
                    };
                }
            }
        }
        let journal = book.journal;
        book.hist.push(Rec {
            reply: hash,
            journal,
            counted,
        });
        if matches!(rec.request.command, Command::Tick) {
            self.stats.ticks += 1;
        }
        Ok((Ok(reply), lsn))
    }

    /// `Shard::maybe_tick`: a tick is logged when timers are due.
    fn maybe_tick(&mut self, k: usize, now: i64) -> Result<(), Stop> {
        let Some(p) = self.procs[k].as_mut() else {
            return Err(Stop::Died);
        };
        let since = now.saturating_sub(p.last_tick_check);
        if p.poisoned || (since < IDLE_TICK_MS && !p.tick_backlog) {
            return Ok(());
        }
        p.last_tick_check = now;
        if p.state.tick_due(Millis(now)) {
            let tick = Sent {
                caller: CallerId::DEFAULT,
                request: Request {
                    idempotency_key: None,
                    command: Command::Tick,
                },
                born: now,
            };
            let _ = self.exec(k, &tick, now)?;
        }
        if let Some(p) = self.procs[k].as_mut() {
            p.tick_backlog = !p.poisoned && p.state.tick_due(Millis(now));
        }
        Ok(())
    }

    /// One commit; `Ok(false)` when it failed (the shard is poisoned).
    fn commit(&mut self, k: usize) -> Result<bool, Stop> {
        self.phase = Phase::Commit;
        let Some(p) = self.procs[k].as_mut() else {
            return Err(Stop::Died);
        };
        if p.poisoned {
            return Ok(false);
        }
        if p.uncommitted == 0 {
            return Ok(true);
        }
        if !self.fuse.armed() && !self.calm && self.rng.chance_ppm(1_500) {
            // Die between the batch's write and its sync: a power loss then tears the batch.
            self.fuse.arm(1);
        }
        match p.wal.commit() {
            Ok(c) => {
                p.uncommitted = 0;
                let through = c.through.0;
                let book = &mut self.books[k];
                if through < book.acked {
                    return Err(Stop::Failed(self.fail("commit went backwards")));
                }
                Ok(true)
            }
            Err(_) => {
                if self.fuse.blown() {
                    return Err(Stop::Died);
                }
                p.poisoned = true;
                p.uncommitted = 0;
                self.stats.poisoned += 1;
                Ok(false)
            }
        }
    }

    /// An idle shard loop: commit, tick, commit (`Shard::on_idle`).
    fn idle_all(&mut self) -> Result<(), Stop> {
        for k in 0..self.shards {
            let clock = self.clock;
            let Some(p) = self.procs[k].as_mut() else {
                return Err(Stop::Died);
            };
            if clock > p.last_now {
                p.last_now = clock;
            }
            let now = p.last_now;
            self.maybe_tick(k, now)?;
            self.commit(k)?;
        }
        Ok(())
    }

    /// The answer leaves (its commit succeeded): the client acknowledges it.
    fn deliver(&mut self, a: &Answer) -> Result<(), Failure> {
        let reply = match &a.reply {
            Ok(r) => r,
            Err(why) => {
                self.trace(format!(
                    "refused shard {} {:?} key {:?}: {why}",
                    a.shard, a.sent.caller, a.sent.request.idempotency_key
                ));
                self.stats.unavailable += 1;
                self.unacked(a.shard, &a.sent);
                return Ok(());
            }
        };
        self.stats.acked += 1;
        if self.opts.trace {
            self.trace(format!(
                "ack shard {} lsn {} at {} born {} {:?} key {:?}: {}",
                a.shard,
                a.lsn,
                self.procs[a.shard].as_ref().map_or(0, |p| p.last_now),
                a.sent.born,
                a.sent.caller,
                a.sent.request.idempotency_key,
                short(&a.sent.request.command, reply)
            ));
        }
        let book = &mut self.books[a.shard];
        book.acked = book.acked.max(a.lsn);
        let now = self.procs[a.shard].as_ref().map_or(0, |p| p.last_now);
        if let Outcome::Approved(ap) = &reply.outcome {
            if let Some(t) = ap.txn_id {
                match ap.kind {
                    TxnKind::Hold => self.holds.push(t),
                    TxnKind::Spend | TxnKind::Capture => self.txns.push(t),
                    _ => {}
                }
            }
        }
        let Some(key) = a.sent.request.idempotency_key.clone() else {
            return Ok(());
        };
        let id = (a.shard, a.sent.caller, key);
        let i = match self.key_index.get(&id) {
            Some(&i) => i,
            None => {
                self.keys.push(KeyModel {
                    caller: a.sent.caller,
                    request: a.sent.request.clone(),
                    shard: a.shard,
                    first_sent: a.sent.born,
                    life_from: now,
                    answer: None,
                    must_be_reversed: false,
                    may_be_reversed: false,
                });
                self.key_index.insert(id, self.keys.len() - 1);
                self.keys.len() - 1
            }
        };
        self.check_answer(i, reply, now)?;
        if let Command::Reversal { card_id, key } = &a.sent.request.command {
            self.stats.reversals += 1;
            let k = runtime::router::shard_of(*card_id, self.shards);
            let target = (k, a.sent.caller, key.clone());
            let approved = matches!(reply.outcome, Outcome::Approved(_));
            match self.key_index.get(&target) {
                Some(&j) => {
                    if approved {
                        self.keys[j].must_be_reversed = true;
                    } else {
                        self.keys[j].may_be_reversed = true;
                    }
                }
                None => {
                    // Reversed before its request arrived: the request must be declined.
                    if let Some(req) = self
                        .planned
                        .iter()
                        .find(|s| s.request.idempotency_key.as_deref() == Some(key.as_str()))
                    {
                        let request = req.request.clone();
                        let caller = req.caller;
                        let born = req.born;
                        self.keys.push(KeyModel {
                            caller,
                            request,
                            shard: k,
                            first_sent: born,
                            // The reversal's marker lives from the reversal, sent at once
                            // (batch time at least the clock that made both).
                            life_from: born,
                            answer: None,
                            must_be_reversed: approved,
                            may_be_reversed: !approved,
                        });
                        self.key_index.insert(target, self.keys.len() - 1);
                    }
                }
            }
        }
        Ok(())
    }

    /// An acknowledged answer to a key: the first one is remembered, later ones must repeat it
    /// byte for byte (unless a reversal changed it to `declined: reversed`) as replays, for
    /// the key's whole TTL (SPEC: keys live at least 24 h), counted from when the engine
    /// recorded the answer; a replay does not renew the key. From the end of the TTL on, the
    /// engine may have forgotten the key: an answer executed anew, or a replay of such an
    /// answer, starts the key's next life, checked as strictly.
    fn check_answer(&mut self, i: usize, reply: &Reply, now: i64) -> Result<(), Failure> {
        let ttl = self.config.idempotency_ttl_ms;
        let form = &reply.outcome;
        let fresh = !reply.replayed;
        let is_reversed = matches!(
            reply.outcome,
            Outcome::Declined {
                code: DeclineCode::Reversed,
                ..
            }
        );
        let m = &mut self.keys[i];
        let remembered = m.answer.is_some() || m.must_be_reversed || m.may_be_reversed;
        let may_be_forgotten = now.saturating_sub(m.life_from) >= ttl;
        // What this life answers: `reversed` after an acknowledged reversal; either that or
        // the first answer after a reversal that may have applied; else the first answer. An
        // engine may keep a key past its TTL (at least 24 h), so this life's answer late is
        // a late replay of it, not a next life.
        let like_this_life = if m.must_be_reversed {
            is_reversed
        } else if m.may_be_reversed {
            is_reversed || m.answer.as_ref().is_none_or(|a| a == form)
        } else {
            m.answer.as_ref() == Some(form)
        };
        let unlike_this_life = !like_this_life;
        if remembered && may_be_forgotten && (fresh || unlike_this_life) {
            // The key's next life. Executed now, the engine recorded it now; a replay that
            // this life would not give (a different answer, or not `reversed` after an
            // acknowledged reversal) repeats an application whose answer was lost, made after
            // the old life ended: the reversal was forgotten with the key.
            m.life_from = if fresh { now } else { m.life_from + ttl };
            m.answer = Some(form.clone());
            m.must_be_reversed = false;
            m.may_be_reversed = false;
            return Ok(());
        }
        if fresh && m.answer.is_some() {
            let what = format!(
                "key {:?} of caller {:?} on shard {}: forgotten within its TTL (recorded at {} or later, now {now}): executed anew as {form:?}, first answered {:?}",
                m.request.idempotency_key, m.caller, m.shard, m.life_from, m.answer
            );
            return Err(self.fail(what));
        }
        if m.answer.is_none() {
            // The first answer: executed now, or a replay of an application whose answer a
            // crash swallowed (recorded at the earliest batch that carried the key).
            let id = (
                m.shard,
                m.caller,
                m.request.idempotency_key.clone().unwrap_or_default(),
            );
            let first = self.first_exec.remove(&id);
            let m = &mut self.keys[i];
            if fresh {
                m.life_from = now;
            } else if let Some(t) = first {
                m.life_from = t;
            } else {
                let what = format!(
                    "key {:?} of caller {:?} on shard {}: replayed {form:?} before any shard applied it",
                    m.request.idempotency_key, m.caller, m.shard
                );
                return Err(self.fail(what));
            }
        }
        let m = &mut self.keys[i];
        if m.must_be_reversed {
            if !is_reversed {
                let what = format!(
                    "key {:?} of caller {:?} on shard {}: reversed, yet answered {form:?}",
                    m.request.idempotency_key, m.caller, m.shard
                );
                return Err(self.fail(what));
            }
            m.must_be_reversed = false;
            m.may_be_reversed = false;
            m.answer = Some(form.clone());
            return Ok(());
        }
        if m.may_be_reversed {
            let ok = is_reversed || m.answer.as_ref().is_none_or(|a| a == form);
            if !ok {
                let what = format!(
                    "key {:?} of caller {:?} on shard {}: first answered {:?}, now {form:?}",
                    m.request.idempotency_key, m.caller, m.shard, m.answer
                );
                return Err(self.fail(what));
            }
            m.may_be_reversed = false;
            m.answer = Some(form.clone());
            return Ok(());
        }
        match &m.answer {
            None => m.answer = Some(form.clone()),
            Some(a) => {
                self.stats.retries_checked += 1;
                if a != form {
                    let what = format!(
                        "key {:?} of caller {:?} on shard {}: an acknowledged answer changed.\n  first: {a:?}\n  now:   {form:?}",
                        m.request.idempotency_key, m.caller, m.shard
                    );
                    return Err(self.fail(what));
                }
            }
        }
        Ok(())
    }

    /// `Shard::maybe_snapshot`, written through the simulated disk.
    fn snapshots(&mut self) -> Result<(), Stop> {
        for k in 0..self.shards {
            let every = self.snapshot_every;
            let Some(p) = self.procs[k].as_mut() else {
                return Err(Stop::Died);
            };
            if p.poisoned || p.uncommitted > 0 || p.since_snapshot < every {
                continue;
            }
            self.phase = Phase::Snapshot;
            if !self.fuse.armed() && !self.calm && self.rng.chance_ppm(30_000) {
                // Die inside the snapshot write: at its create, write, sync, rename or removal.
                self.fuse.arm(self.rng.below(8));
            }
            let lsn = p.wal.durable_lsn();
            let frozen = p.state.freeze();
            let bytes = recovery::encode_snapshot(&frozen, Millis(p.last_now));
            drop(frozen);
            p.since_snapshot = 0;
            let storage = Fused {
                disk: self.disks[k].snaps.clone(),
                fuse: self.fuse.clone(),
            };
            match wal::snapshot::write_on(&storage, lsn, &bytes) {
                Ok(()) => {
                    self.stats.snapshots_written += 1;
                    self.archive_covered(k)?;
                }
                Err(_) if self.fuse.blown() => return Err(Stop::Died),
                Err(e) => {
                    self.stats.snapshots_failed += 1;
                    self.trace(format!("shard {k}: snapshot at {} failed: {e}", lsn.0));
                }
            }
        }
        Ok(())
    }

    /// After a durable snapshot: the segments every kept snapshot covers leave the live log
    /// (`Wal::remove_segments_before(snapshot::keep_log_from(..))`), kept aside for replay.
    fn archive_covered(&mut self, k: usize) -> Result<(), Stop> {
        let snaps = self.fused(&self.disks[k].snaps);
        let keep = match wal::snapshot::keep_log_from_on(&snaps) {
            Ok(l) => l,
            Err(_) if self.fuse.blown() => return Err(Stop::Died),
            Err(_) => return Ok(()),
        };
        let disk = self.disks[k].wal.clone();
        let Some(p) = self.procs[k].as_mut() else {
            return Err(Stop::Died);
        };
        // The segments the removal will take (each but the last whose successor starts at or
        // before `keep`), copied before they go: a removed file's bytes are freed.
        let before = segment_names(&p.wal);
        let leaving = before
            .windows(2)
            .take_while(|w| {
                w.get(1)
                    .and_then(|n| first_lsn_of(n))
                    .is_some_and(|l| l <= keep.0)
            })
            .filter_map(|w| w.first())
            .filter_map(|n| disk.durable_image(n).map(|image| (n.clone(), image)))
            .collect::<Vec<_>>();
        let r = p.wal.remove_segments_before(keep);
        let after = segment_names(&p.wal);
        let h = &mut self.history[k];
        for (n, image) in leaving {
            if !after.contains(&n) {
                h.disk.install(&n, image);
                h.archived.insert(n);
                self.stats.segments_archived += 1;
            }
        }
        match r {
            Ok(()) => Ok(()),
            Err(_) if self.fuse.blown() => Err(Stop::Died),
            Err(e) => {
                self.trace(format!("shard {k}: removing covered segments failed: {e}"));
                Ok(())
            }
        }
    }

    // ---------------------------------------------------------------- crashes

    fn restart_if_poisoned(&mut self) -> Result<(), Failure> {
        if self.procs.iter().flatten().any(|p| p.poisoned) || self.procs.iter().any(Option::is_none)
        {
            self.restart_after_death()?;
        }
        Ok(())
    }

    /// A clean shutdown (`Wal::close` writes a seal) and a restart.
    fn clean_restart(&mut self) -> Result<(), Stop> {
        self.phase = Phase::Commit;
        for k in 0..self.shards {
            if let Some(p) = self.procs[k].take() {
                if p.poisoned {
                    continue;
                }
                if let Err(_e) = p.wal.close() {
                    if self.fuse.blown() {
                        return Err(Stop::Died);
                    }
                }
            }
        }
        self.stats.clean_restarts += 1;
        self.restart(false)?;
        Ok(())
    }

    fn restart_after_death(&mut self) -> Result<(), Failure> {
        if self.fuse.blown() {
            match self.phase {
                Phase::Append => self.stats.death_in_append += 1,
                Phase::Commit => self.stats.death_in_commit += 1,
                Phase::Snapshot => self.stats.death_in_snapshot += 1,
                Phase::Recovery => self.stats.death_in_recovery += 1,
                Phase::Other => self.stats.death_elsewhere += 1,
            }
        }
        for p in self.procs.iter_mut() {
            *p = None;
        }
        let power = self.rng.below(2) == 0;
        self.restart(power)
    }

    /// Every shard process is gone; `power` drops the page cache as a power loss does. Then
    /// recovery and the checks that follow it.
    fn restart(&mut self, power: bool) -> Result<(), Failure> {
        for p in self.procs.iter_mut() {
            *p = None;
        }
        self.fuse.disarm();
        self.stats.restarts += 1;
        if power {
            self.stats.power_losses += 1;
            for d in &self.disks {
                d.wal.power_loss();
                d.snaps.power_loss();
            }
        } else {
            self.stats.kills += 1;
        }
        self.trace(format!("restart (power loss: {power})"));
        if self.chance(self.latent_ppm) {
            self.damage_a_sector();
        }
        self.recover_all(true)
    }

    /// A latent sector error: a synced sector of a segment before the last, or of a snapshot,
    /// reads back as garbage or zeros.
    fn damage_a_sector(&mut self) {
        let k = self.rng.below(self.shards as u64) as usize;
        let d = &self.disks[k];
        let mut segs: Vec<String> = d
            .wal
            .files()
            .into_iter()
            .filter(|n| n.ends_with(".wal"))
            .collect();
        segs.sort();
        segs.pop();
        let mut candidates: Vec<(MemStorage, String)> =
            segs.into_iter().map(|n| (d.wal.clone(), n)).collect();
        for n in d.snaps.files() {
            if n.ends_with(".snap") {
                candidates.push((d.snaps.clone(), n));
            }
        }
        if candidates.is_empty() {
            return;
        }
        let i = self.rng.below(candidates.len() as u64) as usize;
        let (disk, name) = candidates.swap_remove(i);
        let len = disk.durable_image(&name).map_or(0, |b| b.len() as u64);
        if len == 0 {
            return;
        }
        let at = self.rng.below(len);
        let damage = if self.rng.below(2) == 0 {
            Damage::Garbage
        } else {
            Damage::Zeros
        };
        if disk.corrupt(&name, at, damage).is_ok() {
            self.stats.latent_injected += 1;
            self.damaged = true;
            self.trace(format!(
                "latent sector error: {damage:?} at {at} of shard {k}'s {name}"
            ));
        }
    }

    /// Recovers every shard (retrying transient faults and deaths during recovery), then checks.
    fn recover_all(&mut self, check: bool) -> Result<(), Failure> {
        let mut attempts = 0;
        'again: loop {
            attempts += 1;
            if attempts > 100 {
                return Err(self.fail("recovery kept failing on transient faults"));
            }
            if attempts > 5 {
                // A long spell of faults: the operator frees disk space.
                for d in &self.disks {
                    d.wal.set_capacity(u64::MAX);
                    d.snaps.set_capacity(u64::MAX);
                }
                self.disk_full_left = 0;
            }
            for p in self.procs.iter_mut() {
                *p = None;
            }
            if check && self.crash_now(20_000) {
                let n = self.rng.below(20);
                self.fuse.arm(n);
            }
            self.phase = Phase::Recovery;
            for k in 0..self.shards {
                match self.recover(k) {
                    Ok(p) => self.procs[k] = Some(p),
                    Err(e) => {
                        if self.fuse.blown() {
                            self.stats.death_in_recovery += 1;
                            self.fuse.disarm();
                            self.stats.restarts += 1;
                            if self.rng.below(2) == 0 {
                                for p in self.procs.iter_mut() {
                                    *p = None;
                                }
                                self.stats.power_losses += 1;
                                for d in &self.disks {
                                    d.wal.power_loss();
                                    d.snaps.power_loss();
                                }
                            } else {
                                self.stats.kills += 1;
                            }
                            continue 'again;
                        }
                        if transient(&e) {
                            self.stats.recovery_retries += 1;
                            self.trace(format!("shard {k}: recovery failed, retrying: {e}"));
                            continue 'again;
                        }
                        if self.damaged {
                            self.stats.latent_refused += 1;
                            self.refused = true;
                            self.trace(format!("shard {k}: recovery refused the damaged log: {e}"));
                            for p in self.procs.iter_mut() {
                                *p = None;
                            }
                            return Ok(());
                        }
                        return Err(self.fail(format!("shard {k}: recovery refused: {e}")));
                    }
                }
            }
            break;
        }
        self.fuse.disarm();
        self.phase = Phase::Other;
        if !check {
            return Ok(());
        }
        for k in 0..self.shards {
            self.check_recovered(k)?;
        }
        // From scratch when the logs doubled since the last time (linear in the run), and
        // sometimes at random.
        let total: u64 = self.books.iter().map(|b| b.hist.len() as u64).sum();
        if total >= self.next_full_replay || self.chance(self.opts.full_replay_ppm) {
            self.next_full_replay = 2 * total.max(64);
            for k in 0..self.shards {
                self.full_replay_check(k)?;
            }
        }
        self.resend_some_keys()
    }

    /// `runtime::shard::open` on the simulated disks: newest valid snapshot, then the log.
    fn recover(&mut self, k: usize) -> Result<Proc, RecoveryError> {
        let snaps = self.fused(&self.disks[k].snaps);
        let snapshot = wal::snapshot::read_latest_on(&snaps)?;
        if let Some(s) = &snapshot {
            self.stats.snapshots_passed_over += s.skipped.len() as u64;
        }
        let (mut state, snapshot_lsn, snap_now) = match snapshot {
            Some(s) => {
                let (now, state) = recovery::decode_snapshot(&s.bytes, s.lsn, self.config.clone())?;
                (state, s.lsn, now)
            }
            None => (State::new(self.config.clone()), Lsn(0), Millis(0)),
        };
        let storage = self.fused(&self.disks[k].wal);
        let (wal, found) = Wal::open_on(storage, self.wal_opts.clone())?;
        if found.torn_tail.is_some() {
            self.stats.torn_tails_cut += 1;
        }
        recovery::check_continuity(snapshot_lsn, &found)?;
        if snapshot_lsn.0 > 0 {
            self.stats.restored_from_snapshot += 1;
        }
        let replayed = recovery::replay_wal(
            &wal,
            &mut state,
            Lsn(snapshot_lsn.0 + 1),
            snap_now,
            Until::End,
            |_| {},
        )?;
        let last_now = replayed.last_now.0;
        Ok(Proc {
            state,
            wal,
            last_now,
            last_tick_check: last_now,
            tick_backlog: false,
            poisoned: false,
            uncommitted: 0,
            since_snapshot: replayed.records,
            buf: AlignedVec::with_capacity(256),
            events: Vec::new(),
        })
    }

    /// No acknowledged record lost, none invented; the book follows the log.
    fn check_recovered(&mut self, k: usize) -> Result<(), Failure> {
        let Some(p) = self.procs[k].as_ref() else {
            return Err(self.fail(format!("shard {k} did not come back")));
        };
        let last = p.wal.next_lsn().0.saturating_sub(1);
        let book = &self.books[k];
        if last < book.acked {
            return Err(self.fail(format!(
                "shard {k}: acknowledged records lost: the log ends at lsn {last}, answers were released through lsn {}",
                book.acked
            )));
        }
        if last > book.hist.len() as u64 {
            return Err(self.fail(format!(
                "shard {k}: the log holds {last} records, only {} were appended",
                book.hist.len()
            )));
        }
        let lost = book.hist.len() as u64 - last;
        self.stats.unacked_records_lost += lost;
        self.books[k].truncate(last);
        self.check_money(k)
    }

    /// Replays shard `k`'s log from LSN 1 into a fresh state: every record must get the reply
    /// the live shard gave, and the result must have the live state's digest.
    fn full_replay_check(&mut self, k: usize) -> Result<(), Failure> {
        let Some(p) = self.procs[k].as_ref() else {
            return Err(self.fail(format!("shard {k} is down")));
        };
        if p.uncommitted > 0 || p.poisoned {
            return Ok(());
        }
        self.stats.full_replays += 1;
        // The whole history, as `svault replay` reads it: the archive and the live log in one
        // directory (a reliable disk), opened as a log. The archive is there already; the live
        // log's segments replace the copies of the last replay.
        let h = &self.history[k];
        for n in h.disk.files() {
            if !h.archived.contains(&n) {
                h.disk.discard(&n);
            }
        }
        for n in segment_names(&p.wal) {
            if let Some(image) = self.disks[k].wal.durable_image(&n) {
                h.disk.install(&n, image);
            }
        }
        let log = match Wal::open_on(h.disk.clone(), self.wal_opts.clone()) {
            Ok((log, _)) => log,
            Err(e) => {
                return Err(self.fail(format!(
                    "shard {k}: the archive and the live log do not open as one log: {e}"
                )))
            }
        };
        let mut st = State::new(self.config.clone());
        let mut events = Vec::new();
        let mut n = 0u64;
        let mut first_bad: Option<String> = None;
        let hist = &self.books[k].hist;
        let mut hash_buf = AlignedVec::with_capacity(1024);
        let r = log.read_from(Lsn(1), |lsn, bytes| -> Result<(), RecoveryError> {
            let rec = record::decode(bytes).map_err(|e| RecoveryError::Record {
                lsn: lsn.0,
                reason: e.to_string(),
            })?;
            let reply = st.apply_logged(
                &rec.request,
                rec.caller,
                rec.now,
                record::rules_of(rec.version),
                &mut events,
            );
            events.clear();
            n += 1;
            let h = reply_hash(&reply, &mut hash_buf);
            let live = hist.get(lsn.0 as usize - 1).map(|r| r.reply);
            if live != Some(h) && first_bad.is_none() {
                first_bad = Some(format!(
                    "lsn {}: replay answered {} ({:?}), live answer hash {live:?}",
                    lsn.0,
                    reply_form(&reply),
                    rec.request.command
                ));
            }
            Ok(())
        });
        if let Err(e) = r {
            return Err(self.fail(format!("shard {k}: from-scratch replay failed: {e}")));
        }
        self.stats.records_replayed_from_scratch += n;
        if let Some(bad) = first_bad {
            return Err(self.fail(format!(
                "shard {k}: replay differs from the live run: {bad}"
            )));
        }
        let last = p.wal.durable_lsn().0;
        if n != last {
            return Err(self.fail(format!(
                "shard {k}: replay read {n} records, the log holds {last}"
            )));
        }
        let (live, replayed) = (p.state.digest(), st.digest());
        if live != replayed {
            return Err(self.fail(format!(
                "shard {k}: live digest {live:#x} differs from the digest of replaying the log from scratch {replayed:#x}"
            )));
        }
        if let Err(e) = runtime::replay::verify_state(&p.state, &self.config) {
            return Err(self.fail(format!("shard {k}: {e}")));
        }
        Ok(())
    }

    /// Money is conserved to the fen: the cards hold what the replies say, and the float the
    /// state keeps is the sum over the cards.
    fn check_money(&self, k: usize) -> Result<(), Failure> {
        let Some(p) = self.procs[k].as_ref() else {
            return Ok(());
        };
        let mut sum = 0i64;
        for c in 0..CARDS {
            let id = card(c);
            if runtime::router::shard_of(id, self.shards) != k {
                continue;
            }
            if let QueryAnswer::Card(Some(v)) = p
                .state
                .query(&Query::Card { card_id: id }, Millis(p.last_now))
            {
                if v.principal.0 < 0
                    || v.bonus.0 < 0
                    || v.held.0 < 0
                    || v.held > v.principal + v.bonus
                {
                    return Err(self.fail(format!("shard {k}: card out of bounds: {v:?}")));
                }
                if v.available != v.principal + v.bonus - v.held {
                    return Err(self.fail(format!(
                        "shard {k}: available is not principal + bonus - held: {v:?}"
                    )));
                }
                sum += v.principal.0 + v.bonus.0;
            }
        }
        let journal = self.books[k].journal;
        if sum != journal {
            return Err(self.fail(format!(
                "shard {k}: the cards hold {sum} fen, the journal of the replies says {journal}"
            )));
        }
        let (kept, recomputed) = (p.state.float(), p.state.float_recomputed());
        if kept != recomputed {
            return Err(self.fail(format!(
                "shard {k}: float kept {kept:?} differs from the sum of the cards {recomputed:?}"
            )));
        }
        let t = p.state.float_total();
        if t.principal.0 + t.bonus.0 != sum {
            return Err(self.fail(format!(
                "shard {k}: the float says {} fen, the cards hold {sum}",
                t.principal.0 + t.bonus.0
            )));
        }
        Ok(())
    }

    fn check_money_all(&self) -> Result<(), Failure> {
        for k in 0..self.shards {
            if self.procs[k].as_ref().is_some_and(|p| !p.poisoned) {
                self.check_money(k)?;
            }
        }
        Ok(())
    }

    /// After a restart: re-send a few acknowledged keys (the newest ones, most at risk, and
    /// some at random) as retries.
    fn resend_some_keys(&mut self) -> Result<(), Failure> {
        let mut picks: Vec<usize> = Vec::new();
        let n = self.keys.len();
        for i in n.saturating_sub(4)..n {
            picks.push(i);
        }
        for _ in 0..4 {
            if let Some(i) = self.pick_key() {
                picks.push(i);
            }
        }
        let batch: Vec<Sent> = picks
            .into_iter()
            .filter(|&i| self.keys[i].answer.is_some())
            .map(|i| Sent {
                caller: self.keys[i].caller,
                request: self.keys[i].request.clone(),
                born: self.keys[i].first_sent,
            })
            .collect();
        if batch.is_empty() {
            return Ok(());
        }
        match self.send_batch(&batch) {
            Ok(_) => Ok(()),
            Err(Stop::Failed(f)) => Err(f),
            // A crash while re-sending: another restart, which re-sends again.
            Err(Stop::Died) => self.restart_after_death(),
        }
    }

    /// The end of a run: a power loss, recovery, a from-scratch replay of every log, and every
    /// acknowledged key within its TTL re-sent.
    fn finish(&mut self) -> Result<(), Failure> {
        for d in &self.disks {
            d.wal.set_faults(FaultRates::default());
            d.snaps.set_faults(FaultRates::default());
            d.wal.set_capacity(u64::MAX);
            d.snaps.set_capacity(u64::MAX);
        }
        self.latent_ppm = 0;
        self.restart_after_death()?;
        self.calm = true;
        if self.refused {
            return Ok(());
        }
        for k in 0..self.shards {
            self.full_replay_check(k)?;
        }
        let ids: Vec<usize> = (0..self.keys.len())
            .filter(|&i| self.keys[i].answer.is_some())
            .collect();
        for chunk in ids.chunks(64) {
            let batch: Vec<Sent> = chunk
                .iter()
                .map(|&i| Sent {
                    caller: self.keys[i].caller,
                    request: self.keys[i].request.clone(),
                    born: self.keys[i].first_sent,
                })
                .collect();
            self.stats.final_keys_checked += batch.len() as u64;
            match self.send_batch(&batch) {
                Ok(answers) => {
                    if let Some(a) = answers.iter().find(|a| a.reply.is_err()) {
                        return Err(self.fail(format!(
                            "a re-sent key was refused on a reliable disk: {:?}",
                            a.reply
                        )));
                    }
                }
                Err(Stop::Failed(f)) => return Err(f),
                Err(Stop::Died) => return Err(self.fail("the process died on a reliable disk")),
            }
        }
        self.check_money_all()
    }
}

/// The first LSN of a segment, from its name (`{epoch:010}-{first_lsn:020}.wal`).
fn first_lsn_of(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.split_once('-')?.1.parse().ok()
}

/// The names of the log's segments on its disk, oldest first.
fn segment_names<S: Storage>(log: &Wal<S>) -> Vec<String> {
    log.segment_paths()
        .iter()
        .map(|p| {
            let s = p.to_string_lossy();
            s.strip_prefix("sim:").unwrap_or(&s).to_string()
        })
        .collect()
}

/// A request and its answer in one line (traces).
fn short(c: &Command, r: &Reply) -> String {
    let what = match c {
        Command::Reversal { card_id, key } => format!("Reversal({card_id}, {key})"),
        Command::UpsertProgram(_) => "UpsertProgram".into(),
        other => {
            let s = format!("{other:?}");
            s.split_whitespace().next().unwrap_or("").to_string()
        }
    };
    let ans = match &r.outcome {
        Outcome::Approved(a) => format!("approved {:?} {:?} {}", a.kind, a.txn_id, a.amount.0),
        Outcome::Declined { code, .. } => format!("declined {code:?}"),
        Outcome::Rejected(j) => format!("rejected {j:?}"),
    };
    format!("{what} -> {ans} (replayed {})", r.replayed)
}

/// A recovery failure a retry may get past: an injected `EIO` or `ENOSPC` during open.
fn transient(e: &RecoveryError) -> bool {
    matches!(
        e,
        RecoveryError::Wal(
            WalError::Io(_) | WalError::Sync(_) | WalError::DiskFull | WalError::Poisoned
        )
    )
}

/// A quarter of the rates `SimConfig::from_seed` draws: the engine commits on every step, and
/// at the full rates a shard would be poisoned every few dozen steps.
fn quarter(f: FaultRates) -> FaultRates {
    FaultRates {
        write_eio_ppm: f.write_eio_ppm / 4,
        sync_eio_ppm: f.sync_eio_ppm / 4,
        dir_sync_eio_ppm: f.dir_sync_eio_ppm / 4,
        create_enospc_ppm: f.create_enospc_ppm / 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    fn declined(code: DeclineCode, replayed: bool) -> Reply {
        Reply {
            outcome: Outcome::Declined { code, card: None },
            replayed,
        }
    }

    /// A simulator holding one key, first answered (freshly) at `t`.
    fn sim_with_key(t: i64) -> (Sim, usize) {
        let mut sim = Sim::new(Options::new(1, 0));
        let s = sim.keyed(CallerId::DEFAULT, Command::Freeze { card_id: card(0) });
        sim.keys.push(KeyModel {
            caller: s.caller,
            request: s.request,
            shard: 0,
            first_sent: t,
            life_from: t,
            answer: None,
            must_be_reversed: false,
            may_be_reversed: false,
        });
        let first = declined(DeclineCode::StoreNotAllowed, false);
        assert!(sim.check_answer(0, &first, t).is_ok());
        (sim, 0)
    }

    /// Seed 7, step 7 849: a key answered at `t`, replayed at `t + 22.5 h`, is forgotten by
    /// the engine at `t + 24 h` (a replay does not renew a key) and answered anew at
    /// `t + 29.6 h`: right, not a changed answer.
    #[test]
    fn a_replay_does_not_renew_a_key() {
        let t = T0;
        let (mut sim, i) = sim_with_key(t);
        let again = declined(DeclineCode::StoreNotAllowed, true);
        assert!(sim.check_answer(i, &again, t + 22 * H + H / 2).is_ok());
        let anew = declined(DeclineCode::InsufficientFunds, false);
        let r = sim.check_answer(i, &anew, t + 29 * H + H / 2);
        assert!(r.is_ok(), "{r:?}");
    }

    /// Seed 27 633, step 10 000: a key declined at `t` and then reversed answers `reversed` as a
    /// replay at `t + 32.6 h` (the engine kept it past its 24 h: allowed) and is answered anew
    /// at `t + 34.9 h`: that late replay was the old life, not a new one promising 24 h more.
    #[test]
    fn a_reversed_key_replayed_late_is_still_its_first_life() {
        let t = T0;
        let (mut sim, i) = sim_with_key(t);
        sim.keys[i].must_be_reversed = true;
        let late = declined(DeclineCode::Reversed, true);
        assert!(sim.check_answer(i, &late, t + 32 * H + H / 2).is_ok());
        let anew = declined(DeclineCode::OverDailyCount, false);
        let r = sim.check_answer(i, &anew, t + 34 * H + H * 9 / 10);
        assert!(r.is_ok(), "{r:?}");
        // Within the TTL the reversal is still checked.
        let (mut sim, i) = sim_with_key(t);
        sim.keys[i].must_be_reversed = true;
        let not_reversed = declined(DeclineCode::StoreNotAllowed, true);
        assert!(sim.check_answer(i, &not_reversed, t + 23 * H).is_err());
    }

    /// Within its 24 h the key's answer is checked byte for byte, up to the last millisecond,
    /// and a fresh answer (the key forgotten) fails even when it happens to read the same.
    #[test]
    fn within_its_ttl_a_key_answers_as_first() {
        let t = T0;
        let ttl = 24 * H;
        let (mut sim, i) = sim_with_key(t);
        let changed = declined(DeclineCode::InsufficientFunds, true);
        assert!(sim.check_answer(i, &changed, t + ttl - 1).is_err());
        let (mut sim, i) = sim_with_key(t);
        let forgotten = declined(DeclineCode::StoreNotAllowed, false);
        assert!(sim.check_answer(i, &forgotten, t + ttl - 1).is_err());
        let (mut sim, i) = sim_with_key(t);
        let same = declined(DeclineCode::StoreNotAllowed, true);
        assert!(sim.check_answer(i, &same, t + ttl - 1).is_ok());
        // From `t + ttl` on, the engine may have forgotten it.
        let anew = declined(DeclineCode::InsufficientFunds, false);
        assert!(sim.check_answer(i, &anew, t + ttl).is_ok());
        // The new answer starts a new life, checked as strictly.
        let changed = declined(DeclineCode::StoreNotAllowed, true);
        assert!(sim.check_answer(i, &changed, t + 2 * ttl - 1).is_err());
    }
}
