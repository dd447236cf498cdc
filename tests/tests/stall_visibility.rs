//! What an operator sees of a stall, through a real server: the per-shard stage histograms in
//! `/metrics` (queue wait, apply, commit, reply) and the slow-batch log line with its parts.
//! No timing is asserted: only that the figures exist, add up and name what happened.

use serde_json::json;
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};
use svault_tests::api::Server;
use svault_tests::svault_bin;

const STAGES: [&str; 4] = [
    "svault_shard_queue_wait_us",
    "svault_shard_apply_us",
    "svault_shard_commit_us",
    "svault_shard_reply_us",
];

/// `/metrics` as `series{labels}` → value (comments skipped).
fn metrics(s: &Server) -> HashMap<String, f64> {
    let r = s.req("GET", "/metrics").send();
    assert_eq!(r.status, 200);
    r.body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// `/metrics` once two readings 20 ms apart agree on every shard series (the HTTP counters
/// count the readings themselves). A shard answers a read inside its batch and
/// records the batch's stages after it, so a reading taken right after an answer may see the
/// batch counted but its stages not yet (or the other way round); only a settled reading adds
/// up. Liveness bound: a minute.
fn settled_metrics(s: &Server) -> HashMap<String, f64> {
    let deadline = Instant::now() + Duration::from_secs(60);
    let shard_series = |m: &HashMap<String, f64>| {
        let mut v: Vec<(String, u64)> = m
            .iter()
            .filter(|(k, _)| k.starts_with("svault_shard_"))
            .map(|(k, v)| (k.clone(), *v as u64))
            .collect();
        v.sort();
        v
    };
    let mut last = shard_series(&metrics(s));
    loop {
        std::thread::sleep(Duration::from_millis(20));
        let now = metrics(s);
        let series = shard_series(&now);
        if series == last {
            return now;
        }
        assert!(Instant::now() < deadline, "/metrics never settled");
        last = series;
    }
}

fn get(m: &HashMap<String, f64>, series: &str) -> u64 {
    *m.get(series)
        .unwrap_or_else(|| panic!("{series} missing from /metrics")) as u64
}

fn open_and_top_up(s: &Server, card: u64, key: &str) {
    let r = s
        .req("POST", "/v1/cards")
        .key(&format!("open-{card}"))
        .json(json!({"program":"demo","card_id":card.to_string(),"registered":true}))
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
    let r = s
        .req("POST", &format!("/v1/cards/{card}/top-ups"))
        .key(key)
        .json(json!({"amount":"10.00","channel":"wechat"}))
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[test]
fn stage_histograms_appear_in_metrics_and_count_every_message_batch_and_commit() {
    let s = Server::start(svault_bin!(), &[]);
    for card in 1..=8u64 {
        open_and_top_up(&s, card, &format!("t-{card}"));
        let r = s.req("GET", &format!("/v1/cards/{card}")).send();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    let m = settled_metrics(&s);
    let shards = 2;
    let mut messages = 0;
    let mut commits = 0;
    for k in 0..shards {
        let at = |name: &str| get(&m, &format!("{name}{{shard=\"{k}\"}}"));
        // Every message (a single request or a read here) waited in the queue once.
        let requests = at("svault_shard_requests_total") + at("svault_shard_queries_total");
        assert_eq!(
            at("svault_shard_queue_wait_us_count"),
            requests,
            "shard {k}"
        );
        // Apply and reply once per batch, commit once per sync.
        assert_eq!(
            at("svault_shard_apply_us_count"),
            at("svault_shard_batches_total")
        );
        assert_eq!(
            at("svault_shard_reply_us_count"),
            at("svault_shard_batches_total")
        );
        assert_eq!(
            at("svault_shard_commit_us_count"),
            at("svault_shard_commits_total")
        );
        for name in STAGES {
            // Buckets are cumulative and end in +Inf = count; the longest fits in the sum.
            let mut last = 0;
            for i in 0..25 {
                let b = get(
                    &m,
                    &format!("{name}_bucket{{shard=\"{k}\",le=\"{}\"}}", 1u64 << i),
                );
                assert!(
                    b >= last,
                    "{name} bucket {i} of shard {k} is not cumulative"
                );
                last = b;
            }
            let inf = get(&m, &format!("{name}_bucket{{shard=\"{k}\",le=\"+Inf\"}}"));
            assert!(inf >= last);
            assert_eq!(inf, at(&format!("{name}_count")), "{name} of shard {k}");
            assert!(at(&format!("{name}_max")) <= at(&format!("{name}_sum")));
        }
        messages += requests;
        commits += at("svault_shard_commits_total");
    }
    // 8 opens, 8 top-ups, 8 reads, and the demo program upsert on each shard at start.
    assert_eq!(messages, 8 * 3 + shards);
    assert!(
        commits >= 1 && commits <= 8 * 2 + shards,
        "{commits} commits"
    );
}

/// Lines of the server's log until one satisfies `want` (liveness bound: the test fails if
/// none comes within a minute; nothing is timed).
fn wait_for_line(log: &mpsc::Receiver<String>, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match log.recv_timeout(left) {
            Ok(line) if want(&line) => return line,
            Ok(_) => {}
            Err(e) => panic!("no such line in the server's log ({e})"),
        }
    }
}

#[test]
fn every_batch_is_logged_with_its_parts_when_the_threshold_is_zero() {
    // 1 MiB segments: each commit fills a 4 KiB page, so a few hundred requests rotate.
    let (s, log) = Server::start_capturing_log(
        svault_bin!(),
        &["--slow-batch-ms", "0", "--wal-segment-mib", "1"],
    );
    open_and_top_up(&s, 77, "t-77");
    let line = wait_for_line(&log, |l| {
        l.contains("slow batch") && l.contains("requests=1")
    });
    assert!(line.contains("WARN"), "{line}");
    for part in [
        "shard=",
        "total_us=",
        "queue_wait_us=",
        "apply_us=",
        "commit_us=",
        "reply_us=",
        "messages=",
        "commits=",
        "rotations=",
        "rotation_us=",
        "preallocations=",
        "snapshot_freeze_us=",
        "snapshot_writing=",
        "tick_timers=",
        "index_rehashes=",
    ] {
        assert!(line.contains(part), "{part} missing from {line:?}");
    }
    // What else happened: fill a segment (its next one is preallocated, then rotated to).
    for i in 0..300u64 {
        let r = s
            .req("POST", "/v1/cards/77/top-ups")
            .key(&format!("fill-{i}"))
            .json(json!({"amount":"1.00","channel":"wechat"}))
            .send();
        assert_eq!(r.status, 200, "{}", r.body);
    }
    wait_for_line(&log, |l| {
        l.contains("slow batch") && l.contains("preallocations=1")
    });
    wait_for_line(&log, |l| {
        l.contains("slow batch") && l.contains("rotations=1")
    });
    let m = metrics(&s);
    let slow: u64 = (0..2)
        .map(|k| {
            get(
                &m,
                &format!("svault_shard_slow_batches_total{{shard=\"{k}\"}}"),
            )
        })
        .sum();
    assert!(slow >= 300, "{slow} slow batches counted");
}
