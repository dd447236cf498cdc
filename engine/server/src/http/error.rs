//! Error answers of the HTTP API: one JSON shape, never axum's plain-text rejections.
//!
//! Why: gateways branch on `error` and `field`; a 500 or a text body for bad client input
//! would make them guess. Every client mistake maps to a 4xx here.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// The JSON body of an error answer: `{"error":"invalid_request","field":"amount","message":"..."}`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// Machine-readable error: `invalid_request`, `invalid_amount`, `not_found`,
    /// `idempotency_key_reused`, `card_exists`, `unauthorized`, `forbidden`,
    /// `payload_too_large`, `request_timeout`, `unsupported_media_type`, `overloaded`,
    /// `unavailable`.
    pub error: &'static str,
    /// The input at fault, when there is one (`amount`, `Idempotency-Key`, `card_id`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// A human-readable explanation.
    pub message: String,
}

/// An error answer: a status and an [`ErrorBody`].
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// `Retry-After` seconds (overload).
    pub retry_after: Option<u32>,
}

impl ApiError {
    fn new(
        status: StatusCode,
        error: &'static str,
        field: Option<String>,
        message: impl Into<String>,
    ) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error,
                field,
                message: message.into(),
            },
            retry_after: None,
        }
    }
    /// `400 invalid_request` naming the field at fault.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some(field.into()),
            message,
        )
    }
    /// `400 invalid_request` about the body as a whole (malformed JSON).
    pub fn invalid_body(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            Some("body".into()),
            message,
        )
    }
    /// `400 invalid_amount` naming the amount field.
    pub fn invalid_amount(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_amount",
            Some(field.into()),
            message,
        )
    }
    /// `404 not_found`.
    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            None,
            format!("no such {what}"),
        )
    }
    /// `404 not_found` about `field`, saying why it is not there.
    pub fn not_found_because(field: &str, message: &str) -> ApiError {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            Some(field.to_string()),
            message,
        )
    }
    /// `409 idempotency_key_reused`.
    pub fn key_reused() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "idempotency_key_reused",
            Some("Idempotency-Key".into()),
            "this Idempotency-Key was used with a different request",
        )
    }
    /// `409 card_exists`.
    pub fn card_exists() -> ApiError {
        ApiError::new(
            StatusCode::CONFLICT,
            "card_exists",
            Some("card_id".into()),
            "a card with this id exists",
        )
    }
    /// `401 unauthorized`.
    pub fn unauthorized(message: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            Some("Authorization".into()),
            message,
        )
    }
    /// `403 forbidden`.
    pub fn forbidden(message: &str) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", None, message)
    }
    /// `413 payload_too_large`.
    pub fn too_large(limit_bytes: usize) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            Some("body".into()),
            format!("request body above {limit_bytes} bytes"),
        )
    }
    /// `408 request_timeout`: the body did not arrive within `limit` of the request's head (a
    /// body trickled a byte at a time keeps the idle timer alive; this deadline does not move).
    /// The connection is closed after it: the rest of the body may still be on its way.
    pub fn request_timeout(limit: std::time::Duration) -> ApiError {
        ApiError::new(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            Some("body".into()),
            format!("request body not received within {} s", limit.as_secs_f32()),
        )
    }
    /// `415 unsupported_media_type`: a body that is not `application/json`.
    pub fn unsupported_media_type(got: &str) -> ApiError {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            Some("Content-Type".into()),
            format!("bodies are Content-Type: application/json, not {got:?}"),
        )
    }
    /// `503 overloaded` with `Retry-After: 1`.
    pub fn overloaded() -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "overloaded",
            None,
            "overloaded, retry later",
        );
        e.retry_after = Some(1);
        e
    }
    /// `503 unavailable` (log not writable, shutting down).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        let mut e = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            None,
            message,
        );
        e.retry_after = Some(1);
        e
    }
    /// `404` for a path no route serves.
    pub fn no_route() -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", None, "no such path")
    }
    /// `405` for a known path with the wrong method.
    pub fn method_not_allowed() -> ApiError {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            None,
            "method not allowed on this path",
        )
    }
}

impl From<runtime::SubmitError> for ApiError {
    fn from(e: runtime::SubmitError) -> ApiError {
        use runtime::SubmitError;
        match e {
            SubmitError::Overloaded => ApiError::overloaded(),
            SubmitError::Forbidden => {
                ApiError::forbidden("this key may not touch this program's cards")
            }
            SubmitError::Unavailable(m) => ApiError::unavailable(m),
            SubmitError::ShuttingDown => ApiError::unavailable("shutting down"),
            SubmitError::Invalid(i) if matches!(i.field, "amount" | "bonus") => {
                ApiError::invalid_amount(i.field, i.reason)
            }
            SubmitError::Invalid(i) => ApiError::invalid(i.field, i.reason),
            #[allow(unreachable_patterns)]
            other => ApiError::unavailable(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::REQUEST_TIMEOUT {
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use runtime::SubmitError;

    #[test]
    fn engine_errors_map_to_403_and_503_with_retry_after() {
        let over = ApiError::from(SubmitError::Overloaded).into_response();
        assert_eq!(over.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(over.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let down = ApiError::from(SubmitError::Unavailable("disk full".into()));
        assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(down.body.error, "unavailable");
        assert_eq!(
            ApiError::from(SubmitError::ShuttingDown).status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        assert_eq!(
            ApiError::from(SubmitError::Forbidden).status,
            StatusCode::FORBIDDEN
        );
    }
}
