//! The body of `POST /v1/programs` as the API document states it: the shape of
//! `svault_core::program::ProgramSpec` with every per-field rule `Program::from_spec` enforces
//! (patterns for amounts, rates, times and ids; bounds for day counts and limits; list sizes),
//! so a schema-driven client finds no value the document calls valid and the server refuses.
//! Rules that tie two fields together (ladder steps and tiers increasing, one of `bonus` or
//! `rate`, `top_up.min` at most `top_up.max_single`, a window not empty) are in the
//! descriptions. Documentation only: requests decode into `ProgramSpec`.

#![allow(dead_code)]

use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// `POST /v1/programs`: every field but `id` and `currency` is optional.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpecDoc {
    /// 1-64 of `A-Z a-z 0-9 _ -`.
    #[schema(
        example = "coffee",
        pattern = r"^[A-Za-z0-9_-]{1,64}$",
        min_length = 1,
        max_length = 64
    )]
    pub id: String,
    #[schema(example = "CNY", pattern = r"^CNY$")]
    pub currency: String,
    /// `Z` or `±HH:MM` within ±14:00; default `+00:00`.
    #[schema(
        example = "+08:00",
        pattern = r"^(?:Z|[+-](?:(?:0[0-9]|1[0-3]):[0-5][0-9]|14:00))$"
    )]
    pub utc_offset: Option<String>,
    #[schema(inline)]
    pub top_up: Option<TopUpDoc>,
    /// Steps with strictly increasing `nth`; the last applies to every later top-up.
    #[schema(inline, required = false, max_items = 64)]
    pub bonus_ladder: Vec<LadderStepDoc>,
    #[schema(minimum = 1, maximum = 36500)]
    pub bonus_expiry_days: Option<u32>,
    #[schema(
        example = "proportional",
        pattern = r"^(?:proportional|bonus_first|principal_first)$"
    )]
    pub spend_order: Option<String>,
    #[schema(inline)]
    pub points: Option<PointsDoc>,
    /// Strictly increasing `lifetime_top_up`, distinct names.
    #[schema(inline, required = false, max_items = 64)]
    pub tiers: Vec<TierDoc>,
    #[schema(inline, required = false, max_items = 64)]
    pub discount_windows: Vec<DiscountWindowDoc>,
    #[schema(inline)]
    pub velocity: Option<VelocityDoc>,
    /// Principal topped up less than this many days ago cannot be cashed out; 0 ⇒ none.
    #[schema(minimum = 0, maximum = 36500)]
    pub refund_lock_days: Option<u32>,
    #[schema(inline)]
    pub reminders: Option<RemindersDoc>,
    #[schema(inline)]
    pub spend: Option<SpendDoc>,
}

/// `top_up`: amounts; `min` at most `max_single`. The balance caps limit principal.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpDoc {
    #[schema(inline)]
    pub min: Option<AmountDoc>,
    #[schema(inline)]
    pub max_single: Option<AmountDoc>,
    #[schema(inline)]
    pub max_balance: Option<AmountDoc>,
    #[schema(inline)]
    pub max_balance_anonymous: Option<AmountDoc>,
    #[schema(inline)]
    pub max_daily: Option<AmountDoc>,
}

/// One ladder step: exactly one of `bonus` (a fixed amount) or `rate` (of the top-up, at most
/// 10); `nth` increases from step to step.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LadderStepDoc {
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub nth: u32,
    /// The least top-up the step pays for.
    #[schema(inline)]
    pub min: Option<AmountDoc>,
    #[schema(inline)]
    pub bonus: Option<AmountDoc>,
    #[schema(inline)]
    pub rate: Option<Rate10Doc>,
}

/// `points`: points per 1.00 spent (at most 1000), points per 1.00 of bonus.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PointsDoc {
    #[schema(inline)]
    pub earn_per_unit: Option<Rate1000Doc>,
    #[schema(inline)]
    pub redeem_rate: Option<RedeemRateDoc>,
}

/// A tier reached by lifetime top-up (0 allowed: a base tier); multiplier at most 10,
/// discount at most 1.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TierDoc {
    #[schema(example = "silver", min_length = 1, max_length = 32)]
    pub name: String,
    #[schema(inline)]
    pub lifetime_top_up: AmountOrZeroDoc,
    #[schema(inline)]
    pub points_multiplier: Option<Rate10Doc>,
    #[schema(inline)]
    pub discount: Option<Rate1Doc>,
}

/// A local-time window, `from` before or after `to` (a window may wrap midnight), never equal.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscountWindowDoc {
    #[schema(inline)]
    pub from: StartDoc,
    #[schema(inline)]
    pub to: HhMmDoc,
    #[schema(inline)]
    pub rate: Rate1Doc,
}

/// `velocity`: at most `max_spends_per_minute` spends and holds per UTC minute, at most
/// `max_daily_spend` charged per local day; past either the request is declined `velocity_limit`.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VelocityDoc {
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_spends_per_minute: Option<u32>,
    #[schema(inline)]
    pub max_daily_spend: Option<AmountDoc>,
}

/// `reminders`: a `low_balance` event when available falls below the amount, a `bonus_expiring`
/// event that many days before a bonus lot expires.
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RemindersDoc {
    #[schema(inline)]
    pub low_balance: Option<AmountDoc>,
    #[schema(minimum = 1, maximum = 36500)]
    pub bonus_expiring_days: Option<u32>,
}

/// `spend`: 单笔消费上限, spends per local day, the stores a card may be used at (with an allow
/// list a store must be given).
#[derive(serde::Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendDoc {
    #[schema(inline)]
    pub max_single: Option<AmountDoc>,
    #[schema(minimum = 1, maximum = 4294967295_u64)]
    pub max_daily_count: Option<u32>,
    #[schema(inline, max_items = 4096)]
    pub stores_allow: Option<Vec<StoreDoc>>,
    #[schema(inline, required = false, max_items = 4096)]
    pub stores_deny: Vec<StoreDoc>,
}

/// A store id, as requests name it ([`svault_core::rules::check_store`]).
#[derive(serde::Serialize)]
pub struct StoreDoc(String);

impl PartialSchema for StoreDoc {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(svault_core::rules::STORE_LEN_MAX))
            .pattern(Some(svault_core::rules::STORE_PATTERN))
            .into()
    }
}

impl ToSchema for StoreDoc {}

/// `points.redeem_rate`: an integer or a string of digits, at most 10^9 (0 ⇒ no redemption).
#[derive(serde::Serialize)]
pub struct RedeemRateDoc(u64);

impl PartialSchema for RedeemRateDoc {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(REDEEM_RATE_MAX)),
            )
            .item(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(Some(r"^\+?0*(?:[0-9]{1,9}|1000000000)$")),
            )
            .into()
    }
}

impl ToSchema for RedeemRateDoc {}

/// Largest `points.redeem_rate`.
const REDEEM_RATE_MAX: u64 = 1_000_000_000;

/// A string schema: `pattern`, and at most `max_length` characters.
fn text(pattern: &str, max_length: usize) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .max_length(Some(max_length))
        .into()
}

/// Declares a string leaf of the program body: its name, what it holds, its pattern.
macro_rules! text_leaf {
    ($name:ident, $doc:literal, $pattern:expr) => {
        #[doc = $doc]
        #[derive(serde::Serialize)]
        pub struct $name(String);

        impl PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                text($pattern, DECIMAL_LEN_MAX)
            }
        }

        impl ToSchema for $name {}
    };
}

/// Longest decimal string the server reads (`money::parse_plain_decimal`).
const DECIMAL_LEN_MAX: usize = 40;

text_leaf!(
    AmountDoc,
    "A positive amount of at most 10^12 with at most two decimals, as in request bodies.",
    r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$"
);
text_leaf!(
    AmountOrZeroDoc,
    "An amount as [`AmountDoc`], or zero.",
    r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0+(?:\.0{1,2})?|0*1000000000000(?:\.0{1,2})?)$"
);
text_leaf!(
    Rate1Doc,
    "A rate from 0 to 1, at most six decimals beyond trailing zeros.",
    r"^(?:0+(?:\.[0-9]{1,6}0*)?|0*1(?:\.0+)?)$"
);
text_leaf!(
    Rate10Doc,
    "A rate from 0 to 10, at most six decimals beyond trailing zeros.",
    r"^(?:0*[0-9](?:\.[0-9]{1,6}0*)?|0*10(?:\.0+)?)$"
);
text_leaf!(
    Rate1000Doc,
    "A rate from 0 to 1000, at most six decimals beyond trailing zeros.",
    r"^(?:0*[0-9]{1,3}(?:\.[0-9]{1,6}0*)?|0*1000(?:\.0+)?)$"
);
text_leaf!(
    StartDoc,
    "A local time `HH:MM` from 00:00 to 23:59 (a window's start).",
    r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$"
);
text_leaf!(
    HhMmDoc,
    "A local time `HH:MM` from 00:00 to 24:00.",
    r"^(?:(?:[01][0-9]|2[0-3]):[0-5][0-9]|24:00)$"
);
