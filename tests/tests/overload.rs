//! Overload, through a real server on both doors: with a small shard queue (`--queue-depth`)
//! and far more requests offered at once than it holds, the excess is refused at once — `503`
//! with `Retry-After` over HTTP, OVERLOADED over the binary protocol — never left to time out
//! or dropped: no request of the load generator fails, the money check passes (so a refused
//! request applied nothing), the server's memory stays bounded, and right after the load a
//! normal request is answered. A few seconds each; nothing is timed but liveness bounds.

use loadgen::report::Report;
use loadgen::run::{run, RunSpec};
use loadgen::workload::Profile;
use serde_json::json;
use std::time::Duration;
use svault_tests::api::Server;
use svault_tests::svault_bin;

fn spec(target: String, admin: Option<String>, connections: usize, pipeline: usize) -> RunSpec {
    RunSpec {
        target,
        admin,
        cards: 200,
        dist: None,
        profile: Profile::Steady,
        mix: None,
        // Closed loop: every worker sends again as soon as it is answered, so the offered
        // concurrency (connections × pipeline) stays far above the queue's 4 slots.
        rate: 0,
        duration: Duration::from_secs(3),
        warmup: Duration::from_millis(500),
        connections,
        pipeline,
        batch: 1,
        seed: 11,
        run_id: std::process::id() as u64,
        label: None,
        keep: false,
        quiet: true,
        setup_via: None,
        durability_note: None,
    }
}

/// The server's resident memory in KiB (`VmRSS` of `/proc/PID/status`).
fn rss_kib(s: &Server) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.pid())).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

fn start() -> Server {
    Server::start(svault_bin!(), &["--shards", "1", "--queue-depth", "4"])
}

fn assert_refused_not_failed(r: &Report) {
    assert!(r.check.ok, "money check failed: {}", r.check.message);
    assert!(
        r.refused > 0,
        "nothing refused: the load never passed the queue ({} requests)",
        r.requests
    );
    assert!(r.approved > 0, "nothing approved: {:?}", r.ops);
    // A refusal without Retry-After, a timeout or a reset would be an error.
    assert_eq!(r.errors, 0, "errors under overload: {:?}", r.ops);
}

/// After the load: a fresh card is opened and topped up at once.
fn answers_normally(s: &Server) {
    let card = "6200000000000077";
    let r = s
        .req("POST", "/v1/cards")
        .key("after-overload-open")
        .json(json!({"program": "demo", "card_id": card, "registered": true}))
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .req("POST", &format!("/v1/cards/{card}/top-ups"))
        .key("after-overload-top-up")
        .json(json!({"amount": "100.00", "channel": "cash"}))
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn http_overload_is_refused_with_503_and_retry_after() {
    let s = start();
    let before = rss_kib(&s);
    let r = rt()
        .block_on(run(&spec(format!("http://{}", s.http), None, 64, 1)))
        .unwrap();
    assert_refused_not_failed(&r);
    let after = rss_kib(&s);
    // Bounded: a queue of 4 and 64 connections cannot need more than a few MiB; 256 MiB
    // would be a leak or an unbounded queue.
    assert!(
        after < before + 256 * 1024,
        "RSS grew from {before} KiB to {after} KiB under overload"
    );
    answers_normally(&s);
}

#[test]
fn binary_overload_is_refused_with_overloaded() {
    let s = start();
    let before = rss_kib(&s);
    let r = rt()
        .block_on(run(&spec(
            format!("tcp://{}", s.tcp),
            Some(s.http.to_string()),
            4,
            16,
        )))
        .unwrap();
    assert_refused_not_failed(&r);
    let after = rss_kib(&s);
    assert!(
        after < before + 256 * 1024,
        "RSS grew from {before} KiB to {after} KiB under overload"
    );
    answers_normally(&s);
}
