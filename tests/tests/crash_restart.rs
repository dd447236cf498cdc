//! Real-process crash test: the crash driver runs the engine with `group` durability and prints
//! every acknowledged request; the test kills it with SIGKILL at a random moment, reopens the
//! engine on the same directory and checks that every acknowledged request is there: resubmitting
//! it with the same key answers the same outcome flagged `replayed`, and the books balance
//! (no negative balance, the float equals the sum of the cards). Every fifth round also checks
//! that the reopened engine's digest equals `svault replay`'s for the same directory.

use engine::command::{CardId, Query, Request};
use engine::outcome::FloatTotals;
use engine::runtime::{Durability, Engine, EngineConfig, Scope};
use engine::state::QueryAnswer;
use rand::{Rng, SeedableRng};
use std::io::BufRead;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use svault_tests::crash::{parse_ack, shape, POOL_CARDS, POOL_FIRST};

const ROUNDS: u64 = 20;

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
    let mut total_acks = 0usize;
    for round in 0..ROUNDS {
        let acks = run_and_kill(
            dir.path(),
            round,
            Duration::from_millis(rng.gen_range(20..200)),
        );
        total_acks += acks.len();
        verify(dir.path(), &acks, round % 5 == 4);
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
        "{ROUNDS} kill/restart rounds, {total_acks} acknowledged requests checked in {:?}",
        started.elapsed()
    );
}

/// Runs the driver until READY, lets it work for `run_for`, kills it; returns the ACK lines.
fn run_and_kill(dir: &Path, round: u64, run_for: Duration) -> Vec<(Request, String)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_crash-driver"))
        .arg(dir)
        .arg(round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn crash-driver");
    let stdout = child.stdout.take().unwrap();
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut acks = Vec::new();
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if line == "READY" {
                let _ = ready_tx.send(());
            } else if let Some(ack) = parse_ack(&line) {
                acks.push(ack);
            }
        }
        acks
    });
    let ready = ready_rx.recv_timeout(Duration::from_secs(30)).is_ok();
    std::thread::sleep(run_for);
    let _ = child.kill(); // SIGKILL
    let status = child.wait().unwrap();
    let acks = reader.join().unwrap();
    assert!(
        ready,
        "round {round}: driver never got ready (exit {status:?})"
    );
    acks
}

fn verify(dir: &Path, acks: &[(Request, String)], check_replay_digest: bool) {
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
    rt.block_on(async {
        for chunk in acks.chunks(256) {
            let requests: Vec<Request> = chunk.iter().map(|(r, _)| r.clone()).collect();
            let replies = engine.submit_batch(requests, &Scope::All).await;
            for ((request, expected), reply) in chunk.iter().zip(replies) {
                let reply = reply.unwrap_or_else(|e| panic!("resubmitting {request:?}: {e}"));
                if expected.starts_with("rejected") {
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
}
