//! SPEC "Money" over HTTP: a request that would push a figure past 10^12 is refused
//! (`402 over_amount_limit`) and changes nothing; the bound itself is reachable.

use serde_json::json;
use svault_tests::api::Server;
use svault_tests::svault_bin;

#[test]
fn a_top_up_past_ten_to_the_twelve_is_refused_and_changes_nothing() {
    let s = Server::start(svault_bin!(), &[]);
    let p = s
        .req("POST", "/v1/programs")
        .key("prog-big")
        .json(json!({"id":"big","currency":"CNY"}))
        .send();
    assert_eq!(p.status, 200, "{}", p.body);
    let o = s
        .req("POST", "/v1/cards")
        .key("open")
        .json(json!({"program":"big","card_id":"7001","registered":true}))
        .send();
    assert_eq!(o.status, 200, "{}", o.body);
    let top_up = |amount: &str, key: &str| {
        s.req("POST", "/v1/cards/7001/top-ups")
            .key(key)
            .json(json!({"amount":amount,"channel":"cash"}))
            .send()
    };
    let r = top_up("999999999999.99", "t1");
    assert_eq!(r.status, 200, "{}", r.body);
    let r = top_up("0.01", "t2");
    assert_eq!(r.status, 200, "the bound itself is allowed: {}", r.body);
    assert_eq!(r.json()["card"]["principal"], "1000000000000.00");
    let before = s.req("GET", "/v1/cards/7001").send().body;
    let r = top_up("0.01", "t3");
    assert_eq!(r.status, 402, "{}", r.body);
    assert_eq!(r.json()["status"], "declined");
    assert_eq!(r.json()["code"], "over_amount_limit", "{}", r.body);
    assert_eq!(r.json()["card"]["principal"], "1000000000000.00");
    assert_eq!(s.req("GET", "/v1/cards/7001").send().body, before);
    let f = s.req("GET", "/v1/float").send();
    assert_eq!(f.status, 200);
    assert!(f.body.contains("1000000000000.00"), "{}", f.body);
}
