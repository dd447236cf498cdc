//! Counting what happened: HDR histograms per operation and overall, approvals, declines by
//! code, errors by kind, a per-second timeline, and the money the generator saw move.
//!
//! Why per worker then merged: recording must cost nothing next to a request, so each worker
//! owns its [`Recorder`] and the driver merges them once at the end. A small shared
//! [`Live`] view feeds the progress bar.

use crate::workload::{Minor, OpKind};
use hdrhistogram::Histogram;
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Highest latency a histogram records, in microseconds (2 minutes); above it clamps.
pub const LATENCY_US_MAX: u64 = 120_000_000;

/// A latency histogram in microseconds, 3 significant digits.
pub fn histogram() -> Histogram<u64> {
    // Bounds are constants that hdrhistogram accepts; failure would be a programming error.
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 3).unwrap_or_else(|_| unreachable_hist())
}

/// A coarser histogram (2 significant digits) for the per-second timeline.
fn coarse_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, LATENCY_US_MAX, 2).unwrap_or_else(|_| unreachable_hist())
}

fn unreachable_hist() -> Histogram<u64> {
    panic!("histogram bounds are constants and valid")
}

fn record(h: &mut Histogram<u64>, us: u64) {
    h.saturating_record(us.clamp(1, LATENCY_US_MAX));
}

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Approved; `delta` is how the money the target holds for the run changed (minor units,
    /// signed: a top-up adds principal and bonus, a spend or capture takes what it charged).
    Approved { delta: Minor },
    /// Declined by the target's rules (`insufficient_funds`, `over_refund`, ...).
    Declined(String),
    /// No answer or a failure; `at_stake` is the most money the request could have moved
    /// (its effect is unknown), `kind` names the failure (`timeout`, `io`, `http_503`, ...).
    Error { kind: String, at_stake: Minor },
    /// Refused by an overloaded target before anything was applied (svault: `503 overloaded`
    /// with `Retry-After`, the binary protocol's OVERLOADED): moved no money; counted apart
    /// from errors and kept out of the latency histograms, which describe accepted requests.
    Refused,
    /// The target cannot express this operation (see the report's `unsupported`).
    Unsupported,
}

/// Counts of one operation kind.
#[derive(Debug, Clone)]
pub struct OpStats {
    pub latency: Histogram<u64>,
    pub approved: u64,
    pub declined: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    pub unsupported: u64,
    /// Refused by an overloaded target (not in `requests()` nor in `latency`).
    pub refused: u64,
}

impl OpStats {
    fn new() -> OpStats {
        OpStats {
            latency: histogram(),
            approved: 0,
            declined: BTreeMap::new(),
            errors: BTreeMap::new(),
            unsupported: 0,
            refused: 0,
        }
    }
    /// Requests answered after the warm-up: approved, declined and errors (refused and unsupported
    /// ones are counted apart).
    pub fn requests(&self) -> u64 {
        self.approved + self.declined.values().sum::<u64>() + self.errors.values().sum::<u64>()
    }
    fn merge(&mut self, o: &OpStats) {
        let _ = self.latency.add(&o.latency);
        self.approved += o.approved;
        self.unsupported += o.unsupported;
        self.refused += o.refused;
        for (k, v) in &o.declined {
            *self.declined.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &o.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
    }
}

/// One second of the run (by completion time).
#[derive(Debug, Clone)]
pub struct Second {
    pub requests: u64,
    pub errors: u64,
    /// Refused by an overloaded target (not in `requests` nor in `latency`).
    pub refused: u64,
    pub latency: Histogram<u64>,
}

impl Second {
    fn new() -> Second {
        Second {
            requests: 0,
            errors: 0,
            refused: 0,
            latency: coarse_histogram(),
        }
    }
}

/// The money the generator saw move (all phases after setup, warm-up included).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ledger {
    /// Sum of approved deltas.
    pub approved_delta: i128,
    /// Sum over failed requests of the money each could have moved.
    pub at_stake: i128,
}

/// Everything one worker (or the whole run, after merging) counted.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub ops: BTreeMap<OpKind, OpStats>,
    pub overall: Histogram<u64>,
    pub timeline: Vec<Second>,
    pub ledger: Ledger,
    /// Requests answered after the warm-up (those the histograms hold).
    pub measured: u64,
    /// Items scheduled (open loop) but not sent before the end because the target fell behind.
    pub not_sent: u64,
    /// Requests counted in the warm-up (money counted, latency not).
    pub warmup_requests: u64,
    /// Requests refused by an overloaded target after the warm-up (not in `measured`).
    pub refused: u64,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder::new()
    }
}

impl Recorder {
    /// An empty recorder; each worker owns one, merged once at the end with [`Recorder::merge`].
    pub fn new() -> Recorder {
        Recorder {
            ops: BTreeMap::new(),
            overall: histogram(),
            timeline: Vec::new(),
            ledger: Ledger::default(),
            measured: 0,
            not_sent: 0,
            warmup_requests: 0,
            refused: 0,
        }
    }

    /// Records one request: `since_start` is its completion time from the run's start,
    /// `latency` from its intended send time, `measured` false during the warm-up.
    pub fn record(
        &mut self,
        op: OpKind,
        outcome: &Outcome,
        latency: Duration,
        since_start: Duration,
        measured: bool,
    ) {
        match *outcome {
            Outcome::Approved { delta } => self.ledger.approved_delta += i128::from(delta),
            Outcome::Error { at_stake, .. } => self.ledger.at_stake += i128::from(at_stake.abs()),
            _ => {}
        }
        let s = self.ops.entry(op).or_insert_with(OpStats::new);
        if matches!(outcome, Outcome::Unsupported) {
            s.unsupported += 1;
            return;
        }
        let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let sec = since_start.as_secs() as usize;
        if self.timeline.len() <= sec {
            self.timeline.resize_with(sec + 1, Second::new);
        }
        if matches!(outcome, Outcome::Refused) {
            if let Some(t) = self.timeline.get_mut(sec) {
                t.refused += 1;
            }
            if measured {
                s.refused += 1;
                self.refused += 1;
            }
            return;
        }
        if let Some(t) = self.timeline.get_mut(sec) {
            t.requests += 1;
            if matches!(outcome, Outcome::Error { .. }) {
                t.errors += 1;
            }
            record(&mut t.latency, us);
        }
        if !measured {
            self.warmup_requests += 1;
            return;
        }
        self.measured += 1;
        record(&mut s.latency, us);
        record(&mut self.overall, us);
        match outcome {
            Outcome::Approved { .. } => s.approved += 1,
            Outcome::Declined(code) => *s.declined.entry(code.clone()).or_default() += 1,
            Outcome::Error { kind, .. } => *s.errors.entry(kind.clone()).or_default() += 1,
            Outcome::Unsupported | Outcome::Refused => {}
        }
    }

    /// Adds another worker's counts: histograms, the timeline second by second, the ledger and the
    /// totals.
    pub fn merge(&mut self, o: &Recorder) {
        for (k, v) in &o.ops {
            self.ops.entry(*k).or_insert_with(OpStats::new).merge(v);
        }
        let _ = self.overall.add(&o.overall);
        if self.timeline.len() < o.timeline.len() {
            self.timeline.resize_with(o.timeline.len(), Second::new);
        }
        for (a, b) in self.timeline.iter_mut().zip(&o.timeline) {
            a.requests += b.requests;
            a.errors += b.errors;
            a.refused += b.refused;
            let _ = a.latency.add(&b.latency);
        }
        self.ledger.approved_delta += o.ledger.approved_delta;
        self.ledger.at_stake += o.ledger.at_stake;
        self.measured += o.measured;
        self.not_sent += o.not_sent;
        self.warmup_requests += o.warmup_requests;
        self.refused += o.refused;
    }
}

/// What the progress bar shows: requests done and a recent latency histogram.
#[derive(Debug)]
pub struct Live {
    pub done: AtomicU64,
    pub errors: AtomicU64,
    pub refused: AtomicU64,
    recent: Mutex<Histogram<u64>>,
}

impl Default for Live {
    fn default() -> Self {
        Live {
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            recent: Mutex::new(coarse_histogram()),
        }
    }
}

impl Live {
    /// Adds a worker's recent latencies (the worker then clears its copy).
    pub fn add_recent(&self, h: &Histogram<u64>, n: u64, errors: u64, refused: u64) {
        let _ = self.recent.lock().add(h);
        self.done.fetch_add(n, Ordering::Relaxed);
        self.errors.fetch_add(errors, Ordering::Relaxed);
        self.refused.fetch_add(refused, Ordering::Relaxed);
    }
    /// p99 in µs of what was added since the last call, and resets it.
    pub fn take_p99_us(&self) -> Option<u64> {
        let mut h = self.recent.lock();
        let p = (!h.is_empty()).then(|| h.value_at_quantile(0.99));
        h.reset();
        p
    }
    /// A worker-side buffer for [`Live::add_recent`].
    pub fn buffer() -> Histogram<u64> {
        coarse_histogram()
    }
}
