//! `svault report` beside a running server: read-only, it reads the live log's tail while the
//! server appends to it, never fails on a record half written, never goes backwards, and once
//! the writer stops it counts exactly what the server acknowledged.

use serde_json::{json, Value};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use svault_tests::api::Server;
use svault_tests::svault_bin;

const CARDS: u64 = 8;

fn report(data: &Path) -> Value {
    let out = Command::new(svault_bin!())
        .arg("report")
        .arg("--data")
        .arg(data)
        .args(["--format", "json"])
        .output()
        .expect("run svault report");
    assert!(
        out.status.success(),
        "svault report failed beside a running server: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

/// (top-up count, top-up amount, spend count) of the demo program, as the report says.
fn demo_totals(r: &Value) -> (u64, String, u64) {
    let d = &r["programs"]["demo"];
    let n = |v: &Value| v.as_str().and_then(|s| s.parse().ok()).unwrap_or(u64::MAX);
    (
        n(&d["top_ups"]["count"]),
        d["top_ups"]["amount"].as_str().unwrap_or("?").to_string(),
        n(&d["spends"]["count"]),
    )
}

#[test]
fn a_report_taken_while_the_server_writes_never_fails_and_ends_exact() {
    let server = Server::start(svault_bin!(), &["--shards", "2"]);
    let http = server.client();
    for c in 1..=CARDS {
        let r = http
            .req("POST", "/v1/cards")
            .key(&format!("open-{c}"))
            .json(json!({"program":"demo","card_id":format!("{}", 7_000 + c),"registered":true}))
            .send();
        assert_eq!(r.status, 200, "open: {}", r.body);
    }

    // The writer: top-ups of 100.00 and spends of 1.00, round robin, counting what was
    // acknowledged approved.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let http = server.client();
        std::thread::spawn(move || {
            let (mut top_ups, mut spends) = (0u64, 0u64);
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) || i < 400 {
                i += 1;
                let card = 7_000 + 1 + i % CARDS;
                let (path, body) = if i.is_multiple_of(2) {
                    ("top-ups", json!({"amount":"100.00","channel":"wechat"}))
                } else {
                    ("spends", json!({"amount":"1.00","method":"qr"}))
                };
                let r = http
                    .req("POST", &format!("/v1/cards/{card}/{path}"))
                    .key(&format!("w-{i}"))
                    .json(body)
                    .send();
                if r.status == 200 {
                    if path == "top-ups" {
                        top_ups += 1;
                    } else {
                        spends += 1;
                    }
                }
            }
            (top_ups, spends)
        })
    };

    // Reports taken while the writer runs: each succeeds, and none goes backwards.
    let mut last = (0u64, 0u64);
    for _ in 0..6 {
        let (t, _, s) = demo_totals(&report(&server.data));
        assert!(t != u64::MAX && s != u64::MAX, "report has the demo totals");
        assert!(
            t >= last.0 && s >= last.1,
            "a later report went backwards: {last:?} then {:?}",
            (t, s)
        );
        last = (t, s);
    }
    stop.store(true, Ordering::Relaxed);
    let (top_ups, spends) = writer.join().expect("writer");
    assert!(top_ups >= 150, "the writer got {top_ups} top-ups approved");

    // The server still runs: every acknowledged request is in the log the report reads.
    let (t, amount, s) = demo_totals(&report(&server.data));
    assert_eq!((t, s), (top_ups, spends), "report vs acknowledged");
    assert_eq!(amount, format!("{}.00", top_ups * 100));
}
