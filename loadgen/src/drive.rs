//! The schedulers: open loop at a fixed rate, closed loop as fast as answers come.
//!
//! Why latency counts from the intended send time in open loop: a target that stalls for a
//! second delays every request scheduled during that second. A generator that waits for the
//! stall and then measures from the moment it finally sent hides the stall (coordinated
//! omission); measuring from when the request *should* have been sent shows it, as wrk2 does.
//! Item `k` is due at `start + k / rate`; a batch of items is sent when its last item is due
//! (the earlier ones count the wait). In closed loop (`rate` 0) each worker sends its next
//! batch when the previous one is answered and latency is measured from the send.

use crate::stats::{Live, Recorder};
use crate::target::{Conn, Done};
use crate::workload::{Item, Workload};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// How often a worker hands its recent latencies to the progress bar.
const LIVE_FLUSH: Duration = Duration::from_millis(200);

/// When and how fast to send.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Items per second over all workers; 0 = closed loop.
    pub rate: u64,
    pub warmup: Duration,
    pub duration: Duration,
    /// Items per [`Conn::run`] call (frames of this many requests on the binary protocol).
    pub batch: usize,
}

/// Runs `conns` (one worker each) against the stream of `w` and returns what they counted.
pub async fn drive<C: Conn>(
    conns: Vec<C>,
    w: Arc<Workload>,
    plan: Plan,
    live: Arc<Live>,
) -> Recorder {
    let workers = conns.len().max(1) as u64;
    // A short delay so every worker starts on the same schedule.
    let start = Instant::now() + Duration::from_millis(20);
    let next_chunk = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for (n, conn) in conns.into_iter().enumerate() {
        let w = w.clone();
        let live = live.clone();
        let next_chunk = next_chunk.clone();
        tasks.push(tokio::spawn(worker(
            conn, n as u64, workers, w, plan, start, next_chunk, live,
        )));
    }
    let mut all = Recorder::new();
    for t in tasks {
        if let Ok(r) = t.await {
            all.merge(&r);
        }
    }
    all
}

/// Due time of item `k` at `rate` items per second.
fn due(start: Instant, k: u64, rate: u64) -> Instant {
    let nanos = u128::from(k) * 1_000_000_000 / u128::from(rate.max(1));
    start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[allow(clippy::too_many_arguments)]
async fn worker<C: Conn>(
    mut conn: C,
    me: u64,
    workers: u64,
    w: Arc<Workload>,
    plan: Plan,
    start: Instant,
    next_chunk: Arc<AtomicU64>,
    live: Arc<Live>,
) -> Recorder {
    let mut rec = Recorder::new();
    let batch = plan.batch.max(1) as u64;
    let warm_end = start + plan.warmup;
    let end = warm_end + plan.duration;
    let mut buf = Live::buffer();
    let (mut buf_n, mut buf_err, mut buf_refused) = (0u64, 0u64, 0u64);
    let mut last_flush = Instant::now();
    let mut j = me; // open loop: this worker's chunks are me, me + workers, ...
    tokio::time::sleep_until(start).await;
    loop {
        let (chunk, send_at) = if plan.rate > 0 {
            let last = j * batch + batch - 1;
            let send_at = due(start, last, plan.rate);
            if send_at >= end {
                break;
            }
            if Instant::now() >= end {
                // Behind schedule at the end: count what was due and never sent.
                let mut left = j;
                while due(start, left * batch + batch - 1, plan.rate) < end {
                    rec.not_sent += batch;
                    left += workers;
                }
                break;
            }
            let c = j;
            j += workers;
            tokio::time::sleep_until(send_at).await;
            (c, send_at)
        } else {
            let now = Instant::now();
            if now >= end {
                break;
            }
            (next_chunk.fetch_add(1, Ordering::Relaxed), now)
        };
        let items: Vec<Item> = (chunk * batch..chunk * batch + batch)
            .map(|k| w.item(k))
            .collect();
        let dones: Vec<Done> = conn.run(&items).await;
        for d in dones {
            let k = chunk * batch + d.item as u64;
            let origin = match d.sent {
                Some(s) => Instant::from_std(s),
                None if plan.rate > 0 => due(start, k, plan.rate),
                None => send_at,
            };
            let at = Instant::from_std(d.at);
            let latency = at.saturating_duration_since(origin);
            let measured = origin >= warm_end;
            rec.record(
                d.op,
                &d.outcome,
                latency,
                at.saturating_duration_since(start),
                measured,
            );
            if matches!(d.outcome, crate::stats::Outcome::Refused) {
                buf_refused += 1;
            } else if !matches!(d.outcome, crate::stats::Outcome::Unsupported) {
                buf.saturating_record(
                    u64::try_from(latency.as_micros())
                        .unwrap_or(u64::MAX)
                        .max(1),
                );
                buf_n += 1;
                buf_err += u64::from(matches!(d.outcome, crate::stats::Outcome::Error { .. }));
            }
        }
        if last_flush.elapsed() >= LIVE_FLUSH {
            live.add_recent(&buf, buf_n, buf_err, buf_refused);
            buf.reset();
            (buf_n, buf_err, buf_refused) = (0, 0, 0);
            last_flush = Instant::now();
        }
    }
    // What the connection still owes is sent after the measured window: counted in the money
    // check, not in the measured figures.
    for d in conn.finish().await {
        let origin = d.sent.map_or(end, Instant::from_std);
        let at = Instant::from_std(d.at);
        rec.record(
            d.op,
            &d.outcome,
            at.saturating_duration_since(origin),
            at.saturating_duration_since(start),
            false,
        );
    }
    live.add_recent(&buf, buf_n, buf_err, buf_refused);
    rec
}
