//! The load generator end to end against a real `svault serve`: setup, an open-loop run over
//! HTTP and one over the binary protocol, the money check, the JSON report read back, and the
//! HTML page opened in headless Chromium (plots drawn, no console error, nothing fetched).

use loadgen::report::Report;
use loadgen::run::{run, RunSpec};
use loadgen::workload::Profile;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use svault_tests::api::Server;
use svault_tests::svault_bin;

fn spec(target: String, admin: Option<String>, run_id: u64) -> RunSpec {
    RunSpec {
        target,
        admin,
        cards: 300,
        dist: None,
        profile: Profile::Steady,
        mix: None,
        rate: 400,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        connections: 4,
        pipeline: 1,
        batch: 1,
        seed: 5,
        run_id,
        label: None,
        keep: false,
        quiet: true,
        setup_via: None,
        durability_note: None,
    }
}

fn assert_sane(r: &Report) {
    assert!(r.check.ok, "money check failed: {}", r.check.message);
    assert!(r.requests > 300, "only {} requests measured", r.requests);
    assert_eq!(r.errors, 0, "errors: {:?}", r.ops);
    for op in ["spend", "top_up", "hold", "capture", "refund"] {
        let o = r
            .ops
            .get(op)
            .unwrap_or_else(|| panic!("no {op} in {:?}", r.ops.keys()));
        assert!(o.approved > 0, "{op}: nothing approved: {o:?}");
    }
    assert!(r.check.approved_delta_minor != 0);
    assert!(r.latency_us.max >= r.latency_us.p50 && r.latency_us.p50 > 0);
}

/// Opens `html` in headless Chromium and checks what it rendered.
fn open_in_chromium(html: &Path, dir: &Path) {
    let bin = std::env::var("LOADGEN_CHROMIUM").unwrap_or_else(|_| "chromium".into());
    let out = Command::new("timeout")
        .arg("120")
        .arg(&bin)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr", "--v=0"])
        .arg(format!("--user-data-dir={}", dir.join("chromium-profile").display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", html.display()))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {bin} ({e}): install Debian's chromium (apt-get install chromium); this test never skips"));
    let dom = String::from_utf8_lossy(&out.stdout);
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {log}");
    assert!(
        dom.contains("<svg"),
        "no SVG in the rendered page: {dom:.2000}"
    );
    let charts = dom.matches("<svg").count();
    assert!(
        charts >= 3,
        "{charts} charts rendered, want latency curve, throughput and p99 over time"
    );
    let lines = dom.matches("class=\"series\"").count();
    assert!(lines >= 3, "{lines} plotted series");
    assert!(!dom.contains("points=\"\""), "an empty series was drawn");
    for bad in ["<script", "<link", "<img", "<iframe", "src=", "url("] {
        assert!(!dom.contains(bad), "the page loads something ({bad})");
    }
    let console: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("CONSOLE") || l.contains("Refused to"))
        .collect();
    assert!(console.is_empty(), "console messages: {console:#?}");
}

#[test]
fn loadgen_against_svault_http_and_tcp_passes_the_money_check_and_writes_reports() {
    let server = Server::start(svault_bin!(), &[]);
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let http = rt
        .block_on(run(&spec(format!("http://{}", server.http), None, 1)))
        .expect("http run");
    assert_sane(&http);
    assert_eq!(http.target.kind, "svault-http");
    let mut tcp_spec = spec(
        format!("tcp://{}", server.tcp),
        Some(server.http.to_string()),
        2,
    );
    tcp_spec.batch = 8;
    tcp_spec.pipeline = 2;
    let tcp = rt.block_on(run(&tcp_spec)).expect("tcp run");
    assert_sane(&tcp);

    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("report.json");
    let html = dir.path().join("report.html");
    loadgen::cli::write_outputs(&http, Some(&json), Some(&html)).expect("write");
    let text = std::fs::read_to_string(&json).expect("json");
    let back: Report = serde_json::from_str(&text).expect("the JSON report parses back");
    // Everything but float last digits (serde_json parses floats to the nearest, not exactly).
    assert_eq!(
        (&back.ops, &back.check, &back.config, &back.timeline),
        (&http.ops, &http.check, &http.config, &http.timeline)
    );
    assert_eq!(
        (back.requests, back.latency_us.p99, back.latency_curve.len()),
        (http.requests, http.latency_us.p99, http.latency_curve.len())
    );
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["schema"], "svault-loadgen/1");
    assert!(v["latency_us"]["p99"].as_u64().is_some());
    assert!(v["timeline"].as_array().is_some_and(|t| t.len() >= 2));
    open_in_chromium(&html, dir.path());

    let cmp = dir.path().join("compare.html");
    std::fs::write(&cmp, loadgen::html::compare_page(&[http, tcp])).expect("write compare");
    open_in_chromium(&cmp, dir.path());
}
