//! A log holding records written before a money-rule change replays each record under the
//! rules of its own version: the old ones decide as they did then, the new ones by SPEC today.

use runtime::recovery::{replay_wal, Until};
use svault_core::command::{CallerId, CardId, Channel, Command, Millis, Query, Request};
use svault_core::money::Amount;
use svault_core::program::v1::ProgramV1;
use svault_core::program::Program;
use svault_core::record::v2::{CommandV2, LogRecordV2, RequestV2};
use svault_core::record::{self, LogRecord, LOG_RECORD_VERSION};
use svault_core::state::{QueryAnswer, State, StateConfig};
use wal::{Lsn, Wal, WalOptions};

const T0: i64 = 1_704_081_600_000;

fn top_up(amount: i64) -> Command {
    Command::TopUp {
        card_id: CardId(1),
        amount: Amount(amount),
        channel: Channel::Cash,
    }
}

#[test]
fn each_record_replays_under_the_rules_of_its_version() {
    let dir = tempfile::tempdir().unwrap();
    let options = WalOptions {
        segment_size_bytes: 1 << 20,
        ..WalOptions::default()
    };
    let (mut wal, _) = Wal::open(dir.path(), options).unwrap();
    // Version-2 records, in the layout of their time (before callers were logged).
    let old = [
        CommandV2::UpsertProgram(ProgramV1::from_current(&Program::demo())),
        CommandV2::OpenCard {
            card_id: CardId(1),
            program: "demo".into(),
            registered: true,
            birthday: None,
        },
        CommandV2::TopUp {
            card_id: CardId(1),
            amount: Amount(10_000),
            channel: Channel::Cash,
        }, // 100.00 + 15.00 bonus
        // Version 2 capped principal + bonus: 115 + 4890 > 5000 was declined. (SPEC today caps
        // principal only: 100 + 4890 would be approved.)
        CommandV2::TopUp {
            card_id: CardId(1),
            amount: Amount(489_000),
            channel: Channel::Cash,
        },
    ];
    for (i, command) in old.into_iter().enumerate() {
        let rec = LogRecordV2 {
            version: 2,
            now: Millis(T0 + i as i64),
            request: RequestV2 {
                idempotency_key: Some(format!("k{i}")),
                command,
            },
        };
        let bytes = rkyv::to_bytes::<rkyv::rancor::Error>(&rec).unwrap();
        wal.append(&bytes).unwrap();
    }
    // A record of today's version is decided by today's rules.
    let mut buf = rkyv::util::AlignedVec::<16>::new();
    let rec = LogRecord {
        version: LOG_RECORD_VERSION,
        now: Millis(T0 + 4),
        caller: CallerId::DEFAULT,
        request: Request {
            idempotency_key: Some("k4".into()),
            command: top_up(1_000),
        },
    };
    record::encode_into(&rec, &mut buf).unwrap();
    wal.append(&buf).unwrap();
    wal.commit().unwrap();

    let mut state = State::new(StateConfig::default());
    let done = replay_wal(&wal, &mut state, Lsn(1), Millis(0), Until::End, |_| {}).unwrap();
    assert_eq!(done.records, 5);
    let QueryAnswer::Card(Some(card)) =
        state.query(&Query::Card { card_id: CardId(1) }, Millis(T0 + 10))
    else {
        panic!("card 1 is there");
    };
    // 100 + 10: the 4890 stayed declined as it was when first applied.
    assert_eq!(card.principal, Amount(11_000));
    assert_eq!(card.bonus, Amount(1_500));
}
