//! One handler per call of SPEC's table. Each parses and validates (extract/body), submits to
//! the engine, and renders (render). The `#[utoipa::path]` blocks are the OpenAPI document.

use super::body::*;
use super::error::{ApiError, ErrorBody};
use super::extract::{query_pairs, IdemKey, JsonBody, PathId};
use super::program_doc::ProgramSpecDoc;
use super::render::*;
use super::AppState;
use crate::auth::Caller;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use svault_core::command::{Command, Query, Request};
use svault_core::outcome::Outcome;
use svault_core::program::{Program, ProgramSpec};
use svault_core::state::QueryAnswer;

/// Answers of a mutating call.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code, clippy::large_enum_variant)]
pub enum MutationResponses {
    /// Approved.
    #[response(status = 200, headers(("Idempotent-Replayed" = String, description = "`true` on a stored answer to a retry")))]
    Approved(ApprovedBody),
    /// Bad input: `invalid_request` or `invalid_amount`, naming the field.
    #[response(status = 400)]
    BadRequest(ErrorBody),
    /// Missing or unknown API key.
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    /// Declined, with one of SPEC's decline codes.
    #[response(status = 402)]
    Declined(DeclinedBody),
    /// The key may not touch this program.
    #[response(status = 403)]
    Forbidden(ErrorBody),
    /// No such card, hold, transaction or program.
    #[response(status = 404)]
    NotFound(ErrorBody),
    /// `idempotency_key_reused` or `card_exists`.
    #[response(status = 409)]
    Conflict(ErrorBody),
    /// Body above 64 KiB.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// Overloaded (with `Retry-After`) or the log cannot be written.
    #[response(status = 503, headers(("Retry-After" = u32)))]
    Unavailable(ErrorBody),
}

/// Answers of a read.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)]
pub enum ReadErrors {
    #[response(status = 400)]
    BadRequest(ErrorBody),
    #[response(status = 401)]
    Unauthorized(ErrorBody),
    #[response(status = 403)]
    Forbidden(ErrorBody),
    #[response(status = 404)]
    NotFound(ErrorBody),
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

async fn submit(app: &AppState, caller: &Caller, key: String, command: Command) -> Response {
    let request = Request {
        idempotency_key: Some(key),
        command,
    };
    match app
        .engine
        .submit_as(request, &caller.scope(), caller.id)
        .await
    {
        Ok(reply) => reply_response(reply, |c| app.metrics.decline(c)),
        Err(e) => ApiError::from(e).into_response(),
    }
}

fn admin_only(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::forbidden("this call needs an admin key"))
    }
}

/// Create or replace a program (admin).
#[utoipa::path(post, path = "/v1/programs", tag = "admin", security(("bearer" = ["admin"])),
    params(("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body(content = ProgramSpecDoc, description = "The program, as SPEC.md spells it"),
    responses(MutationResponses))]
pub async fn upsert_program(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    JsonBody(spec): JsonBody<ProgramSpec>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let program = Program::from_spec(&spec).map_err(|e| ApiError::invalid(e.field, e.reason))?;
    let id = program.id.clone();
    let request = Request {
        idempotency_key: Some(key),
        command: Command::UpsertProgram(program),
    };
    let reply = app
        .engine
        .submit_as(request, &caller.scope(), caller.id)
        .await?;
    Ok(match reply.outcome {
        Outcome::Approved(a) => {
            let mut body = ApprovedBody::from_approval(&a);
            body.program = Some(id);
            let mut resp = Json(body).into_response();
            if reply.replayed {
                resp.headers_mut()
                    .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
            }
            resp
        }
        _ => reply_response(reply, |c| app.metrics.decline(c)),
    })
}

/// Open a card.
#[utoipa::path(post, path = "/v1/cards", tag = "cards",
    params(("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters; also derives the card id when none is given", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = OpenCardBody, responses(MutationResponses))]
pub async fn open_card(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    JsonBody(body): JsonBody<OpenCardBody>,
) -> Result<Response, ApiError> {
    if !caller.may_use_program(&body.program) {
        return Err(ApiError::forbidden(
            "this key may not open cards of this program",
        ));
    }
    let cmd = body.into_command(caller.id, &key)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Balances of a card.
#[utoipa::path(get, path = "/v1/cards/{id}", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$")),
    responses((status = 200, body = CardBody), ReadErrors))]
pub async fn get_card(
    State(app): State<AppState>,
    caller: Caller,
    id: PathId,
) -> Result<Response, ApiError> {
    let card_id = id.card()?;
    match app
        .engine
        .query(Query::Card { card_id }, &caller.scope())
        .await?
    {
        QueryAnswer::Card(Some(view)) => Ok(Json(CardBody::from_view(&view)).into_response()),
        _ => Err(ApiError::not_found("card")),
    }
}

/// Top up: principal plus the ladder bonus.
#[utoipa::path(post, path = "/v1/cards/{id}/top-ups", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = TopUpBody, responses(MutationResponses))]
pub async fn top_up(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<TopUpBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.card()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Spend: authorize and capture at once.
#[utoipa::path(post, path = "/v1/cards/{id}/spends", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = SpendBody, responses(MutationResponses))]
pub async fn spend(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<SpendBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.card()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Hold funds (authorize); answers with `hold_id`.
#[utoipa::path(post, path = "/v1/cards/{id}/holds", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = HoldBody, responses(MutationResponses))]
pub async fn hold(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<HoldBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.card()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Incremental authorization: raise an open hold by `amount` (a merchant amount, discounted
/// at the hold's rate), checked like a spend of that amount at the hold's store; a declined
/// increment leaves the hold as it was. `ttl_seconds` extends the hold to that long from now.
#[utoipa::path(post, path = "/v1/holds/{id}/increment", tag = "holds",
    params(("id" = String, Path, description = "hold id, CARD-SEQ", pattern = r"^[1-9][0-9]{0,18}-(?:[0-9]{1,9}|[0-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = IncrementBody, responses(MutationResponses))]
pub async fn increment(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<IncrementBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.hold()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Capture all or part of a hold; the rest is released.
#[utoipa::path(post, path = "/v1/holds/{id}/capture", tag = "holds",
    params(("id" = String, Path, description = "hold id, CARD-SEQ", pattern = r"^[1-9][0-9]{0,18}-(?:[0-9]{1,9}|[0-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = CaptureBody, responses(MutationResponses))]
pub async fn capture(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<CaptureBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.hold()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Release a hold.
#[utoipa::path(post, path = "/v1/holds/{id}/void", tag = "holds",
    params(("id" = String, Path, description = "hold id, CARD-SEQ", pattern = r"^[1-9][0-9]{0,18}-(?:[0-9]{1,9}|[0-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body(content = Option<EmptyBody>), responses(MutationResponses))]
pub async fn void(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(_empty): JsonBody<EmptyBody>,
) -> Result<Response, ApiError> {
    let cmd = Command::Void {
        hold_id: id.hold()?,
    };
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Refund a spend or capture, in the proportions it took.
#[utoipa::path(post, path = "/v1/refunds", tag = "cards",
    params(("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = RefundBody, responses(MutationResponses))]
pub async fn refund(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    JsonBody(body): JsonBody<RefundBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command()?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Pay out principal; the bonus is forfeited.
#[utoipa::path(post, path = "/v1/cards/{id}/cash-out", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = CashOutBody, responses(MutationResponses))]
pub async fn cash_out(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<CashOutBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.card()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Gateway timeout reversal of the caller's own request on this card, named by the
/// `Idempotency-Key` it carried: undone if it was applied, declined `reversed` if it comes later.
/// Another caller's request with the same key is out of reach (keys are per caller).
#[utoipa::path(post, path = "/v1/cards/{id}/reversals", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = ReversalBody, responses(MutationResponses))]
pub async fn reversal(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<ReversalBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.card()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Turn points into bonus.
#[utoipa::path(post, path = "/v1/cards/{id}/points/redeem", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = RedeemBody, responses(MutationResponses))]
pub async fn redeem(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<RedeemBody>,
) -> Result<Response, ApiError> {
    let cmd = body.into_command(id.card()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Grant bonus and/or points (admin).
#[utoipa::path(post, path = "/v1/cards/{id}/grants", tag = "admin", security(("bearer" = ["admin"])),
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body = GrantBody, responses(MutationResponses))]
pub async fn grant(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(body): JsonBody<GrantBody>,
) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let cmd = body.into_command(id.card()?)?;
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Freeze a card: spends, holds and top-ups are declined `card_frozen`.
#[utoipa::path(post, path = "/v1/cards/{id}/freeze", tag = "lifecycle",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body(content = Option<EmptyBody>), responses(MutationResponses))]
pub async fn freeze(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(_empty): JsonBody<EmptyBody>,
) -> Result<Response, ApiError> {
    let cmd = Command::Freeze {
        card_id: id.card()?,
    };
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Unfreeze a card.
#[utoipa::path(post, path = "/v1/cards/{id}/unfreeze", tag = "lifecycle",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body(content = Option<EmptyBody>), responses(MutationResponses))]
pub async fn unfreeze(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(_empty): JsonBody<EmptyBody>,
) -> Result<Response, ApiError> {
    let cmd = Command::Unfreeze {
        card_id: id.card()?,
    };
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Close a card for good.
#[utoipa::path(post, path = "/v1/cards/{id}/close", tag = "lifecycle",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("Idempotency-Key" = String, Header, description = "1-128 visible ASCII characters", min_length = 1, max_length = 128, pattern = r"^[!-~]{1,128}$")),
    request_body(content = Option<EmptyBody>), responses(MutationResponses))]
pub async fn close(
    State(app): State<AppState>,
    caller: Caller,
    IdemKey(key): IdemKey,
    id: PathId,
    JsonBody(_empty): JsonBody<EmptyBody>,
) -> Result<Response, ApiError> {
    let cmd = Command::Close {
        card_id: id.card()?,
    };
    Ok(submit(&app, &caller, key, cmd).await)
}

/// Default `limit` of list calls.
pub const LIST_LIMIT_DEFAULT: u32 = 50;
/// Largest `limit` of list calls: a larger one is clamped to it, not refused.
pub const LIST_LIMIT_MAX: u32 = 1000;

fn parse_u64(field: &str, v: &str) -> Result<u64, ApiError> {
    if v.is_empty() || v.len() > 20 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid(
            field,
            format!("{field} is a non-negative integer"),
        ));
    }
    v.parse()
        .map_err(|_| ApiError::invalid(field, format!("{field} is too large")))
}

fn parse_limit(v: &str) -> Result<u32, ApiError> {
    let n = parse_u64("limit", v)?;
    if n == 0 {
        return Err(ApiError::invalid("limit", "limit is at least 1"));
    }
    Ok(n.min(u64::from(LIST_LIMIT_MAX)) as u32)
}

/// A card's history, newest first, by pages: `before` is the `txn_id` of the last line of the
/// previous page (`next_before` of its answer).
#[utoipa::path(get, path = "/v1/cards/{id}/transactions", tag = "cards",
    params(("id" = String, Path, description = "card id: 1-19 digits, no leading zero", pattern = r"^[1-9][0-9]{0,18}$"), ("limit" = Option<u64>, Query, minimum = 1, description = "at least 1; default 50, more than 1000 counts as 1000"),
        ("before" = Option<String>, Query, description = "a txn_id of this card (CARD-SEQ): only older lines")),
    responses((status = 200, body = TxnListBody), ReadErrors))]
pub async fn transactions(
    State(app): State<AppState>,
    caller: Caller,
    id: PathId,
    RawQuery(q): RawQuery,
) -> Result<Response, ApiError> {
    let card_id = id.card()?;
    let mut limit = LIST_LIMIT_DEFAULT;
    let mut before = None;
    for (k, v) in query_pairs(q.as_deref()) {
        match k {
            "limit" => limit = parse_limit(v)?,
            "before" => {
                let t = svault_core::command::TxnId::parse(v)
                    .ok_or_else(|| ApiError::invalid("before", "a txn_id such as 42-7"))?;
                if t.card != card_id {
                    return Err(ApiError::invalid(
                        "before",
                        "before names a transaction of another card",
                    ));
                }
                before = Some(t.seq);
            }
            _ => {}
        }
    }
    match app
        .engine
        .query(
            Query::Transactions {
                card_id,
                limit,
                before,
            },
            &caller.scope(),
        )
        .await?
    {
        QueryAnswer::Transactions(Some(list)) => {
            let c = svault_core::money::Currency::Cny;
            // A full page may have more behind it; the cursor is its last line.
            let next_before = list
                .last()
                .filter(|r| list.len() == limit as usize && r.txn_id.seq > 1)
                .map(|r| r.txn_id.to_string());
            let body = TxnListBody {
                card_id: card_id.to_string(),
                transactions: list.iter().map(|r| TxnBody::from_record(r, c)).collect(),
                next_before,
            };
            Ok(Json(body).into_response())
        }
        _ => Err(ApiError::not_found("card")),
    }
}

/// The fund pool: outstanding principal, bonus, held, per program and total.
#[utoipa::path(get, path = "/v1/float", tag = "finance", responses((status = 200, body = FloatBody), ReadErrors))]
pub async fn float(State(app): State<AppState>, caller: Caller) -> Json<FloatBody> {
    let mut total = svault_core::outcome::FloatTotals::default();
    let mut programs = Vec::new();
    let mut lines = app.engine.float();
    lines.sort_by(|a, b| a.0.cmp(&b.0));
    for (program, t) in lines {
        if !caller.may_use_program(&program) {
            continue;
        }
        total.principal += t.principal;
        total.bonus += t.bonus;
        total.held += t.held;
        total.cards += t.cards;
        programs.push(FloatLine::new(Some(program), &t));
    }
    Json(FloatBody {
        currency: "CNY".into(),
        programs,
        total: FloatLine::new(None, &total),
    })
}

/// Reminders, expiries and anomalies, as a log read from `after`.
#[utoipa::path(get, path = "/v1/events", tag = "finance",
    params(("after" = Option<u64>, Query, description = "last seq seen, default 0"),
           ("limit" = Option<u64>, Query, minimum = 1, description = "at least 1; default 50, more than 1000 counts as 1000")),
    responses((status = 200, body = EventsBody), ReadErrors))]
pub async fn events(
    State(app): State<AppState>,
    caller: Caller,
    RawQuery(q): RawQuery,
) -> Result<Json<EventsBody>, ApiError> {
    let (mut after, mut limit) = (0u64, LIST_LIMIT_DEFAULT);
    for (k, v) in query_pairs(q.as_deref()) {
        match k {
            "after" => after = parse_u64("after", v)?,
            "limit" => limit = parse_limit(v)?,
            _ => {}
        }
    }
    let found = app.engine.events(after, limit as usize).await;
    let next_after = found.last().map_or(after, |(seq, _)| *seq);
    let mut events = Vec::with_capacity(found.len());
    for (seq, e) in &found {
        if !caller.is_admin() {
            // Gateway keys see only their programs' cards.
            let visible = matches!(
                app.engine
                    .query(Query::Card { card_id: e.card_id }, &caller.scope())
                    .await,
                Ok(QueryAnswer::Card(Some(_)))
            );
            if !visible {
                continue;
            }
        }
        events.push(EventBody::new(*seq, e));
    }
    Ok(Json(EventsBody { events, next_after }))
}

/// Prometheus text: requests by route and status, declines by code, the float, the runtime.
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = ["admin"])),
    responses((status = 200, description = "Prometheus text exposition", body = String, content_type = "text/plain"), ReadErrors))]
pub async fn metrics(State(app): State<AppState>, caller: Caller) -> Result<Response, ApiError> {
    admin_only(&caller)?;
    let mut out = String::with_capacity(8192);
    app.metrics.render(&mut out);
    out.push_str("# HELP svault_float_minor_units Outstanding money by program and part, in minor units (fen).\n");
    out.push_str("# TYPE svault_float_minor_units gauge\n");
    for (program, t) in app.engine.float() {
        for (part, a) in [
            ("principal", t.principal),
            ("bonus", t.bonus),
            ("held", t.held),
        ] {
            out.push_str(&format!(
                "svault_float_minor_units{{program=\"{program}\",part=\"{part}\"}} {}\n",
                a.0
            ));
        }
        out.push_str(&format!(
            "svault_cards{{program=\"{program}\"}} {}\n",
            t.cards
        ));
    }
    app.engine.render_metrics(&mut out);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response())
}

/// Liveness: answers without a key.
#[utoipa::path(get, path = "/healthz", tag = "operations", security(()),
    responses((status = 200, body = HealthBody)))]
pub async fn healthz() -> Json<HealthBody> {
    Json(HealthBody {
        status: "ok".into(),
    })
}

/// `404` for unknown paths, as JSON.
pub async fn no_route() -> ApiError {
    ApiError::no_route()
}

/// `405` for a known path with the wrong method, as JSON.
pub async fn wrong_method() -> ApiError {
    ApiError::method_not_allowed()
}
