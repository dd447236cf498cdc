//! Real-process crash test: the crash driver runs the engine with `group` durability and prints
//! every acknowledged request; the test kills it with SIGKILL at a random moment (after a random
//! number of acknowledgements, at least `MIN_ACKS_PER_ROUND`, so no round checks nothing), reopens the
//! engine on the same directory and checks that every acknowledged request is there: resubmitting
//! it with the same key answers the same outcome flagged `replayed`, and the books balance
//! (no negative balance, the float equals the sum of the cards). Every fifth round also checks
//! that the reopened engine's digest equals `svault replay`'s for the same directory.

use rand::{Rng, SeedableRng};
use runtime::{Durability, Engine, EngineConfig, Scope};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use svault_core::command::{CardId, Query, Request};
use svault_core::outcome::FloatTotals;
use svault_core::state::QueryAnswer;
use svault_tests::crash::{parse_ack, shape, POOL_CARDS, POOL_FIRST};

const ROUNDS: u64 = 20;
/// Acknowledgements after READY every round must reach before the kill.
const MIN_ACKS_PER_ROUND: usize = 200;
/// The kill comes after a random number of acknowledgements in this range.
const MAX_ACKS_PER_ROUND: usize = 3_000;
/// How long a round may take to reach its acknowledgements (a liveness bound, not a timing).
const ROUND_DEADLINE: Duration = Duration::from_secs(120);

#[test]
fn acknowledged_requests_survive_sigkill() {
    let seed: u64 = std::env::var("SVAULT_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("crash test seed {seed} (SVAULT_CRASH_SEED to repeat)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (mut total_acks, mut total_rejected) = (0usize, 0usize);
    for round in 0..ROUNDS {
        let target = rng.gen_range(MIN_ACKS_PER_ROUND..MAX_ACKS_PER_ROUND);
        let acks = run_and_kill(dir.path(), round, target);
        let counts = verify(dir.path(), &acks, round % 5 == 4);
        assert!(
            counts.replayed >= MIN_ACKS_PER_ROUND / 2,
            "round {round}: only {} acknowledged requests checked ({} rejected skipped)",
            counts.replayed,
            counts.rejected
        );
        total_acks += counts.replayed;
        total_rejected += counts.rejected;
    }
    for k in 0..2 {
        let snaps = std::fs::read_dir(dir.path().join(format!("shard-{k}/snapshots")))
            .map(|d| {
                d.filter_map(|e| e.ok())
                    .filter(|e| e.file_name().to_string_lossy().ends_with(".snap"))
                    .count()
            })
            .unwrap_or(0);
        assert!(
            snaps > 0,
            "shard {k}: no snapshot was taken during the rounds"
        );
    }
    eprintln!(
        "{ROUNDS} kill/restart rounds, {total_acks} acknowledged requests checked \
         ({total_rejected} acknowledged refusals skipped) in {:?}",
        started.elapsed()
    );
}

/// Runs the driver until it has acknowledged `target` requests after READY, kills it; returns
/// every ACK line it printed.
fn run_and_kill(dir: &Path, round: u64, target: usize) -> Vec<(Request, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-driver"))
        .arg(dir)
        .arg(round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash-driver");
    let stdout = child.stdout.take().unwrap();
    let (reached_tx, reached_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        let mut after_ready = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "READY" {
                after_ready = Some(0);
            } else if let Some(ack) = parse_ack(&line) {
                acks.push(ack);
                if let Some(n) = after_ready.as_mut() {
                    *n += 1;
                    if *n == target {
                        let _ = reached_tx.send(());
                    }
                }
            }
        }
        acks
    });
    let reached = reached_rx.recv_timeout(ROUND_DEADLINE).is_ok();
    let _ = child.kill(); // SIGKILL
    let status = child.wait().unwrap();
    let acks = reader.join().unwrap();
    assert!(
        reached,
        "round {round}: the driver acknowledged fewer than {target} requests (exit {status:?})"
    );
    acks
}

/// What a round's verification checked.
struct Checked {
    /// Acknowledged requests found again (answered from their key, same outcome).
    replayed: usize,
    /// Acknowledged refusals (rejected before any decision), not remembered under their key.
    rejected: usize,
}

fn verify(dir: &Path, acks: &[(Request, String)], check_replay_digest: bool) -> Checked {
    let config = EngineConfig {
        data_dir: dir.into(),
        shards: None,
        durability: Durability::Group,
    };
    let engine =
        Engine::open_with(config, svault_tests::crash::driver_tuning()).expect("reopen after kill");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut checked = Checked {
        replayed: 0,
        rejected: 0,
    };
    rt.block_on(async {
        for chunk in acks.chunks(256) {
            let requests: Vec<Request> = chunk.iter().map(|(r, _)| r.clone()).collect();
            let replies = engine.submit_batch(requests, &Scope::All).await;
            for ((request, expected), reply) in chunk.iter().zip(replies) {
                let reply = reply.unwrap_or_else(|e| panic!("resubmitting {request:?}: {e}"));
                if expected.starts_with("rejected") {
                    checked.rejected += 1;
                    continue; // refusals before any decision are not remembered under the key
                }
                assert!(
                    reply.replayed,
                    "acknowledged {request:?} ({expected}) was lost: answered afresh {:?}",
                    reply.outcome
                );
                assert_eq!(
                    &shape(&reply.outcome),
                    expected,
                    "acknowledged {request:?} answered differently"
                );
                checked.replayed += 1;
            }
        }
        let mut sum = FloatTotals::default();
        for i in 0..POOL_CARDS {
            let answer = engine
                .query(
                    Query::Card {
                        card_id: CardId(POOL_FIRST + i),
                    },
                    &Scope::All,
                )
                .await
                .unwrap();
            let QueryAnswer::Card(Some(card)) = answer else {
                panic!("pool card {i} missing: {answer:?}")
            };
            assert!(
                card.principal.0 >= 0 && card.bonus.0 >= 0 && card.held.0 >= 0,
                "negative balance {card:?}"
            );
            assert!(
                card.held.0 <= card.principal.0 + card.bonus.0,
                "more held than funds {card:?}"
            );
            assert_eq!(
                card.available.0,
                card.principal.0 + card.bonus.0 - card.held.0,
                "{card:?}"
            );
            sum.principal.0 += card.principal.0;
            sum.bonus.0 += card.bonus.0;
            sum.held.0 += card.held.0;
            sum.cards += 1;
        }
        let float = engine.float();
        let demo = float
            .iter()
            .find(|(p, _)| p == "demo")
            .map(|(_, f)| *f)
            .expect("demo float");
        assert_eq!(demo, sum, "float differs from the sum of the cards");
    });
    let live = engine.digest().unwrap();
    engine.shutdown();
    if check_replay_digest {
        let out = Command::new(env!("CARGO_BIN_EXE_svault-under-test"))
            .args(["replay", "--verify", "--data"])
            .arg(dir)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "svault replay failed: {text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed = text
            .lines()
            .find_map(|l| l.strip_prefix("digest: "))
            .expect("digest line");
        assert_eq!(
            printed,
            format!("{live:016x}"),
            "replay digest differs from the live engine's"
        );
    }
    checked
}
