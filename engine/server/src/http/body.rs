//! Request bodies of the HTTP API and their validation into [`Command`]s.
//!
//! Why here and not in the state machine: the state takes only validated input in minor
//! units; JSON words, decimal strings and field names live at the edge.

use super::error::ApiError;
use serde::{Deserialize, Deserializer};
use svault_core::command::{
    CallerId, CardId, CashOutReason, Channel, Command, GrantReason, Method, MonthDay, TxnId,
};
use svault_core::money::{Amount, Currency};
use utoipa::ToSchema;

pub use svault_core::rules::{HOLD_TTL_SECONDS_MAX, PROGRAM_ID_LEN_MAX, STORE_LEN_MAX};

/// An amount as the client sent it. Any JSON value is accepted here so that a number or a
/// `null` is reported as `invalid_amount` (naming the field) rather than as a type error.
#[derive(Debug, Clone, PartialEq)]
pub struct AmountText(Option<String>);

impl<'de> Deserialize<'de> for AmountText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => AmountText(Some(s)),
            _ => AmountText(None),
        })
    }
}

impl AmountText {
    /// Parses the amount in `currency`, or `400 invalid_amount` naming `field`.
    pub fn parse(&self, field: &str, currency: Currency) -> Result<Amount, ApiError> {
        let text = self.0.as_deref().ok_or_else(|| {
            ApiError::invalid_amount(field, "an amount is a JSON string such as \"100.00\"")
        })?;
        currency
            .parse_amount(text)
            .map_err(|e| ApiError::invalid_amount(field, format!("{e}: {text:?}")))
    }
}

/// All amounts are in the currency of the card's program ([`svault_core::rules`]).
const CURRENCY: Currency = svault_core::rules::REQUEST_CURRENCY;

fn word<T>(
    field: &str,
    text: &str,
    parse: fn(&str) -> Option<T>,
    all: &[&str],
) -> Result<T, ApiError> {
    parse(text)
        .ok_or_else(|| ApiError::invalid(field, format!("expected one of: {}", all.join(", "))))
}

fn store(store: Option<String>) -> Result<Option<String>, ApiError> {
    match store {
        Some(s) => match svault_core::rules::check_store(&s) {
            Ok(()) => Ok(Some(s)),
            Err(reason) => Err(ApiError::invalid("store", reason)),
        },
        None => Ok(None),
    }
}

/// Checks a program id ([`svault_core::rules::check_program_id`]), naming `field`.
pub fn check_program_id(field: &str, id: &str) -> Result<(), ApiError> {
    svault_core::rules::check_program_id(id).map_err(|reason| ApiError::invalid(field, reason))
}

/// Derives a card id from the open request's caller and idempotency key, so a retry lands on
/// the same card (and shard) and two callers' equal keys open two cards: 16 digits from xxh3
/// of the key (prefixed by the caller's id unless it is the default caller), the first digit
/// non-zero.
pub fn card_id_from_key(caller: CallerId, key: &str) -> CardId {
    let h = if caller == CallerId::DEFAULT {
        xxhash_rust::xxh3::xxh3_64(key.as_bytes())
    } else {
        let scoped = [&caller.0.to_le_bytes()[..], key.as_bytes()].concat();
        xxhash_rust::xxh3::xxh3_64(&scoped)
    };
    const LOW: u64 = 1_000_000_000_000_000; // 10^15: 16 digits
    CardId(LOW + h % (9 * LOW))
}

fn names<T: Copy>(all: &[T], f: fn(T) -> &'static str) -> Vec<&'static str> {
    all.iter().map(|v| f(*v)).collect()
}

/// `POST /v1/cards`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenCardBody {
    /// The program (brand rules) of the card, e.g. `demo`.
    #[schema(pattern = r"^[A-Za-z0-9_-]{1,64}$", min_length = 1, max_length = 64)]
    pub program: String,
    /// 1–19 digits; derived from the Idempotency-Key when absent.
    #[schema(example = "6200000000000001", pattern = r"^[1-9][0-9]{0,18}$")]
    pub card_id: Option<String>,
    /// Registered cards get the higher balance cap.
    pub registered: bool,
    /// `MM-DD` or `YYYY-MM-DD`, for birthday grants.
    #[schema(example = "07-14")]
    pub birthday: Option<String>,
}

impl OpenCardBody {
    /// Validates the body into an open; without `card_id` the id comes from `caller` and the
    /// Idempotency-Key `key`, so a retried open lands on the same card. Errors name the field.
    pub fn into_command(self, caller: CallerId, key: &str) -> Result<Command, ApiError> {
        check_program_id("program", &self.program)?;
        let card_id = match self.card_id {
            Some(text) => CardId::parse(&text).ok_or_else(|| {
                ApiError::invalid("card_id", "a card id is 1-19 digits, no leading zero")
            })?,
            None => card_id_from_key(caller, key),
        };
        let birthday = self.birthday.as_deref().map(parse_birthday).transpose()?;
        Ok(Command::OpenCard {
            card_id,
            program: self.program,
            registered: self.registered,
            birthday,
        })
    }
}

fn parse_birthday(text: &str) -> Result<MonthDay, ApiError> {
    let bad = || ApiError::invalid("birthday", "a birthday is MM-DD or YYYY-MM-DD");
    let md = match text.len() {
        5 => text,
        10 if text.get(4..5) == Some("-")
            && text
                .get(..4)
                .is_some_and(|y| y.bytes().all(|b| b.is_ascii_digit())) =>
        {
            text.get(5..).ok_or_else(bad)?
        }
        _ => return Err(bad()),
    };
    let (m, d) = md.split_once('-').ok_or_else(bad)?;
    if m.len() != 2 || d.len() != 2 {
        return Err(bad());
    }
    let month: u8 = m.parse().map_err(|_| bad())?;
    let day: u8 = d.parse().map_err(|_| bad())?;
    let days_in = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    match days_in.get(usize::from(month).wrapping_sub(1)) {
        Some(&max) if (1..=max).contains(&day) => Ok(MonthDay { month, day }),
        _ => Err(bad()),
    }
}

/// `POST /v1/cards/{id}/top-ups`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TopUpBody {
    /// Major units as a string: `"100.00"`.
    #[schema(value_type = String, example = "100.00", pattern = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$", max_length = 40)]
    pub amount: AmountText,
    /// `wechat` | `alipay` | `unionpay` | `cash`
    #[schema(example = "wechat", pattern = "^(wechat|alipay|unionpay|cash)$")]
    pub channel: String,
}

impl TopUpBody {
    /// Validates the body into a top-up of `card_id`: amount in minor units, channel word checked;
    /// `400` naming the field otherwise.
    pub fn into_command(self, card_id: CardId) -> Result<Command, ApiError> {
        let amount = self.amount.parse("amount", CURRENCY)?;
        let channel = word(
            "channel",
            &self.channel,
            Channel::parse,
            &names(Channel::ALL, Channel::as_str),
        )?;
        Ok(Command::TopUp {
            card_id,
            amount,
            channel,
        })
    }
}

/// `POST /v1/cards/{id}/spends`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SpendBody {
    #[schema(value_type = String, example = "38.00", pattern = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$", max_length = 40)]
    pub amount: AmountText,
    /// `qr` | `card` | `voice`
    #[schema(example = "qr", pattern = "^(qr|card|voice)$")]
    pub method: String,
    /// The store where the card was presented: 1-64 characters of the Basic
    /// Multilingual Plane, no control characters (`svault_core::rules::check_store`).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[\u0020-\u007E\u00A0-\uD7FF\uE000-\uFFFF]{1,64}$"
    )]
    pub store: Option<String>,
    /// Partial approval: when the funds are short but not zero, approve what is available
    /// (the answer says `partial` and the `requested` amount) instead of declining.
    #[serde(default)]
    pub allow_partial: bool,
}

impl SpendBody {
    /// Validates the body into a spend of `card_id` (amount in minor units, method word, store);
    /// `400` naming the field otherwise.
    pub fn into_command(self, card_id: CardId) -> Result<Command, ApiError> {
        let amount = self.amount.parse("amount", CURRENCY)?;
        let method = word(
            "method",
            &self.method,
            Method::parse,
            &names(Method::ALL, Method::as_str),
        )?;
        Ok(Command::Spend {
            card_id,
            amount,
            method,
            store: store(self.store)?,
            allow_partial: self.allow_partial,
        })
    }
}

/// `POST /v1/cards/{id}/holds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HoldBody {
    #[schema(value_type = String, example = "60.00", pattern = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$", max_length = 40)]
    pub amount: AmountText,
    /// How long the hold lives, 1 s to 30 days; released by itself after.
    #[schema(example = 900, minimum = 1, maximum = 2592000)]
    pub ttl_seconds: u32,
    /// `qr` | `card` | `voice`
    #[schema(example = "card", pattern = "^(qr|card|voice)$")]
    pub method: String,
    /// As for spends: 1-64 characters of the Basic Multilingual Plane, no control characters
    /// (`svault_core::rules::check_store`).
    #[schema(
        min_length = 1,
        max_length = 64,
        pattern = r"^[\u0020-\u007E\u00A0-\uD7FF\uE000-\uFFFF]{1,64}$"
    )]
    pub store: Option<String>,
    /// Partial approval, as for spends: hold what is available when the funds are short.
    #[serde(default)]
    pub allow_partial: bool,
}

impl HoldBody {
    /// Validates the body into a hold of `card_id`, its `ttl_seconds` within 1 s to 30 days;
    /// `400` naming the field otherwise.
    pub fn into_command(self, card_id: CardId) -> Result<Command, ApiError> {
        let amount = self.amount.parse("amount", CURRENCY)?;
        svault_core::rules::check_hold_ttl(self.ttl_seconds)
            .map_err(|reason| ApiError::invalid("ttl_seconds", reason))?;
        let method = word(
            "method",
            &self.method,
            Method::parse,
            &names(Method::ALL, Method::as_str),
        )?;
        Ok(Command::Hold {
            card_id,
            amount,
            ttl_seconds: self.ttl_seconds,
            method,
            store: store(self.store)?,
            allow_partial: self.allow_partial,
        })
    }
}

/// `POST /v1/holds/{id}/increment`: raise an open hold (no partial approval here).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IncrementBody {
    /// The merchant amount to add, before discount (at the hold's rate).
    #[schema(value_type = String, example = "12.00", pattern = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$", max_length = 40)]
    pub amount: AmountText,
    /// Extends the hold to this many seconds from now (1 s to 30 days); never shortens it.
    #[schema(example = 900, minimum = 1, maximum = 2592000)]
    pub ttl_seconds: Option<u32>,
}

impl IncrementBody {
    /// Validates the body into an increment of hold `hold_id` (the path's id); a `ttl_seconds`
    /// given must be within 1 s to 30 days.
    pub fn into_command(self, hold_id: TxnId) -> Result<Command, ApiError> {
        let amount = self.amount.parse("amount", CURRENCY)?;
        if let Some(t) = self.ttl_seconds {
            svault_core::rules::check_hold_ttl(t)
                .map_err(|reason| ApiError::invalid("ttl_seconds", reason))?;
        }
        Ok(Command::IncrementHold {
            hold_id,
            amount,
            ttl_seconds: self.ttl_seconds,
        })
    }
}

/// `POST /v1/holds/{id}/capture`: all of the hold when `amount` is absent.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CaptureBody {
    #[schema(value_type = Option<String>, example = "45.00", pattern = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$", max_length = 40)]
    pub amount: Option<AmountText>,
}

impl CaptureBody {
    /// Validates the body into a capture of hold `hold_id`; no `amount` captures the whole hold.
    pub fn into_command(self, hold_id: TxnId) -> Result<Command, ApiError> {
        let amount = self
            .amount
            .map(|a| a.parse("amount", CURRENCY))
            .transpose()?;
        Ok(Command::Capture { hold_id, amount })
    }
}

/// An empty body (`{}` or nothing): void, freeze, unfreeze, close.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmptyBody {}

/// `POST /v1/refunds`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefundBody {
    /// The spend or capture to refund.
    #[schema(
        example = "6200000000000001-3",
        pattern = r"^[1-9][0-9]{0,18}-(?:[0-9]{1,9}|[0-3][0-9]{9}|4[01][0-9]{8}|42[0-8][0-9]{7}|429[0-3][0-9]{6}|4294[0-8][0-9]{5}|42949[0-5][0-9]{4}|429496[0-6][0-9]{3}|4294967[01][0-9]{2}|42949672[0-8][0-9]|429496729[0-5])$"
    )]
    pub txn_id: String,
    #[schema(value_type = String, example = "10.00", pattern = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$", max_length = 40)]
    pub amount: AmountText,
}

impl RefundBody {
    /// Validates the body into a refund of the spend or capture `txn_id` names (`CARD-SEQ`);
    /// `400` naming the field otherwise.
    pub fn into_command(self) -> Result<Command, ApiError> {
        let txn_id = TxnId::parse(&self.txn_id)
            .ok_or_else(|| ApiError::invalid("txn_id", "a txn id is CARD-SEQ, e.g. 1234-3"))?;
        let amount = self.amount.parse("amount", CURRENCY)?;
        Ok(Command::Refund { txn_id, amount })
    }
}

/// `POST /v1/cards/{id}/cash-out`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CashOutBody {
    /// `consumer` | `merchant_fault` | `cooling_off`
    #[schema(
        example = "consumer",
        pattern = "^(consumer|merchant_fault|cooling_off)$"
    )]
    pub reason: String,
}

impl CashOutBody {
    /// Validates the body into a cash-out of `card_id`; `reason` picks the payout rule.
    pub fn into_command(self, card_id: CardId) -> Result<Command, ApiError> {
        let all = names(CashOutReason::ALL, CashOutReason::as_str);
        let reason = word("reason", &self.reason, CashOutReason::parse, &all)?;
        Ok(Command::CashOut { card_id, reason })
    }
}

/// `POST /v1/cards/{id}/reversals`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReversalBody {
    /// The Idempotency-Key of the caller's own request on this card to undo.
    #[schema(
        example = "spend-42",
        min_length = 1,
        max_length = 128,
        pattern = r"^[!-~]{1,128}$"
    )]
    pub idempotency_key: String,
}

impl ReversalBody {
    /// Validates the body into a reversal of the caller's own request with that key on `card_id`.
    pub fn into_command(self, card_id: CardId) -> Result<Command, ApiError> {
        super::extract::check_idempotency_key(&self.idempotency_key)
            .map_err(|m| ApiError::invalid("idempotency_key", m))?;
        Ok(Command::Reversal {
            card_id,
            key: self.idempotency_key,
        })
    }
}

/// `POST /v1/cards/{id}/points/redeem`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedeemBody {
    /// Points to turn into bonus (at the program's redeem rate).
    #[schema(example = 100, minimum = 1)]
    pub points: u64,
}

impl RedeemBody {
    /// Validates the body into a redeem of `card_id`: at least 1 point, which the program's
    /// redeem rate turns into bonus.
    pub fn into_command(self, card_id: CardId) -> Result<Command, ApiError> {
        svault_core::rules::check_points(self.points)
            .map_err(|reason| ApiError::invalid("points", reason))?;
        Ok(Command::RedeemPoints {
            card_id,
            points: self.points,
        })
    }
}

/// `POST /v1/cards/{id}/grants` (admin).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    #[schema(value_type = Option<String>, example = "20.00", pattern = r"^(?:0*[1-9][0-9]{0,11}(?:\.[0-9]{1,2})?|0+\.(?:0[1-9]|[1-9][0-9]?)|0*1000000000000(?:\.0{1,2})?)$", max_length = 40)]
    pub bonus: Option<AmountText>,
    #[schema(minimum = 1)]
    pub points: Option<u64>,
    /// `birthday` | `referral` | `compensation` | `campaign`
    #[schema(
        example = "birthday",
        pattern = "^(birthday|referral|compensation|campaign)$"
    )]
    pub reason: String,
}

impl GrantBody {
    /// Validates the body into a grant to `card_id`: bonus, points or both, and a known reason.
    pub fn into_command(self, card_id: CardId) -> Result<Command, ApiError> {
        let bonus = self.bonus.map(|a| a.parse("bonus", CURRENCY)).transpose()?;
        if let Some(points) = self.points {
            svault_core::rules::check_points(points)
                .map_err(|reason| ApiError::invalid("points", reason))?;
        }
        if bonus.is_none() && self.points.is_none() {
            return Err(ApiError::invalid(
                "bonus",
                "a grant gives bonus, points or both",
            ));
        }
        let all = names(GrantReason::ALL, GrantReason::as_str);
        let reason = word("reason", &self.reason, GrantReason::parse, &all)?;
        Ok(Command::Grant {
            card_id,
            bonus,
            points: self.points,
            reason,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::extract::parse_json;
    use super::*;

    fn cmd<B: serde::de::DeserializeOwned>(
        json: &str,
        f: impl FnOnce(B) -> Result<Command, ApiError>,
    ) -> Result<Command, (String, String)> {
        parse_json::<B>(json.as_bytes())
            .and_then(f)
            .map_err(|e| (e.body.error.to_string(), e.body.field.unwrap_or_default()))
    }
    const C: CardId = CardId(42);

    #[test]
    fn top_up_maps_and_validates() {
        assert_eq!(
            cmd::<TopUpBody>(r#"{"amount":"100","channel":"wechat"}"#, |b| b
                .into_command(C)),
            Ok(Command::TopUp {
                card_id: C,
                amount: Amount(10000),
                channel: Channel::Wechat
            })
        );
        for bad in [
            r#""0""#,
            r#""-1""#,
            r#""1.001""#,
            r#""abc""#,
            r#""1e3""#,
            r#""1000000000000.01""#,
            "100",
            "null",
            r#""""#,
        ] {
            let json = format!(r#"{{"amount":{bad},"channel":"wechat"}}"#);
            assert_eq!(
                cmd::<TopUpBody>(&json, |b| b.into_command(C)),
                Err(("invalid_amount".into(), "amount".into())),
                "{bad}"
            );
        }
        assert_eq!(
            cmd::<TopUpBody>(r#"{"amount":"1","channel":"paypal"}"#, |b| b
                .into_command(C)),
            Err(("invalid_request".into(), "channel".into()))
        );
        assert_eq!(
            cmd::<TopUpBody>(r#"{"amount":"1","channel":"cash","tip":"1"}"#, |b| b
                .into_command(C)),
            Err(("invalid_request".into(), "tip".into()))
        );
        assert_eq!(
            cmd::<TopUpBody>(r#"{"channel":"cash"}"#, |b| b.into_command(C)),
            Err(("invalid_request".into(), "amount".into()))
        );
    }

    #[test]
    fn spend_hold_capture_refund_map() {
        assert_eq!(
            cmd::<SpendBody>(r#"{"amount":"38.5","method":"qr","store":"s1"}"#, |b| b
                .into_command(C)),
            Ok(Command::Spend {
                card_id: C,
                amount: Amount(3850),
                method: Method::Qr,
                store: Some("s1".into()),
                allow_partial: false,
            })
        );
        assert_eq!(
            cmd::<SpendBody>(
                r#"{"amount":"1","method":"qr","allow_partial":true}"#,
                |b| b.into_command(C)
            ),
            Ok(Command::Spend {
                card_id: C,
                amount: Amount(100),
                method: Method::Qr,
                store: None,
                allow_partial: true,
            })
        );
        assert_eq!(
            cmd::<IncrementBody>(r#"{"amount":"2.5","ttl_seconds":60}"#, |b| b
                .into_command(TxnId { card: C, seq: 2 })),
            Ok(Command::IncrementHold {
                hold_id: TxnId { card: C, seq: 2 },
                amount: Amount(250),
                ttl_seconds: Some(60),
            })
        );
        assert_eq!(
            cmd::<IncrementBody>(r#"{"amount":"2.5","allow_partial":true}"#, |b| b
                .into_command(TxnId { card: C, seq: 2 })),
            Err(("invalid_request".into(), "allow_partial".into()))
        );
        assert_eq!(
            cmd::<HoldBody>(r#"{"amount":"1","ttl_seconds":0,"method":"qr"}"#, |b| b
                .into_command(C)),
            Err(("invalid_request".into(), "ttl_seconds".into()))
        );
        assert_eq!(
            cmd::<HoldBody>(r#"{"amount":"1","ttl_seconds":-5,"method":"qr"}"#, |b| b
                .into_command(C)),
            Err(("invalid_request".into(), "ttl_seconds".into()))
        );
        let h = TxnId { card: C, seq: 2 };
        assert_eq!(
            cmd::<CaptureBody>("", |b| b.into_command(h)),
            Ok(Command::Capture {
                hold_id: h,
                amount: None
            })
        );
        assert_eq!(
            cmd::<CaptureBody>(r#"{"amount":"2.50"}"#, |b| b.into_command(h)),
            Ok(Command::Capture {
                hold_id: h,
                amount: Some(Amount(250))
            })
        );
        assert_eq!(
            cmd::<RefundBody>(r#"{"txn_id":"42-3","amount":"1"}"#, |b| b.into_command()),
            Ok(Command::Refund {
                txn_id: TxnId { card: C, seq: 3 },
                amount: Amount(100)
            })
        );
        assert_eq!(
            cmd::<RefundBody>(r#"{"txn_id":"x-3","amount":"1"}"#, |b| b.into_command()),
            Err(("invalid_request".into(), "txn_id".into()))
        );
    }

    #[test]
    fn open_card_derives_a_stable_id_from_the_key() {
        let a = cmd::<OpenCardBody>(r#"{"program":"demo","registered":true}"#, |b| {
            b.into_command(CallerId::DEFAULT, "k-1")
        })
        .unwrap();
        let b = cmd::<OpenCardBody>(r#"{"program":"demo","registered":true}"#, |b| {
            b.into_command(CallerId::DEFAULT, "k-1")
        })
        .unwrap();
        assert_eq!(a, b);
        let Command::OpenCard { card_id, .. } = a else {
            panic!("not an open")
        };
        assert_eq!(card_id.to_string().len(), 16);
        assert_ne!(card_id, card_id_from_key(CallerId::DEFAULT, "k-2"));
        assert_eq!(
            cmd::<OpenCardBody>(
                r#"{"program":"demo","registered":true,"card_id":"12345678901234567890"}"#,
                |b| b.into_command(CallerId::DEFAULT, "k")
            ),
            Err(("invalid_request".into(), "card_id".into()))
        );
        assert_eq!(
            cmd::<OpenCardBody>(
                r#"{"program":"demo","registered":true,"card_id":123}"#,
                |b| b.into_command(CallerId::DEFAULT, "k")
            ),
            Err(("invalid_request".into(), "card_id".into()))
        );
        assert_eq!(
            cmd::<OpenCardBody>(
                r#"{"program":"demo","registered":true,"birthday":"02-30"}"#,
                |b| b.into_command(CallerId::DEFAULT, "k")
            ),
            Err(("invalid_request".into(), "birthday".into()))
        );
        assert!(matches!(
            cmd::<OpenCardBody>(
                r#"{"program":"demo","registered":false,"birthday":"1990-07-14","card_id":"7"}"#,
                |b| b.into_command(CallerId::DEFAULT, "k")
            ),
            Ok(Command::OpenCard {
                card_id: CardId(7),
                registered: false,
                birthday: Some(MonthDay { month: 7, day: 14 }),
                ..
            })
        ));
    }

    #[test]
    fn grants_and_redeem_need_something_positive() {
        assert_eq!(
            cmd::<GrantBody>(r#"{"reason":"birthday"}"#, |b| b.into_command(C)),
            Err(("invalid_request".into(), "bonus".into()))
        );
        assert_eq!(
            cmd::<GrantBody>(r#"{"bonus":"0","reason":"birthday"}"#, |b| b
                .into_command(C)),
            Err(("invalid_amount".into(), "bonus".into()))
        );
        assert_eq!(
            cmd::<GrantBody>(r#"{"points":5,"reason":"campaign"}"#, |b| b.into_command(C)),
            Ok(Command::Grant {
                card_id: C,
                bonus: None,
                points: Some(5),
                reason: GrantReason::Campaign
            })
        );
        assert_eq!(
            cmd::<RedeemBody>(r#"{"points":0}"#, |b| b.into_command(C)),
            Err(("invalid_request".into(), "points".into()))
        );
        assert_eq!(
            cmd::<ReversalBody>(r#"{"idempotency_key":""}"#, |b| b.into_command(C)),
            Err(("invalid_request".into(), "idempotency_key".into()))
        );
    }
}
