//! `GET /v1/events` as a durable log, through real sockets against the real binary: every kind
//! SPEC lists is produced over HTTP, a consumer reads part of the feed, the server is killed
//! with SIGKILL and restarted (three days later, so bonus lots expire), and the consumer
//! resumes from its `after` with nothing missed, nothing repeated and every seq unchanged.

use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use svault_tests::api::Server;
use svault_tests::svault_bin;

const DAY_MS: i64 = 86_400_000;

fn post(s: &Server, path: &str, key: &str, body: Value) -> (u16, Value) {
    let r = s.req("POST", path).key(key).json(body).send();
    let status = r.status;
    (status, serde_json::from_str(&r.body).unwrap_or(Value::Null))
}

fn ok(s: &Server, path: &str, key: &str, body: Value) -> Value {
    let (status, v) = post(s, path, key, body);
    assert_eq!(status, 200, "{path}: {v}");
    v
}

/// One page of the feed.
fn page(s: &Server, after: u64, limit: u32) -> (Vec<Value>, u64) {
    let r = s
        .req("GET", &format!("/v1/events?after={after}&limit={limit}"))
        .send();
    assert_eq!(r.status, 200, "{}", r.body);
    let v = r.json();
    let events = v["events"].as_array().unwrap().clone();
    (events, v["next_after"].as_u64().unwrap())
}

/// The whole feed from the start.
fn all(s: &Server) -> Vec<Value> {
    let (mut out, mut after) = (Vec::new(), 0);
    loop {
        let (events, next) = page(s, after, 1_000);
        if events.is_empty() {
            return out;
        }
        out.extend(events);
        after = next;
    }
}

fn kinds(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect()
}

/// Polls the feed until it holds every kind in `want` (the server's ticks run on its own
/// clock: there is nothing else to wait on).
fn wait_for(s: &Server, want: &[&str]) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = all(s);
        let have = kinds(&events);
        if want.iter().all(|k| have.contains(*k)) {
            return events;
        }
        assert!(Instant::now() < deadline, "feed has only {have:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn every_kind_over_http_and_a_consumer_resumes_across_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(svault_bin!(), dir.path(), &[]);
    ok(
        &s,
        "/v1/programs",
        "p-ev",
        json!({"id":"ev","currency":"CNY","utc_offset":"+08:00",
               "bonus_ladder":[{"nth":1,"min":"1","bonus":"5"}],"bonus_expiry_days":1,
               "velocity":{"max_spends_per_minute":1},"refund_lock_days":0,
               "reminders":{"low_balance":"20","bonus_expiring_days":30}}),
    );
    for c in ["31", "32", "33", "34"] {
        ok(
            &s,
            "/v1/cards",
            &format!("open-{c}"),
            json!({"program":"ev","card_id":c,"registered":true}),
        );
    }
    let top_up = |c: &str, amount: &str| {
        ok(
            &s,
            &format!("/v1/cards/{c}/top-ups"),
            &format!("t-{c}"),
            json!({"amount":amount,"channel":"wechat"}),
        )
    };
    let spend = |c: &str, amount: &str, key: &str| {
        post(
            &s,
            &format!("/v1/cards/{c}/spends"),
            key,
            json!({"amount":amount,"method":"qr"}),
        )
    };
    // 31: bonus expiring (the reminder is due at once: 30 days ahead of a 1-day lot), low
    // balance (105.00 → 15.00), then a second spend in the minute: velocity breach.
    top_up("31", "100");
    assert_eq!(spend("31", "90", "s31a").0, 200);
    assert_eq!(spend("31", "1", "s31b").0, 402);
    // 32: topped up and cashed out at once: quick cash-out.
    top_up("32", "50");
    ok(
        &s,
        "/v1/cards/32/cash-out",
        "c32",
        json!({"reason":"consumer"}),
    );
    // 33: three declines in a row.
    for i in 0..3 {
        assert_eq!(spend("33", "10", &format!("s33-{i}")).0, 402);
    }
    // 34: a hold that expires after one second.
    top_up("34", "50");
    ok(
        &s,
        "/v1/cards/34/holds",
        "h34",
        json!({"amount":"10","ttl_seconds":1,"method":"card"}),
    );
    let before = wait_for(
        &s,
        &[
            "bonus_expiring",
            "low_balance",
            "velocity_breach",
            "quick_cash_out",
            "repeated_declines",
            "hold_expired",
        ],
    );
    let seqs: Vec<u64> = before.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "feed order: {seqs:?}");

    // The consumer reads two pages of two, then the server dies.
    let mut consumed = Vec::new();
    let mut after = 0;
    for _ in 0..2 {
        let (events, next) = page(&s, after, 2);
        consumed.extend(events);
        after = next;
    }
    assert_eq!(consumed.len(), 4);
    drop(s); // SIGKILL

    // Three days later: every bonus lot has expired at its local midnight.
    let offset = (3 * DAY_MS).to_string();
    let s = Server::start_in(svault_bin!(), dir.path(), &["--clock-offset-ms", &offset]);
    // Each shard expires its cards' lots on its own tick: wait for both (31 and 34).
    let deadline = Instant::now() + Duration::from_secs(30);
    let after_restart = loop {
        let events = all(&s);
        if events
            .iter()
            .filter(|e| e["kind"] == "bonus_expired")
            .count()
            >= 2
        {
            break events;
        }
        assert!(
            Instant::now() < deadline,
            "bonus lots did not expire: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    // Nothing before the kill changed: same events, same seqs, same order.
    assert_eq!(
        &after_restart[..before.len()],
        &before[..],
        "events renumbered or lost across the restart"
    );
    loop {
        let (events, next) = page(&s, after, 2);
        if events.is_empty() {
            break;
        }
        consumed.extend(events);
        after = next;
    }
    assert_eq!(
        consumed, after_restart,
        "the resumed consumer missed or repeated events"
    );
    let expired: Vec<&Value> = consumed
        .iter()
        .filter(|e| e["kind"] == "bonus_expired")
        .collect();
    let cards: BTreeSet<&str> = expired
        .iter()
        .map(|e| e["card_id"].as_str().unwrap())
        .collect();
    // 31 spent part of its bonus; 32 forfeited it at the cash-out; 34 kept all 5.00.
    assert!(cards.contains("34") && !cards.contains("32"), "{expired:?}");
}
