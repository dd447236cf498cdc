//! What card issuers' gateways expect, through the real binary's HTTP API and binary protocol:
//! partial approval, incremental authorization, spend limits and store lists, the
//! reconciliation history with its cursor, and their OpenAPI description.

use proto::client::{Call, Client, Command, Status};
use serde_json::{json, Value};
use svault_core::command::{CardId, Channel, Method, TxnId};
use svault_core::money::Amount;
use svault_core::outcome::{DeclineCode, TxnKind};
use svault_tests::api::{Resp, Server};
use svault_tests::svault_bin;

fn post(s: &Server, path: &str, key: &str, body: Value) -> Resp {
    s.req("POST", path).key(key).json(body).send()
}

/// A program without ladder, discount or caps (so figures do not depend on the hour), with
/// `spend` if given; and card `card` in it holding `amount`.
fn setup(s: &Server, program: &str, spend: Option<Value>, card: &str, amount: &str) {
    let mut spec = json!({"id": program, "currency": "CNY", "utc_offset": "+08:00"});
    if let Some(sp) = spend {
        spec["spend"] = sp;
    }
    let r = post(s, "/v1/programs", &format!("prog-{program}"), spec);
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        s,
        "/v1/cards",
        &format!("open-{card}"),
        json!({"program": program, "card_id": card, "registered": true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        s,
        &format!("/v1/cards/{card}/top-ups"),
        &format!("top-{card}"),
        json!({"amount": amount, "channel": "wechat"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
}

fn declined(r: &Resp) -> String {
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.s("status"), "declined");
    r.s("code")
}

#[test]
fn partial_approval_over_http() {
    let s = Server::start(svault_bin!(), &[]);
    setup(&s, "pa", None, "11", "100");
    let path = "/v1/cards/11/spends";
    let r = post(&s, path, "s0", json!({"amount":"150","method":"qr"}));
    assert_eq!(declined(&r), "insufficient_funds");
    let body = json!({"amount":"150","method":"qr","store":"s1","allow_partial":true});
    let r = post(&s, path, "s1", body.clone());
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["status"], "approved");
    assert_eq!(j["partial"], true);
    assert_eq!(j["requested"], "150.00");
    assert_eq!(j["amount"], "100.00");
    assert_eq!(j["principal"], "100.00");
    assert_eq!(j["card"]["available"], "0.00");
    // The same request again: the first answer, byte for byte.
    let again = post(&s, path, "s1", body);
    assert!(again.replayed());
    assert_eq!(again.body, r.body);
    // Nothing left: declined even with allow_partial.
    let r = post(
        &s,
        path,
        "s2",
        json!({"amount":"1","method":"qr","allow_partial":true}),
    );
    assert_eq!(declined(&r), "insufficient_funds");
    // A reversal gives the partial spend back whole.
    let r = post(
        &s,
        "/v1/cards/11/reversals",
        "rv",
        json!({"idempotency_key":"s1"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["card"]["available"], "100.00");
    // A hold too; a spend that fits says partial false.
    let r = post(
        &s,
        "/v1/cards/11/holds",
        "h1",
        json!({"amount":"120","ttl_seconds":600,"method":"card","allow_partial":true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(
        (
            j["partial"].clone(),
            j["requested"].clone(),
            j["amount"].clone()
        ),
        (json!(true), json!("120.00"), json!("100.00"))
    );
    assert_eq!(j["card"]["held"], "100.00");
    let r = post(
        &s,
        &format!("/v1/holds/{}/void", j["hold_id"].as_str().unwrap()),
        "v1",
        json!({}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        &s,
        path,
        "s3",
        json!({"amount":"1","method":"qr","allow_partial":true}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["partial"], false);
    assert!(r.json().get("requested").is_none());
    let r = post(
        &s,
        path,
        "s4",
        json!({"amount":"1","method":"qr","allow_partial":"yes"}),
    );
    assert_eq!(r.status, 400, "{}", r.body);
}

#[test]
fn incremental_authorization_over_http() {
    let s = Server::start(svault_bin!(), &[]);
    setup(&s, "ia", None, "21", "100");
    let r = post(
        &s,
        "/v1/cards/21/holds",
        "h1",
        json!({"amount":"50","ttl_seconds":600,"method":"card","store":"pump-3"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let hold = r.s("hold_id");
    let expires = r.s("expires_at");
    let inc = |key: &str, body: Value| post(&s, &format!("/v1/holds/{hold}/increment"), key, body);
    let r = inc("i1", json!({"amount":"20"}));
    assert_eq!(r.status, 200, "{}", r.body);
    let j = r.json();
    assert_eq!(j["kind"], "increment");
    assert_eq!(j["hold_id"], hold.as_str());
    assert_eq!(j["amount"], "20.00");
    assert_eq!(j["expires_at"], expires.as_str());
    assert_eq!(j["card"]["held"], "70.00");
    assert_ne!(j["txn_id"], hold.as_str());
    assert!(inc("i1", json!({"amount":"20"})).replayed());
    // Declined: the hold is as it was.
    let r = inc("i2", json!({"amount":"30.01"}));
    assert_eq!(declined(&r), "insufficient_funds");
    assert_eq!(r.json()["card"]["held"], "70.00");
    // A ttl extends the hold.
    let r = inc("i3", json!({"amount":"1","ttl_seconds":3600}));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.s("expires_at") > expires);
    // Input: no partial approval here, amounts and ttls checked, unknown holds 404.
    assert_eq!(
        inc("i4", json!({"amount":"1","allow_partial":true})).status,
        400
    );
    let r = inc("i5", json!({"amount":"0"}));
    assert_eq!(
        (r.status, r.s("error")),
        (400, "invalid_amount".to_string())
    );
    assert_eq!(inc("i6", json!({"amount":"1","ttl_seconds":0})).status, 400);
    assert_eq!(
        post(&s, "/v1/holds/21-99/increment", "i7", json!({"amount":"1"})).status,
        404
    );
    // Capture sees the raised amount.
    let cap = |key: &str, amount: &str| {
        post(
            &s,
            &format!("/v1/holds/{hold}/capture"),
            key,
            json!({ "amount": amount }),
        )
    };
    assert_eq!(declined(&cap("c1", "71.01")), "over_capture");
    let r = cap("c2", "71.00");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["card"]["held"], "0.00");
    let r = inc("i8", json!({"amount":"1"}));
    assert_eq!(r.status, 400, "a captured hold: {}", r.body);
    // An expired hold answers hold_expired.
    let r = post(
        &s,
        "/v1/cards/21/holds",
        "h2",
        json!({"amount":"1","ttl_seconds":1,"method":"qr"}),
    );
    let short = r.s("hold_id");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let r = post(
        &s,
        &format!("/v1/holds/{short}/increment"),
        "i9",
        json!({"amount":"1"}),
    );
    assert_eq!(declined(&r), "hold_expired");
}

#[test]
fn spend_limits_and_store_lists_over_http() {
    let s = Server::start(svault_bin!(), &[]);
    let spend = json!({"max_single":"300","max_daily_count":2,"stores_allow":["s1","s2"],"stores_deny":["s2"]});
    setup(&s, "lim", Some(spend), "31", "1000");
    let sp = |key: &str, body: Value| post(&s, "/v1/cards/31/spends", key, body);
    assert_eq!(
        declined(&sp("a", json!({"amount":"1","method":"qr","store":"s3"}))),
        "store_not_allowed"
    );
    assert_eq!(
        declined(&sp("b", json!({"amount":"1","method":"qr","store":"s2"}))),
        "store_not_allowed"
    );
    assert_eq!(
        declined(&sp("c", json!({"amount":"1","method":"qr"}))),
        "store_not_allowed"
    );
    // The store rule comes before the single cap.
    assert_eq!(
        declined(&sp(
            "d",
            json!({"amount":"300.01","method":"qr","store":"s3"})
        )),
        "store_not_allowed"
    );
    assert_eq!(
        declined(&sp(
            "e",
            json!({"amount":"300.01","method":"qr","store":"s1"})
        )),
        "over_single_spend"
    );
    let r = post(
        &s,
        "/v1/cards/31/holds",
        "f",
        json!({"amount":"300.01","ttl_seconds":60,"method":"qr","store":"s1"}),
    );
    assert_eq!(declined(&r), "over_single_spend");
    assert_eq!(
        sp("g", json!({"amount":"300","method":"qr","store":"s1"})).status,
        200
    );
    assert_eq!(
        sp("h", json!({"amount":"1","method":"qr","store":"s1"})).status,
        200
    );
    // The single cap comes before the daily count.
    assert_eq!(
        declined(&sp("i", json!({"amount":"301","method":"qr","store":"s1"}))),
        "over_single_spend"
    );
    assert_eq!(
        declined(&sp("j", json!({"amount":"1","method":"qr","store":"s1"}))),
        "over_daily_count"
    );
    // The program reads back with its spend block; a bad one names the field.
    let r = post(
        &s,
        "/v1/programs",
        "bad",
        json!({"id":"lim2","currency":"CNY","spend":{"max_daily_count":0}}),
    );
    assert_eq!(
        (r.status, r.s("field")),
        (400, "spend.max_daily_count".to_string())
    );
    // A program update applies to later requests: lift the count, deny s1.
    let r = post(
        &s,
        "/v1/programs",
        "lim-v2",
        json!({"id":"lim","currency":"CNY","utc_offset":"+08:00","spend":{"stores_deny":["s1"]}}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        declined(&sp("k", json!({"amount":"1","method":"qr","store":"s1"}))),
        "store_not_allowed"
    );
    assert_eq!(
        sp("l", json!({"amount":"1","method":"qr","store":"s3"})).status,
        200
    );
}

#[test]
fn transaction_history_pages_by_cursor_with_reconciliation_fields() {
    let s = Server::start(svault_bin!(), &[]);
    setup(&s, "tx", None, "41", "100");
    let r = post(
        &s,
        "/v1/cards/41/spends",
        "s1",
        json!({"amount":"30","method":"voice","store":"shop-9"}),
    );
    let spend_id = r.s("txn_id");
    let r = post(
        &s,
        "/v1/refunds",
        "r1",
        json!({"txn_id": spend_id, "amount":"10"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = post(
        &s,
        "/v1/cards/41/grants",
        "g1",
        json!({"bonus":"2","points":5,"reason":"birthday"}),
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let all = s.req("GET", "/v1/cards/41/transactions?limit=100").send();
    assert_eq!(all.status, 200, "{}", all.body);
    let lines = all.json()["transactions"].as_array().unwrap().clone();
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["grant", "refund", "spend", "top_up", "open"]);
    for l in &lines {
        for f in [
            "txn_id",
            "kind",
            "at",
            "amount",
            "principal",
            "bonus",
            "channel",
            "method",
            "store",
            "discount",
            "points",
            "refers_to",
            "reason",
        ] {
            assert!(l.get(f).is_some(), "{f} in {l}");
        }
    }
    let (g, rf, sp, top) = (&lines[0], &lines[1], &lines[2], &lines[3]);
    assert_eq!(
        (g["reason"].clone(), g["points"].clone(), g["bonus"].clone()),
        (json!("birthday"), json!(5), json!("2.00"))
    );
    assert_eq!(
        (
            rf["refers_to"].clone(),
            rf["store"].clone(),
            rf["amount"].clone()
        ),
        (json!(spend_id), json!("shop-9"), json!("10.00"))
    );
    assert_eq!(
        (
            sp["method"].clone(),
            sp["store"].clone(),
            sp["amount"].clone(),
            sp["discount"].clone()
        ),
        (
            json!("voice"),
            json!("shop-9"),
            json!("30.00"),
            json!("0.00")
        )
    );
    assert_eq!(
        (
            top["channel"].clone(),
            top["amount"].clone(),
            top["method"].clone()
        ),
        (json!("wechat"), json!("100.00"), Value::Null)
    );
    // Pages of two, newest first, by the cursor.
    let mut seen = Vec::new();
    let mut path = "/v1/cards/41/transactions?limit=2".to_string();
    loop {
        let page = s.req("GET", &path).send();
        assert_eq!(page.status, 200, "{}", page.body);
        let j = page.json();
        seen.extend(j["transactions"].as_array().unwrap().iter().cloned());
        match j["next_before"].as_str() {
            Some(c) => path = format!("/v1/cards/41/transactions?limit=2&before={c}"),
            None => break,
        }
    }
    assert_eq!(seen, lines);
    let page = s
        .req(
            "GET",
            &format!("/v1/cards/41/transactions?limit=10&before={spend_id}"),
        )
        .send();
    let older: Vec<Value> = page.json()["transactions"].as_array().unwrap().clone();
    assert_eq!(older, lines[3..].to_vec());
    for bad in ["x", "42-1", "41-"] {
        let r = s
            .req("GET", &format!("/v1/cards/41/transactions?before={bad}"))
            .send();
        assert_eq!(
            (r.status, r.s("field")),
            (400, "before".to_string()),
            "{bad}"
        );
    }
}

#[test]
fn the_openapi_document_describes_the_new_calls_and_fields() {
    let s = Server::start(svault_bin!(), &[]);
    let doc = s.req("GET", "/openapi.json").send().json();
    let inc = &doc["paths"]["/v1/holds/{id}/increment"]["post"];
    assert!(inc["responses"]["402"].is_object(), "{inc}");
    let schemas = &doc["components"]["schemas"];
    assert!(schemas["IncrementBody"]["properties"]["ttl_seconds"].is_object());
    for body in ["SpendBody", "HoldBody"] {
        assert!(
            schemas[body]["properties"]["allow_partial"].is_object(),
            "{body}"
        );
    }
    for f in ["partial", "requested", "hold_id"] {
        assert!(schemas["ApprovedBody"]["properties"][f].is_object(), "{f}");
    }
    for f in [
        "channel",
        "method",
        "store",
        "discount",
        "points",
        "refers_to",
        "reason",
    ] {
        assert!(schemas["TxnBody"]["properties"][f].is_object(), "{f}");
    }
    assert!(schemas["TxnListBody"]["properties"]["next_before"].is_object());
    assert!(schemas["ProgramSpecDoc"]["properties"]["spend"].is_object());
    let decl = schemas["DeclinedBody"]["properties"]["code"]["description"]
        .as_str()
        .unwrap_or("");
    for code in ["store_not_allowed", "over_single_spend", "over_daily_count"] {
        assert!(decl.contains(code), "{code}");
    }
}

#[test]
fn partial_approval_and_increment_over_the_binary_protocol() {
    let s = Server::start(svault_bin!(), &[]);
    setup(&s, "bp", Some(json!({"stores_deny":["no"]})), "51", "100");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = Client::connect(s.tcp, None).await.unwrap();
        let c = CardId(51);
        let spend = |key: &str, amount: i64, allow_partial: bool, store: Option<&str>| {
            Call::new(
                Some(key.into()),
                Command::Spend {
                    card_id: c,
                    amount: Amount(amount),
                    method: Method::Card,
                    store: store.map(str::to_string),
                    allow_partial,
                },
            )
        };
        let a = client.call(spend("s1", 6_000, false, None)).await.unwrap();
        assert_eq!((a.status, a.partial), (Status::Approved, false));
        let a = client.call(spend("s2", 6_000, true, None)).await.unwrap();
        assert_eq!(
            (a.status, a.partial, a.amount),
            (Status::Approved, true, Amount(4_000))
        );
        let again = client.call(spend("s2", 6_000, true, None)).await.unwrap();
        assert!(again.replayed && again.partial);
        let a = client.call(spend("s3", 1, true, Some("no"))).await.unwrap();
        assert_eq!(a.decline_code(), Some(DeclineCode::StoreNotAllowed));
        // Money back, then a hold raised by an increment.
        let a = client
            .call(Call::new(
                Some("t2".into()),
                Command::TopUp {
                    card_id: c,
                    amount: Amount(5_000),
                    channel: Channel::Cash,
                },
            ))
            .await
            .unwrap();
        assert_eq!(a.status, Status::Approved);
        let h = client
            .call(Call::new(
                Some("h1".into()),
                Command::Hold {
                    card_id: c,
                    amount: Amount(2_000),
                    ttl_seconds: 600,
                    method: Method::Qr,
                    store: None,
                    allow_partial: false,
                },
            ))
            .await
            .unwrap();
        let hold_id: TxnId = h.txn_id.unwrap();
        let inc = |key: &str, amount: i64| {
            Call::new(
                Some(key.into()),
                Command::IncrementHold {
                    hold_id,
                    amount: Amount(amount),
                    ttl_seconds: Some(900),
                },
            )
        };
        let a = client.call(inc("i1", 1_000)).await.unwrap();
        assert_eq!(
            (a.status, a.kind, a.amount),
            (Status::Approved, Some(TxnKind::Increment), Amount(1_000))
        );
        assert_eq!(a.card.unwrap().held, Amount(3_000));
        let a = client.call(inc("i2", 2_001)).await.unwrap();
        assert_eq!(a.decline_code(), Some(DeclineCode::InsufficientFunds));
        assert_eq!(a.card.unwrap().held, Amount(3_000));
    });
}
