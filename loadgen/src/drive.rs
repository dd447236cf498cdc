//! The schedulers: open loop at a fixed rate, closed loop as fast as answers come.
//!
//! Why latency counts from the intended send time in open loop: a target that stalls for a
//! second delays every request scheduled during that second. A generator that waits for the
//! stall and then measures from the moment it finally sent hides the stall (coordinated
//! omission); measuring from when the request *should* have been sent shows it, as wrk2 does.
//! Item `k` is due at `start + k / rate`; a batch of items is sent when its last item is due
//! (the earlier ones count the wait). In closed loop (`rate` 0) each worker sends its next
//! batch when the previous one is answered and latency is measured from the send.
//!
//! Why a pacer thread in open loop: tokio's timers tick in whole milliseconds, so a worker
//! sleeping until its batch is due woke up to a millisecond late, and that lateness counted as
//! the target's latency (2 000 spends a second over one request per frame showed a p50 of
//! 1.6 ms against 0.75 ms at 58 k/s in closed loop). One OS thread sleeps to each due time
//! with the kernel's high-resolution timer and hands the batches that are due to their workers.

use crate::stats::{Live, Recorder};
use crate::target::{Conn, Done};
use crate::workload::{Item, Workload};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
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
    // A short delay so every worker starts on the same schedule.
    let start = Instant::now() + Duration::from_millis(20);
    let next_chunk = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut dues = Vec::new();
    for conn in conns {
        let source = if plan.rate > 0 {
            let (tx, rx) = mpsc::unbounded_channel();
            dues.push(tx);
            Chunks::Paced(rx)
        } else {
            Chunks::Shared(next_chunk.clone())
        };
        tasks.push(tokio::spawn(worker(
            conn,
            w.clone(),
            plan,
            start,
            source,
            live.clone(),
        )));
    }
    let pacer = (plan.rate > 0).then(|| {
        std::thread::Builder::new()
            .name("loadgen-pacer".into())
            .spawn(move || pace(dues, plan, start.into_std()))
    });
    let mut all = Recorder::new();
    for t in tasks {
        if let Ok(r) = t.await {
            all.merge(&r);
        }
    }
    if let Some(Ok(p)) = pacer {
        // The workers ended, so the pacer has sent its last batch (or found no one to send to).
        let _ = p.join();
    }
    all
}

/// Where a worker's next batch comes from.
enum Chunks {
    /// Closed loop: the next batch nobody has taken yet.
    Shared(Arc<AtomicU64>),
    /// Open loop: batches handed over by the pacer when due.
    Paced(mpsc::UnboundedReceiver<u64>),
}

/// Open loop: hands batch `c` to worker `c mod workers` when its last item is due (and every
/// batch due by then at once), sleeping on the OS's high-resolution timer in between. Stops at
/// the first batch due at or after the run's end; the workers then stop once their queue is
/// empty. Batches a busy worker has not taken yet wait in its queue, late, and count it.
fn pace(workers: Vec<mpsc::UnboundedSender<u64>>, plan: Plan, start: std::time::Instant) {
    let n = workers.len().max(1) as u64;
    let end = start + plan.warmup + plan.duration;
    let mut c = 0u64;
    loop {
        let at = batch_due(start, c, plan);
        if at >= end {
            return;
        }
        let now = std::time::Instant::now();
        if at > now {
            std::thread::sleep(at - now);
        }
        let Some(w) = workers.get((c % n) as usize) else {
            return;
        };
        if w.send(c).is_err() {
            return;
        }
        c += 1;
    }
}

/// Due time of item `k` at `rate` items per second.
fn due(start: std::time::Instant, k: u64, rate: u64) -> std::time::Instant {
    let nanos = u128::from(k) * 1_000_000_000 / u128::from(rate.max(1));
    start + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// Due time of batch `c`: that of its last item.
fn batch_due(start: std::time::Instant, c: u64, plan: Plan) -> std::time::Instant {
    let batch = plan.batch.max(1) as u64;
    due(start, c * batch + batch - 1, plan.rate)
}

async fn worker<C: Conn>(
    mut conn: C,
    w: Arc<Workload>,
    plan: Plan,
    start: Instant,
    mut source: Chunks,
    live: Arc<Live>,
) -> Recorder {
    let mut rec = Recorder::new();
    let batch = plan.batch.max(1) as u64;
    let warm_end = start + plan.warmup;
    let end = warm_end + plan.duration;
    let mut buf = Live::buffer();
    let (mut buf_n, mut buf_err, mut buf_refused) = (0u64, 0u64, 0u64);
    let mut last_flush = Instant::now();
    tokio::time::sleep_until(start).await;
    loop {
        let (chunk, send_at) = match &mut source {
            Chunks::Paced(due_now) => {
                if Instant::now() >= end {
                    // Behind schedule at the end: count what was due and never sent.
                    while due_now.recv().await.is_some() {
                        rec.not_sent += batch;
                    }
                    break;
                }
                let Some(c) = due_now.recv().await else {
                    break;
                };
                (c, Instant::from_std(batch_due(start.into_std(), c, plan)))
            }
            Chunks::Shared(next_chunk) => {
                let now = Instant::now();
                if now >= end {
                    break;
                }
                (next_chunk.fetch_add(1, Ordering::Relaxed), now)
            }
        };
        let items: Vec<Item> = (chunk * batch..chunk * batch + batch)
            .map(|k| w.item(k))
            .collect();
        let dones: Vec<Done> = conn.run(&items).await;
        for d in dones {
            let k = chunk * batch + d.item as u64;
            let origin = match d.sent {
                Some(s) => Instant::from_std(s),
                None if plan.rate > 0 => Instant::from_std(due(start.into_std(), k, plan.rate)),
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Every batch due before the end reaches its worker (batch `c` to worker `c mod n`), in
    /// order, never before its last item is due; none due at or after the end is handed out.
    #[test]
    fn the_pacer_hands_out_each_batch_once_due() {
        let workers = 3;
        let (txs, mut rxs): (Vec<_>, Vec<_>) =
            (0..workers).map(|_| mpsc::unbounded_channel()).unzip();
        let plan = Plan {
            rate: 2_000,
            warmup: Duration::from_millis(10),
            duration: Duration::from_millis(40),
            batch: 4,
        };
        let start = std::time::Instant::now() + Duration::from_millis(5);
        let pacer = std::thread::spawn(move || pace(txs, plan, start));
        let mut got = Vec::new();
        for (w, rx) in rxs.iter_mut().enumerate() {
            while let Some(c) = rx.blocking_recv() {
                got.push((c, w, std::time::Instant::now()));
            }
        }
        pacer.join().unwrap();
        // 50 ms at 2 000/s is 100 items: batches 0..=24, the last due at 49.5 ms.
        got.sort_by_key(|g| g.0);
        let chunks: Vec<u64> = got.iter().map(|g| g.0).collect();
        assert_eq!(chunks, (0..25).collect::<Vec<u64>>());
        for (c, w, at) in got {
            assert_eq!(c % workers as u64, w as u64, "batch {c} went to worker {w}");
            assert!(
                at >= batch_due(start, c, plan),
                "batch {c} handed out early"
            );
        }
    }
}
