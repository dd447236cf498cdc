//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` blocks, and the
//! handler that serves it. Only this module knows both: the handlers don't know the document.

use super::body::*;
use super::error::ErrorBody;
use super::handlers;
use super::program_doc::ProgramSpecDoc;
use super::render::*;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The whole API.
#[derive(OpenApi)]
#[openapi(
    info(title = "svault", description = "Stored-value card authorization engine: gateway and admin API. \
        Amounts are decimal strings in major units. Every mutating call needs an Idempotency-Key."),
    paths(
        handlers::upsert_program, handlers::open_card, handlers::get_card, handlers::top_up,
        handlers::spend, handlers::hold, handlers::increment, handlers::capture, handlers::void,
        handlers::refund,
        handlers::cash_out, handlers::reversal, handlers::redeem, handlers::grant,
        handlers::freeze, handlers::unfreeze, handlers::close, handlers::transactions,
        handlers::float, handlers::events, handlers::metrics, handlers::healthz, openapi,
    ),
    components(schemas(
        ErrorBody, CardBody, ApprovedBody, DeclinedBody, TxnBody, TxnListBody, FloatLine, FloatBody,
        EventBody, EventsBody, HealthBody, ProgramSpecDoc, OpenCardBody, TopUpBody, SpendBody,
        HoldBody, IncrementBody, CaptureBody, EmptyBody, RefundBody, CashOutBody, ReversalBody, RedeemBody, GrantBody,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

/// This document.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "OpenAPI 3 document", body = Object)))]
pub async fn openapi() -> Response {
    let mut resp = document_json().into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The document as JSON, built once.
pub fn document_json() -> String {
    static DOC: OnceLock<String> = OnceLock::new();
    DOC.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    })
    .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn document_is_openapi_3_with_every_path() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
        for path in super::super::ROUTES {
            assert!(doc["paths"].get(*path).is_some(), "missing {path}");
        }
        let top_up = &doc["paths"]["/v1/cards/{id}/top-ups"]["post"];
        assert!(top_up["responses"].get("402").is_some());
        assert!(top_up["requestBody"].is_object());
    }

    /// Each word field's declared pattern accepts exactly the words the server parses, so the
    /// two cannot drift when a channel, method or reason is added.
    #[test]
    fn every_word_field_declares_exactly_the_words_the_server_takes() {
        use svault_core::command::{CashOutReason, Channel, GrantReason, Method};
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        let words = |all: Vec<&str>| format!("^({})$", all.join("|"));
        let methods = words(Method::ALL.iter().map(|m| m.as_str()).collect());
        for (body, field, want) in [
            (
                "TopUpBody",
                "channel",
                words(Channel::ALL.iter().map(|c| c.as_str()).collect()),
            ),
            ("SpendBody", "method", methods.clone()),
            ("HoldBody", "method", methods),
            (
                "CashOutBody",
                "reason",
                words(CashOutReason::ALL.iter().map(|r| r.as_str()).collect()),
            ),
            (
                "GrantBody",
                "reason",
                words(GrantReason::ALL.iter().map(|r| r.as_str()).collect()),
            ),
        ] {
            let declared = &doc["components"]["schemas"][body]["properties"][field]["pattern"];
            assert_eq!(declared.as_str(), Some(want.as_str()), "{body}.{field}");
        }
    }

    /// The document's store rule is the server's own ([`svault_core::rules::STORE_PATTERN`]).
    #[test]
    fn every_store_field_declares_the_store_rule() {
        let doc: serde_json::Value = serde_json::from_str(&document_json()).unwrap();
        for body in ["SpendBody", "HoldBody"] {
            let store = &doc["components"]["schemas"][body]["properties"]["store"];
            assert_eq!(
                store["pattern"].as_str(),
                Some(svault_core::rules::STORE_PATTERN),
                "{body}"
            );
            assert_eq!(
                store["maxLength"].as_u64(),
                Some(svault_core::rules::STORE_LEN_MAX as u64)
            );
        }
    }
}
