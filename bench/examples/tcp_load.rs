//! Load through the binary protocol with `proto::client`: batched, pipelined spends.
//!
//! ```text
//! cargo run --release -p bench --example tcp_load -- --setup --cards 1000           # open + fund cards
//! cargo run --release -p bench --example tcp_load -- --cards 1000 --seconds 5        # as fast as possible
//! cargo run --release -p bench --example tcp_load -- --cards 1000 --seconds 5 --rate 500000
//! cargo run --release -p bench --example tcp_load -- --http --rate 20000             # HTTP keep-alive, open loop
//! ```
//! Open loop at `--rate`: each batch has an intended send time and latency counts from it, so
//! a stall is not hidden (no coordinated omission). Every spend is 0.01 with a unique key.

use hdrhistogram::Histogram;
use proto::client::{Call, Client, Op, Status};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use svault_core::command::{CardId, Channel, Method};
use svault_core::money::Amount;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// First card id of the bench cards (`FIRST_CARD + i`).
const FIRST_CARD: u64 = 6_100_000_000_000_000;

struct Args {
    addr: String,
    http_addr: String,
    cards: u64,
    connections: usize,
    pipeline: usize,
    batch: usize,
    seconds: u64,
    rate: u64,
    setup: bool,
    http: bool,
    /// Makes idempotency keys unique across runs.
    run: u64,
}

fn args() -> Args {
    let mut a = Args {
        addr: "127.0.0.1:7070".into(),
        http_addr: "127.0.0.1:8080".into(),
        cards: 1000,
        connections: 4,
        pipeline: 4,
        batch: 1024,
        seconds: 5,
        rate: 0,
        setup: false,
        http: false,
        run: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    };
    let v: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < v.len() {
        let next = |i: usize| v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--addr" => a.addr = next(i),
            "--http-addr" => a.http_addr = next(i),
            "--cards" => a.cards = next(i).parse().unwrap_or(a.cards),
            "--connections" => a.connections = next(i).parse().unwrap_or(a.connections),
            "--pipeline" => a.pipeline = next(i).parse().unwrap_or(a.pipeline),
            "--batch" => a.batch = next(i).parse().unwrap_or(a.batch),
            "--seconds" => a.seconds = next(i).parse().unwrap_or(a.seconds),
            "--rate" => a.rate = next(i).parse().unwrap_or(0),
            "--setup" => {
                a.setup = true;
                i += 1;
                continue;
            }
            "--http" => {
                a.http = true;
                i += 1;
                continue;
            }
            other => panic!("unknown flag {other}"),
        }
        i += 2;
    }
    a
}

async fn setup(a: &Args) {
    let client = Client::connect(&a.addr, None).await.expect("connect");
    let mut calls = Vec::new();
    for i in 0..a.cards {
        let card_id = CardId(FIRST_CARD + i);
        calls.push(Call::new(
            Some(format!("bench-open-{i}")),
            Op::OpenCard {
                card_id,
                program: "demo".into(),
                registered: true,
            },
        ));
        calls.push(Call::new(
            Some(format!("bench-fund-{i}")),
            Op::TopUp {
                card_id,
                amount: Amount(400_000),
                channel: Channel::Cash,
            },
        ));
    }
    let mut ok = 0;
    for chunk in calls.chunks(8192) {
        for a in client
            .call_batch(chunk.to_vec())
            .await
            .expect("setup batch")
        {
            ok += usize::from(a.status == Status::Approved);
        }
    }
    println!(
        "setup: {ok} of {} opens and top-ups approved (replays count too)",
        calls.len()
    );
}

struct Totals {
    hist: Histogram<u64>,
    approved: u64,
    other: u64,
    by_status: std::collections::BTreeMap<String, u64>,
}

impl Totals {
    fn new() -> Totals {
        Totals {
            hist: Histogram::new(3).expect("histogram"),
            approved: 0,
            other: 0,
            by_status: Default::default(),
        }
    }
}

async fn tcp_worker(
    client: Client,
    a: Arc<Args>,
    worker: u64,
    workers: u64,
    deadline: Instant,
    counter: Arc<AtomicU64>,
) -> Totals {
    let mut t = Totals::new();
    let interval = (a.rate > 0)
        .then(|| Duration::from_secs_f64(a.batch as f64 * workers as f64 / a.rate as f64));
    let start = Instant::now();
    let mut k: u64 = 0;
    while Instant::now() < deadline {
        let intended = match interval {
            Some(iv) => {
                let at = start + iv.mul_f64(k as f64);
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                at
            }
            None => Instant::now(),
        };
        k += 1;
        let base = counter.fetch_add(a.batch as u64, Ordering::Relaxed);
        let calls: Vec<Call> = (0..a.batch as u64)
            .map(|j| {
                let n = base + j;
                let card_id = CardId(FIRST_CARD + (n * 7919 + worker) % a.cards);
                Call::new(
                    Some(format!("b{}-{n}", a.run)),
                    Op::Spend {
                        card_id,
                        amount: Amount(1),
                        method: Method::Qr,
                        store: None,
                    },
                )
            })
            .collect();
        let answers = client.call_batch(calls).await.expect("batch");
        let us = intended.elapsed().as_micros() as u64;
        for ans in &answers {
            if ans.status == Status::Approved {
                t.approved += 1;
            } else {
                t.other += 1;
                *t.by_status.entry(format!("{:?}", ans.status)).or_default() += 1;
            }
        }
        let _ = t.hist.record_n(us.max(1), answers.len() as u64);
    }
    t
}

/// One HTTP/1.1 keep-alive connection sending spends, open loop at its share of `--rate`.
async fn http_worker(a: Arc<Args>, worker: u64, workers: u64, deadline: Instant) -> Totals {
    let mut t = Totals::new();
    let mut s = tokio::net::TcpStream::connect(&a.http_addr)
        .await
        .expect("connect http");
    s.set_nodelay(true).ok();
    let interval = (a.rate > 0).then(|| Duration::from_secs_f64(workers as f64 / a.rate as f64));
    let start = Instant::now();
    let mut buf = vec![0u8; 16 * 1024];
    let mut k: u64 = 0;
    while Instant::now() < deadline {
        let intended = match interval {
            Some(iv) => {
                let at = start + iv.mul_f64(k as f64);
                if at > Instant::now() {
                    tokio::time::sleep_until(at.into()).await;
                }
                at
            }
            None => Instant::now(),
        };
        k += 1;
        let card = FIRST_CARD + (k * 7919 + worker) % a.cards;
        let body = r#"{"amount":"0.01","method":"qr"}"#;
        let req = format!(
            "POST /v1/cards/{card}/spends HTTP/1.1\r\nHost: x\r\nIdempotency-Key: h{worker}-{k}-{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            start.elapsed().as_nanos(),
            body.len()
        );
        s.write_all(req.as_bytes()).await.expect("write");
        // Read one response: head, then Content-Length bytes.
        let mut have = 0usize;
        let (head_end, len) = loop {
            let n = s.read(&mut buf[have..]).await.expect("read");
            assert!(n > 0, "server closed");
            have += n;
            if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..p]).to_ascii_lowercase();
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if head.starts_with("http/1.1 200") {
                    t.approved += 1;
                } else {
                    t.other += 1;
                }
                break (p + 4, len);
            }
        };
        while have < head_end + len {
            let n = s.read(&mut buf[have..]).await.expect("read body");
            assert!(n > 0, "server closed");
            have += n;
        }
        let _ = t.hist.record(intended.elapsed().as_micros() as u64);
    }
    t
}

#[tokio::main]
async fn main() {
    let a = Arc::new(args());
    if a.setup {
        setup(&a).await;
        return;
    }
    let deadline = Instant::now() + Duration::from_secs(a.seconds);
    let counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let started = Instant::now();
    if a.http {
        let workers = a.connections as u64;
        for w in 0..workers {
            tasks.push(tokio::spawn(http_worker(a.clone(), w, workers, deadline)));
        }
    } else {
        let workers = (a.connections * a.pipeline) as u64;
        for c in 0..a.connections {
            let client = Client::connect(&a.addr, None).await.expect("connect");
            for p in 0..a.pipeline {
                let w = (c * a.pipeline + p) as u64;
                tasks.push(tokio::spawn(tcp_worker(
                    client.clone(),
                    a.clone(),
                    w,
                    workers,
                    deadline,
                    counter.clone(),
                )));
            }
        }
    }
    let mut all = Totals::new();
    for t in tasks {
        let t = t.await.expect("worker");
        all.hist.add(&t.hist).expect("merge");
        all.approved += t.approved;
        all.other += t.other;
        for (k, v) in t.by_status {
            *all.by_status.entry(k).or_default() += v;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let n = all.approved + all.other;
    let q = |p: f64| all.hist.value_at_quantile(p) as f64 / 1000.0;
    println!(
        "{} {} requests in {secs:.1} s = {:.0}/s (approved {}, other {}); latency ms p50 {:.3} p90 {:.3} p99 {:.3} p99.9 {:.3} max {:.3}",
        if a.http { "http" } else { "tcp" },
        n,
        n as f64 / secs,
        all.approved,
        all.other,
        q(0.5),
        q(0.9),
        q(0.99),
        q(0.999),
        all.hist.max() as f64 / 1000.0
    );
    if !all.by_status.is_empty() {
        println!("not approved: {:?}", all.by_status);
    }
}
