//! Black-box tests of the binary TCP protocol and its client, against the real binary.

use proptest::prelude::*;
use proto::client::{Call, Client, ClientError, Command, Status};
use proto::codec;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;
use svault_core::command::{CardId, Channel, Method};
use svault_core::money::Amount;
use svault_core::outcome::DeclineCode;
use svault_tests::api::{at_noon_in_shanghai, Server};
use svault_tests::svault_bin;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn open(card: u64) -> Call {
    Call::new(
        Some(format!("open-{card}")),
        Command::OpenCard {
            card_id: CardId(card),
            program: "demo".into(),
            registered: true,
            birthday: None,
        },
    )
}

/// The reads of a frame go to each shard as one message, as its mutations do: 1 000 reads over
/// 300 cards on 3 shards whose queues hold 64 messages, each card read after the frame's own
/// top-up of it, among reads of unknown cards, must each get their own card's figures, in
/// request order, and none may be refused as an overload of the frame's own making.
#[test]
fn a_frame_of_many_reads_answers_each_in_order() {
    let [flag, offset] = at_noon_in_shanghai();
    let s = Server::start(
        svault_bin!(),
        &[&flag, &offset, "--shards", "3", "--queue-depth", "64"],
    );
    rt().block_on(async {
        let client = Client::connect(s.tcp, None).await.unwrap();
        let cards: Vec<u64> = (0..300).map(|i| 61_000 + i).collect();
        let mut writes: Vec<Call> = cards.iter().map(|&c| open(c)).collect();
        writes.extend(cards.iter().map(|&c| {
            Call::new(
                Some(format!("t{c}")),
                Command::TopUp {
                    card_id: CardId(c),
                    // A different balance on every card: 10.00 + the card's index in fen.
                    amount: Amount(1000 + (c - 61_000) as i64),
                    channel: Channel::Cash,
                },
            )
        }));
        let mut calls = writes;
        // Reads of known cards (each twice or more, out of order) and of cards never opened.
        let reads: Vec<Option<u64>> = (0..1000u64)
            .map(|i| (i % 7 != 3).then_some(61_000 + (i * 37) % 300))
            .collect();
        calls.extend(
            reads
                .iter()
                .map(|r| Call::get_card(CardId(r.unwrap_or(69_999)))),
        );
        let answers = client.call_batch(calls).await.unwrap();
        assert_eq!(answers.len(), 600 + 1000);
        assert!(answers[..600].iter().all(|a| a.status == Status::Approved));
        for (a, r) in answers[600..].iter().zip(&reads) {
            match r {
                Some(c) => {
                    assert_eq!(a.status, Status::Card, "read of {c}");
                    let b = a.card.unwrap();
                    assert_eq!(b.principal, Amount(1000 + (c - 61_000) as i64), "card {c}");
                }
                None => assert_eq!(a.status, Status::NotFound),
            }
        }
        assert!(answers.windows(2).all(|w| w[1].req_id == w[0].req_id + 1));
    });
}

#[test]
fn batch_round_trip_through_the_client() {
    // Noon in demo's +08:00: the figures below are outside its evening discount window.
    let [flag, offset] = at_noon_in_shanghai();
    let s = Server::start(svault_bin!(), &[&flag, &offset]);
    rt().block_on(async {
        let client = Client::connect(s.tcp, None).await.unwrap();
        let c = CardId(7001);
        let answers = client
            .call_batch(vec![
                open(7001),
                Call::new(
                    Some("t1".into()),
                    Command::TopUp {
                        card_id: c,
                        amount: Amount(10000),
                        channel: Channel::Alipay,
                    },
                ),
                Call::get_card(c),
                Call::get_card(CardId(7999)),
                Call::new(
                    Some("bad".into()),
                    Command::TopUp {
                        card_id: c,
                        amount: Amount(0),
                        channel: Channel::Cash,
                    },
                ),
            ])
            .await
            .unwrap();
        assert_eq!(answers.len(), 5);
        assert_eq!(answers[0].status, Status::Approved);
        assert_eq!(answers[1].status, Status::Approved);
        assert_eq!(
            answers[1].bonus_granted,
            Amount(1500),
            "first top-up of 100 ⇒ +15.00"
        );
        assert_eq!(answers[1].card.unwrap().available, Amount(11500));
        assert_eq!(answers[3].status, Status::NotFound);
        assert_eq!(answers[4].status, Status::Invalid);
        assert_eq!(answers[4].detail, codec::InvalidField::Amount as u8);
        // Ids are consecutive and distinct.
        assert!(answers.windows(2).all(|w| w[1].req_id == w[0].req_id + 1));

        // Replays: same key ⇒ same answer, flagged.
        let again = client
            .call(Call::new(
                Some("t1".into()),
                Command::TopUp {
                    card_id: c,
                    amount: Amount(10000),
                    channel: Channel::Alipay,
                },
            ))
            .await
            .unwrap();
        assert!(again.replayed);
        assert_eq!(again.txn_id, answers[1].txn_id);

        // A frame of 2000 spends of 0.01 on one card: exactly the balance is approved, in order.
        let spends: Vec<Call> = (0..2000)
            .map(|i| {
                Call::new(
                    Some(format!("s{i}")),
                    Command::Spend {
                        card_id: c,
                        amount: Amount(1000),
                        method: Method::Qr,
                        store: None,
                        allow_partial: false,
                    },
                )
            })
            .collect();
        let got = client.call_batch(spends).await.unwrap();
        assert_eq!(got.len(), 2000);
        let charged: i64 = got
            .iter()
            .filter(|a| a.status == Status::Approved)
            .map(|a| a.amount.0)
            .sum();
        let last = client.call(Call::get_card(c)).await.unwrap();
        assert_eq!(last.status, Status::Card);
        let left = last.card.unwrap().available.0;
        assert_eq!(charged + left, 11500);
        assert!(left >= 0);
        assert!(got
            .iter()
            .any(|a| a.decline_code() == Some(DeclineCode::InsufficientFunds)));

        // Many concurrent single calls share the connection (coalesced, pipelined).
        let mut tasks = Vec::new();
        for i in 0..500u64 {
            let cl = client.clone();
            tasks.push(tokio::spawn(async move { cl.call(open(8000 + i)).await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap().status, Status::Approved);
        }

        // Holds, capture, void, refund.
        let h = client
            .call(Call::new(
                Some("h".into()),
                Command::Hold {
                    card_id: CardId(8001),
                    amount: Amount(100),
                    ttl_seconds: 60,
                    method: Method::Card,
                    store: None,
                    allow_partial: false,
                },
            ))
            .await
            .unwrap();
        assert_eq!(h.status, Status::Declined, "nothing on the card yet");
        client
            .call(Call::new(
                Some("t8001".into()),
                Command::TopUp {
                    card_id: CardId(8001),
                    amount: Amount(5000),
                    channel: Channel::Cash,
                },
            ))
            .await
            .unwrap();
        let h = client
            .call(Call::new(
                Some("h2".into()),
                Command::Hold {
                    card_id: CardId(8001),
                    amount: Amount(1000),
                    ttl_seconds: 60,
                    method: Method::Card,
                    store: None,
                    allow_partial: false,
                },
            ))
            .await
            .unwrap();
        assert_eq!(h.status, Status::Approved);
        let hold_id = h.txn_id.unwrap();
        let cap = client
            .call(Call::new(
                Some("cap".into()),
                Command::Capture {
                    hold_id,
                    amount: Some(Amount(400)),
                },
            ))
            .await
            .unwrap();
        assert_eq!((cap.status, cap.amount), (Status::Approved, Amount(400)));
        let rf = client
            .call(Call::new(
                Some("rf".into()),
                Command::Refund {
                    txn_id: cap.txn_id.unwrap(),
                    amount: Amount(100),
                },
            ))
            .await
            .unwrap();
        assert_eq!(rf.status, Status::Approved, "{rf:?}");
        let v = client
            .call(Call::new(
                Some("void".into()),
                Command::Void {
                    hold_id: CardId(8001).into_hold(99),
                },
            ))
            .await
            .unwrap();
        assert_eq!(v.status, Status::NotFound);
    });
}

trait IntoHold {
    fn into_hold(self, seq: u32) -> svault_core::command::TxnId;
}
impl IntoHold for CardId {
    fn into_hold(self, seq: u32) -> svault_core::command::TxnId {
        svault_core::command::TxnId { card: self, seq }
    }
}

/// Sends raw bytes on a fresh connection; returns the frames received until the server closes.
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let mut frames = Vec::new();
    let mut rest = &buf[..];
    while rest.len() >= 5 {
        let len = u32::from_le_bytes(rest[..4].try_into().unwrap()) as usize;
        if rest.len() < 4 + len {
            break;
        }
        frames.push((rest[4], rest[5..4 + len].to_vec()));
        rest = &rest[4 + len..];
    }
    frames
}

fn hello() -> Vec<u8> {
    let mut h = Vec::new();
    codec::encode_hello(&mut h, None);
    h
}

#[test]
fn a_malformed_frame_closes_only_its_connection() {
    let s = Server::start(svault_bin!(), &[]);
    let rt = rt();
    let client = rt.block_on(Client::connect(s.tcp, None)).unwrap();
    rt.block_on(client.call(open(9001))).unwrap();

    // Unknown op inside a BATCH.
    let mut bad = hello();
    let at = codec::begin_frame(&mut bad, codec::kind::BATCH);
    bad.extend_from_slice(&1u32.to_le_bytes());
    bad.extend_from_slice(&1u64.to_le_bytes());
    bad.extend_from_slice(&[0x77, 0]);
    codec::end_frame(&mut bad, at);
    let frames = raw_exchange(s.tcp, &bad);
    assert_eq!(frames.first().map(|f| f.0), Some(codec::kind::WELCOME));
    let (k, body) = frames.last().unwrap();
    assert_eq!(*k, codec::kind::ERROR);
    assert_eq!(
        codec::decode_error(body).unwrap().0,
        codec::error_code::MALFORMED
    );

    // Oversize length prefix.
    let mut big = hello();
    big.extend_from_slice(&(codec::FRAME_BYTES_MAX + 1).to_le_bytes());
    big.push(codec::kind::BATCH);
    let frames = raw_exchange(s.tcp, &big);
    let (k, body) = frames.last().unwrap();
    assert_eq!(*k, codec::kind::ERROR);
    assert_eq!(
        codec::decode_error(body).unwrap().0,
        codec::error_code::TOO_LARGE
    );

    // Truncated frame then EOF: no answer, no crash.
    let mut cut = hello();
    codec::encode_batch_frame(&mut cut, 1, std::iter::once(&open(9002))).unwrap();
    cut.truncate(cut.len() - 3);
    let _ = raw_exchange(s.tcp, &cut);

    // The first connection still works.
    let a = rt
        .block_on(client.call(Call::get_card(CardId(9001))))
        .unwrap();
    assert_eq!(a.status, Status::Card);
}

#[test]
fn hostile_frames_never_take_the_server_down() {
    let s = Server::start(svault_bin!(), &[]);
    let addr = s.tcp;
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(48));
    runner
        .run(
            &(
                any::<u8>(),
                proptest::collection::vec(any::<u8>(), 0..300),
                any::<bool>(),
            ),
            |(kind, body, valid_len)| {
                let mut bytes = hello();
                let len = if valid_len {
                    body.len() as u32 + 1
                } else {
                    (body.len() as u32 + 1) ^ 0x00ff_0000
                };
                bytes.extend_from_slice(&len.to_le_bytes());
                bytes.push(kind);
                bytes.extend_from_slice(&body);
                let mut st = TcpStream::connect(addr).unwrap();
                st.set_read_timeout(Some(Duration::from_millis(300)))
                    .unwrap();
                let _ = st.write_all(&bytes);
                let _ = st.shutdown(std::net::Shutdown::Write);
                let mut sink = Vec::new();
                let _ = st.read_to_end(&mut sink);
                Ok(())
            },
        )
        .unwrap();
    // Still serving.
    let rt = rt();
    let client = rt.block_on(Client::connect(addr, None)).unwrap();
    assert_eq!(
        rt.block_on(client.call(open(9100))).unwrap().status,
        Status::Approved
    );
}

#[test]
fn hello_needs_a_known_key_when_keys_are_configured() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "k-admin admin\nk-gw gateway other\n").unwrap();
    let s = Server::start_in(
        svault_bin!(),
        &dir.path().join("data"),
        &["--api-keys", keys.to_str().unwrap()],
    );
    let rt = rt();
    match rt.block_on(Client::connect(s.tcp, None)) {
        Err(ClientError::Refused { code, .. }) => assert_eq!(code, codec::error_code::UNAUTHORIZED),
        other => panic!("expected refusal, got {:?}", other.map(|_| ())),
    }
    assert!(matches!(
        rt.block_on(Client::connect(s.tcp, Some("wrong"))),
        Err(ClientError::Refused { .. })
    ));
    let gw = rt.block_on(Client::connect(s.tcp, Some("k-gw"))).unwrap();
    assert_eq!(
        rt.block_on(gw.call(open(9200))).unwrap().status,
        Status::Forbidden
    );
    let admin = rt
        .block_on(Client::connect(s.tcp, Some("k-admin")))
        .unwrap();
    assert_eq!(
        rt.block_on(admin.call(open(9200))).unwrap().status,
        Status::Approved
    );
    let a = rt.block_on(gw.call(Call::get_card(CardId(9200)))).unwrap();
    assert_eq!(a.status, Status::Forbidden);
}
