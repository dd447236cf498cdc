//! Black-box tests of the HTTP/JSON API through real sockets against the real binary.

use serde_json::{json, Value};
use svault_tests::api::{at_noon_in_shanghai, Resp, Server};
use svault_tests::svault_bin;

fn start() -> Server {
    let [flag, offset] = at_noon_in_shanghai();
    Server::start(svault_bin!(), &[&flag, &offset])
}

fn open(s: &Server, card: &str) -> Resp {
    let r = s
        .req("POST", "/v1/cards")
        .key(&format!("open-{card}"))
        .json(json!({"program":"demo","card_id":card,"registered":true}))
        .send();
    assert_eq!(r.status, 200, "open {card}: {}", r.body);
    r
}

fn top_up(s: &Server, card: &str, amount: &str, key: &str) -> Resp {
    s.req("POST", &format!("/v1/cards/{card}/top-ups"))
        .key(key)
        .json(json!({"amount":amount,"channel":"wechat"}))
        .send()
}

fn spend(s: &Server, card: &str, amount: &str, key: &str) -> Resp {
    s.req("POST", &format!("/v1/cards/{card}/spends"))
        .key(key)
        .json(json!({"amount":amount,"method":"qr","store":"s1"}))
        .send()
}

fn hold(s: &Server, card: &str, amount: &str, ttl: u32, key: &str) -> Resp {
    s.req("POST", &format!("/v1/cards/{card}/holds"))
        .key(key)
        .json(json!({"amount":amount,"ttl_seconds":ttl,"method":"card"}))
        .send()
}

fn card(s: &Server, card: &str) -> Value {
    let r = s.req("GET", &format!("/v1/cards/{card}")).send();
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Cents from a money string ("115.00" ⇒ 11500); the API always prints two decimals.
fn fen(v: &Value) -> i64 {
    let s = v
        .as_str()
        .unwrap_or_else(|| panic!("not a money string: {v}"));
    let (i, f) = s
        .split_once('.')
        .unwrap_or_else(|| panic!("not at full scale: {s}"));
    assert_eq!(f.len(), 2, "money at full scale: {s}");
    i.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap()
}

fn declined(r: &Resp, code: &str) {
    assert_eq!(r.status, 402, "expected decline {code}: {}", r.body);
    assert_eq!(r.json()["status"], "declined");
    assert_eq!(r.json()["code"], code, "{}", r.body);
}

#[test]
fn gateway_play_open_top_up_spend_hold_refund_reverse() {
    let s = start();
    // Open, and the idempotent replay of the open.
    let r = open(&s, "1001");
    assert_eq!(r.json()["status"], "approved");
    assert_eq!(r.json()["card"]["principal"], "0.00");
    let again = s
        .req("POST", "/v1/cards")
        .key("open-1001")
        .json(json!({"program":"demo","card_id":"1001","registered":true}))
        .send();
    assert_eq!(again.status, 200);
    assert!(
        again.replayed(),
        "a retry carries Idempotent-Replayed: true"
    );
    assert!(!r.replayed());
    // The same key on the same card with another body is a conflict (on another card it would
    // be another request).
    let reused = s
        .req("POST", "/v1/cards")
        .key("open-1001")
        .json(json!({"program":"demo","card_id":"1001","registered":false}))
        .send();
    assert_eq!(reused.status, 409);
    assert_eq!(reused.json()["error"], "idempotency_key_reused");
    let exists = s
        .req("POST", "/v1/cards")
        .key("open-1001-b")
        .json(json!({"program":"demo","card_id":"1001","registered":false}))
        .send();
    assert_eq!(exists.status, 409, "{}", exists.body);

    // First top-up of 100 ⇒ +15.00; the second ⇒ +10% (10.00).
    let t1 = top_up(&s, "1001", "100", "t1");
    assert_eq!(t1.status, 200, "{}", t1.body);
    let j = t1.json();
    assert_eq!(
        (
            j["amount"].as_str(),
            j["principal"].as_str(),
            j["bonus"].as_str()
        ),
        (Some("100.00"), Some("100.00"), Some("15.00"))
    );
    assert_eq!(j["card"]["available"], "115.00");
    assert_eq!(j["card"]["bonus_given"], "15.00");
    assert_eq!(j["card"]["paid_in"], "100.00");
    let t1b = top_up(&s, "1001", "100", "t1");
    assert!(t1b.replayed());
    assert_eq!(t1b.json()["txn_id"], j["txn_id"]);
    assert_eq!(t1b.json()["bonus"], "15.00");
    let t2 = top_up(&s, "1001", "100.00", "t2");
    assert_eq!(t2.json()["bonus"], "10.00", "{}", t2.body);
    assert_eq!(card(&s, "1001")["available"], "225.00");
    let changed = s
        .req("POST", "/v1/cards/1001/top-ups")
        .key("t2")
        .json(json!({"amount":"50","channel":"wechat"}))
        .send();
    assert_eq!(changed.status, 409);
    assert_eq!(changed.json()["error"], "idempotency_key_reused");

    // Spend 40.00 at noon (no evening discount): proportional split 200:25.
    let sp = spend(&s, "1001", "40.00", "sp1");
    assert_eq!(sp.status, 200, "{}", sp.body);
    let sj = sp.json();
    let charged = fen(&sj["amount"]);
    assert_eq!((charged, fen(&sj["discount"])), (4000, 0));
    assert_eq!(
        fen(&sj["principal"]) + fen(&sj["bonus"]),
        charged,
        "the parts add up"
    );
    assert_eq!(
        fen(&sj["principal"]),
        (charged * 200 + 112) / 225,
        "proportional: principal share 200/225"
    );
    assert_eq!(fen(&sj["card"]["available"]), 22500 - charged);
    let spend_txn = sj["txn_id"].as_str().unwrap().to_string();

    // Hold, partial capture, void.
    let h = hold(&s, "1001", "50.00", 900, "h1");
    assert_eq!(h.status, 200, "{}", h.body);
    let hold_id = h.s("hold_id");
    let held = fen(&h.json()["amount"]);
    assert_eq!(fen(&h.json()["card"]["held"]), held);
    let cap = s
        .req("POST", &format!("/v1/holds/{hold_id}/capture"))
        .key("c1")
        .json(json!({"amount":"20.00"}))
        .send();
    assert_eq!(cap.status, 200, "{}", cap.body);
    assert_eq!(cap.json()["amount"], "20.00");
    assert_eq!(fen(&cap.json()["released"]), held - 2000);
    assert_eq!(cap.json()["card"]["held"], "0.00");
    let h2 = hold(&s, "1001", "10.00", 900, "h2");
    let h2_id = h2.s("hold_id");
    let before_void = fen(&h2.json()["card"]["available"]);
    let v = s
        .req("POST", &format!("/v1/holds/{h2_id}/void"))
        .key("v1")
        .send();
    assert_eq!(v.status, 200, "{}", v.body);
    assert_eq!(
        fen(&v.json()["card"]["available"]),
        before_void + fen(&h2.json()["amount"])
    );
    assert_eq!(v.json()["card"]["held"], "0.00");
    let h3 = hold(&s, "1001", "10.00", 900, "h3");
    let over = s
        .req("POST", &format!("/v1/holds/{}/capture", h3.s("hold_id")))
        .key("c3")
        .json(json!({"amount":"10.01"}))
        .send();
    declined(&over, "over_capture");

    // Refund part of the spend, split in the proportions it took; never more than captured.
    let rf = s
        .req("POST", "/v1/refunds")
        .key("rf1")
        .json(json!({"txn_id":spend_txn,"amount":"9.00"}))
        .send();
    assert_eq!(rf.status, 200, "{}", rf.body);
    let rj = rf.json();
    assert_eq!(rj["amount"], "9.00");
    assert_eq!(fen(&rj["principal"]) + fen(&rj["bonus"]), 900);
    assert_eq!(
        fen(&rj["principal"]),
        (900 * fen(&sj["principal"]) + charged / 2) / charged
    );
    let too_much = s
        .req("POST", "/v1/refunds")
        .key("rf2")
        .json(json!({"txn_id":spend_txn,"amount":"1000.00"}))
        .send();
    declined(&too_much, "over_refund");

    // Reversal after its original undoes it; before its original, the original is declined later.
    let before = fen(&card(&s, "1001")["available"]);
    let sp2 = spend(&s, "1001", "5.00", "sp-rev");
    assert_eq!(sp2.status, 200);
    let rev = s
        .req("POST", "/v1/cards/1001/reversals")
        .key("rev-1")
        .json(json!({"idempotency_key":"sp-rev"}))
        .send();
    assert_eq!(rev.status, 200, "{}", rev.body);
    assert_eq!(rev.json()["reversed_txn"], sp2.json()["txn_id"]);
    assert_eq!(fen(&card(&s, "1001")["available"]), before);
    let early = s
        .req("POST", "/v1/cards/1001/reversals")
        .key("rev-2")
        .json(json!({"idempotency_key":"sp-late"}))
        .send();
    assert_eq!(early.status, 200, "{}", early.body);
    declined(&spend(&s, "1001", "5.00", "sp-late"), "reversed");
    assert_eq!(fen(&card(&s, "1001")["available"]), before);

    // A card id derived from the key: the retry lands on the same card.
    let a = s
        .req("POST", "/v1/cards")
        .key("auto-open-1")
        .json(json!({"program":"demo","registered":false}))
        .send();
    let b = s
        .req("POST", "/v1/cards")
        .key("auto-open-1")
        .json(json!({"program":"demo","registered":false}))
        .send();
    assert_eq!(a.status, 200, "{}", a.body);
    assert!(b.replayed());
    let id = a.json()["card"]["card_id"].as_str().unwrap().to_string();
    assert_eq!(b.json()["card"]["card_id"], id.as_str());
    assert!(id.len() == 16 && !id.starts_with('0'));

    // History, newest first.
    let tx = s.req("GET", "/v1/cards/1001/transactions?limit=3").send();
    assert_eq!(tx.status, 200, "{}", tx.body);
    let list = tx.json()["transactions"].as_array().unwrap().clone();
    assert_eq!(list.len(), 3);
    assert!(list
        .windows(2)
        .all(|w| w[0]["at"].as_str() >= w[1]["at"].as_str()));
    let all = s.req("GET", "/v1/cards/1001/transactions").send().json();
    assert!(all["transactions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["txn_id"] == spend_txn.as_str()));

    // Float and metrics see the money.
    let fl = s.req("GET", "/v1/float").send();
    assert_eq!(fl.status, 200);
    let fj = fl.json();
    let demo = fj["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"] == "demo")
        .cloned()
        .unwrap();
    let c = card(&s, "1001");
    assert_eq!(fen(&demo["principal"]), fen(&c["principal"]));
    assert_eq!(
        fen(&fj["total"]["outstanding"]),
        fen(&c["principal"]) + fen(&c["bonus"])
    );
    let m = s.req("GET", "/metrics").send();
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    assert!(
        m.body.contains(
            "svault_http_requests_total{route=\"/v1/cards/{id}/top-ups\",status=\"200\"}"
        ),
        "{}",
        m.body
    );
    assert!(
        m.body
            .contains("svault_declines_total{code=\"over_refund\"} 1"),
        "{}",
        m.body
    );
    assert!(m
        .body
        .contains("svault_float_minor_units{program=\"demo\",part=\"principal\"}"));
    // A spend that crosses demo's 20.00 reminder line is an event.
    open(&s, "1003");
    assert_eq!(top_up(&s, "1003", "30", "t1003").status, 200);
    assert_eq!(spend(&s, "1003", "15", "s1003").status, 200);
    let ev = s.req("GET", "/v1/events?after=0&limit=1000").send();
    assert_eq!(ev.status, 200, "{}", ev.body);
    let evj = ev.json();
    let low: Vec<&Value> = evj["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["card_id"] == "1003")
        .collect();
    assert_eq!(low.len(), 1, "{}", ev.body);
    assert_eq!(low[0]["kind"], "low_balance");
    assert!(fen(&low[0]["available"]) < 2000);
    let next = evj["next_after"].as_u64().unwrap();
    assert!(next >= low[0]["seq"].as_u64().unwrap());
    let later = s
        .req("GET", &format!("/v1/events?after={next}"))
        .send()
        .json();
    assert_eq!(
        later["events"].as_array().unwrap().len(),
        0,
        "reading on from next_after"
    );
    assert_eq!(s.req("GET", "/healthz").send().status, 200);
}

#[test]
fn declines_reachable_from_http() {
    let s = start();
    // A program with tight limits: daily top-up cap and velocity.
    let prog = json!({
        "id": "tight", "currency": "CNY", "utc_offset": "+08:00",
        "top_up": {"min": "1", "max_single": "500", "max_balance": "800", "max_daily": "600"},
        "velocity": {"max_spends_per_minute": 2},
        "points": {"earn_per_unit": "1", "redeem_rate": 100},
        "refund_lock_days": 7
    });
    let bad = s
        .req("POST", "/v1/programs")
        .key("prog-bad")
        .json(json!({"id":"x","currency":"USD"}))
        .send();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["field"], "currency");
    let bad = s
        .req("POST", "/v1/programs")
        .key("prog-bad2")
        .json(json!({"id":"x","currency":"CNY","colour":"red"}))
        .send();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.json()["field"], "colour");
    let p = s
        .req("POST", "/v1/programs")
        .key("prog-tight")
        .json(prog)
        .send();
    assert_eq!(p.status, 200, "{}", p.body);
    let o = s
        .req("POST", "/v1/cards")
        .key("o-t")
        .json(json!({"program":"tight","card_id":"2001","registered":true}))
        .send();
    assert_eq!(o.status, 200, "{}", o.body);
    assert_eq!(top_up(&s, "2001", "400", "a").status, 200);
    declined(&top_up(&s, "2001", "500.01", "b"), "over_single_top_up");
    declined(&top_up(&s, "2001", "300", "c"), "over_daily_top_up");
    // Balance cap on a program without a daily cap: demo, anonymous ⇒ 1000.
    let o = s
        .req("POST", "/v1/cards")
        .key("o-anon")
        .json(json!({"program":"demo","card_id":"2002","registered":false}))
        .send();
    assert_eq!(o.status, 200);
    declined(&top_up(&s, "2002", "1000.01", "d"), "over_balance_cap");
    declined(&spend(&s, "2002", "1.00", "e"), "insufficient_funds");
    // Velocity: two spends a minute.
    assert_eq!(spend(&s, "2001", "1", "v1").status, 200);
    assert_eq!(spend(&s, "2001", "1", "v2").status, 200);
    declined(&spend(&s, "2001", "1", "v3"), "velocity_limit");
    // Points.
    let r = s
        .req("POST", "/v1/cards/2001/points/redeem")
        .key("pts")
        .json(json!({"points": 1_000_000}))
        .send();
    declined(&r, "insufficient_points");
    // Cash-out of principal topped up minutes ago, lock 7 days.
    let r = s
        .req("POST", "/v1/cards/2001/cash-out")
        .key("co")
        .json(json!({"reason":"consumer"}))
        .send();
    declined(&r, "refund_locked");
    // Frozen and closed.
    assert_eq!(
        s.req("POST", "/v1/cards/2001/freeze")
            .key("fz")
            .send()
            .status,
        200
    );
    declined(&spend(&s, "2001", "1", "f1"), "card_frozen");
    assert_eq!(
        s.req("POST", "/v1/cards/2001/unfreeze")
            .key("ufz")
            .json(json!({}))
            .send()
            .status,
        200
    );
    // A card with money on it is cashed out before it closes; 2002 is empty.
    let cl = s.req("POST", "/v1/cards/2002/close").key("cl").send();
    assert_eq!(cl.status, 200, "{}", cl.body);
    declined(&top_up(&s, "2002", "1", "f2"), "card_closed");
    // A hold that expired: ttl 1 s, captured after 2 s.
    open(&s, "2003");
    assert_eq!(top_up(&s, "2003", "50", "t").status, 200);
    let h = hold(&s, "2003", "10", 1, "hx");
    assert_eq!(h.status, 200, "{}", h.body);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let cap = s
        .req("POST", &format!("/v1/holds/{}/capture", h.s("hold_id")))
        .key("cx")
        .send();
    declined(&cap, "hold_expired");
    // Grants (admin) and redeeming granted points.
    let g = s
        .req("POST", "/v1/cards/2003/grants")
        .key("g1")
        .json(json!({"bonus":"8.00","points":200,"reason":"birthday"}))
        .send();
    assert_eq!(g.status, 200, "{}", g.body);
    let r = s
        .req("POST", "/v1/cards/2003/points/redeem")
        .key("rd")
        .json(json!({"points":200}))
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["bonus_granted"], "2.00");
    // Unknown things are 404.
    assert_eq!(s.req("GET", "/v1/cards/9999").send().status, 404);
    assert_eq!(spend(&s, "9999", "1", "nf").status, 404);
    assert_eq!(
        s.req("POST", "/v1/holds/9999-1/void")
            .key("nf2")
            .send()
            .status,
        404
    );
    assert_eq!(
        s.req("POST", "/v1/refunds")
            .key("nf3")
            .json(json!({"txn_id":"2003-999","amount":"1"}))
            .send()
            .status,
        404
    );
    let bad_prog = s
        .req("POST", "/v1/cards")
        .key("nf4")
        .json(json!({"program":"nope","card_id":"5","registered":true}))
        .send();
    assert_eq!(bad_prog.status, 404, "{}", bad_prog.body);
}

#[test]
fn bad_input_is_a_json_4xx_never_a_500() {
    let s = start();
    open(&s, "3001");
    let err = |r: &Resp, status: u16, error: &str, field: &str| {
        assert_eq!(r.status, status, "{}", r.body);
        let j = r.json();
        assert_eq!(j["error"], error, "{}", r.body);
        assert_eq!(j["field"], field, "{}", r.body);
    };
    // Missing and malformed Idempotency-Key.
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .json(json!({"amount":"1","channel":"cash"}))
        .send();
    err(&r, 400, "invalid_request", "Idempotency-Key");
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .key(&"k".repeat(129))
        .json(json!({"amount":"1","channel":"cash"}))
        .send();
    err(&r, 400, "invalid_request", "Idempotency-Key");
    // Amounts.
    for (i, bad) in [
        json!("0"),
        json!("-1"),
        json!("1.001"),
        json!("abc"),
        json!("1e3"),
        json!("1000000000000.01"),
        json!(""),
        json!(12),
        json!(null),
        json!(" 1"),
    ]
    .into_iter()
    .enumerate()
    {
        let r = s
            .req("POST", "/v1/cards/3001/top-ups")
            .key(&format!("amt-{i}"))
            .json(json!({"amount":bad,"channel":"cash"}))
            .send();
        err(&r, 400, "invalid_amount", "amount");
    }
    // Unknown fields, wrong types, bad enums, missing fields, malformed JSON.
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .key("u1")
        .json(json!({"amount":"1","channel":"cash","tip":"1"}))
        .send();
    err(&r, 400, "invalid_request", "tip");
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .key("u2")
        .json(json!({"amount":"1","channel":"paypal"}))
        .send();
    err(&r, 400, "invalid_request", "channel");
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .key("u3")
        .json(json!({"amount":"1"}))
        .send();
    err(&r, 400, "invalid_request", "channel");
    let r = s
        .req("POST", "/v1/cards/3001/holds")
        .key("u4")
        .json(json!({"amount":"1","ttl_seconds":"soon","method":"qr"}))
        .send();
    err(&r, 400, "invalid_request", "ttl_seconds");
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .key("u5")
        .header("Content-Type", "application/json")
        .raw(b"{\"amount\":\"1\",")
        .send();
    err(&r, 400, "invalid_request", "body");
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .key("u6")
        .header("Content-Type", "application/json")
        .raw(b"[\"1\",\"cash\"]")
        .send();
    err(&r, 400, "invalid_request", "body");
    let r = s
        .req("POST", "/v1/cards/3001/freeze")
        .key("u7")
        .header("Content-Type", "application/json")
        .raw(b"{\"why\":1}")
        .send();
    err(&r, 400, "invalid_request", "why");
    let r = s
        .req("POST", "/v1/cards")
        .key("u8")
        .json(json!({"program":"demo","card_id":"12345678901234567890","registered":true}))
        .send();
    err(&r, 400, "invalid_request", "card_id");
    let r = s
        .req("POST", "/v1/refunds")
        .key("u9")
        .json(json!({"txn_id":"nope","amount":"1"}))
        .send();
    err(&r, 400, "invalid_request", "txn_id");
    // Bad card ids in the path.
    for (i, id) in ["abc", "12345678901234567890", "-1", "1.5"]
        .iter()
        .enumerate()
    {
        let r = s
            .req("POST", &format!("/v1/cards/{id}/spends"))
            .key(&format!("p{i}"))
            .json(json!({"amount":"1","method":"qr"}))
            .send();
        err(&r, 400, "invalid_request", "card_id");
        assert_eq!(s.req("GET", &format!("/v1/cards/{id}")).send().status, 400);
    }
    let r = s.req("GET", "/v1/cards/3001/transactions?limit=abc").send();
    err(&r, 400, "invalid_request", "limit");
    let r = s.req("GET", "/v1/events?after=-3").send();
    err(&r, 400, "invalid_request", "after");
    // Oversize body ⇒ 413 (JSON), the server keeps serving.
    let big = format!(
        "{{\"amount\":\"1\",\"channel\":\"cash\",\"pad\":\"{}\"}}",
        "x".repeat(70 * 1024)
    );
    let r = s
        .req("POST", "/v1/cards/3001/top-ups")
        .key("big")
        .header("Content-Type", "application/json")
        .raw(big.as_bytes())
        .send();
    assert_eq!(r.status, 413, "{}", r.body);
    assert_eq!(r.json()["error"], "payload_too_large");
    // Unknown path and wrong method.
    assert_eq!(
        s.req("GET", "/v2/nothing").send().json()["error"],
        "not_found"
    );
    assert_eq!(s.req("DELETE", "/v1/cards/3001").send().status, 405);
    // Still alive and the card untouched.
    assert_eq!(card(&s, "3001")["principal"], "0.00");
    let m = s.req("GET", "/metrics").send().body;
    assert!(!m.contains("status=\"500\""), "no 500s: {m}");
}

#[test]
fn concurrent_spends_never_overdraw() {
    let s = start();
    open(&s, "4001");
    assert_eq!(top_up(&s, "4001", "100", "t").status, 200);
    let initial = fen(&card(&s, "4001")["available"]);
    assert_eq!(initial, 11500);
    let addr_server = &s;
    let results: Vec<(i64, u32)> = std::thread::scope(|sc| {
        let handles: Vec<_> = (0..64)
            .map(|t| {
                sc.spawn(move || {
                    let (mut charged, mut declines) = (0i64, 0u32);
                    for i in 0..3 {
                        let r = spend(addr_server, "4001", "1.00", &format!("c{t}-{i}"));
                        match r.status {
                            200 => charged += fen(&r.json()["amount"]),
                            402 => {
                                assert_eq!(r.json()["code"], "insufficient_funds");
                                declines += 1;
                            }
                            other => panic!("unexpected {other}: {}", r.body),
                        }
                    }
                    (charged, declines)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let charged: i64 = results.iter().map(|r| r.0).sum();
    let declines: u32 = results.iter().map(|r| r.1).sum();
    let after = card(&s, "4001");
    let left = fen(&after["available"]);
    assert!(left >= 0, "never overdrawn");
    assert_eq!(charged + left, initial, "every fen accounted for");
    assert!(declines > 0, "192 spends of 1.00 cannot all fit in 115.00");
    assert!(
        left < 100,
        "spends stop only when less than one charge is left: {left}"
    );
    assert_eq!(fen(&after["principal"]) + fen(&after["bonus"]), left);
}

#[test]
fn api_keys_gate_every_call() {
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(
        &keys,
        "# roles\nadmin-key admin\ngw-demo gateway demo\ngw-other gateway other\n",
    )
    .unwrap();
    let data = dir.path().join("data");
    let s = Server::start_in(
        svault_bin!(),
        &data,
        &["--api-keys", keys.to_str().unwrap()],
    );
    let body = json!({"program":"demo","card_id":"5001","registered":true});
    assert_eq!(
        s.req("POST", "/v1/cards")
            .key("o")
            .json(body.clone())
            .send()
            .status,
        401
    );
    assert_eq!(
        s.req("POST", "/v1/cards")
            .key("o")
            .bearer("nope")
            .json(body.clone())
            .send()
            .status,
        401
    );
    assert_eq!(s.req("GET", "/v1/cards/5001").send().status, 401);
    assert_eq!(s.req("GET", "/v1/float").send().status, 401);
    assert_eq!(
        s.req("POST", "/v1/cards")
            .key("o")
            .bearer("gw-other")
            .json(body.clone())
            .send()
            .status,
        403
    );
    let r = s
        .req("POST", "/v1/cards")
        .key("o")
        .bearer("gw-demo")
        .json(body)
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.req("GET", "/v1/cards/5001")
            .bearer("gw-demo")
            .send()
            .status,
        200
    );
    assert_eq!(
        s.req("GET", "/v1/cards/5001")
            .bearer("gw-other")
            .send()
            .status,
        403
    );
    let t = s
        .req("POST", "/v1/cards/5001/top-ups")
        .key("t")
        .bearer("gw-other")
        .json(json!({"amount":"10","channel":"cash"}))
        .send();
    assert_eq!(t.status, 403, "{}", t.body);
    let t = s
        .req("POST", "/v1/cards/5001/top-ups")
        .key("t")
        .bearer("gw-demo")
        .json(json!({"amount":"10","channel":"cash"}))
        .send();
    assert_eq!(t.status, 200, "{}", t.body);
    let g = s
        .req("POST", "/v1/cards/5001/grants")
        .key("g")
        .bearer("gw-demo")
        .json(json!({"points":5,"reason":"campaign"}))
        .send();
    assert_eq!(g.status, 403);
    let g = s
        .req("POST", "/v1/cards/5001/grants")
        .key("g")
        .bearer("admin-key")
        .json(json!({"points":5,"reason":"campaign"}))
        .send();
    assert_eq!(g.status, 200, "{}", g.body);
    let p = s
        .req("POST", "/v1/programs")
        .key("p")
        .bearer("gw-demo")
        .json(json!({"id":"x","currency":"CNY"}))
        .send();
    assert_eq!(p.status, 403);
    let p = s
        .req("POST", "/v1/programs")
        .key("p")
        .bearer("admin-key")
        .json(json!({"id":"x","currency":"CNY"}))
        .send();
    assert_eq!(p.status, 200, "{}", p.body);
    let f = s.req("GET", "/v1/float").bearer("gw-other").send().json();
    assert_eq!(
        f["programs"].as_array().unwrap().len(),
        0,
        "a gateway sees only its programs' float"
    );
    assert_eq!(
        s.req("GET", "/healthz").send().status,
        200,
        "probes need no key"
    );
}

#[test]
fn refuses_non_loopback_without_keys_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(svault_bin!())
        .args([
            "serve",
            "--data",
            dir.path().to_str().unwrap(),
            "--http",
            "0.0.0.0:0",
            "--tcp",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("loopback") && err.contains("--api-keys"),
        "{err}"
    );

    let mut s = Server::start(svault_bin!(), &[]);
    open(&s, "6001");
    let status = s.stop();
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");
    // Restart on the same data: the card is there and demo is not recreated over it.
    let data = s.data.clone();
    let s2 = Server::start_in(svault_bin!(), &data, &[]);
    assert_eq!(card(&s2, "6001")["card_id"], "6001");
    let replay = s2
        .req("POST", "/v1/cards")
        .key("open-6001")
        .json(json!({"program":"demo","card_id":"6001","registered":true}))
        .send();
    assert!(replay.replayed(), "keys survive restarts: {}", replay.body);
}
