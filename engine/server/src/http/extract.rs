//! Extractors that turn every bad input into an [`ApiError`] (JSON), never a plain-text rejection.
//!
//! Why custom: axum's `Json`, `Path` and `Query` rejections answer in plain text with their own
//! codes (415, 422); gateways expect `400 {"error":"invalid_request","field":...}` for all.

use super::error::ApiError;
use crate::auth::Caller;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;
use svault_core::command::CardId;

pub use svault_core::rules::{check_idempotency_key, IDEMPOTENCY_KEY_LEN_MAX};

/// How long a request's body may take to arrive after its head (inserted into every request by
/// [`super::serve`]; without it, as in unit tests of the router, a body has no deadline).
#[derive(Debug, Clone, Copy)]
pub struct BodyDeadline(pub std::time::Duration);

/// A JSON body decoded with `deny_unknown_fields` types; an empty body reads as `{}`.
pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let content_type = req
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .map(|v| v.to_str().unwrap_or("(not visible ASCII)").to_string());
        if let Some(ct) = &content_type {
            if !is_json(ct) {
                return Err(ApiError::unsupported_media_type(ct));
            }
        }
        let deadline = req.extensions().get::<BodyDeadline>().map(|d| d.0);
        let read = Bytes::from_request(req, state);
        let read = match deadline {
            Some(limit) => match tokio::time::timeout(limit, read).await {
                Ok(read) => read,
                Err(_) => return Err(ApiError::request_timeout(limit)),
            },
            None => read.await,
        };
        let bytes = match read {
            Ok(b) => b,
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                return Err(ApiError::too_large(super::BODY_LIMIT_BYTES))
            }
            Err(rejection) => return Err(ApiError::invalid_body(rejection.body_text())),
        };
        // A call without a body (void, freeze) may omit the header; a body needs it.
        if content_type.is_none() && !bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(ApiError::unsupported_media_type("(none)"));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// `application/json`, with parameters (`; charset=utf-8`) or not, in any letter case.
fn is_json(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    essence.eq_ignore_ascii_case("application/json")
}

/// Decodes a JSON body, naming the field at fault in the error.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        bytes
    };
    // serde would read a struct from an array too; the API takes objects only.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::invalid_body("the body is a JSON object"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = match serde_path_to_error::deserialize(&mut de) {
        Ok(v) => v,
        Err(err) => return Err(json_error(err)),
    };
    de.end()
        .map_err(|e| ApiError::invalid_body(format!("malformed JSON: {e}")))?;
    Ok(value)
}

fn json_error(err: serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = err.path().to_string();
    let inner = err.into_inner();
    let msg = inner.to_string();
    if inner.is_syntax() || inner.is_eof() {
        return ApiError::invalid_body(format!("malformed JSON: {msg}"));
    }
    // serde names unknown and missing fields inside backticks: "unknown field `foo`, expected ...".
    let named = ["unknown field `", "missing field `"]
        .iter()
        .find_map(|prefix| msg.strip_prefix(prefix))
        .and_then(|rest| rest.split('`').next());
    let field = match (named, path.as_str()) {
        (Some(name), "." | "") => name.to_string(),
        (Some(name), p) if p == name || p.ends_with(&format!(".{name}")) => p.to_string(),
        (Some(name), p) => format!("{p}.{name}"),
        (None, "." | "") => "body".to_string(),
        (None, p) => p.to_string(),
    };
    ApiError::invalid(field, msg)
}

/// The `Idempotency-Key` header of a mutating call: 1–128 visible ASCII characters.
pub struct IdemKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdemKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let field = "Idempotency-Key";
        let mut values = parts.headers.get_all(field).iter();
        let value = values
            .next()
            .ok_or_else(|| ApiError::invalid(field, "missing Idempotency-Key header"))?;
        if values.next().is_some() {
            // Which one names the request would be a guess (SPEC: 400).
            return Err(ApiError::invalid(
                field,
                "more than one Idempotency-Key header",
            ));
        }
        let key = value
            .to_str()
            .map_err(|_| ApiError::invalid(field, "Idempotency-Key must be visible ASCII"))?;
        check_idempotency_key(key).map_err(|m| ApiError::invalid(field, m))?;
        Ok(IdemKey(key.to_string()))
    }
}

/// The `{id}` path segment, as text (validated by the handler: card id or txn id).
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<String>::from_request_parts(parts, state).await {
            Ok(Path(id)) => Ok(PathId(id)),
            Err(rejection) => Err(ApiError::invalid("id", rejection.body_text())),
        }
    }
}

impl PathId {
    /// The path's card id (1–19 digits) or `400 invalid_request` naming `card_id`.
    pub fn card(&self) -> Result<CardId, ApiError> {
        CardId::parse(&self.0).ok_or_else(|| {
            ApiError::invalid("card_id", "a card id is 1-19 digits, no leading zero")
        })
    }
    /// The path's hold id (`{card}-{seq}`) or `400 invalid_request` naming `hold_id`.
    pub fn hold(&self) -> Result<svault_core::command::TxnId, ApiError> {
        svault_core::command::TxnId::parse(&self.0)
            .ok_or_else(|| ApiError::invalid("hold_id", "a hold id is CARD-SEQ, e.g. 1234-2"))
    }
}

/// The caller, set by the auth middleware; a request that skipped it has no rights.
impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer KEY"))
    }
}

/// Parses a raw query string (`a=1&b=2`) into pairs; no percent-decoding is needed for
/// the numeric parameters this API takes.
pub fn query_pairs(raw: Option<&str>) -> impl Iterator<Item = (&str, &str)> {
    raw.unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| p.split_once('=').unwrap_or((p, "")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        amount: String,
        channel: String,
        inner: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        n: u32,
    }

    fn field_of(json: &str) -> (String, Option<String>) {
        let e = parse_json::<Body>(json.as_bytes()).unwrap_err();
        (e.body.error.to_string(), e.body.field)
    }

    #[test]
    fn json_errors_name_the_field() {
        assert_eq!(
            field_of(r#"{"amount":"1","channel":"x","bogus":1}"#)
                .1
                .as_deref(),
            Some("bogus")
        );
        assert_eq!(field_of(r#"{"amount":"1"}"#).1.as_deref(), Some("channel"));
        assert_eq!(
            field_of(r#"{"amount":1,"channel":"x"}"#).1.as_deref(),
            Some("amount")
        );
        assert_eq!(
            field_of(r#"{"amount":"1","channel":"x","inner":{"n":-1}}"#)
                .1
                .as_deref(),
            Some("inner.n")
        );
        assert_eq!(
            field_of(r#"{"amount":"1","channel":"x","inner":{"m":1}}"#)
                .1
                .as_deref(),
            Some("inner.m")
        );
        assert_eq!(field_of(r#"{"amount":"1","#).1.as_deref(), Some("body"));
        assert_eq!(
            field_of(r#"{"amount":"1","channel":"x"} trailing"#)
                .1
                .as_deref(),
            Some("body")
        );
        assert_eq!(field_of("[1,2]").1.as_deref(), Some("body"));
        assert_eq!(field_of(r#"["1","x",null]"#).1.as_deref(), Some("body"));
        assert_eq!(field_of("").1.as_deref(), Some("amount"));
        assert_eq!(field_of("{}").0, "invalid_request");
    }

    #[test]
    fn json_content_types() {
        assert!(is_json("application/json"));
        assert!(is_json("Application/JSON; charset=utf-8"));
        assert!(!is_json("text/plain"));
        assert!(!is_json("application/x-www-form-urlencoded"));
        assert!(!is_json(""));
    }
}
