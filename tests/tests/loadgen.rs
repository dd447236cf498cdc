//! The load generator end to end against a real `svault serve`: setup, an open-loop run over
//! HTTP and one over the binary protocol, the money check, the JSON report read back, the
//! comparison made by the command line, and both pages opened in Debian's headless Chromium
//! through Selenium and chromedriver (`tests/browser/page_check.py`): plots laid out, no
//! console message, no request but the page itself. And the command line's loud failure when
//! the target's money does not match the generator's count.

use loadgen::report::Report;
use loadgen::run::{run, RunSpec};
use loadgen::target::svault_http::SvaultRun;
use loadgen::workload::Profile;
use serde_json::{json, Value};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;
use svault_tests::api::Server;
use svault_tests::svault_bin;

const LOADGEN: &str = env!("CARGO_BIN_EXE_svault-loadgen-under-test");

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

/// What the browser saw of a page (`tests/browser/page_check.py`).
fn browse(html: &Path) -> Value {
    let python = std::env::var("LOADGEN_PYTHON").unwrap_or_else(|_| "python3".into());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser/page_check.py");
    let out = Command::new("timeout")
        .arg("120")
        .arg(&python)
        .arg(&script)
        .arg(html)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} ({e})"));
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the browser check failed: {log}\nNeeds Debian's chromium and chromium-driver and Selenium \
         from PyPI (.ci/run installs them); this test never skips."
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "page_check.py printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// Asserts `html` rendered at least `charts` charts with a drawn line each, logged nothing to
/// the console and fetched nothing but itself.
fn assert_renders_offline(html: &Path, charts: usize) {
    let seen = browse(html);
    let svgs = seen["svgs"].as_array().expect("svgs");
    assert!(
        svgs.len() >= charts,
        "{} charts rendered, want {charts} (latency curve, throughput and p99 over time): {seen}",
        svgs.len()
    );
    for s in svgs {
        assert!(
            s[0].as_f64() > Some(100.0) && s[1].as_f64() > Some(100.0),
            "a chart laid out at {s}"
        );
    }
    let series = seen["series"].as_array().expect("series");
    assert!(
        series.len() >= charts,
        "{} plotted series: {seen}",
        series.len()
    );
    for l in series {
        assert!(
            l["points"].as_u64() >= Some(2) && l["w"].as_f64() > Some(1.0),
            "a series drawn without a visible line: {l}"
        );
    }
    assert_eq!(seen["console"], json!([]), "console messages");
    let page = seen["url"].as_str().expect("url");
    let requests: Vec<&str> = seen["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .filter_map(Value::as_str)
        .filter(|u| *u != page)
        .collect();
    assert!(
        requests.is_empty(),
        "the page fetched {requests:?} (it must open without a network)"
    );
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
    assert_eq!(tcp.target.kind, "svault-tcp");
    // A batched worker sends the captures of a frame's holds with its next frame, and the last
    // ones once the run is over: every hold the run opened is captured, none is left held.
    let float = server.req("GET", "/v1/float").send().json();
    let program = float["programs"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["program"] == "loadgen-2"))
        .unwrap_or_else(|| panic!("no float for the tcp run's program: {float}"));
    assert_eq!(program["held"], "0.00", "holds left open: {program}");

    let dir = tempfile::tempdir().expect("dir");
    let json = dir.path().join("http.json");
    let html = dir.path().join("http.html");
    loadgen::cli::write_outputs(&http, Some(&json), Some(&html)).expect("write");
    let tcp_json = dir.path().join("tcp.json");
    loadgen::cli::write_outputs(&tcp, Some(&tcp_json), None).expect("write");
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
    let v: Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["schema"], "svault-loadgen/1");
    assert!(v["latency_us"]["p99"].as_u64().is_some());
    assert!(v["timeline"].as_array().is_some_and(|t| t.len() >= 2));
    assert_renders_offline(&html, 3);

    // The command line merges the two reports into one page and one table.
    let cmp = dir.path().join("compare.html");
    let md = dir.path().join("compare.md");
    let out = Command::new(LOADGEN)
        .arg("compare")
        .args([&json, &tcp_json])
        .arg("--html")
        .arg(&cmp)
        .arg("--markdown")
        .arg(&md)
        .output()
        .expect("run svault-loadgen compare");
    assert!(
        out.status.success(),
        "compare failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = std::fs::read_to_string(&md).expect("markdown table");
    assert!(
        table.contains("svault-http") && table.contains("svault-tcp"),
        "{table}"
    );
    assert_renders_offline(&cmp, 3);
}

/// The browser check itself can fail: a page that logs to the console, fetches an image and
/// draws an empty line is reported as such.
#[test]
fn the_browser_check_sees_console_messages_requests_and_empty_plots() {
    let dir = tempfile::tempdir().expect("dir");
    let page = dir.path().join("bad.html");
    std::fs::write(
        &page,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>bad</title></head><body>\
         <svg width=\"300\" height=\"200\"><polyline class=\"series\" points=\"\"/></svg>\
         <img src=\"http://127.0.0.1:9/x.png\"><script>console.error(\"boom\")</script></body></html>",
    )
    .expect("write page");
    let seen = browse(&page);
    let console = seen["console"].to_string();
    assert!(console.contains("boom"), "console not seen: {seen}");
    assert!(
        seen["requests"].to_string().contains("127.0.0.1:9/x.png"),
        "request not seen: {seen}"
    );
    assert_eq!(seen["series"][0]["points"], 0, "{seen}");
}

/// A target whose money moves behind the generator's back fails the run loudly: exit status
/// 3, the mismatch on stderr and in the report.
#[test]
fn the_cli_exits_3_when_the_targets_money_does_not_match_its_count() {
    let server = Server::start(svault_bin!(), &[]);
    let dir = tempfile::tempdir().expect("dir");
    let out = dir.path().join("report.json");
    let run_id = 77;
    let mut child = Command::new(LOADGEN)
        .args(["--target", &format!("http://{}", server.http)])
        .args([
            "--cards",
            "50",
            "--rate",
            "200",
            "--duration",
            "3s",
            "--warmup",
            "500ms",
        ])
        .args(["--connections", "2", "--seed", "3", "--quiet"])
        .args(["--run-id", &run_id.to_string()])
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn svault-loadgen");
    // As soon as the run's first card exists, someone else tops it up by 1.00. The run lasts
    // 3.5 s after setup, so this lands before the final read-back (in setup's read-back or
    // during the run; either is a mismatch).
    let card = SvaultRun::new(run_id).card_id(0);
    let mut opened = false;
    for _ in 0..6000 {
        if server
            .req("GET", &format!("/v1/cards/{card}"))
            .send()
            .status
            == 200
        {
            opened = true;
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("svault-loadgen ended ({status}) before its first card existed");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(opened, "card {card} never opened");
    let r = server
        .req("POST", &format!("/v1/cards/{card}/top-ups"))
        .key("behind-the-generators-back")
        .json(json!({"amount": "1.00", "channel": "cash"}))
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
    let done = child.wait_with_output().expect("wait for svault-loadgen");
    let stderr = String::from_utf8_lossy(&done.stderr);
    assert_eq!(
        done.status.code(),
        Some(3),
        "exit status {:?}; stderr: {stderr}",
        done.status
    );
    assert!(stderr.contains("MONEY CHECK FAILED"), "{stderr}");
    assert!(
        String::from_utf8_lossy(&done.stdout).contains("MISMATCH"),
        "the summary does not say it"
    );
    let report: Report =
        serde_json::from_str(&std::fs::read_to_string(&out).expect("report written"))
            .expect("report parses");
    assert!(!report.check.ok);
    assert!(
        report.check.message.contains("MISMATCH"),
        "{}",
        report.check.message
    );
}
