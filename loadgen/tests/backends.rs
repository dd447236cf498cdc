//! Postgres and Redis end to end against real servers: schema/script/keys created by the
//! tool, a short open-loop run, the money read back and checked.
//!
//! The servers come from `bench/services.sh start` (.ci/run starts them); their URLs are in
//! `LOADGEN_POSTGRES_URL` and `LOADGEN_REDIS_URL`. A missing URL fails the test: a backend
//! test never passes by skipping.

use loadgen::report::Report;
use loadgen::run::{run, RunSpec};
use loadgen::workload::Profile;
use std::time::Duration;

fn url(var: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set. Start Postgres and Redis with `eval \"$(bench/services.sh start)\"` \
             (what .ci/run does); this test never skips."
        )
    })
}

fn spec(target: String, profile: Profile, run_id: u64) -> RunSpec {
    RunSpec {
        target,
        admin: None,
        cards: 500,
        dist: None,
        profile,
        mix: None,
        rate: 300,
        duration: Duration::from_secs(2),
        warmup: Duration::from_millis(500),
        connections: 4,
        pipeline: 1,
        batch: 1,
        seed: 9,
        run_id,
        label: None,
        keep: false,
        quiet: true,
        setup_via: None,
        durability_note: None,
    }
}

fn run_id() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64 % 1_000_000_000)
}

fn assert_ran(r: &Report, ops: &[&str]) {
    assert!(r.check.ok, "money check failed: {}", r.check.message);
    assert_eq!(r.errors, 0, "errors: {:?}", r.ops);
    assert!(r.requests > 300, "only {} requests", r.requests);
    for op in ops {
        let o = r
            .ops
            .get(*op)
            .unwrap_or_else(|| panic!("no {op}: {:?}", r.ops.keys()));
        assert!(o.approved > 0, "{op}: nothing approved: {o:?}");
    }
    assert!(r.check.approved_delta_minor != 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_runs_the_steady_profile_and_the_money_matches() {
    let r = run(&spec(
        url("LOADGEN_POSTGRES_URL"),
        Profile::Steady,
        run_id(),
    ))
    .await
    .expect("postgres run");
    assert_eq!(r.target.kind, "postgres");
    assert!(
        r.target.durability.contains("synchronous_commit=on"),
        "{}",
        r.target.durability
    );
    assert_ran(&r, &["spend", "top_up", "hold", "capture", "refund"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_runs_the_steady_profile_and_the_money_matches() {
    let r = run(&spec(url("LOADGEN_REDIS_URL"), Profile::Steady, run_id()))
        .await
        .expect("redis run");
    assert_eq!(r.target.kind, "redis");
    assert!(
        r.target.durability.contains("appendfsync=always"),
        "{}",
        r.target.durability
    );
    assert_ran(&r, &["spend", "top_up", "hold", "capture", "refund"]);
}

/// What Postgres and Redis cannot express is in the report, and the requests it concerns
/// are counted as unsupported, not dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refund_storm_reports_reversals_as_unsupported_on_both() {
    for var in ["LOADGEN_POSTGRES_URL", "LOADGEN_REDIS_URL"] {
        let mut s = spec(url(var), Profile::RefundStorm, run_id());
        s.duration = Duration::from_secs(1);
        let r = run(&s).await.expect("run");
        assert!(r.check.ok, "{var}: {}", r.check.message);
        let rev = r.ops.get("reversal").expect("reversal counted");
        assert!(rev.unsupported > 0 && rev.requests == 0, "{var}: {rev:?}");
        assert!(
            r.target
                .unsupported
                .iter()
                .any(|u| u.what.contains("reversal")),
            "{var}: {:?}",
            r.target.unsupported
        );
    }
}
