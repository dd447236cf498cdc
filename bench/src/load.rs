//! Load shared by the runtime benchmark and the `replay_log` example: the same cards, set up
//! the same way, so their figures describe the same state.

use runtime::{Engine, Scope};
use std::time::Duration;
use svault_core::command::{CardId, Channel, Command, Request};
use svault_core::money::Amount;
use svault_core::program::Program;

/// Id of the first bench card; card `i` is `FIRST_CARD + i`.
pub const FIRST_CARD: u64 = 1_000_000_000;

/// Submits a batch until every request is answered: an overloaded shard refuses, and every
/// request is keyed, so a retry is idempotent.
pub async fn submit_all(engine: &Engine, reqs: Vec<Request>) {
    loop {
        let results = engine.submit_batch(reqs.clone(), &Scope::All).await;
        if results.iter().all(|r| r.is_ok()) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Installs the demo program (without its discount window, so spends charge face value) and
/// opens `cards` cards, each topped up with 4 000.00.
pub async fn setup(engine: &Engine, cards: u64) {
    let mut program = Program::demo();
    program.discount_windows.clear();
    submit_all(
        engine,
        vec![Request {
            idempotency_key: Some("program".into()),
            command: Command::UpsertProgram(program),
        }],
    )
    .await;
    for phase in 0..2 {
        let mut handles = Vec::new();
        for start in (0..cards).step_by(4_096) {
            let end = (start + 4_096).min(cards);
            let engine = engine.clone();
            handles.push(tokio::spawn(async move {
                let reqs = (start..end)
                    .map(|i| {
                        let card_id = CardId(FIRST_CARD + i);
                        let command = if phase == 0 {
                            Command::OpenCard {
                                card_id,
                                program: "demo".into(),
                                registered: true,
                                birthday: None,
                            }
                        } else {
                            Command::TopUp {
                                card_id,
                                amount: Amount(400_000),
                                channel: Channel::Wechat,
                            }
                        };
                        Request {
                            idempotency_key: Some(format!("setup-{phase}-{i}")),
                            command,
                        }
                    })
                    .collect();
                submit_all(&engine, reqs).await;
            }));
            if handles.len() >= 32 {
                for h in handles.drain(..) {
                    let _ = h.await;
                }
            }
        }
        for h in handles {
            let _ = h.await;
        }
    }
}
