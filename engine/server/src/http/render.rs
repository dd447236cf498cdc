//! Response bodies: outcomes of the state machine as SPEC's JSON, money at full scale.

use super::error::ApiError;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use svault_core::command::Millis;
use svault_core::money::{Amount, Currency};
use svault_core::outcome::{
    Approval, CardView, DeclineCode, Event, EventKind, FloatTotals, NotFoundKind, Outcome,
    Rejection, Reply, TxnKind, TxnRecord,
};
use utoipa::ToSchema;

/// `Idempotent-Replayed: true` marks a stored answer to an earlier request with the same key.
pub const REPLAYED_HEADER: HeaderName = HeaderName::from_static("idempotent-replayed");

fn money(c: Currency, a: Amount) -> String {
    c.format(a)
}

/// The card view of SPEC.md.
#[derive(Debug, Serialize, ToSchema)]
pub struct CardBody {
    #[schema(example = "6200000000000001")]
    pub card_id: String,
    #[schema(example = "demo")]
    pub program: String,
    #[schema(example = "100.00")]
    pub principal: String,
    #[schema(example = "15.00")]
    pub bonus: String,
    #[schema(example = "0.00")]
    pub held: String,
    /// principal + bonus − held
    #[schema(example = "115.00")]
    pub available: String,
    pub points: u64,
    /// `null` below the first tier.
    pub tier: Option<String>,
    /// `active` | `frozen` | `closed`
    #[schema(value_type = String, example = "active")]
    pub status: &'static str,
    /// Lifetime principal paid in, at face value.
    pub paid_in: String,
    /// Lifetime bonus given.
    pub bonus_given: String,
    /// Lifetime value consumed at face value.
    pub consumed: String,
}

impl CardBody {
    /// The card as SPEC's JSON: every figure at its currency's full scale (`"115.00"`), the id as
    /// a string so 19-digit ids survive JSON number parsing.
    pub fn from_view(v: &CardView) -> CardBody {
        let c = v.currency;
        CardBody {
            card_id: v.card_id.to_string(),
            program: v.program.to_string(),
            principal: money(c, v.principal),
            bonus: money(c, v.bonus),
            held: money(c, v.held),
            available: money(c, v.available),
            points: v.points,
            tier: v.tier.as_deref().map(str::to_owned),
            status: v.status.as_str(),
            paid_in: money(c, v.paid_in),
            bonus_given: money(c, v.bonus_given),
            consumed: money(c, v.consumed),
        }
    }
}

/// `200`: an approved operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovedBody {
    #[schema(value_type = String, example = "approved")]
    pub status: &'static str,
    /// `open`, `top_up`, `spend`, `hold`, `capture`, `void`, `refund`, `cash_out`, `reversal`,
    /// `redeem`, `grant`, `freeze`, `unfreeze`, `close`, `program`.
    #[schema(value_type = String, example = "top_up")]
    pub kind: &'static str,
    #[schema(example = "6200000000000001-2")]
    pub txn_id: Option<String>,
    /// For holds: the id to increment, capture or void; for increments: the hold raised.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    /// Spends and holds: `true` when approved for less than requested (`allow_partial`, funds
    /// short): `amount` is what was approved, `requested` what was asked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<bool>,
    /// For partial approvals: the amount the request asked for (before discount).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "100.00")]
    pub requested: Option<String>,
    /// What was charged or credited: after discount for spends, holds and captures; the cash
    /// paid out for cash-outs; for a reversal the signed change to the card (negative when it
    /// takes back a top-up, refund, redemption or grant: a reversed 100.00 top-up with 15.00
    /// bonus is `-115.00`).
    #[schema(example = "100.00")]
    pub amount: String,
    /// The part of `amount` in principal (taken by a spend, credited by a top-up or refund,
    /// removed by a cash-out; signed for reversals: `-100.00` for a reversed top-up).
    pub principal: String,
    /// The part in bonus, likewise; for top-ups the ladder bonus credited.
    pub bonus: String,
    /// Bonus credited by the ladder, a grant or a redemption.
    pub bonus_granted: String,
    /// Discount given on a spend or hold: the tier's or the time window's, whichever is larger
    /// (they do not stack).
    pub discount: String,
    /// Which discount `discount` is: `tier` or `window`; absent without a discount.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "window")]
    pub discount_source: Option<&'static str>,
    /// Points added to the card: earned by a spend or capture, granted, or given back by a
    /// reversal (of a refund or redemption).
    pub points_earned: u64,
    /// Points taken from the card: redeemed, or taken back by a refund or a reversal (of a
    /// spend, capture or grant).
    pub points_spent: u64,
    /// Released back to the card's available balance (void, partial capture, expired hold).
    pub released: String,
    /// Bonus dropped from the card (cash-out, close; expired bonus in a tick). Bonus only.
    pub forfeited: String,
    /// Principal a cash-out took off the card without paying it out (for `consumer`, the value
    /// the bonus bought: principal paid in − consumed). `forfeited` + `retained` + `amount` is
    /// what left the card.
    pub retained: String,
    /// For reversals: the transaction undone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reversed_txn: Option<String>,
    /// For holds: when the hold expires (RFC 3339, UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// For program changes: the program id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// The card after the operation.
    pub card: Option<CardBody>,
}

impl ApprovedBody {
    /// An approval as SPEC's JSON. A top-up's `bonus` shows the ladder bonus credited; `program`
    /// is left `None` for the program handler to fill.
    pub fn from_approval(a: &Approval) -> ApprovedBody {
        let c = a.card.as_ref().map_or(Currency::Cny, |v| v.currency);
        let txn = a.txn_id.map(|t| t.to_string());
        // A top-up credits principal and the ladder bonus: show both, whichever field holds it.
        let bonus = if a.kind == TxnKind::TopUp {
            a.bonus.max(a.bonus_granted)
        } else {
            a.bonus
        };
        ApprovedBody {
            status: "approved",
            kind: a.kind.as_str(),
            hold_id: match a.kind {
                TxnKind::Hold => txn.clone(),
                TxnKind::Increment => a.hold.map(|t| t.to_string()),
                _ => None,
            },
            partial: matches!(a.kind, TxnKind::Spend | TxnKind::Hold).then_some(a.partial),
            requested: a.requested.map(|r| money(c, r)),
            txn_id: txn,
            amount: money(c, a.amount),
            principal: money(c, a.principal),
            bonus: money(c, bonus),
            bonus_granted: money(c, a.bonus_granted),
            discount: money(c, a.discount),
            discount_source: a.discount_source.map(|d| d.as_str()),
            points_earned: a.points_earned,
            points_spent: a.points_spent,
            released: money(c, a.released),
            forfeited: money(c, a.forfeited),
            retained: money(c, a.retained),
            reversed_txn: a.reversed_txn.map(|t| t.to_string()),
            expires_at: a.expires_at.map(rfc3339),
            program: None,
            card: a.card.as_ref().map(CardBody::from_view),
        }
    }
}

/// `402`: a decline.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeclinedBody {
    #[schema(value_type = String, example = "declined")]
    pub status: &'static str,
    /// One of SPEC's decline codes (`insufficient_funds`, `card_frozen`, `card_closed`,
    /// `over_single_top_up`, `over_balance_cap`, `over_daily_top_up`, `velocity_limit`,
    /// `hold_expired`, `over_capture`, `over_refund`, `refund_locked`, `reversed`,
    /// `insufficient_points`, `store_not_allowed`, `over_single_spend`, `over_daily_count`), or `over_amount_limit`: the request would take a balance, a
    /// lifetime total (`paid_in`, `bonus_given`, `consumed`, today's top-ups or spends), the
    /// points or the program's float past 10^12 (SPEC "Money": every figure is bounded and
    /// checked); it is checked last, just before the card would change, and nothing changed.
    #[schema(value_type = String, example = "insufficient_funds")]
    pub code: &'static str,
    /// The card as it is (unchanged).
    pub card: Option<CardBody>,
}

/// What to call a missing thing in a `404`.
pub fn not_found_word(k: NotFoundKind) -> &'static str {
    match k {
        NotFoundKind::Card => "card",
        NotFoundKind::Hold => "hold",
        NotFoundKind::Txn => "transaction",
        NotFoundKind::Program => "program",
        NotFoundKind::IdempotencyKey => "request with this idempotency key",
        NotFoundKind::TrimmedTxn => "transaction in the card's history",
    }
}

/// Maps a state-machine reply to an HTTP response; `on_decline` counts declines for metrics.
pub fn reply_response(reply: Reply, on_decline: impl FnOnce(DeclineCode)) -> Response {
    let mut resp = match reply.outcome {
        Outcome::Approved(a) => {
            (StatusCode::OK, axum::Json(ApprovedBody::from_approval(&a))).into_response()
        }
        Outcome::Declined { code, card } => {
            on_decline(code);
            let body = DeclinedBody {
                status: "declined",
                code: code.as_str(),
                card: card.as_ref().map(CardBody::from_view),
            };
            (StatusCode::PAYMENT_REQUIRED, axum::Json(body)).into_response()
        }
        Outcome::Rejected(r) => rejection_error(r).into_response(),
    };
    if reply.replayed {
        resp.headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
    }
    resp
}

/// A state-machine rejection as an API error.
pub fn rejection_error(r: Rejection) -> ApiError {
    match r {
        Rejection::NotFound {
            what: NotFoundKind::TrimmedTxn,
        } => ApiError::not_found_because(
            "txn_id",
            "the transaction was trimmed from the card's in-memory history (older than the \
             idempotency key TTL, beyond the newest entries kept per card; see README); it is \
             in the log and reports, but can no longer be refunded",
        ),
        Rejection::NotFound { what } => ApiError::not_found(not_found_word(what)),
        Rejection::IdempotencyKeyReused => ApiError::key_reused(),
        Rejection::CardExists => ApiError::card_exists(),
        Rejection::Invalid { field, reason } => ApiError::invalid(field, reason),
    }
}

/// One line of `GET /v1/cards/{id}/transactions`.
#[derive(Debug, Serialize, ToSchema)]
pub struct TxnBody {
    pub txn_id: String,
    #[schema(value_type = String, example = "spend")]
    pub kind: &'static str,
    /// RFC 3339, UTC.
    pub at: String,
    /// As in an approval: signed for reversals that take money back.
    pub amount: String,
    pub principal: String,
    pub bonus: String,
    /// Top-ups (and their reversals): `wechat` | `alipay` | `unionpay` | `cash`.
    #[schema(value_type = Option<String>, example = "wechat")]
    pub channel: Option<&'static str>,
    /// Spends and holds, and what refers to them (captures, increments, voids, refunds):
    /// `qr` | `card` | `voice`.
    #[schema(value_type = Option<String>, example = "qr")]
    pub method: Option<&'static str>,
    /// The store of the spend or hold (or of the one this line refers to).
    pub store: Option<String>,
    /// Discount given (spends, holds, increments).
    pub discount: String,
    /// Points moved, signed: earned or granted (+), redeemed or taken back (−).
    pub points: i64,
    /// For captures, increments, voids, expiries, refunds and reversals: the transaction
    /// they refer to.
    pub refers_to: Option<String>,
    /// Grants: `birthday` | `referral` | `compensation` | `campaign`; cash-outs: `consumer` |
    /// `merchant_fault` | `cooling_off`.
    #[schema(value_type = Option<String>)]
    pub reason: Option<&'static str>,
    /// A spend or hold approved for less than requested.
    pub partial: bool,
}

/// `GET /v1/cards/{id}/transactions`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TxnListBody {
    pub card_id: String,
    pub transactions: Vec<TxnBody>,
    /// The `before` cursor of the next page; `null` when this page reaches the oldest line the
    /// card still has.
    pub next_before: Option<String>,
}

impl TxnBody {
    /// One history line as JSON; `c` is the card's currency, which the record does not carry.
    pub fn from_record(r: &TxnRecord, c: Currency) -> TxnBody {
        TxnBody {
            txn_id: r.txn_id.to_string(),
            kind: r.kind.as_str(),
            at: rfc3339(r.at),
            amount: money(c, r.amount),
            principal: money(c, r.principal),
            bonus: money(c, r.bonus),
            channel: r.channel.map(|x| x.as_str()),
            method: r.method.map(|x| x.as_str()),
            store: r.store.as_deref().map(str::to_owned),
            discount: money(c, r.discount),
            points: r.points,
            refers_to: r.refers_to.map(|t| t.to_string()),
            reason: r.reason.map(|x| x.as_str()),
            partial: r.partial,
        }
    }
}

/// The fund pool of one program or of all.
#[derive(Debug, Serialize, ToSchema)]
pub struct FloatLine {
    /// The program; `null` on the total line.
    pub program: Option<String>,
    /// Outstanding principal (customers' prepaid money).
    pub principal: String,
    /// Outstanding bonus (the brand's liability at face value).
    pub bonus: String,
    /// Of the above, held by open authorizations.
    pub held: String,
    /// principal + bonus.
    pub outstanding: String,
    pub cards: u64,
}

impl FloatLine {
    /// A float line (`program` `None` for the total); `outstanding` is principal + bonus.
    pub fn new(program: Option<String>, t: &FloatTotals) -> FloatLine {
        let c = Currency::Cny;
        FloatLine {
            program,
            principal: money(c, t.principal),
            bonus: money(c, t.bonus),
            held: money(c, t.held),
            outstanding: money(c, t.principal + t.bonus),
            cards: t.cards,
        }
    }
}

/// `GET /v1/float`.
#[derive(Debug, Serialize, ToSchema)]
pub struct FloatBody {
    #[schema(example = "CNY")]
    pub currency: String,
    pub programs: Vec<FloatLine>,
    pub total: FloatLine,
}

/// One entry of `GET /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventBody {
    /// Sequence number: pass the last one seen as `after`.
    pub seq: u64,
    /// RFC 3339, UTC.
    pub at: String,
    pub card_id: String,
    /// `low_balance`, `bonus_expiring`, `bonus_expired`, `hold_expired`, `velocity_breach`,
    /// `quick_cash_out`, `repeated_declines`.
    #[schema(value_type = String)]
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub amount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub available: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hold_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl EventBody {
    /// An event as JSON, numbered `seq` so a reader can resume with `after`; only the fields its
    /// kind carries are set.
    pub fn new(seq: u64, e: &Event) -> EventBody {
        let c = Currency::Cny;
        let mut b = EventBody {
            seq,
            at: rfc3339(e.at),
            card_id: e.card_id.to_string(),
            kind: e.kind.as_str(),
            amount: None,
            available: None,
            expires_at: None,
            hold_id: None,
            count: None,
        };
        match &e.kind {
            EventKind::LowBalance { available } => b.available = Some(money(c, *available)),
            EventKind::BonusExpiring { amount, expires_at } => {
                b.amount = Some(money(c, *amount));
                b.expires_at = Some(rfc3339(*expires_at));
            }
            EventKind::BonusExpired { amount } | EventKind::QuickCashOut { amount } => {
                b.amount = Some(money(c, *amount))
            }
            EventKind::HoldExpired { hold_id, amount } => {
                b.hold_id = Some(hold_id.to_string());
                b.amount = Some(money(c, *amount));
            }
            EventKind::VelocityBreach => {}
            EventKind::RepeatedDeclines { count } => b.count = Some(*count),
        }
        b
    }
}

/// `GET /v1/events`.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsBody {
    pub events: Vec<EventBody>,
    /// Pass as `after` to read on.
    pub next_after: u64,
}

/// `GET /healthz`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthBody {
    #[schema(example = "ok")]
    pub status: String,
}

/// Milliseconds since the epoch as RFC 3339 UTC (`2026-11-24T09:30:00.123Z`).
pub fn rfc3339(t: Millis) -> String {
    let ms = t.0;
    let days = ms.div_euclid(86_400_000);
    let in_day = ms.rem_euclid(86_400_000);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let (h, rest) = (in_day / 3_600_000, in_day % 3_600_000);
    let (mi, rest) = (rest / 60_000, rest % 60_000);
    let (s, milli) = (rest / 1000, rest % 1000);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use svault_core::command::{CardId, TxnId};
    use svault_core::outcome::CardStatus;

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(Millis(0)), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(Millis(951_782_400_000)), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            rfc3339(Millis(1_795_512_600_123)),
            "2026-11-24T09:30:00.123Z"
        );
        assert_eq!(rfc3339(Millis(-1)), "1969-12-31T23:59:59.999Z");
    }

    fn view() -> CardView {
        CardView {
            card_id: CardId(7),
            program: "demo".into(),
            currency: Currency::Cny,
            principal: Amount(10000),
            bonus: Amount(1500),
            held: Amount(0),
            available: Amount(11500),
            points: 3,
            tier: None,
            status: CardStatus::Active,
            paid_in: Amount(10000),
            bonus_given: Amount(1500),
            consumed: Amount(0),
        }
    }

    #[test]
    fn card_view_has_exactly_spec_fields_at_full_scale() {
        let v = serde_json::to_value(CardBody::from_view(&view())).unwrap();
        let mut keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        keys.sort();
        let mut want = vec![
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
        ];
        want.sort();
        assert_eq!(keys, want);
        assert_eq!(v["available"], "115.00");
        assert_eq!(v["card_id"], "7");
        assert_eq!(v["tier"], serde_json::Value::Null);
    }

    #[test]
    fn top_up_approval_shows_principal_and_bonus() {
        let a = Approval {
            kind: TxnKind::TopUp,
            txn_id: Some(TxnId {
                card: CardId(7),
                seq: 2,
            }),
            amount: Amount(10000),
            principal: Amount(10000),
            bonus: Amount(0),
            bonus_granted: Amount(1500),
            discount: Amount(0),
            discount_source: None,
            points_earned: 0,
            points_spent: 0,
            released: Amount(0),
            forfeited: Amount(0),
            retained: Amount(0),
            reversed_txn: None,
            expires_at: None,
            card: Some(view()),
            partial: false,
            requested: None,
            hold: None,
        };
        let v = serde_json::to_value(ApprovedBody::from_approval(&a)).unwrap();
        assert_eq!(v["status"], "approved");
        assert_eq!(v["txn_id"], "7-2");
        assert_eq!(v["principal"], "100.00");
        assert_eq!(v["bonus"], "15.00");
        assert!(v.get("hold_id").is_none());
        let resp = reply_response(
            Reply {
                outcome: Outcome::Approved(Box::new(a)),
                replayed: true,
            },
            |_| {},
        );
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.headers().get(REPLAYED_HEADER).unwrap(), "true");
    }

    #[test]
    fn declines_and_rejections_map_to_status_codes() {
        let mut seen = None;
        let r = reply_response(
            Reply {
                outcome: Outcome::Declined {
                    code: DeclineCode::CardFrozen,
                    card: None,
                },
                replayed: false,
            },
            |c| seen = Some(c),
        );
        assert_eq!(r.status(), StatusCode::PAYMENT_REQUIRED);
        assert_eq!(seen, Some(DeclineCode::CardFrozen));
        let status = |r: Rejection| rejection_error(r).status;
        assert_eq!(
            status(Rejection::NotFound {
                what: NotFoundKind::Card
            }),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status(Rejection::IdempotencyKeyReused),
            StatusCode::CONFLICT
        );
        assert_eq!(status(Rejection::CardExists), StatusCode::CONFLICT);
        assert_eq!(
            status(Rejection::Invalid {
                field: "amount".into(),
                reason: "x".into()
            }),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            rejection_error(Rejection::IdempotencyKeyReused).body.error,
            "idempotency_key_reused"
        );
    }
}
