//! The OpenAPI 3 document, generated from the handlers' `#[utoipa::path]` blocks.

use super::body::*;
use super::error::ErrorBody;
use super::handlers;
use super::render::*;
use serde::Serialize;
use std::sync::OnceLock;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi, ToSchema};

/// The body of `POST /v1/programs` as SPEC.md spells it (documentation of `ProgramSpec`).
/// Decimals are strings; every field but `id` and `currency` is optional.
#[derive(Serialize, ToSchema)]
#[allow(dead_code)]
pub struct ProgramSpecDoc {
    #[schema(example = "coffee")]
    pub id: String,
    #[schema(example = "CNY")]
    pub currency: String,
    #[schema(example = "+08:00")]
    pub utc_offset: Option<String>,
    /// `{min, max_single, max_balance, max_balance_anonymous, max_daily}` as decimal strings.
    #[schema(value_type = Option<Object>)]
    pub top_up: Option<serde_json::Value>,
    /// `[{"nth":1,"min":"100","bonus":"15"},{"nth":2,"min":"100","rate":"0.10"}]`
    #[schema(value_type = Option<Vec<Object>>)]
    pub bonus_ladder: Option<serde_json::Value>,
    pub bonus_expiry_days: Option<u32>,
    /// `proportional` | `bonus_first` | `principal_first`
    pub spend_order: Option<String>,
    /// `{earn_per_unit, redeem_rate}`
    #[schema(value_type = Option<Object>)]
    pub points: Option<serde_json::Value>,
    /// `[{"name":"silver","lifetime_top_up":"1000","points_multiplier":"1.5","discount":"0.02"}]`
    #[schema(value_type = Option<Vec<Object>>)]
    pub tiers: Option<serde_json::Value>,
    /// `[{"from":"20:00","to":"24:00","rate":"0.10"}]`
    #[schema(value_type = Option<Vec<Object>>)]
    pub discount_windows: Option<serde_json::Value>,
    /// `{max_spends_per_minute, max_daily_spend}`
    #[schema(value_type = Option<Object>)]
    pub velocity: Option<serde_json::Value>,
    pub refund_lock_days: Option<u32>,
    /// `{low_balance, bonus_expiring_days}`
    #[schema(value_type = Option<Object>)]
    pub reminders: Option<serde_json::Value>,
}

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
        handlers::spend, handlers::hold, handlers::capture, handlers::void, handlers::refund,
        handlers::cash_out, handlers::reversal, handlers::redeem, handlers::grant,
        handlers::freeze, handlers::unfreeze, handlers::close, handlers::transactions,
        handlers::float, handlers::events, handlers::metrics, handlers::healthz, handlers::openapi,
    ),
    components(schemas(
        ErrorBody, CardBody, ApprovedBody, DeclinedBody, TxnBody, TxnListBody, FloatLine, FloatBody,
        EventBody, EventsBody, HealthBody, ProgramSpecDoc, OpenCardBody, TopUpBody, SpendBody,
        HoldBody, CaptureBody, EmptyBody, RefundBody, CashOutBody, ReversalBody, RedeemBody, GrantBody,
    )),
    modifiers(&BearerAuth),
    security(("bearer" = [])),
)]
pub struct ApiDoc;

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
}
