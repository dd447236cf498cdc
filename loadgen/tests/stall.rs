//! The open-loop scheduler against a target that stalls for one second: the stall must show
//! as about one second of tail latency for the requests scheduled during it, not vanish
//! (coordinated omission would count only the one stalled request as slow).

use loadgen::drive::{drive, Plan};
use loadgen::stats::{Live, Outcome};
use loadgen::target::{Conn, Done};
use loadgen::workload::{Dist, Item, Mix, Profile, Workload};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Answers at once, except item `stall_at`, which takes one second.
struct Stalling {
    stall_at: u64,
}

impl Conn for Stalling {
    async fn run(&mut self, items: &[Item]) -> Vec<Done> {
        let mut out = Vec::new();
        for (i, it) in items.iter().enumerate() {
            if it.seq == self.stall_at {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            out.push(Done {
                item: i,
                op: loadgen::workload::OpKind::Spend,
                outcome: Outcome::Approved { delta: 0 },
                sent: None,
                at: Instant::now(),
            });
        }
        out
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_second_stall_shows_as_one_second_of_tail_latency() {
    let w = Arc::new(
        Workload::new(
            10,
            Dist::Uniform,
            "spend=1".parse::<Mix>().expect("mix"),
            Profile::Steady,
            1,
        )
        .expect("workload"),
    );
    let plan = Plan {
        rate: 1000,
        warmup: Duration::ZERO,
        duration: Duration::from_secs(3),
        batch: 1,
    };
    let rec = drive(
        vec![Stalling { stall_at: 500 }],
        w,
        plan,
        Arc::new(Live::default()),
    )
    .await;
    let h = &rec.overall;
    assert!(
        h.max() >= 900_000,
        "max latency {} µs: the stall vanished",
        h.max()
    );
    // The requests due during the stall waited for it: hundreds of them above 0.5 s, not one.
    let slow = h.count_between(500_000, h.max());
    assert!(
        slow >= 300,
        "only {slow} requests above 0.5 s: coordinated omission"
    );
    assert!(h.len() >= 2000, "only {} requests answered", h.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_runs_as_fast_as_answers_come() {
    let w = Arc::new(
        Workload::new(
            10,
            Dist::Uniform,
            "spend=1".parse::<Mix>().expect("mix"),
            Profile::Steady,
            1,
        )
        .expect("workload"),
    );
    let plan = Plan {
        rate: 0,
        warmup: Duration::from_millis(100),
        duration: Duration::from_millis(400),
        batch: 4,
    };
    let conns = vec![
        Stalling { stall_at: u64::MAX },
        Stalling { stall_at: u64::MAX },
    ];
    let rec = drive(conns, w, plan, Arc::new(Live::default())).await;
    assert!(
        rec.measured > 1000,
        "only {} requests in 0.4 s against an instant target",
        rec.measured
    );
    assert_eq!(rec.not_sent, 0);
}
