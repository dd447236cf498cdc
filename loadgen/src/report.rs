//! The report of a run: what `--out` writes (schema in loadgen/README.md), what the summary
//! table and the HTML pages are drawn from, and what `compare` reads back.
//!
//! Why everything in one serialisable value: a comparison of several systems must be made
//! from the files alone, long after the runs, so the file holds the config, the target's
//! durability, every percentile, the latency curve, the timeline and the money check.

use crate::stats::{OpStats, Recorder};
use crate::target::{format_minor, Loaded, TargetInfo};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The `schema` field of every report this version writes.
pub const SCHEMA: &str = "svault-loadgen/1";

/// Latency percentiles in microseconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Latency {
    pub count: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p999: u64,
    pub p9999: u64,
    pub max: u64,
    /// Rounded to the microsecond.
    pub mean: u64,
}

impl Latency {
    /// Summarises a histogram of microsecond latencies; an empty one (an op that never ran) gives
    /// all zeros rather than an error.
    pub fn of(h: &Histogram<u64>) -> Latency {
        if h.is_empty() {
            return Latency::default();
        }
        Latency {
            count: h.len(),
            p50: h.value_at_quantile(0.5),
            p90: h.value_at_quantile(0.9),
            p99: h.value_at_quantile(0.99),
            p999: h.value_at_quantile(0.999),
            p9999: h.value_at_quantile(0.9999),
            max: h.max(),
            mean: h.mean().round() as u64,
        }
    }
}

/// The percentile curve as HdrHistogram plots it: points `(percentile, latency µs)`.
pub fn curve(h: &Histogram<u64>) -> Vec<(f64, u64)> {
    if h.is_empty() {
        return Vec::new();
    }
    let mut v: Vec<(f64, u64)> = h
        .iter_quantiles(5)
        .map(|it| {
            (
                it.quantile_iterated_to() * 100.0,
                h.highest_equivalent(it.value_iterated_to()),
            )
        })
        .filter(|(q, _)| *q < 100.0)
        .collect();
    v.push((100.0, h.max()));
    v
}

/// One operation kind's results.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct OpReport {
    pub requests: u64,
    pub approved: u64,
    pub declined: BTreeMap<String, u64>,
    pub errors: BTreeMap<String, u64>,
    /// Requests the target cannot express (not sent; see `target.unsupported`).
    pub unsupported: u64,
    /// Refused by an overloaded target before anything was applied (`503` with
    /// `Retry-After`, binary OVERLOADED); not in `requests` nor in `latency_us`.
    #[serde(default)]
    pub refused: u64,
    pub latency_us: Latency,
}

impl OpReport {
    fn of(s: &OpStats) -> OpReport {
        OpReport {
            requests: s.requests(),
            approved: s.approved,
            declined: s.declined.clone(),
            errors: s.errors.clone(),
            unsupported: s.unsupported,
            refused: s.refused,
            latency_us: Latency::of(&s.latency),
        }
    }
}

/// One second of the run (by completion time).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct SecondReport {
    /// Seconds from the start of the run (warm-up included).
    pub t: u64,
    pub warmup: bool,
    pub requests: u64,
    pub errors: u64,
    /// Refused by an overloaded target (not in `requests` nor in the percentiles).
    #[serde(default)]
    pub refused: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

/// The run's settings.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Config {
    pub cards: u64,
    pub dist: String,
    pub profile: String,
    pub mix: String,
    /// Items per second (open loop); 0 = closed loop.
    pub rate: u64,
    pub duration_s: f64,
    pub warmup_s: f64,
    pub connections: usize,
    /// Workers per connection.
    pub pipeline: usize,
    /// Items per request frame (binary protocol).
    pub batch: usize,
    pub seed: u64,
    pub run_id: u64,
}

/// The money check: what the target holds against the generator's own count.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Check {
    pub ok: bool,
    /// Money setup loaded, as the generator counted it (minor units).
    pub loaded_minor: i128,
    /// Money the target held after setup, read back.
    pub before_minor: i128,
    /// Sum of the approved requests' effects (top-ups + bonus − spends − captures + refunds …).
    pub approved_delta_minor: i128,
    /// `before + approved_delta`.
    pub expected_minor: i128,
    /// Money the target holds at the end, read back.
    pub actual_minor: i128,
    /// Most money the requests that failed without an answer could have moved.
    pub at_stake_minor: i128,
    pub message: String,
}

impl Check {
    /// Compares what the target holds with the generator's count.
    pub fn new(loaded: &Loaded, before: i128, delta: i128, at_stake: i128, actual: i128) -> Check {
        let expected = before + delta;
        let diff = actual - expected;
        let setup_ok = before == loaded.money_minor;
        let run_ok = diff.abs() <= at_stake;
        let m = |v| format_minor(v);
        let message = if !setup_ok {
            format!(
                "MISMATCH after setup: the target holds {} but setup loaded {} (difference {})",
                m(before),
                m(loaded.money_minor),
                m(before - loaded.money_minor)
            )
        } else if !run_ok {
            format!(
                "MISMATCH: the target holds {} but the generator counted {} = {} before + {} approved (difference {}, unknown outcomes could explain at most {})",
                m(actual),
                m(expected),
                m(before),
                m(delta),
                m(diff),
                m(at_stake)
            )
        } else if diff != 0 {
            format!(
                "ok within unknown outcomes: the target holds {}, counted {} (difference {} ≤ {} at stake in failed requests)",
                m(actual),
                m(expected),
                m(diff),
                m(at_stake)
            )
        } else {
            format!(
                "ok: the target holds {} = {} loaded + {} approved (top-ups and bonus − spends − captures + refunds)",
                m(actual),
                m(before),
                m(delta)
            )
        };
        Check {
            ok: setup_ok && run_ok,
            loaded_minor: loaded.money_minor,
            before_minor: before,
            approved_delta_minor: delta,
            expected_minor: expected,
            actual_minor: actual,
            at_stake_minor: at_stake,
            message,
        }
    }
}

/// Where the run ran.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Machine {
    pub hostname: String,
    pub cpus: usize,
    pub os: String,
}

impl Machine {
    /// Describes the machine the run is on (Linux: /proc and /etc/os-release); what cannot be read
    /// is left empty, so a report never fails for it.
    pub fn here() -> Machine {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let os = read("/etc/os-release")
            .lines()
            .find_map(|l| l.strip_prefix("PRETTY_NAME="))
            .map(|s| s.trim_matches('"').to_string())
            .unwrap_or_else(|| std::env::consts::OS.to_string());
        Machine {
            hostname: read("/proc/sys/kernel/hostname"),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            os: format!("{os}, kernel {}", read("/proc/sys/kernel/osrelease")),
        }
    }
}

/// Everything about one run.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Report {
    pub schema: String,
    /// Short name for tables and legends (`--label`, else the target kind).
    pub label: String,
    pub tool_version: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    pub machine: Machine,
    pub target: TargetInfo,
    pub config: Config,
    pub setup_seconds: f64,
    pub cards_loaded: u64,
    /// Measured phase (after the warm-up), seconds.
    pub measured_seconds: f64,
    /// Requests answered in the measured phase (refusals apart).
    pub requests: u64,
    pub throughput_per_s: f64,
    pub approved: u64,
    pub declined: u64,
    pub errors: u64,
    /// Open loop: items due before the end that were never sent (the target fell behind).
    pub not_sent: u64,
    /// Refused by an overloaded target in the measured phase (svault: `503 overloaded` with
    /// `Retry-After`, binary OVERLOADED): applied nothing, not in `requests`, `errors` or the
    /// latencies, which describe the accepted requests.
    #[serde(default)]
    pub refused: u64,
    #[serde(default)]
    pub refused_per_s: f64,
    pub warmup_requests: u64,
    pub latency_us: Latency,
    /// `(percentile, µs)` points of the overall latency curve.
    pub latency_curve: Vec<(f64, u64)>,
    pub ops: BTreeMap<String, OpReport>,
    pub timeline: Vec<SecondReport>,
    pub check: Check,
}

impl Report {
    /// Builds the report from the merged recorder.
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        label: String,
        started_at: String,
        target: TargetInfo,
        config: Config,
        setup_seconds: f64,
        cards_loaded: u64,
        rec: &Recorder,
        check: Check,
    ) -> Report {
        let ops: BTreeMap<String, OpReport> = rec
            .ops
            .iter()
            .map(|(k, v)| (k.as_str().to_string(), OpReport::of(v)))
            .collect();
        let sum = |f: fn(&OpReport) -> u64| ops.values().map(f).sum::<u64>();
        let warm = config.warmup_s.ceil() as u64;
        let timeline = rec
            .timeline
            .iter()
            .enumerate()
            .map(|(t, s)| SecondReport {
                t: t as u64,
                warmup: (t as u64) < warm,
                requests: s.requests,
                errors: s.errors,
                refused: s.refused,
                p50_us: if s.latency.is_empty() {
                    0
                } else {
                    s.latency.value_at_quantile(0.5)
                },
                p99_us: if s.latency.is_empty() {
                    0
                } else {
                    s.latency.value_at_quantile(0.99)
                },
                max_us: s.latency.max(),
            })
            .collect();
        let measured = config.duration_s;
        Report {
            schema: SCHEMA.into(),
            label,
            tool_version: env!("CARGO_PKG_VERSION").into(),
            started_at,
            machine: Machine::here(),
            target,
            setup_seconds,
            cards_loaded,
            measured_seconds: measured,
            requests: rec.measured,
            throughput_per_s: if measured > 0.0 {
                rec.measured as f64 / measured
            } else {
                0.0
            },
            approved: sum(|o| o.approved),
            declined: ops.values().map(|o| o.declined.values().sum::<u64>()).sum(),
            errors: ops.values().map(|o| o.errors.values().sum::<u64>()).sum(),
            not_sent: rec.not_sent,
            refused: rec.refused,
            refused_per_s: if measured > 0.0 {
                rec.refused as f64 / measured
            } else {
                0.0
            },
            warmup_requests: rec.warmup_requests,
            latency_us: Latency::of(&rec.overall),
            latency_curve: curve(&rec.overall),
            ops,
            timeline,
            check,
            config,
        }
    }

    /// The summary table printed on stdout.
    pub fn summary(&self) -> String {
        let mut s = String::new();
        let c = &self.config;
        let _ = writeln!(
            s,
            "{} {} ({}) · profile {} · {} cards {} · {} · {} conn × {} pipeline, batch {} · seed {}",
            self.label,
            self.target.url,
            self.target.kind,
            c.profile,
            c.cards,
            c.dist,
            if c.rate == 0 { "closed loop".to_string() } else { format!("open loop {}/s", c.rate) },
            c.connections,
            c.pipeline,
            c.batch,
            c.seed
        );
        let _ = writeln!(s, "durability: {}", self.target.durability);
        let _ = writeln!(
            s,
            "{} requests in {:.1} s = {:.0}/s (warm-up {:.0} s not counted); approved {}, declined {}, errors {}{}{}",
            self.requests,
            self.measured_seconds,
            self.throughput_per_s,
            c.warmup_s,
            self.approved,
            self.declined,
            self.errors,
            if self.not_sent > 0 { format!(", NOT SENT (target fell behind the rate) {}", self.not_sent) } else { String::new() },
            if self.refused > 0 { format!("; refused (overloaded, 503 + Retry-After) {} = {:.0}/s", self.refused, self.refused_per_s) } else { String::new() }
        );
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let _ = writeln!(
            s,
            "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "op",
            "requests",
            "approved",
            "declined",
            "errors",
            "p50 ms",
            "p90 ms",
            "p99 ms",
            "p99.9 ms",
            "max ms"
        );
        let mut line = |name: &str, r: u64, a: u64, d: u64, e: u64, l: &Latency| {
            let _ = writeln!(
                s,
                "{:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                r,
                a,
                d,
                e,
                ms(l.p50),
                ms(l.p90),
                ms(l.p99),
                ms(l.p999),
                ms(l.max)
            );
        };
        for (k, o) in &self.ops {
            line(
                k,
                o.requests,
                o.approved,
                o.declined.values().sum(),
                o.errors.values().sum(),
                &o.latency_us,
            );
        }
        line(
            "all",
            self.requests,
            self.approved,
            self.declined,
            self.errors,
            &self.latency_us,
        );
        let _ = writeln!(s, "p99.99 {} ms", ms(self.latency_us.p9999));
        for (k, o) in &self.ops {
            if !o.declined.is_empty() {
                let _ = writeln!(s, "declines {k}: {}", kv(&o.declined));
            }
            if !o.errors.is_empty() {
                let _ = writeln!(s, "errors {k}: {}", kv(&o.errors));
            }
            if o.unsupported > 0 {
                let _ = writeln!(s, "unsupported {k}: {} (not sent)", o.unsupported);
            }
            if o.refused > 0 {
                let _ = writeln!(s, "refused {k}: {} (overloaded)", o.refused);
            }
        }
        for u in &self.target.unsupported {
            let _ = writeln!(
                s,
                "not expressed on {}: {} — {}",
                self.target.kind, u.what, u.instead
            );
        }
        let _ = writeln!(s, "money check: {}", self.check.message);
        s
    }
}

fn kv(m: &BTreeMap<String, u64>) -> String {
    m.iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}
