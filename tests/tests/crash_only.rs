//! Crash-only on bugs: a panic in a shard thread or in a snapshot writer ends the real
//! `svault serve` process with a failure status, instead of leaving it half alive (answering
//! `503` forever, or never taking a snapshot again); a restart recovers from the log and keeps
//! every acknowledged request.
//!
//! The panics are injected through the test build's hooks: a request whose idempotency key is
//! `svault-fault:shard-panics` (or `svault-fault:snapshot-writer-panics`) arms them.

use serde_json::json;
use std::time::Duration;
use svault_tests::api::{Resp, Server};
use svault_tests::svault_bin;

/// How long a dying server may take to exit (a liveness bound, not a timing assertion).
const EXIT_WITHIN: Duration = Duration::from_secs(60);
const CARDS: [&str; 4] = [
    "6200000000000101",
    "6200000000000102",
    "6200000000000103",
    "6200000000000104",
];

fn post(s: &Server, path: &str, key: &str, body: serde_json::Value) -> Resp {
    s.req("POST", path).key(key).json(body).send()
}

/// Opens, funds and spends on every card; returns every acknowledged (200) request as
/// (path, key, body) so it can be checked after the restart.
fn acknowledged_work(s: &Server) -> Vec<(String, String, serde_json::Value)> {
    let mut acked = Vec::new();
    for card in CARDS {
        let mut calls = vec![(
            "/v1/cards".to_string(),
            format!("open-{card}"),
            json!({"program":"demo","card_id":card,"registered":true}),
        )];
        calls.push((
            format!("/v1/cards/{card}/top-ups"),
            format!("top-{card}"),
            json!({"amount":"100.00","channel":"wechat"}),
        ));
        for i in 0..5 {
            calls.push((
                format!("/v1/cards/{card}/spends"),
                format!("spend-{card}-{i}"),
                json!({"amount":"1.25","method":"qr","store":"s1"}),
            ));
        }
        for (path, key, body) in calls {
            let r = post(s, &path, &key, body.clone());
            assert_eq!(r.status, 200, "{path} {key}: {}", r.body);
            acked.push((path, key, body));
        }
    }
    acked
}

/// Every acknowledged request answers again from its key (it is in the log).
fn check_acknowledged(s: &Server, acked: &[(String, String, serde_json::Value)]) {
    for (path, key, body) in acked {
        let r = post(s, path, key, body.clone());
        assert_eq!(r.status, 200, "{path} {key}: {}", r.body);
        assert!(
            r.replayed(),
            "acknowledged {path} {key} was lost: {}",
            r.body
        );
    }
}

/// Available balance of every card, in cents.
fn balances(s: &Server) -> Vec<i64> {
    CARDS
        .iter()
        .map(|c| {
            let r = s.req("GET", &format!("/v1/cards/{c}")).send();
            assert_eq!(r.status, 200, "{}", r.body);
            let v = r.s("available");
            let (i, f) = v.split_once('.').expect("two decimals");
            i.parse::<i64>().unwrap() * 100 + f.parse::<i64>().unwrap()
        })
        .collect()
}

fn dies_and_recovers(fault_key: &str) {
    let dir = tempfile::tempdir().unwrap();
    let mut s = Server::start_in(svault_bin!(), dir.path(), &[]);
    let acked = acknowledged_work(&s);
    let before = balances(&s);
    let card = CARDS[0];
    // A freeze carrying the fault's key: the shard panics before logging it, or the writer
    // panics right after its commit. The answer may never come.
    let answer = s
        .req("POST", &format!("/v1/cards/{card}/freeze"))
        .key(fault_key)
        .try_send();
    if let (Some(r), false) = (&answer, fault_key.contains("snapshot")) {
        assert_ne!(r.status, 200, "the panicking shard answered: {}", r.body);
    }
    let status = s.wait_exit(EXIT_WITHIN);
    let Some(status) = status else {
        let probe = s.req("GET", &format!("/v1/cards/{card}")).try_send();
        panic!(
            "{fault_key}: the server is still running after the panic (answer to the trigger: \
             {answer:?}; a read now: {probe:?})"
        );
    };
    assert!(!status.success(), "{fault_key}: exit status {status:?}");
    drop(s);

    let s = Server::start_in(svault_bin!(), dir.path(), &[]);
    check_acknowledged(&s, &acked);
    assert_eq!(balances(&s), before, "{fault_key}");
    // The trigger is not resubmitted (its key would arm the fault again). A shard panics
    // before logging it: never applied. The writer panics after its commit: applied.
    let status = s
        .req("GET", &format!("/v1/cards/{card}"))
        .send()
        .s("status");
    let applied = fault_key.contains("snapshot");
    assert_eq!(
        status,
        if applied { "frozen" } else { "active" },
        "{fault_key}"
    );
}

#[test]
fn a_panicking_shard_ends_the_process_and_a_restart_keeps_every_acknowledged_request() {
    dies_and_recovers("svault-fault:shard-panics");
}

#[test]
fn a_panicking_snapshot_writer_ends_the_process_and_a_restart_keeps_every_acknowledged_request() {
    dies_and_recovers("svault-fault:snapshot-writer-panics");
}
