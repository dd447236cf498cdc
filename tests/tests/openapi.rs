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
    ("post", "/v1/holds/{id}/increment"),
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

/// Whether `value` satisfies a parameter schema's declared string constraints.
fn declared_ok(schema: &serde_json::Value, value: &str) -> bool {
    let len = value.chars().count() as u64;
    if schema["minLength"].as_u64().is_some_and(|m| len < m)
        || schema["maxLength"].as_u64().is_some_and(|m| len > m)
    {
        return false;
    }
    if let Some(p) = schema["pattern"].as_str() {
        let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p:?}: {e}"));
        if !re.is_match(value) {
            return false;
        }
    }
    if let Some(min) = schema["minimum"].as_f64() {
        match value.parse::<f64>() {
            Ok(n) if n >= min => {}
            _ => return false,
        }
    }
    true
}

/// Values to try against every declared parameter constraint: each one either satisfies the
/// schema (then the server must not refuse it as that parameter) or breaks it (then the server
/// must answer 400 naming it).
const CANDIDATES: &[&str] = &[
    "",
    "0",
    "00",
    "01",
    "1",
    "7",
    "42",
    "1000",
    "1001",
    "1234567890123456789",
    "9999999999999999999",
    "12345678901234567890",
    "a",
    "k-1",
    "a b",
    "é",
    "7-1",
];

/// Percent-encodes everything but unreserved characters, for a path segment or query value.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// The field name a 400 uses for a parameter (`{id}` of a card is `card_id`).
fn field_of(param: &serde_json::Value) -> String {
    match (param["in"].as_str(), param["name"].as_str()) {
        (Some("path"), Some("id")) => "card_id".into(),
        (_, Some(name)) => name.into(),
        _ => panic!("parameter without a name: {param}"),
    }
}

/// Walks the document: every parameter that declares a constraint (pattern, length, minimum)
/// is probed with values on both sides of it, and the server agrees with the document: a value
/// the document calls invalid is refused `400` naming that parameter, and a value it calls
/// valid is never refused as that parameter. Every operation sharing a parameter must declare
/// the same constraints (one rule per name), so probing one operation per parameter covers all.
#[test]
fn every_declared_parameter_constraint_holds_at_the_server() {
    let s = Server::start(svault_bin!(), &[]);
    let doc = s.req("GET", "/openapi.json").send().json();
    // (in, name, schema) → one operation to probe it on.
    let mut seen: Vec<(String, String, serde_json::Value)> = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().cloned().unwrap_or_default() {
                let schema = &p["schema"];
                let constrained = ["pattern", "minLength", "maxLength", "minimum"]
                    .iter()
                    .any(|k| !schema[*k].is_null());
                if !constrained {
                    continue;
                }
                let key = (p["in"].to_string(), p["name"].to_string());
                if let Some((_, _, other)) =
                    seen.iter().find(|(i, n, _)| (i, n) == (&key.0, &key.1))
                {
                    assert_eq!(
                        other, schema,
                        "{method} {path}: {} declares other constraints than elsewhere",
                        key.1
                    );
                    continue;
                }
                seen.push((key.0, key.1, schema.clone()));
                let field = field_of(&p);
                for value in CANDIDATES {
                    if p["in"] == "path" && value.is_empty() {
                        continue; // an empty segment is another path, not a bad id
                    }
                    let ok = declared_ok(schema, value);
                    let enc = encode(value);
                    let r = match (p["in"].as_str().unwrap(), p["name"].as_str().unwrap()) {
                        ("path", "id") => s.req("GET", &format!("/v1/cards/{enc}")).send(),
                        ("header", "Idempotency-Key") => s
                            .req("POST", "/v1/cards/7/freeze")
                            .header("Idempotency-Key", value)
                            .json(serde_json::json!({}))
                            .send(),
                        ("query", "limit") => {
                            s.req("GET", &format!("/v1/events?limit={enc}")).send()
                        }
                        ("query", "after") => {
                            s.req("GET", &format!("/v1/events?after={enc}")).send()
                        }
                        (place, name) => panic!(
                            "{method} {path}: no probe for the constrained {place} parameter {name}; add one"
                        ),
                    };
                    let refused_as_it =
                        r.status == 400 && r.json()["field"].as_str() == Some(field.as_str());
                    assert_eq!(
                        refused_as_it, !ok,
                        "{method} {path}: {field}={value:?} is {} by the document, but the server answered {} {}",
                        if ok { "valid" } else { "invalid" },
                        r.status,
                        r.body
                    );
                }
            }
        }
    }
    for (place, name) in [
        ("path", "id"),
        ("header", "Idempotency-Key"),
        ("query", "limit"),
    ] {
        assert!(
            seen.iter()
                .any(|(i, n, _)| i.trim_matches('"') == place && n.trim_matches('"') == name),
            "the document declares no constraint on the {place} parameter {name}"
        );
    }
}
