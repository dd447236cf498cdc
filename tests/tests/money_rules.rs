//! SPEC's money rules through the HTTP API of the real binary, as a gateway and a finance team
//! see them: balance caps, `merchant_fault` cash-outs, low-balance reminders, holds in merchant
//! amounts, capture reversals, discount sources, signed answers, and input refused at the door.

use serde_json::{json, Value};
use svault_tests::api::{at_noon_in_shanghai, Resp, Server};
use svault_tests::svault_bin;

/// At noon in demo's +08:00, outside its evening discount window (the discounts below come from
/// the tests' own all-day windows).
fn start() -> Server {
    let [flag, offset] = at_noon_in_shanghai();
    Server::start(svault_bin!(), &[&flag, &offset])
}

fn program(s: &Server, spec: Value) {
    let id = spec["id"].as_str().unwrap_or("p").to_string();
    let r = s
        .req("POST", "/v1/programs")
        .key(&format!("program-{id}"))
        .json(spec)
        .send();
    assert_eq!(r.status, 200, "program {id}: {}", r.body);
}

fn open_in(s: &Server, program: &str, card: &str, registered: bool) {
    let r = s
        .req("POST", "/v1/cards")
        .key(&format!("open-{card}"))
        .json(json!({"program":program,"card_id":card,"registered":registered}))
        .send();
    assert_eq!(r.status, 200, "open {card}: {}", r.body);
}

fn post(s: &Server, path: &str, key: &str, body: Value) -> Resp {
    s.req("POST", path).key(key).json(body).send()
}

fn top_up(s: &Server, card: &str, amount: &str, key: &str) -> Resp {
    post(
        s,
        &format!("/v1/cards/{card}/top-ups"),
        key,
        json!({"amount":amount,"channel":"wechat"}),
    )
}

fn spend(s: &Server, card: &str, amount: &str, key: &str) -> Resp {
    post(
        s,
        &format!("/v1/cards/{card}/spends"),
        key,
        json!({"amount":amount,"method":"qr"}),
    )
}

fn hold(s: &Server, card: &str, amount: &str, ttl: u32, key: &str) -> Resp {
    post(
        s,
        &format!("/v1/cards/{card}/holds"),
        key,
        json!({"amount":amount,"ttl_seconds":ttl,"method":"card"}),
    )
}

fn capture(s: &Server, hold_id: &str, amount: Option<&str>, key: &str) -> Resp {
    let body = match amount {
        Some(a) => json!({ "amount": a }),
        None => json!({}),
    };
    post(s, &format!("/v1/holds/{hold_id}/capture"), key, body)
}

/// A gateway timeout reversal of request `of` on `card`.
fn reverse(s: &Server, card: &str, of: &str, key: &str) -> Resp {
    post(
        s,
        &format!("/v1/cards/{card}/reversals"),
        key,
        json!({ "idempotency_key": of }),
    )
}

fn ok(r: Resp) -> Value {
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn declined(r: &Resp, code: &str) {
    assert_eq!(r.status, 402, "expected decline {code}: {}", r.body);
    assert_eq!(r.json()["code"], code, "{}", r.body);
}

fn card_principal(s: &Server, card: &str) -> String {
    let v = ok(s.req("GET", &format!("/v1/cards/{card}")).send());
    v["principal"].as_str().unwrap_or_default().to_string()
}

fn low_balances(s: &Server, card: &str) -> Vec<String> {
    let r = s.req("GET", "/v1/events?after=0&limit=1000").send();
    let v = ok(r);
    v["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["card_id"] == card && e["kind"] == "low_balance")
        .map(|e| e["available"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn balance_caps_limit_principal_never_bonus() {
    let s = start();
    open_in(&s, "demo", "101", true);
    ok(top_up(&s, "101", "100", "a1"));
    // principal 100 + 4900 = 5000 exactly: approved, although 115 + 4900 is above 5000; one
    // fen more is not.
    declined(&top_up(&s, "101", "4900.01", "a0"), "over_balance_cap");
    let v = ok(top_up(&s, "101", "4900", "a2"));
    assert_eq!(v["card"]["principal"], "5000.00");
    assert_eq!(v["card"]["bonus"], "505.00");
    declined(&top_up(&s, "101", "1", "a3"), "over_balance_cap");
    open_in(&s, "demo", "102", false);
    ok(top_up(&s, "102", "1000", "b1"));
    assert_eq!(card_principal(&s, "102"), "1000.00");
    declined(&top_up(&s, "102", "1", "b2"), "over_balance_cap");
}

#[test]
fn merchant_fault_cash_out_pays_the_proportional_principal_in_any_spend_order() {
    let s = start();
    for order in ["bonus_first", "principal_first"] {
        program(
            &s,
            json!({"id":order,"currency":"CNY","spend_order":order,
                   "bonus_ladder":[{"nth":1,"min":"100","bonus":"15"}]}),
        );
        let card = if order == "bonus_first" { "201" } else { "202" };
        open_in(&s, order, card, true);
        ok(top_up(&s, card, "100", &format!("{card}-t")));
        ok(spend(&s, card, "30", &format!("{card}-s")));
        let v = ok(post(
            &s,
            &format!("/v1/cards/{card}/cash-out"),
            &format!("{card}-c"),
            json!({"reason":"merchant_fault"}),
        ));
        assert_eq!(v["amount"], "73.91", "{order}: {v}");
        assert_eq!(v["card"]["status"], "closed");
    }
}

#[test]
fn low_balance_reminder_from_a_hold_and_from_a_top_up_reversal() {
    let s = start();
    open_in(&s, "demo", "301", true);
    ok(top_up(&s, "301", "30", "h-t"));
    ok(hold(&s, "301", "15", 600, "h-h"));
    assert_eq!(low_balances(&s, "301"), vec!["15.00"]);
    // The capture leaves available where the hold put it: no second reminder.
    let v = ok(hold(&s, "301", "1", 600, "h-h2"));
    ok(capture(&s, v["hold_id"].as_str().unwrap(), None, "h-c"));
    assert_eq!(low_balances(&s, "301"), vec!["15.00"]);

    open_in(&s, "demo", "302", true);
    ok(top_up(&s, "302", "15", "r-t1"));
    ok(top_up(&s, "302", "10", "r-t2"));
    assert!(low_balances(&s, "302").is_empty());
    ok(reverse(&s, "302", "r-t2", "r-rev"));
    assert_eq!(low_balances(&s, "302"), vec!["15.00"]);
}

#[test]
fn holds_and_captures_are_merchant_amounts_before_discount() {
    let s = start();
    program(
        &s,
        json!({"id":"w","currency":"CNY",
               "discount_windows":[{"from":"00:00","to":"24:00","rate":"0.10"}]}),
    );
    open_in(&s, "w", "401", true);
    ok(top_up(&s, "401", "300", "t"));
    let h = ok(hold(&s, "401", "100", 600, "h1"));
    assert_eq!(
        (h["amount"].clone(), h["discount"].clone()),
        (json!("90.00"), json!("10.00"))
    );
    let c = ok(capture(
        &s,
        h["hold_id"].as_str().unwrap(),
        Some("100"),
        "c1",
    ));
    assert_eq!(c["amount"], "90.00", "{c}");
    assert_eq!(c["released"], "0.00");
    let h = ok(hold(&s, "401", "100", 600, "h2"));
    let c = ok(capture(
        &s,
        h["hold_id"].as_str().unwrap(),
        Some("50"),
        "c2",
    ));
    assert_eq!(
        (c["amount"].clone(), c["released"].clone()),
        (json!("45.00"), json!("45.00"))
    );
    let h = ok(hold(&s, "401", "10", 600, "h3"));
    let r = capture(&s, h["hold_id"].as_str().unwrap(), Some("10.01"), "c3");
    declined(&r, "over_capture");
    let c = ok(capture(&s, h["hold_id"].as_str().unwrap(), Some("5"), "c4"));
    assert_eq!(c["amount"], "4.50");
    assert_eq!(c["card"]["held"], "0.00");
}

#[test]
fn a_reversed_capture_reopens_its_hold_and_a_second_reversal_answers_the_same() {
    let s = start();
    open_in(&s, "demo", "501", true);
    ok(top_up(&s, "501", "100", "t"));
    let h = ok(hold(&s, "501", "50", 600, "h"));
    let hold_id = h["hold_id"].as_str().unwrap().to_string();
    let cap = ok(capture(&s, &hold_id, Some("30"), "cap"));
    let first = ok(reverse(&s, "501", "cap", "rev-1"));
    assert_eq!(first["reversed_txn"], cap["txn_id"]);
    assert_eq!(first["amount"], "30.00");
    assert_eq!(first["card"]["held"], "50.00");
    assert_eq!(first["card"]["available"], "65.00");
    let second = ok(reverse(&s, "501", "cap", "rev-2"));
    for field in [
        "txn_id",
        "amount",
        "principal",
        "bonus",
        "reversed_txn",
        "kind",
    ] {
        assert_eq!(second[field], first[field], "{field}: {second} vs {first}");
    }
    assert_eq!(second["card"], first["card"]);
    // The merchant can capture again.
    let again = ok(capture(&s, &hold_id, None, "cap-again"));
    assert_eq!(again["amount"], "50.00");
}

#[test]
fn answers_say_which_discount_applied_and_the_document_agrees() {
    let s = start();
    program(
        &s,
        json!({"id":"d","currency":"CNY",
               "tiers":[{"name":"gold","lifetime_top_up":"100","points_multiplier":"1","discount":"0.05"}],
               "discount_windows":[{"from":"00:00","to":"24:00","rate":"0.02"}]}),
    );
    program(
        &s,
        json!({"id":"w2","currency":"CNY",
               "discount_windows":[{"from":"00:00","to":"24:00","rate":"0.10"}]}),
    );
    open_in(&s, "d", "601", true);
    ok(top_up(&s, "601", "200", "t"));
    let v = ok(spend(&s, "601", "100", "s"));
    assert_eq!(
        (v["discount"].clone(), v["discount_source"].clone()),
        (json!("5.00"), json!("tier"))
    );
    open_in(&s, "w2", "602", true);
    ok(top_up(&s, "602", "200", "t2"));
    let v = ok(spend(&s, "602", "100", "s2"));
    assert_eq!(
        (v["discount"].clone(), v["discount_source"].clone()),
        (json!("10.00"), json!("window"))
    );
    let doc = s.req("GET", "/openapi.json").send().body;
    assert!(
        !doc.contains("tier + time window"),
        "the discounts do not stack"
    );
    for field in ["discount_source", "retained", "forfeited", "points_earned"] {
        assert!(doc.contains(&format!("\"{field}\"")), "{field} documented");
    }
}

#[test]
fn every_figure_in_an_answer_is_the_signed_change_to_the_card() {
    let s = start();
    program(
        &s,
        json!({"id":"n","currency":"CNY","bonus_ladder":[{"nth":1,"min":"100","bonus":"15"}],
               "points":{"earn_per_unit":"1","redeem_rate":100}}),
    );
    // A top-up reversal: -115.00 = -100.00 principal + -15.00 bonus.
    open_in(&s, "n", "701", true);
    ok(top_up(&s, "701", "100", "t"));
    let r = ok(reverse(&s, "701", "t", "rev-t"));
    assert_eq!(
        (
            r["amount"].clone(),
            r["principal"].clone(),
            r["bonus"].clone()
        ),
        (json!("-115.00"), json!("-100.00"), json!("-15.00")),
        "{r}"
    );
    // A consumer cash-out: 100 + 15, 30 spent ⇒ 73.91 principal + 11.09 bonus left; pays
    // 100 − 30 = 70.00, forfeits the bonus (11.09) and retains 3.91 of principal.
    open_in(&s, "n", "702", true);
    ok(top_up(&s, "702", "100", "t2"));
    ok(spend(&s, "702", "30", "s2"));
    let c = ok(post(
        &s,
        "/v1/cards/702/cash-out",
        "c2",
        json!({"reason":"consumer"}),
    ));
    assert_eq!(
        (
            c["amount"].clone(),
            c["forfeited"].clone(),
            c["retained"].clone()
        ),
        (json!("70.00"), json!("11.09"), json!("3.91")),
        "{c}"
    );
    // A refund reversal gives the points back: points_earned, never points_spent.
    open_in(&s, "n", "703", true);
    ok(top_up(&s, "703", "100", "t3"));
    let sp = ok(spend(&s, "703", "30", "s3"));
    assert_eq!(sp["points_earned"], 30, "{sp}");
    let rf = ok(post(
        &s,
        "/v1/refunds",
        "rf3",
        json!({"txn_id":sp["txn_id"],"amount":"30"}),
    ));
    assert_eq!(rf["card"]["points"], 0, "{rf}");
    let r = ok(reverse(&s, "703", "rf3", "rev-rf3"));
    assert_eq!(
        (r["points_earned"].clone(), r["points_spent"].clone()),
        (json!(30), json!(0)),
        "{r}"
    );
    assert_eq!(r["amount"], "-30.00");
    assert_eq!(r["card"]["points"], 30);
}

#[test]
fn input_refused_at_the_door() {
    let s = start();
    open_in(&s, "demo", "801", true);
    // More places than CNY allows, as written.
    let r = top_up(&s, "801", "1.000", "i1");
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["error"], "invalid_amount");
    assert_eq!(r.json()["field"], "amount");
    // A body that is not application/json.
    let r = s
        .req("POST", "/v1/cards/801/top-ups")
        .key("i2")
        .header("Content-Type", "text/plain")
        .raw(br#"{"amount":"1","channel":"cash"}"#)
        .send();
    assert_eq!(r.status, 415, "{}", r.body);
    assert_eq!(r.json()["error"], "unsupported_media_type");
    // Two Idempotency-Key headers.
    let r = s
        .req("POST", "/v1/cards/801/top-ups")
        .key("i3")
        .key("i4")
        .json(json!({"amount":"1","channel":"cash"}))
        .send();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.json()["field"], "Idempotency-Key");
    // None of them touched the card; application/json with a charset is fine.
    let r = s
        .req("POST", "/v1/cards/801/top-ups")
        .key("i5")
        .header("Content-Type", "application/json; charset=utf-8")
        .raw(br#"{"amount":"1","channel":"cash"}"#)
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["card"]["principal"], "1.00");
}
