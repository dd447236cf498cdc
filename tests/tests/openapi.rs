//! The served OpenAPI document: OpenAPI 3, every path of SPEC's table, sound references.

use svault_tests::api::Server;
use svault_tests::svault_bin;

const SPEC_PATHS: &[(&str, &str)] = &[
    ("post", "/v1/programs"),
    ("post", "/v1/cards"),
    ("get", "/v1/cards/{id}"),
    ("post", "/v1/cards/{id}/top-ups"),
    ("post", "/v1/cards/{id}/spends"),
    ("post", "/v1/cards/{id}/holds"),
    ("post", "/v1/holds/{id}/capture"),
    ("post", "/v1/holds/{id}/void"),
    ("post", "/v1/refunds"),
    ("post", "/v1/cards/{id}/cash-out"),
    ("post", "/v1/cards/{id}/reversals"),
    ("post", "/v1/cards/{id}/points/redeem"),
    ("post", "/v1/cards/{id}/grants"),
    ("post", "/v1/cards/{id}/freeze"),
    ("post", "/v1/cards/{id}/unfreeze"),
    ("post", "/v1/cards/{id}/close"),
    ("get", "/v1/cards/{id}/transactions"),
    ("get", "/v1/float"),
    ("get", "/v1/events"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/openapi.json"),
];

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            for (k, x) in m {
                if k == "$ref" {
                    if let Some(s) = x.as_str() {
                        out.push(s.to_string());
                    }
                }
                collect_refs(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_refs(x, out)),
        _ => {}
    }
}

#[test]
fn openapi_document_is_complete_and_consistent() {
    let s = Server::start(svault_bin!(), &[]);
    let r = s.req("GET", "/openapi.json").send();
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("application/json"));
    let doc = r.json();
    let version = doc["openapi"].as_str().unwrap();
    assert!(version.starts_with("3."), "{version}");
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    for (method, path) in SPEC_PATHS {
        let op = &doc["paths"][*path][*method];
        assert!(op.is_object(), "missing {method} {path}");
        assert!(
            op["responses"].as_object().is_some_and(|m| !m.is_empty()),
            "{method} {path} has responses"
        );
        if *method == "post" {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
                "{path} documents Idempotency-Key"
            );
            assert!(
                op["responses"]["402"].is_object() || *path == "/v1/programs",
                "{path} documents declines"
            );
        }
        if path.contains("{id}") {
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            assert!(
                params
                    .iter()
                    .any(|p| p["name"] == "id" && p["in"] == "path"),
                "{path} documents id"
            );
        }
    }
    // Every $ref resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("unexpected ref {r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "dangling {r}"
        );
    }
    let card = &doc["components"]["schemas"]["CardBody"]["properties"];
    for f in [
        "card_id",
        "program",
        "principal",
        "bonus",
        "held",
        "available",
        "points",
        "tier",
        "status",
        "paid_in",
        "bonus_given",
        "consumed",
    ] {
        assert!(card[f].is_object(), "card view documents {f}");
    }
}
