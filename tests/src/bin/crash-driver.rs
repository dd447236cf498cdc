//! Crash driver: opens an engine in-process on a data directory and drives mixed requests
//! (open, top-up, spend, hold, capture, void, refund — all with idempotency keys) from several
//! tasks. Every acknowledged reply is printed as one `ACK` line and flushed at once, so a test
//! that kills this process with SIGKILL knows exactly what was acknowledged.
//!
//! usage: crash-driver DATA_DIR ROUND [REQUESTS_PER_TASK] [TASKS]

use rand::{Rng, SeedableRng};
use runtime::{Durability, Engine, EngineConfig, Scope};
use std::io::Write;
use std::process::ExitCode;
use svault_core::command::{CardId, Channel, Command, Method, Request, TxnId};
use svault_core::money::Amount;
use svault_core::outcome::{Outcome, TxnKind};
use svault_core::program::Program;
use svault_tests::crash::{POOL_CARDS, POOL_FIRST};

/// The same allocator as the `svault` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn emit(line: &str) {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let (Some(dir), Some(round)) = (args.get(1), args.get(2).and_then(|r| r.parse::<u64>().ok()))
    else {
        eprintln!("usage: crash-driver DATA_DIR ROUND [REQUESTS_PER_TASK] [TASKS]");
        return ExitCode::from(2);
    };
    let per_task: u64 = args
        .get(3)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1_000_000);
    let tasks: u64 = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(4);
    let config = EngineConfig {
        data_dir: dir.into(),
        shards: Some(2),
        durability: Durability::Group,
    };
    let engine = match Engine::open_with(config, svault_tests::crash::driver_tuning()) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("crash-driver: open failed: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("crash-driver: {e}");
            return ExitCode::FAILURE;
        }
    };
    let ok = rt.block_on(async {
        // Setup: the program and the card pool (idempotent across rounds).
        let mut setup = vec![Request {
            idempotency_key: Some("setup-program".into()),
            command: Command::UpsertProgram(Program::demo()),
        }];
        for i in 0..POOL_CARDS {
            setup.push(Request {
                idempotency_key: Some(format!("setup-open-{i}")),
                command: Command::OpenCard {
                    card_id: CardId(POOL_FIRST + i),
                    program: "demo".into(),
                    registered: true,
                    birthday: None,
                },
            });
        }
        for r in setup {
            match engine.submit(r.clone(), &Scope::All).await {
                Ok(reply) => emit(&svault_tests::crash::ack_line(&r, &reply.outcome)),
                Err(e) => {
                    eprintln!("crash-driver: setup failed: {e}");
                    return false;
                }
            }
        }
        emit("READY");
        let mut handles = Vec::new();
        for t in 0..tasks {
            let engine = engine.clone();
            handles.push(tokio::spawn(async move {
                drive(engine, round, t, per_task).await
            }));
        }
        for h in handles {
            let _ = h.await;
        }
        true
    });
    emit("DONE");
    engine.shutdown();
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn drive(engine: Engine, round: u64, task: u64, per_task: u64) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(round * 1_000 + task);
    let mut holds: Vec<TxnId> = Vec::new();
    let mut spends: Vec<(TxnId, i64)> = Vec::new();
    let mut i = 0u64;
    while i < per_task {
        let card = CardId(POOL_FIRST + rng.gen_range(0..POOL_CARDS));
        let batch_len = if rng.gen_bool(0.2) {
            rng.gen_range(2..8)
        } else {
            1
        };
        let mut batch = Vec::with_capacity(batch_len);
        for _ in 0..batch_len {
            let command = match rng.gen_range(0..100) {
                0..=29 => Command::TopUp {
                    card_id: card,
                    amount: Amount(rng.gen_range(1..=500) * 100),
                    channel: Channel::Wechat,
                },
                30..=59 => Command::Spend {
                    card_id: card,
                    amount: Amount(rng.gen_range(1..=20_000)),
                    method: Method::Qr,
                    store: None,
                    allow_partial: false,
                },
                60..=74 => Command::Hold {
                    card_id: card,
                    amount: Amount(rng.gen_range(1..=10_000)),
                    ttl_seconds: 600,
                    method: Method::Card,
                    store: None,
                    allow_partial: false,
                },
                75..=84 if !holds.is_empty() => {
                    let h = holds.swap_remove(rng.gen_range(0..holds.len()));
                    let amount = if rng.gen_bool(0.5) {
                        None
                    } else {
                        Some(Amount(rng.gen_range(1..=5_000)))
                    };
                    Command::Capture { hold_id: h, amount }
                }
                85..=89 if !holds.is_empty() => Command::Void {
                    hold_id: holds.swap_remove(rng.gen_range(0..holds.len())),
                },
                90..=99 if !spends.is_empty() => {
                    let (txn, amount) = spends[rng.gen_range(0..spends.len())];
                    Command::Refund {
                        txn_id: txn,
                        amount: Amount(rng.gen_range(1..=amount.max(1))),
                    }
                }
                _ => Command::TopUp {
                    card_id: card,
                    amount: Amount(rng.gen_range(1..=100) * 100),
                    channel: Channel::Alipay,
                },
            };
            batch.push(Request {
                idempotency_key: Some(format!("r{round}-t{task}-{i}")),
                command,
            });
            i += 1;
        }
        let results = if batch.len() == 1 {
            vec![engine.submit(batch[0].clone(), &Scope::All).await]
        } else {
            engine.submit_batch(batch.clone(), &Scope::All).await
        };
        for (req, res) in batch.iter().zip(results) {
            let Ok(reply) = res else { continue };
            emit(&svault_tests::crash::ack_line(req, &reply.outcome));
            if let Outcome::Approved(a) = &reply.outcome {
                match (a.kind, a.txn_id) {
                    (TxnKind::Hold, Some(t)) => holds.push(t),
                    (TxnKind::Spend | TxnKind::Capture, Some(t)) => spends.push((t, a.amount.0)),
                    _ => {}
                }
            }
        }
    }
}
