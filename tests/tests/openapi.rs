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
    if let Some(max) = schema["maximum"].as_f64() {
        match value.parse::<f64>() {
            Ok(n) if n <= max => {}
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
    "7-01",
    "7-",
    "0-1",
    "7-4294967295",
    "7-4294967296",
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

/// The kind of resource a path names (`/v1/cards`, `/v1/holds`): an `{id}` means a card id
/// under one and a hold id under the other.
fn family(path: &str) -> &str {
    path.get(..9).unwrap_or(path)
}

/// The field name a 400 uses for a parameter (`{id}` of a card is `card_id`, of a hold
/// `hold_id`).
fn field_of(path: &str, param: &serde_json::Value) -> String {
    match (param["in"].as_str(), param["name"].as_str()) {
        (Some("path"), Some("id")) if family(path) == "/v1/holds" => "hold_id".into(),
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
                let place = if p["in"] == "path" {
                    format!("path {}", family(path))
                } else {
                    p["in"].to_string()
                };
                let key = (place, p["name"].to_string());
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
                let field = field_of(path, &p);
                for value in CANDIDATES {
                    if p["in"] == "path" && value.is_empty() {
                        continue; // an empty segment is another path, not a bad id
                    }
                    let ok = declared_ok(schema, value);
                    let enc = encode(value);
                    let r = match (p["in"].as_str().unwrap(), p["name"].as_str().unwrap()) {
                        ("path", "id") if field == "hold_id" => s
                            .req("POST", &format!("/v1/holds/{enc}/void"))
                            .header("Idempotency-Key", "probe-void")
                            .json(serde_json::json!({}))
                            .send(),
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
        ("path /v1/cards", "id"),
        ("path /v1/holds", "id"),
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

/// A valid body for each operation that takes one (programs aside: their spec has its own
/// tests), so that replacing one field probes that field alone. The card is one no probe
/// opens (opens name a program that does not exist), so no program rule (a top-up minimum,
/// "not a spend or a capture") answers before the input rules do.
fn base_body(method: &str, path: &str) -> Option<(String, serde_json::Value)> {
    use serde_json::json;
    let (url, body) = match (method, path) {
        ("post", "/v1/cards") => (
            "/v1/cards",
            json!({"program": "no-such-program", "registered": true}),
        ),
        ("post", "/v1/cards/{id}/top-ups") => (
            "/v1/cards/5550001/top-ups",
            json!({"amount": "1.00", "channel": "cash"}),
        ),
        ("post", "/v1/cards/{id}/spends") => (
            "/v1/cards/5550001/spends",
            json!({"amount": "1.00", "method": "qr"}),
        ),
        ("post", "/v1/cards/{id}/holds") => (
            "/v1/cards/5550001/holds",
            json!({"amount": "1.00", "ttl_seconds": 60, "method": "qr"}),
        ),
        ("post", "/v1/holds/{id}/increment") => {
            ("/v1/holds/5550001-1/increment", json!({"amount": "1.00"}))
        }
        ("post", "/v1/holds/{id}/capture") => ("/v1/holds/5550001-1/capture", json!({})),
        ("post", "/v1/refunds") => (
            "/v1/refunds",
            json!({"txn_id": "5550001-1", "amount": "1.00"}),
        ),
        ("post", "/v1/cards/{id}/reversals") => (
            "/v1/cards/5550001/reversals",
            json!({"idempotency_key": "k"}),
        ),
        ("post", "/v1/cards/{id}/points/redeem") => {
            ("/v1/cards/5550001/points/redeem", json!({"points": 1}))
        }
        ("post", "/v1/cards/{id}/cash-out") => {
            ("/v1/cards/5550001/cash-out", json!({"reason": "consumer"}))
        }
        ("post", "/v1/cards/{id}/grants") => (
            "/v1/cards/5550001/grants",
            json!({"bonus": "1.00", "reason": "campaign"}),
        ),
        _ => return None,
    };
    Some((url.to_string(), body))
}

/// String values to try against the declared rules of body fields.
fn string_candidates() -> Vec<String> {
    let mut v: Vec<String> = CANDIDATES.iter().map(|s| s.to_string()).collect();
    for s in [
        "1.00",
        "0.01",
        "0.1",
        "0.00",
        "0.0",
        "1.001",
        "-1",
        "-1.00",
        "1e3",
        ".5",
        "5.",
        "007.50",
        "999999999999.99",
        "1000000000000",
        "1000000000000.00",
        "1000000000000.01",
        "demo",
        "de.mo",
        "de_mo-2",
        "x\u{7}y",
        "shop 1",
        // the word fields: channels, methods, cash-out and grant reasons, and near misses
        "wechat",
        "Wechat",
        "cash",
        "qr",
        "voice",
        "card ",
        "birthday",
        "campaign",
        "cooling_off",
        "merchant_fault",
    ] {
        v.push(s.to_string());
    }
    v.push("9".repeat(41));
    // Characters of two, three and four UTF-8 bytes: a schema counts characters, so a rule
    // kept in bytes would call valid what the server refuses.
    for n in [1, 32, 33, 64, 65] {
        v.push("é".repeat(n));
        v.push("店".repeat(n));
    }
    v.push("😀".repeat(2));
    v.push(format!("s{}", "😀".repeat(15)));
    for n in [40, 64, 65, 128, 129] {
        v.push("s".repeat(n));
        v.push(format!("0000{}", "1".repeat(n - 4)));
    }
    v
}

/// Walks the document's request bodies: every body field that declares a rule (pattern,
/// length, minimum, maximum) is probed with values on both sides of it against a real server;
/// a value the document calls invalid must be refused `400` naming that field, and one it calls
/// valid must never be.
#[test]
fn every_declared_body_field_constraint_holds_at_the_server() {
    let s = Server::start(svault_bin!(), &[]);
    let doc = s.req("GET", "/openapi.json").send().json();
    let schemas = &doc["components"]["schemas"];
    let mut probed = Vec::new();
    let mut n = 0u64;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let Some(r) =
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str()
            else {
                continue;
            };
            if path == "/v1/programs" {
                continue; // the program spec: its rules are program::spec's tests
            }
            let name = r.trim_start_matches("#/components/schemas/");
            let props = schemas[name]["properties"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            for (field, schema) in props {
                let constrained = ["pattern", "minLength", "maxLength", "minimum", "maximum"]
                    .iter()
                    .any(|k| !schema[*k].is_null());
                if !constrained {
                    continue;
                }
                let Some((url, base)) = base_body(method, path) else {
                    panic!(
                        "{method} {path}: field {field} declares a rule but has no probe; add one"
                    );
                };
                let integer = schema["type"] == "integer"
                    || schema["type"]
                        .as_array()
                        .is_some_and(|t| t.iter().any(|x| x == "integer"));
                let values: Vec<(String, serde_json::Value)> = if integer {
                    [0i64, 1, 2, 60, 2_592_000, 2_592_001, 4_294_967_295]
                        .iter()
                        .map(|v| (v.to_string(), serde_json::json!(v)))
                        .collect()
                } else {
                    string_candidates()
                        .into_iter()
                        .map(|v| (v.clone(), serde_json::json!(v)))
                        .collect()
                };
                for (text, value) in values {
                    let ok = declared_ok(&schema, &text);
                    let mut body = base.clone();
                    body[field.as_str()] = value;
                    n += 1;
                    let r = s
                        .req("POST", &url)
                        .header("Idempotency-Key", &format!("probe-{n}"))
                        .json(body)
                        .send();
                    let refused_as_it =
                        r.status == 400 && r.json()["field"].as_str() == Some(field.as_str());
                    assert_eq!(
                        refused_as_it, !ok,
                        "{method} {path}: {field}={text:?} is {} by the document, but the server answered {} {}",
                        if ok { "valid" } else { "invalid" },
                        r.status,
                        r.body
                    );
                }
                probed.push(format!("{name}.{field}"));
            }
        }
    }
    for want in [
        "OpenCardBody.card_id",
        "OpenCardBody.program",
        "TopUpBody.amount",
        "SpendBody.store",
        "HoldBody.ttl_seconds",
        "RefundBody.txn_id",
        "ReversalBody.idempotency_key",
        "RedeemBody.points",
        "GrantBody.points",
    ] {
        assert!(
            probed.iter().any(|p| p == want),
            "the document declares no rule on {want}"
        );
    }
}

/// Each operation's security requirement holds at a server with API keys: without a key every
/// call is `401` but those that declare none; a call that declares the `admin` role is `403`
/// to a gateway key and not refused to an admin key.
#[test]
fn every_declared_security_requirement_holds_at_the_server() {
    use serde_json::json;
    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys");
    std::fs::write(&keys, "admin-key admin\ngw gateway demo\n").unwrap();
    let s = Server::start_in(
        svault_bin!(),
        &dir.path().join("data"),
        &["--api-keys", keys.to_str().unwrap()],
    );
    let doc = s
        .req("GET", "/openapi.json")
        .bearer("admin-key")
        .send()
        .json();
    let global = doc["security"].clone();
    let mut n = 0u64;
    let mut admin_ops = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let security = if op["security"].is_null() {
                global.clone()
            } else {
                op["security"].clone()
            };
            let reqs = security.as_array().cloned().unwrap_or_default();
            let open = reqs.is_empty()
                || reqs
                    .iter()
                    .any(|r| r.as_object().is_some_and(|m| m.is_empty()));
            let admin = reqs.iter().any(|r| {
                r["bearer"]
                    .as_array()
                    .is_some_and(|roles| roles.iter().any(|x| x == "admin"))
            });
            let url = path
                .replace("/v1/holds/{id}", "/v1/holds/5550001-1")
                .replace("{id}", "5550001");
            // A body the call accepts, so that only the key decides.
            let body = match path.as_str() {
                "/v1/programs" => json!({"id": "p1", "currency": "CNY"}),
                "/v1/cards/{id}/grants" => json!({"bonus": "1.00", "reason": "campaign"}),
                _ => json!({}),
            };
            let send = |key: Option<&str>, n: u64| {
                let mut r = s.req(&method.to_uppercase(), &url);
                if let Some(k) = key {
                    r = r.bearer(k);
                }
                if method == "post" {
                    r = r
                        .header("Idempotency-Key", &format!("sec-{n}"))
                        .json(body.clone());
                }
                r.send()
            };
            n += 1;
            let anonymous = send(None, n);
            assert_eq!(
                anonymous.status == 401,
                !open,
                "{method} {path} without a key: {} {}",
                anonymous.status,
                anonymous.body
            );
            if admin {
                admin_ops.push(format!("{method} {path}"));
                n += 1;
                let gw = send(Some("gw"), n);
                assert_eq!(
                    gw.status, 403,
                    "{method} {path} with a gateway key: {}",
                    gw.body
                );
                n += 1;
                let ad = send(Some("admin-key"), n);
                assert!(
                    ad.status != 401 && ad.status != 403,
                    "{method} {path} with the admin key: {} {}",
                    ad.status,
                    ad.body
                );
            }
        }
    }
    for want in [
        "post /v1/programs",
        "post /v1/cards/{id}/grants",
        "get /metrics",
    ] {
        assert!(
            admin_ops.iter().any(|o| o == want),
            "{want} declares no admin role"
        );
    }
}

/// `schema` with a `$ref` followed into the document's components.
fn resolve<'a>(doc: &'a serde_json::Value, schema: &'a serde_json::Value) -> &'a serde_json::Value {
    match schema["$ref"].as_str() {
        Some(r) => {
            let name = r.trim_start_matches("#/components/schemas/");
            resolve(doc, &doc["components"]["schemas"][name])
        }
        None => schema,
    }
}

/// Whether the JSON `value` satisfies `schema`, as a JSON Schema validator reads the parts the
/// document uses: `type` (one or several), `oneOf`, `pattern`, `minLength`/`maxLength` (in
/// characters), `minimum`/`maximum`, `items`/`maxItems`, `properties`/`required`.
fn satisfies(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    value: &serde_json::Value,
) -> bool {
    use serde_json::Value;
    let schema = resolve(doc, schema);
    if let Some(alts) = schema["oneOf"].as_array() {
        if alts.iter().filter(|s| satisfies(doc, s, value)).count() != 1 {
            return false;
        }
    }
    let types: Vec<&str> = match &schema["type"] {
        Value::String(t) => vec![t.as_str()],
        Value::Array(ts) => ts.iter().filter_map(|t| t.as_str()).collect(),
        _ => vec![],
    };
    let type_ok = |t: &str| match (t, value) {
        ("null", Value::Null) | ("boolean", Value::Bool(_)) | ("string", Value::String(_)) => true,
        ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("number", Value::Number(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !types.is_empty() && !types.iter().any(|t| type_ok(t)) {
        return false;
    }
    match value {
        Value::String(s) => declared_ok(schema, s),
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            schema["minimum"].as_f64().is_none_or(|m| x >= m)
                && schema["maximum"].as_f64().is_none_or(|m| x <= m)
        }
        Value::Array(items) => {
            schema["maxItems"]
                .as_u64()
                .is_none_or(|m| items.len() as u64 <= m)
                && items.iter().all(|v| satisfies(doc, &schema["items"], v))
        }
        Value::Object(fields) => {
            let required = schema["required"].as_array().cloned().unwrap_or_default();
            required
                .iter()
                .all(|r| r.as_str().is_some_and(|r| fields.contains_key(r)))
                && fields.iter().all(|(k, v)| {
                    let s = &schema["properties"][k.as_str()];
                    s.is_null() || satisfies(doc, s, v)
                })
        }
        _ => true,
    }
}

/// One step of a path into a body: a field, or the first item of a list.
#[derive(Clone, Debug)]
enum Step {
    Key(String),
    First,
}

/// A path as the server names a field in a `400` (`bonus_ladder[0].rate`, `spend.stores_deny[0]`).
fn field_name(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Key(k) if s.is_empty() => s.push_str(k),
            Step::Key(k) => {
                s.push('.');
                s.push_str(k);
            }
            Step::First => s.push_str("[0]"),
        }
    }
    s
}

/// The schema of a value that may be null, without the null: what to walk into.
fn non_null<'a>(
    doc: &'a serde_json::Value,
    schema: &'a serde_json::Value,
) -> &'a serde_json::Value {
    let schema = resolve(doc, schema);
    match schema["oneOf"].as_array() {
        Some(alts) => alts
            .iter()
            .map(|a| resolve(doc, a))
            .find(|a| a["type"] != "null")
            .unwrap_or(schema),
        None => schema,
    }
}

/// Every place in the program body that declares a rule: its path and its schema (a field, a
/// list's length, a list's items).
fn declared_rules(
    doc: &serde_json::Value,
    schema: &serde_json::Value,
    path: Vec<Step>,
    out: &mut Vec<(Vec<Step>, serde_json::Value)>,
) {
    let s = non_null(doc, schema);
    if let Some(props) = s["properties"].as_object() {
        for (k, v) in props {
            let mut p = path.clone();
            p.push(Step::Key(k.clone()));
            declared_rules(doc, v, p, out);
        }
        return;
    }
    if s["type"] == "array" || s["items"].is_object() {
        if !s["maxItems"].is_null() {
            out.push((path.clone(), resolve(doc, schema).clone()));
        }
        let mut p = path;
        p.push(Step::First);
        declared_rules(doc, &s["items"], p, out);
        return;
    }
    let rule = [
        "pattern",
        "minLength",
        "maxLength",
        "minimum",
        "maximum",
        "oneOf",
    ]
    .iter()
    .any(|k| !s[*k].is_null() || !resolve(doc, schema)[*k].is_null());
    if rule {
        out.push((path, resolve(doc, schema).clone()));
    }
}

/// A valid item of a list in the program body (the `i`-th, so a long list stays valid: ladder
/// steps and tiers increase), by the list's name.
fn list_item(list: &str, i: usize) -> serde_json::Value {
    use serde_json::json;
    match list {
        "bonus_ladder" => json!({"nth": i + 1, "bonus": "1.00"}),
        "tiers" => json!({"name": format!("t{i}"), "lifetime_top_up": format!("{}", i + 1)}),
        "discount_windows" => json!({"from": "20:00", "to": "23:00", "rate": "0.10"}),
        "stores_allow" | "stores_deny" => json!(format!("s{i}")),
        other => panic!("the program body's list {other} has no item to probe with; add one"),
    }
}

/// A valid program body with `value` at `path`: containers on the way are made valid (a list
/// holds one valid item; a ladder step carries `bonus` or `rate`, not both).
fn program_with(path: &[Step], value: serde_json::Value) -> serde_json::Value {
    use serde_json::json;
    let mut body = json!({"id": "probe", "currency": "CNY"});
    let mut at = &mut body;
    let mut list = "";
    for (i, step) in path.iter().enumerate() {
        let last = i + 1 == path.len();
        match step {
            Step::Key(k) => {
                if last {
                    at[k.as_str()] = value;
                    if list == "bonus_ladder" && (k == "bonus" || k == "rate") {
                        let other = if k == "bonus" { "rate" } else { "bonus" };
                        at.as_object_mut().unwrap().remove(other);
                    }
                    return body;
                }
                if at[k.as_str()].is_null() {
                    at[k.as_str()] = if matches!(path.get(i + 1), Some(Step::First)) {
                        json!([])
                    } else {
                        json!({})
                    };
                }
                list = k.as_str();
                at = &mut at[k.as_str()];
            }
            Step::First => {
                let item = if last {
                    value.clone()
                } else {
                    list_item(list, 0)
                };
                let arr = at.as_array_mut().unwrap();
                arr.clear();
                arr.push(item);
                if last {
                    return body;
                }
                at = &mut arr[0];
            }
        }
    }
    unreachable!("an empty path")
}

/// Values to try on the program body's fields, beyond the request bodies' ones: currencies,
/// offsets, spend orders, rates on both sides of each ceiling and of six decimals, times,
/// tier names by characters, integers around every bound.
fn program_candidates() -> Vec<serde_json::Value> {
    use serde_json::json;
    let mut v: Vec<serde_json::Value> = string_candidates().into_iter().map(|s| json!(s)).collect();
    for s in [
        "CNY",
        "cny",
        "USD",
        "Z",
        "+08:00",
        "-05:30",
        "+14:00",
        "+14:01",
        "-14:00",
        "+8:00",
        "08:00",
        "+08:60",
        "proportional",
        "bonus_first",
        "principal_first",
        "Proportional",
        "0.10",
        "0.123456",
        "0.1234560",
        "0.1234567",
        "1.000000",
        "1.000001",
        "1.5",
        "10",
        "10.0",
        "10.000001",
        "11",
        "999.999999",
        "1000",
        "1000.0",
        "1000.000001",
        "1001",
        "00:00",
        "09:30",
        "23:59",
        "24:00",
        "24:01",
        "25:00",
        "9:30",
        "12:60",
        "+5",
        "+1000000000",
        "1000000000",
        "1000000001",
        "0.000",
        "-0",
        "-0.00",
    ] {
        v.push(json!(s));
    }
    v.push(json!(format!("0.1{}", "0".repeat(37))));
    v.push(json!(format!("{}1", "0".repeat(39))));
    v.push(json!(format!("{}1", "0".repeat(40))));
    for n in [31, 32, 33] {
        v.push(json!("t".repeat(n)));
        v.push(json!("店".repeat(n)));
    }
    for n in [
        -1i64,
        0,
        1,
        2,
        60,
        36_500,
        36_501,
        1_000_000_000,
        1_000_000_001,
        4_294_967_295,
        4_294_967_296,
    ] {
        v.push(json!(n));
    }
    v
}

/// Walks the body of `POST /v1/programs` as the document declares it: every field, list and
/// list item that declares a rule is probed with values on both sides of it (lists at their
/// longest and one item longer); a body the document calls invalid at that place is refused
/// `400` naming it, and one it calls valid is never refused for it.
#[test]
fn every_declared_program_body_constraint_holds_at_the_server() {
    let s = Server::start(svault_bin!(), &[]);
    let doc = s.req("GET", "/openapi.json").send().json();
    let body_schema = &doc["paths"]["/v1/programs"]["post"]["requestBody"]["content"]
        ["application/json"]["schema"];
    let mut rules = Vec::new();
    declared_rules(&doc, body_schema, Vec::new(), &mut rules);
    let mut n = 0u64;
    let mut probe = |path: &[Step], value: serde_json::Value, what: &str| {
        let body = program_with(path, value);
        let ok = satisfies(&doc, body_schema, &body);
        n += 1;
        let r = s
            .req("POST", "/v1/programs")
            .header("Idempotency-Key", &format!("probe-{n}"))
            .json(body)
            .send();
        let field = field_name(path);
        let refused_as_it = r.status == 400 && r.json()["field"].as_str() == Some(field.as_str());
        assert_eq!(
            refused_as_it,
            !ok,
            "{field}={what} is {} by the document, but the server answered {} {}",
            if ok { "valid" } else { "invalid" },
            r.status,
            r.body
        );
        if ok {
            assert_eq!(r.status, 200, "{field}={what}: {}", r.body);
        }
    };
    let candidates = program_candidates();
    let mut probed = Vec::new();
    for (path, schema) in &rules {
        let s = non_null(&doc, schema);
        if let Some(max) = s["maxItems"].as_u64() {
            let list = match path.last() {
                Some(Step::Key(k)) => k.clone(),
                _ => panic!("a list inside a list"),
            };
            for len in [max, max + 1] {
                let items: Vec<serde_json::Value> =
                    (0..len as usize).map(|i| list_item(&list, i)).collect();
                probe(
                    path,
                    serde_json::Value::Array(items),
                    &format!("{len} items"),
                );
            }
        } else {
            for value in &candidates {
                probe(path, value.clone(), &value.to_string());
            }
        }
        probed.push(field_name(path));
    }
    for want in [
        "id",
        "currency",
        "utc_offset",
        "top_up.min",
        "bonus_ladder",
        "bonus_ladder[0].nth",
        "bonus_ladder[0].rate",
        "bonus_expiry_days",
        "spend_order",
        "points.earn_per_unit",
        "points.redeem_rate",
        "tiers[0].name",
        "tiers[0].lifetime_top_up",
        "tiers[0].discount",
        "discount_windows[0].to",
        "velocity.max_spends_per_minute",
        "refund_lock_days",
        "reminders.bonus_expiring_days",
        "spend.max_daily_count",
        "spend.stores_allow",
        "spend.stores_deny[0]",
    ] {
        assert!(
            probed.iter().any(|p| p == want),
            "the document declares no rule on the program's {want}: {probed:?}"
        );
    }
}
