//! Replay holds every record it reads to the input rules the doors hold requests to: a record
//! that decodes but carries what no door accepts (an amount out of bounds, a bad program id, a
//! card id 0, ...) is refused with the LSN that holds it, never applied.

use runtime::recovery::{replay_wal, RecoveryError, Until};
use svault_core::command::{CallerId, CardId, Channel, Command, Method, Millis, Request, TxnId};
use svault_core::money::{Amount, Currency};
use svault_core::program::Program;
use svault_core::record::{self, LogRecord, LOG_RECORD_VERSION};
use svault_core::state::{State, StateConfig};
use wal::{Lsn, Wal, WalOptions};

const T0: i64 = 1_704_081_600_000;

fn append(wal: &mut Wal, i: i64, key: Option<&str>, command: Command) {
    let rec = LogRecord {
        version: LOG_RECORD_VERSION,
        now: Millis(T0 + i),
        caller: CallerId::DEFAULT,
        request: Request {
            idempotency_key: key.map(str::to_string),
            command,
        },
    };
    // Encoding does not check: a log can hold what a bug or a hand once wrote.
    let mut buf = rkyv::util::AlignedVec::<16>::new();
    record::encode_into(&rec, &mut buf).unwrap();
    wal.append(&buf).unwrap();
}

fn top_up(amount: i64) -> Command {
    Command::TopUp {
        card_id: CardId(1),
        amount: Amount(amount),
        channel: Channel::Cash,
    }
}

/// Replays program, open, top-up, then `bad` at LSN 4: the answer names LSN 4 and the field.
fn replay_with(key: Option<&str>, bad: Command) -> Result<u64, RecoveryError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut wal, _) = Wal::open(dir.path(), WalOptions::default()).unwrap();
    append(&mut wal, 0, None, Command::UpsertProgram(Program::demo()));
    let open = Command::OpenCard {
        card_id: CardId(1),
        program: "demo".into(),
        registered: true,
        birthday: None,
    };
    append(&mut wal, 1, Some("open"), open);
    append(&mut wal, 2, Some("t1"), top_up(10_000));
    append(&mut wal, 3, key, bad);
    wal.commit().unwrap();
    let mut state = State::new(StateConfig::default());
    replay_wal(&wal, &mut state, Lsn(1), Millis(0), Until::End, |_| {}).map(|d| d.records)
}

#[test]
fn a_valid_log_replays() {
    assert_eq!(replay_with(Some("t2"), top_up(500)).unwrap(), 4);
}

/// Requests that break one input rule each, after program `demo`, card 1 and a top-up: the key
/// to send them with, the command, and the field a refusal names.
fn breaking_requests() -> Vec<(Option<&'static str>, Command, &'static str)> {
    let max = Currency::Cny.max_amount().0;
    let hold = TxnId {
        card: CardId(1),
        seq: 2,
    };
    vec![
        (Some("t2"), top_up(0), "amount"),
        (Some("t2"), top_up(-5), "amount"),
        (Some("t2"), top_up(max + 1), "amount"),
        (
            Some("o2"),
            Command::OpenCard {
                card_id: CardId(2),
                program: "de.mo".into(),
                registered: false,
                birthday: None,
            },
            "program",
        ),
        (
            Some("o3"),
            Command::OpenCard {
                card_id: CardId(CardId::MAX.0 + 1),
                program: "demo".into(),
                registered: false,
                birthday: None,
            },
            "card_id",
        ),
        (None, Command::Freeze { card_id: CardId(0) }, "card_id"),
        (
            Some("h"),
            Command::Hold {
                card_id: CardId(1),
                amount: Amount(100),
                ttl_seconds: 0,
                method: Method::Card,
                allow_partial: false,
                store: None,
            },
            "ttl_seconds",
        ),
        (
            Some("s"),
            Command::Spend {
                card_id: CardId(1),
                amount: Amount(100),
                method: Method::Qr,
                allow_partial: false,
                store: Some(String::new()),
            },
            "store",
        ),
        (
            Some("c"),
            Command::Capture {
                hold_id: hold,
                amount: Some(Amount(0)),
            },
            "amount",
        ),
        (
            Some("r"),
            Command::RedeemPoints {
                card_id: CardId(1),
                points: 0,
            },
            "points",
        ),
        (Some("has space"), top_up(100), "idempotency_key"),
        (Some(""), top_up(100), "idempotency_key"),
    ]
}

#[test]
fn a_record_that_breaks_an_input_rule_is_refused_with_its_lsn() {
    for (key, bad, field) in breaking_requests() {
        let got = replay_with(key, bad.clone());
        match got {
            Err(RecoveryError::InvalidRequest { lsn: 4, invalid }) => {
                assert_eq!(invalid.field, field, "{bad:?}");
            }
            other => panic!("{bad:?} (key {key:?}): expected a refusal at lsn 4, got {other:?}"),
        }
    }
}

/// The message an operator sees names the LSN and the field.
#[test]
fn the_refusal_says_where_and_what() {
    let err = replay_with(Some("t2"), top_up(0)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("lsn 4"), "{text}");
    assert!(text.contains("amount"), "{text}");
}

/// A caller of the Engine API that skips the doors cannot log what replay would refuse: the
/// runtime holds each request to the doors' rules before it appends, answers a breaking one
/// `SubmitError::Invalid` naming the field, and logs nothing for it, alone or in a batch; the
/// directory then reopens (replay refuses nothing) with only the valid records in its log.
#[test]
fn the_engine_refuses_before_logging_what_replay_would_refuse() {
    use runtime::{Durability, Engine, EngineConfig, Scope, SubmitError, Tuning};
    let dir = tempfile::tempdir().unwrap();
    let config = EngineConfig {
        data_dir: dir.path().into(),
        shards: Some(1),
        durability: Durability::Sync,
    };
    // No idle ticks: the log holds exactly what was submitted.
    let tuning = || Tuning {
        idle_tick_ms: 3_600_000,
        ..Tuning::default()
    };
    let req = |key: Option<&str>, command: Command| Request {
        idempotency_key: key.map(str::to_string),
        command,
    };
    let engine = Engine::open_with(config.clone(), tuning()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut logged = 0u64;
    rt.block_on(async {
        let setup = [
            req(Some("p"), Command::UpsertProgram(Program::demo())),
            req(
                Some("open"),
                Command::OpenCard {
                    card_id: CardId(1),
                    program: "demo".into(),
                    registered: true,
                    birthday: None,
                },
            ),
            req(Some("t1"), top_up(10_000)),
        ];
        for r in setup {
            engine.submit(r, &Scope::All).await.unwrap();
            logged += 1;
        }
        for (i, (key, bad, field)) in breaking_requests().into_iter().enumerate() {
            match engine.submit(req(key, bad.clone()), &Scope::All).await {
                Err(SubmitError::Invalid(invalid)) => assert_eq!(invalid.field, field, "{bad:?}"),
                other => panic!("{bad:?} (key {key:?}): expected Invalid({field}), got {other:?}"),
            }
            // In a batch, the breaking request is refused and its neighbours applied.
            let batch = vec![
                req(Some(&format!("before-{i}")), top_up(100)),
                req(key, bad.clone()),
                req(None, top_up(100)),
            ];
            let answers = engine.submit_batch(batch, &Scope::All).await;
            assert!(answers[0].is_ok(), "{:?}", answers[0]);
            assert!(
                matches!(&answers[1], Err(SubmitError::Invalid(i)) if i.field == field),
                "{bad:?} in a batch: {:?}",
                answers[1]
            );
            assert!(answers[2].is_ok(), "{:?}", answers[2]);
            logged += 2;
        }
    });
    engine.shutdown();
    drop(engine);
    let reopened = Engine::open_with(config, tuning())
        .unwrap_or_else(|e| panic!("the log holds a record replay refuses: {e}"));
    let report = &reopened.recovery_reports()[0];
    assert_eq!(report.last_lsn, logged, "{report:?}");
}
