//! Idempotency keys name one request of one caller on one card; reversals name the card and
//! undo only the caller's own request; a replay repeats the first answer byte for byte; card
//! ids have no leading zero. Black-box, through real sockets, against the real binary.

use proto::client::{Call, Client, Command, Status};
use proto::codec::InvalidField;
use runtime::router::shard_of;
use serde_json::{json, Value};
use svault_core::command::{CardId, Channel, Method, TxnId};
use svault_core::money::Amount;
use svault_tests::api::{Resp, Server};
use svault_tests::svault_bin;

/// A server with an admin key, two gateway keys for `demo` and one for `other`.
fn keyed() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        "admin-key admin\ngw-a gateway demo\ngw-b gateway demo\ngw-other gateway other\n",
    )
    .unwrap();
    let s = Server::start_in(
        svault_bin!(),
        &dir.path().join("data"),
        &["--api-keys", keys.to_str().unwrap()],
    );
    (dir, s)
}

fn open_as(s: &Server, bearer: Option<&str>, card: &str) {
    let mut r = s
        .req("POST", "/v1/cards")
        .key(&format!("open-{card}"))
        .json(json!({"program":"demo","card_id":card,"registered":true}));
    if let Some(b) = bearer {
        r = r.bearer(b);
    }
    let r = r.send();
    assert_eq!(r.status, 200, "open {card}: {}", r.body);
}

fn top_up_as(s: &Server, bearer: Option<&str>, card: &str, amount: &str, key: &str) -> Resp {
    let mut r = s
        .req("POST", &format!("/v1/cards/{card}/top-ups"))
        .key(key)
        .json(json!({"amount":amount,"channel":"wechat"}));
    if let Some(b) = bearer {
        r = r.bearer(b);
    }
    r.send()
}

fn spend_as(s: &Server, bearer: Option<&str>, card: &str, amount: &str, key: &str) -> Resp {
    let mut r = s
        .req("POST", &format!("/v1/cards/{card}/spends"))
        .key(key)
        .json(json!({"amount":amount,"method":"qr"}));
    if let Some(b) = bearer {
        r = r.bearer(b);
    }
    r.send()
}

fn reverse_as(s: &Server, bearer: &str, card: &str, key: &str, target: &str) -> Resp {
    s.req("POST", &format!("/v1/cards/{card}/reversals"))
        .key(key)
        .bearer(bearer)
        .json(json!({ "idempotency_key": target }))
        .send()
}

fn card_as(s: &Server, bearer: Option<&str>, card: &str) -> Value {
    let mut r = s.req("GET", &format!("/v1/cards/{card}"));
    if let Some(b) = bearer {
        r = r.bearer(b);
    }
    let r = r.send();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn invalid_field(r: &Resp) -> String {
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_request", "{}", r.body);
    r.s("field")
}

#[test]
fn two_callers_with_the_same_key_on_one_card_are_two_requests() {
    let (_dir, s) = keyed();
    open_as(&s, Some("admin-key"), "7101");
    let a = top_up_as(&s, Some("gw-a"), "7101", "10", "spend-1");
    assert_eq!(a.status, 200, "{}", a.body);
    let b = top_up_as(&s, Some("gw-b"), "7101", "20", "spend-1");
    assert_eq!(
        b.status, 200,
        "another caller's key never collides: {}",
        b.body
    );
    assert!(!b.replayed(), "{}", b.body);
    assert_ne!(a.s("txn_id"), b.s("txn_id"));
    assert_eq!(card_as(&s, Some("gw-a"), "7101")["principal"], "30.00");
    // Each caller's retry answers its own first response.
    let a2 = top_up_as(&s, Some("gw-a"), "7101", "10", "spend-1");
    assert!(a2.replayed());
    assert_eq!(a2.body, a.body);
    let b2 = top_up_as(&s, Some("gw-b"), "7101", "20", "spend-1");
    assert!(b2.replayed());
    assert_eq!(b2.body, b.body);
    // A different body under the caller's own key is a conflict; the other caller's is not.
    assert_eq!(
        top_up_as(&s, Some("gw-b"), "7101", "21", "spend-1").status,
        409
    );
    // The admin key is a caller of its own too.
    let c = top_up_as(&s, Some("admin-key"), "7101", "5", "spend-1");
    assert_eq!(c.status, 200, "{}", c.body);
    assert!(!c.replayed());
    assert_eq!(card_as(&s, Some("gw-a"), "7101")["principal"], "35.00");
}

#[test]
fn reversals_are_card_scoped_and_undo_only_the_callers_own_request() {
    let (_dir, s) = keyed();
    let p = s
        .req("POST", "/v1/programs")
        .key("p-other")
        .bearer("admin-key")
        .json(json!({"id":"other","currency":"CNY"}))
        .send();
    assert_eq!(p.status, 200, "{}", p.body);
    open_as(&s, Some("admin-key"), "7201");
    open_as(&s, Some("admin-key"), "7202");
    assert_eq!(
        top_up_as(&s, Some("admin-key"), "7201", "100", "t").status,
        200
    );
    let sp = spend_as(&s, Some("gw-a"), "7201", "10", "s-1");
    assert_eq!(sp.status, 200, "{}", sp.body);
    let after_spend = card_as(&s, Some("gw-a"), "7201")["available"].clone();

    // Another caller naming the same key reverses nothing of gw-a's, and learns nothing.
    let rb = reverse_as(&s, "gw-b", "7201", "rv-b", "s-1");
    assert_eq!(rb.status, 200, "{}", rb.body);
    assert!(rb.json().get("reversed_txn").is_none(), "{}", rb.body);
    assert_eq!(card_as(&s, Some("gw-a"), "7201")["available"], after_spend);
    // gw-b's own later request with that key is the one it reversed.
    let late = spend_as(&s, Some("gw-b"), "7201", "10", "s-1");
    assert_eq!(late.status, 402, "{}", late.body);
    assert_eq!(late.json()["code"], "reversed");
    // The same caller on another card: another request, nothing reversed on 7201.
    let wrong_card = reverse_as(&s, "gw-a", "7202", "rv-a-0", "s-1");
    assert_eq!(wrong_card.status, 200, "{}", wrong_card.body);
    assert!(wrong_card.json().get("reversed_txn").is_none());
    assert_eq!(card_as(&s, Some("gw-a"), "7201")["available"], after_spend);
    // A gateway of another program may not reverse on this card at all.
    let other = reverse_as(&s, "gw-other", "7201", "rv-o", "s-1");
    assert_eq!(other.status, 403, "{}", other.body);
    // The caller's own reversal undoes its spend.
    let ra = reverse_as(&s, "gw-a", "7201", "rv-a", "s-1");
    assert_eq!(ra.status, 200, "{}", ra.body);
    assert_eq!(ra.json()["reversed_txn"], sp.json()["txn_id"]);
    assert_eq!(card_as(&s, Some("gw-a"), "7201")["available"], "115.00");
    // The broadcast route is gone: reversals always name their card.
    let old = s
        .req("POST", "/v1/reversals")
        .key("rv-old")
        .bearer("admin-key")
        .json(json!({"idempotency_key":"s-1"}))
        .send();
    assert_eq!(old.status, 404, "{}", old.body);
}

#[test]
fn a_replay_answers_the_first_response_byte_for_byte_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut s = Server::start_in(svault_bin!(), &data, &[]);
    open_as(&s, None, "7301");
    let first_top_up = top_up_as(&s, None, "7301", "100", "t-1");
    assert_eq!(first_top_up.status, 200, "{}", first_top_up.body);
    let first_spend = spend_as(&s, None, "7301", "30", "s-1");
    assert_eq!(first_spend.status, 200, "{}", first_spend.body);
    let first_decline = spend_as(&s, None, "7301", "1000", "s-big");
    assert_eq!(first_decline.status, 402, "{}", first_decline.body);
    // The card changes after those answers.
    assert_eq!(top_up_as(&s, None, "7301", "50", "t-2").status, 200);
    assert_eq!(spend_as(&s, None, "7301", "1", "s-2").status, 200);
    let check = |s: &Server| {
        for (first, again) in [
            (&first_top_up, top_up_as(s, None, "7301", "100", "t-1")),
            (&first_spend, spend_as(s, None, "7301", "30", "s-1")),
            (&first_decline, spend_as(s, None, "7301", "1000", "s-big")),
        ] {
            assert!(again.replayed(), "{}", again.body);
            assert_eq!(again.status, first.status);
            assert_eq!(again.body, first.body, "the card view as it was then");
        }
    };
    check(&s);
    s.stop();
    let s = Server::start_in(svault_bin!(), &data, &[]);
    check(&s);
}

/// Card ids `0 < n < 10_000` on shard `want` of 2, from `from` up.
fn cards_on(want: usize, from: u64, n: usize) -> Vec<u64> {
    (from..)
        .filter(|&c| shard_of(CardId(c), 2) == want)
        .take(n)
        .collect()
}

#[test]
fn the_same_key_on_another_card_is_another_request_on_one_shard_or_two() {
    let s = Server::start(svault_bin!(), &["--shards", "2"]);
    let mut cards = cards_on(0, 7400, 2);
    cards.extend(cards_on(1, 7400, 1));
    for (i, c) in cards.iter().enumerate() {
        let c = c.to_string();
        open_as(&s, None, &c);
        let amount = format!("{}", 10 + i);
        let r = top_up_as(&s, None, &c, &amount, "same");
        assert_eq!(r.status, 200, "card {c}: {}", r.body);
        assert!(!r.replayed(), "card {c}");
        assert_eq!(card_as(&s, None, &c)["principal"], format!("{amount}.00"));
    }
}

#[test]
fn card_ids_with_a_leading_zero_are_refused_at_every_http_door() {
    let s = Server::start(svault_bin!(), &[]);
    open_as(&s, None, "1");
    assert_eq!(top_up_as(&s, None, "1", "10", "t-1").status, 200);
    for bad in ["0001", "0", "01"] {
        let open = s
            .req("POST", "/v1/cards")
            .key(&format!("open-{bad}"))
            .json(json!({"program":"demo","card_id":bad,"registered":true}))
            .send();
        assert_eq!(invalid_field(&open), "card_id", "open {bad}");
        let get = s.req("GET", &format!("/v1/cards/{bad}")).send();
        assert_eq!(invalid_field(&get), "card_id", "get {bad}");
        assert_eq!(
            invalid_field(&top_up_as(&s, None, bad, "10", &format!("t-{bad}"))),
            "card_id"
        );
        let rev = s
            .req("POST", &format!("/v1/cards/{bad}/reversals"))
            .key(&format!("r-{bad}"))
            .json(json!({"idempotency_key":"t-1"}))
            .send();
        assert_eq!(invalid_field(&rev), "card_id", "reversal on {bad}");
        let tx = s
            .req("GET", &format!("/v1/cards/{bad}/transactions"))
            .send();
        assert_eq!(invalid_field(&tx), "card_id");
    }
    let cap = s
        .req("POST", "/v1/holds/01-2/capture")
        .key("c")
        .json(json!({}))
        .send();
    assert_eq!(invalid_field(&cap), "hold_id");
    let refund = s
        .req("POST", "/v1/refunds")
        .key("rf")
        .json(json!({"txn_id":"01-2","amount":"1"}))
        .send();
    assert_eq!(invalid_field(&refund), "txn_id");
    // `1` is untouched by all of that.
    assert_eq!(card_as(&s, None, "1")["principal"], "10.00");
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn binary_protocol_scopes_keys_by_caller_and_replays_the_first_card_view() {
    let (_dir, s) = keyed();
    let rt = rt();
    rt.block_on(async {
        let admin = Client::connect(s.tcp, Some("admin-key")).await.unwrap();
        let a = Client::connect(s.tcp, Some("gw-a")).await.unwrap();
        let b = Client::connect(s.tcp, Some("gw-b")).await.unwrap();
        let card = CardId(7501);
        let open = Call::new(
            Some("open".into()),
            Command::OpenCard {
                card_id: card,
                program: "demo".into(),
                registered: true,
                birthday: None,
            },
        );
        assert_eq!(admin.call(open).await.unwrap().status, Status::Approved);
        let top_up = |amount: i64| {
            Call::new(
                Some("k".into()),
                Command::TopUp {
                    card_id: card,
                    amount: Amount(amount),
                    channel: Channel::Cash,
                },
            )
        };
        let first_a = a.call(top_up(1000)).await.unwrap();
        assert_eq!(first_a.status, Status::Approved);
        let first_b = b.call(top_up(2000)).await.unwrap();
        assert_eq!(first_b.status, Status::Approved, "{first_b:?}");
        assert!(!first_b.replayed);
        let spend = Call::new(
            Some("s".into()),
            Command::Spend {
                card_id: card,
                amount: Amount(500),
                method: Method::Qr,
                store: None,
                allow_partial: false,
            },
        );
        assert_eq!(a.call(spend).await.unwrap().status, Status::Approved);
        for (client, first, amount) in [(&a, first_a, 1000), (&b, first_b, 2000)] {
            let again = client.call(top_up(amount)).await.unwrap();
            assert!(again.replayed);
            assert_eq!(again.txn_id, first.txn_id);
            assert_eq!(again.card, first.card, "the card as it was then");
        }
    });
}

#[test]
fn binary_protocol_refuses_card_id_zero() {
    let s = Server::start(svault_bin!(), &[]);
    let rt = rt();
    rt.block_on(async {
        let c = Client::connect(s.tcp, None).await.unwrap();
        let answers = c
            .call_batch(vec![
                Call::new(
                    Some("o".into()),
                    Command::OpenCard {
                        card_id: CardId(0),
                        program: "demo".into(),
                        registered: true,
                        birthday: None,
                    },
                ),
                Call::get_card(CardId(0)),
                Call::new(
                    Some("t".into()),
                    Command::TopUp {
                        card_id: CardId(0),
                        amount: Amount(100),
                        channel: Channel::Cash,
                    },
                ),
                Call::new(
                    Some("v".into()),
                    Command::Void {
                        hold_id: TxnId {
                            card: CardId(0),
                            seq: 2,
                        },
                    },
                ),
            ])
            .await
            .unwrap();
        for (i, want) in [
            InvalidField::CardId,
            InvalidField::CardId,
            InvalidField::CardId,
            InvalidField::TxnId,
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(answers[i].status, Status::Invalid, "request {i}");
            assert_eq!(answers[i].detail, want as u8, "request {i}");
        }
    });
}
