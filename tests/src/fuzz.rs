//! The properties the fuzz targets check, one function per target, shared by the
//! coverage-guided targets (`fuzz/fuzz_targets/*.rs`, nightly) and the stable regression test
//! (`tests/tests/fuzz_regressions.rs`), which replays every input in `fuzz/regressions/<target>/`.
//!
//! Each function takes arbitrary bytes and panics only on a bug: a decoder must refuse bad
//! input with an error, never panic, and what it accepts must survive a round trip.

use proto::codec;
use runtime::recovery;
use server::http::body;
use server::http::extract::parse_json;
use svault_core::command::{CardId, Channel, Command, Millis, Request};
use svault_core::money::{Amount, Currency, Rate};
use svault_core::program::Program;
use svault_core::record::{self, LogRecord, LOG_RECORD_VERSION};
use svault_core::state::{State, StateConfig};

/// A target's check: panics only on a bug.
pub type Check = fn(&[u8]);

/// The targets, by the name of their directory under `fuzz/regressions/` and `fuzz/corpus/`.
pub const TARGETS: [(&str, Check); 5] = [
    ("tcp_codec", tcp_codec),
    ("log_record", log_record),
    ("snapshot_restore", snapshot_restore),
    ("http_body", http_body),
    ("amount", amount),
];

/// The binary protocol's decoders (first byte picks the frame kind). Accepted result frames
/// must encode back to the same bytes; accepted batches must re-encode to frames that decode
/// to the same calls.
pub fn tcp_codec(data: &[u8]) {
    let Some((&which, body)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(requests) = codec::decode_batch(body) {
                let calls: Vec<(u64, codec::Call)> = requests
                    .into_iter()
                    .filter_map(|(id, call)| call.ok().map(|c| (id, c)))
                    .collect();
                let mut out = Vec::new();
                let at = codec::begin_frame(&mut out, codec::kind::BATCH);
                out.extend_from_slice(&(calls.len() as u32).to_le_bytes());
                for (id, call) in &calls {
                    codec::encode_request(&mut out, *id, call).expect("a decoded call encodes");
                }
                codec::end_frame(&mut out, at);
                let again = codec::decode_batch(&out[5..]).expect("re-encoded batch decodes");
                let again: Vec<(u64, codec::Call)> = again
                    .into_iter()
                    .map(|(id, c)| (id, c.expect("re-encoded call is valid")))
                    .collect();
                assert_eq!(again, calls);
            }
        }
        1 => {
            if let Ok(key) = codec::decode_hello(body) {
                let mut out = Vec::new();
                codec::encode_hello(&mut out, key.as_deref());
                assert_eq!(
                    codec::decode_hello(&out[5..]).expect("hello round trip"),
                    key
                );
            }
        }
        2 => {
            if let Ok(answers) = codec::decode_results(body) {
                let mut out = Vec::new();
                codec::encode_results_frame(&mut out, &answers);
                assert_eq!(
                    codec::decode_results(&out[5..]).expect("results round trip"),
                    answers
                );
            }
        }
        _ => {
            if let Ok((code, message)) = codec::decode_error(body) {
                let mut out = Vec::new();
                codec::encode_error(&mut out, code, &message);
                assert_eq!(
                    codec::decode_error(&out[5..]).expect("error round trip"),
                    (code, message)
                );
            }
        }
    }
}

/// The WAL payload decoder: anything is refused or decodes to a record that encodes and
/// decodes to itself; a record of an older layout is read but never encoded again.
pub fn log_record(data: &[u8]) {
    if let Ok(rec) = record::decode(data) {
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        if rec.version < record::LAYOUT_SINCE {
            assert!(matches!(
                record::encode_into(&rec, &mut buf),
                Err(record::RecordError::Version(v)) if v == rec.version
            ));
            return;
        }
        record::encode_into(&rec, &mut buf).expect("a decoded record encodes");
        assert_eq!(record::decode(&buf).expect("round trip"), rec);
    }
}

/// Snapshot restore: the snapshot file framing (`wal::snapshot::decode`) and the shard image
/// inside it (`recovery::decode_snapshot`, i.e. `State::restore`). A restored state must
/// snapshot and restore again to the same digest.
pub fn snapshot_restore(data: &[u8]) {
    let _ = wal::snapshot::decode(data, None);
    if let Ok((_now, state)) = recovery::decode_snapshot(data, wal::Lsn(1), StateConfig::default())
    {
        let bytes = state.snapshot();
        let again = State::restore(&bytes, StateConfig::default())
            .expect("a restored state restores again");
        assert_eq!(again.digest(), state.digest());
    }
}

/// HTTP bodies: JSON into each request body type, then validation into a command (first byte
/// picks the type).
pub fn http_body(data: &[u8]) {
    let Some((&which, json)) = data.split_first() else {
        return;
    };
    let card = CardId(42);
    let txn = svault_core::command::TxnId { card, seq: 7 };
    let _ = match which % 11 {
        0 => parse_json::<body::OpenCardBody>(json)
            .and_then(|b| b.into_command(svault_core::command::CallerId::DEFAULT, "key")),
        1 => parse_json::<body::TopUpBody>(json).and_then(|b| b.into_command(card)),
        2 => parse_json::<body::SpendBody>(json).and_then(|b| b.into_command(card)),
        3 => parse_json::<body::HoldBody>(json).and_then(|b| b.into_command(card)),
        4 => parse_json::<body::CaptureBody>(json).and_then(|b| b.into_command(txn)),
        5 => parse_json::<body::RefundBody>(json).and_then(|b| b.into_command()),
        6 => parse_json::<body::CashOutBody>(json).and_then(|b| b.into_command(card)),
        7 => parse_json::<body::ReversalBody>(json)
            .and_then(|b| b.into_command(svault_core::command::CardId(1))),
        8 => parse_json::<body::RedeemBody>(json).and_then(|b| b.into_command(card)),
        9 => parse_json::<body::GrantBody>(json).and_then(|b| b.into_command(card)),
        _ => parse_json::<body::EmptyBody>(json).map(|_| Command::Tick),
    };
}

/// The amount and rate parsers: an accepted amount is positive, at most 10^12, and prints and
/// parses back to itself; an accepted rate prints and parses back to itself and applies to
/// the largest amount without overflow.
pub fn amount(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let cny = Currency::Cny;
    if let Ok(a) = cny.parse_amount(s) {
        assert!(
            a.0 > 0 && a.0 <= Amount::MAX_MAJOR * 100,
            "{s:?} parsed to {a:?}"
        );
        assert_eq!(cny.parse_amount(&cny.format(a)), Ok(a), "{s:?}");
    }
    if let Ok(r) = Rate::parse(s) {
        assert_eq!(Rate::parse(&r.to_decimal_string()), Ok(r), "{s:?}");
        let _ = r.apply(Amount(Amount::MAX_MAJOR * 100));
    }
}

/// Valid inputs to start each target's corpus from (fuzzing from nothing never gets past
/// a snapshot's magic and rkyv layout).
pub fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let requests = [
        Request {
            idempotency_key: None,
            command: Command::UpsertProgram(Program::demo()),
        },
        Request {
            idempotency_key: Some("k1".into()),
            command: Command::OpenCard {
                card_id: CardId(42),
                program: "demo".into(),
                registered: true,
                birthday: None,
            },
        },
        Request {
            idempotency_key: Some("k2".into()),
            command: Command::TopUp {
                card_id: CardId(42),
                amount: Amount(50_000),
                channel: Channel::Wechat,
            },
        },
    ];
    let mut state = State::new(StateConfig::default());
    let mut events = Vec::new();
    for (i, r) in requests.iter().enumerate() {
        let rec = LogRecord {
            version: LOG_RECORD_VERSION,
            now: Millis(1_700_000_000_000 + i as i64),
            caller: svault_core::command::CallerId::DEFAULT,
            request: r.clone(),
        };
        let mut buf = rkyv::util::AlignedVec::<16>::new();
        if record::encode_into(&rec, &mut buf).is_ok() {
            out.push(("log_record", buf.to_vec()));
        }
        state.apply(r, rec.now, &mut events);
    }
    out.push((
        "snapshot_restore",
        recovery::encode_snapshot(&state.freeze(), Millis(1_700_000_000_100)),
    ));
    let mut batch = Vec::new();
    let calls = [
        codec::Call::new(
            Some("a".into()),
            Command::TopUp {
                card_id: CardId(42),
                amount: Amount(100),
                channel: Channel::Cash,
            },
        ),
        codec::Call::get_card(CardId(42)),
    ];
    codec::encode_batch_frame(&mut batch, 1, calls.iter()).expect("the seed calls travel");
    out.push(("tcp_codec", [&[0u8][..], &batch[5..]].concat()));
    let mut hello = Vec::new();
    codec::encode_hello(&mut hello, Some("secret"));
    out.push(("tcp_codec", [&[1u8][..], &hello[5..]].concat()));
    let mut results = Vec::new();
    codec::encode_results_frame(
        &mut results,
        &[codec::Answer::bare(1, codec::Status::Approved, 0)],
    );
    out.push(("tcp_codec", [&[2u8][..], &results[5..]].concat()));
    for (i, json) in [
        r#"{"card_id":"c1","program":"demo","registered":true,"birthday":"02-29"}"#,
        r#"{"amount":"100.50","channel":"wechat"}"#,
        r#"{"amount":"12.34","method":"qr","store":"s1"}"#,
        r#"{"amount":"1","ttl_seconds":60,"method":"card","store":null}"#,
        r#"{"amount":"2.50"}"#,
        r#"{"txn_id":"t1","amount":"1.00"}"#,
        r#"{"reason":"closing"}"#,
        r#"{"txn_id":"t1"}"#,
        r#"{"points":100}"#,
        r#"{"amount":"5","reason":"goodwill","expires_in_days":30}"#,
        "{}",
    ]
    .iter()
    .enumerate()
    {
        out.push(("http_body", [&[i as u8][..], json.as_bytes()].concat()));
    }
    for s in [
        "100",
        "0.01",
        "999999999999.99",
        "1.5",
        "0.000001",
        "-3",
        "1e5",
    ] {
        out.push(("amount", s.as_bytes().to_vec()));
    }
    out
}
