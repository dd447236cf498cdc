//! The JSON form of a program ([`ProgramSpec`], `POST /v1/programs` as SPEC.md spells it) and
//! the only way between it and the validated [`Program`]: [`Program::from_spec`], one small
//! function per section that names the field at fault, and [`Program::to_spec`].

use super::{
    DiscountWindow, LadderReward, LadderStep, PointsRules, Program, Reminders, SpendOrder,
    SpendRules, Tier, TopUpRules, Velocity,
};
use crate::money::{Amount, AmountError, Currency, Rate};

/// The JSON body of `POST /v1/programs`, exactly as SPEC.md spells it (decimals as strings).
/// Every field but `id` and `currency` is optional. Unknown fields are refused so that a typo
/// never silently drops a rule.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    pub id: String,
    /// `"CNY"`.
    pub currency: String,
    /// `"+08:00"`; default `"+00:00"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub top_up: Option<TopUpSpec>,
    /// Steps with strictly increasing `nth`; the last applies to every later top-up.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub bonus_ladder: Vec<LadderStepSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonus_expiry_days: Option<u32>,
    /// `proportional` (default) | `bonus_first` | `principal_first`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_order: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points: Option<PointsSpec>,
    /// Strictly increasing `lifetime_top_up`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tiers: Vec<TierSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub discount_windows: Vec<DiscountWindowSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub velocity: Option<VelocitySpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refund_lock_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminders: Option<RemindersSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend: Option<SpendSpec>,
}

/// `spend` of a [`ProgramSpec`]: `max_single` (a decimal string), `max_daily_count` (spends per
/// local day), `stores_allow` / `stores_deny` (store ids).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpendSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_single: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_daily_count: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stores_allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stores_deny: Vec<String>,
}

/// `top_up` of a [`ProgramSpec`]: amounts as decimal strings. SPEC's two balance caps are
/// `max_balance` (registered cards) and `max_balance_anonymous`.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TopUpSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_single: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_balance_anonymous: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_daily: Option<String>,
}

/// One ladder step: exactly one of `bonus` (fixed amount) or `rate` (of the top-up).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct LadderStepSpec {
    pub nth: u32,
    /// Minimum top-up amount for the step to pay; default none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonus: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<String>,
}

/// `points`: `earn_per_unit` points per 1.00 spent (decimal string, default 0 ⇒ no points),
/// `redeem_rate` points per 1.00 of bonus (integer, as a string or a number; absent ⇒ off).
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PointsSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earn_per_unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redeem_rate: Option<IntOrString>,
}

/// An integer given either as a JSON number or a string (`100` or `"100"`).
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(u64),
    Str(String),
}

/// A tier reached by lifetime top-up; multiplier default 1, discount default 0.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct TierSpec {
    pub name: String,
    pub lifetime_top_up: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_multiplier: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub discount: Option<String>,
}

/// `{"from":"20:00","to":"24:00","rate":"0.10"}`, local time of the program.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct DiscountWindowSpec {
    pub from: String,
    pub to: String,
    pub rate: String,
}

/// `velocity` of a [`ProgramSpec`]: `max_spends_per_minute`, and `max_daily_spend` as a decimal
/// string.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct VelocitySpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_spends_per_minute: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_daily_spend: Option<String>,
}

/// `reminders` of a [`ProgramSpec`]: `low_balance` as a decimal string, `bonus_expiring_days` in
/// days before a bonus lot expires.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct RemindersSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub low_balance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bonus_expiring_days: Option<u32>,
}

/// Why a program spec was refused: `400` naming the field (`"bonus_ladder[1].rate"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

fn err(field: impl Into<String>, reason: impl Into<String>) -> SpecError {
    SpecError {
        field: field.into(),
        reason: reason.into(),
    }
}

fn amount_reason(e: AmountError) -> String {
    e.to_string()
}

/// Largest ratio accepted for a bonus rate or points multiplier (1000%).
const RATE_MAX: Rate = Rate(10_000_000);
/// Largest number of ladder steps, tiers or discount windows in one program.
const RULES_MAX: usize = 64;
/// Largest day count accepted (100 years).
const DAYS_MAX: u32 = 36_500;
/// Longest tier name, in characters.
const TIER_NAME_LEN_MAX: usize = 32;
/// Most stores in one allow or deny list.
pub const STORES_MAX: usize = 4096;

impl Program {
    /// Validates a spec and converts it to minor units and ppm rates: each section by its own
    /// function below, each refusal naming the field at fault.
    pub fn from_spec(spec: &ProgramSpec) -> Result<Program, SpecError> {
        crate::rules::check_program_id(&spec.id).map_err(|reason| err("id", reason))?;
        let currency = Currency::from_code(&spec.currency)
            .ok_or_else(|| err("currency", "unknown currency (CNY)"))?;
        let f = Fields { currency };
        let utc_offset_minutes = match &spec.utc_offset {
            None => 0,
            Some(s) => parse_utc_offset(s)
                .ok_or_else(|| err("utc_offset", "expected ±HH:MM within ±14:00"))?,
        };
        // Fields in the order a refusal names the first bad one.
        Ok(Program {
            id: spec.id.clone(),
            currency,
            utc_offset_minutes,
            top_up: top_up_rules(&f, spec.top_up.as_ref())?,
            bonus_ladder: bonus_ladder(&f, &spec.bonus_ladder)?,
            bonus_expiry_days: f.days("bonus_expiry_days", spec.bonus_expiry_days)?,
            spend_order: spend_order(spec.spend_order.as_deref())?,
            points: points_rules(&f, spec.points.as_ref())?,
            tiers: tiers(&f, &spec.tiers)?,
            discount_windows: discount_windows(&f, &spec.discount_windows)?,
            velocity: velocity(&f, spec.velocity.as_ref())?,
            refund_lock_days: match spec.refund_lock_days {
                None | Some(0) => 0,
                d => f.days("refund_lock_days", d)?.unwrap_or(0),
            },
            reminders: reminders(&f, spec.reminders.as_ref())?,
            spend: spend_rules(&f, spec.spend.as_ref())?,
        })
    }

    /// The spec that [`Program::from_spec`] turns back into this program (for `GET` and tests).
    pub fn to_spec(&self) -> ProgramSpec {
        let c = self.currency;
        let amt = |a: Amount| c.format(a);
        let opt = |a: Option<Amount>| a.map(amt);
        ProgramSpec {
            id: self.id.clone(),
            currency: c.code().to_string(),
            utc_offset: Some(format_utc_offset(self.utc_offset_minutes)),
            top_up: Some(TopUpSpec {
                min: opt(self.top_up.min),
                max_single: opt(self.top_up.max_single),
                max_balance: opt(self.top_up.max_balance),
                max_balance_anonymous: opt(self.top_up.max_balance_anonymous),
                max_daily: opt(self.top_up.max_daily),
            }),
            bonus_ladder: self
                .bonus_ladder
                .iter()
                .map(|s| LadderStepSpec {
                    nth: s.nth,
                    min: (s.min > Amount::ZERO).then(|| amt(s.min)),
                    bonus: match s.reward {
                        LadderReward::Fixed(a) => Some(amt(a)),
                        LadderReward::Rate(_) => None,
                    },
                    rate: match s.reward {
                        LadderReward::Fixed(_) => None,
                        LadderReward::Rate(r) => Some(r.to_decimal_string()),
                    },
                })
                .collect(),
            bonus_expiry_days: self.bonus_expiry_days,
            spend_order: Some(self.spend_order.as_str().to_string()),
            points: Some(PointsSpec {
                earn_per_unit: Some(self.points.earn_per_unit.to_decimal_string()),
                redeem_rate: (self.points.redeem_rate > 0)
                    .then_some(IntOrString::Int(self.points.redeem_rate)),
            }),
            tiers: self
                .tiers
                .iter()
                .map(|t| TierSpec {
                    name: t.name.clone(),
                    lifetime_top_up: amt(t.lifetime_top_up),
                    points_multiplier: Some(t.points_multiplier.to_decimal_string()),
                    discount: Some(t.discount.to_decimal_string()),
                })
                .collect(),
            discount_windows: self
                .discount_windows
                .iter()
                .map(|w| DiscountWindowSpec {
                    from: format_hh_mm(w.from_minute),
                    to: format_hh_mm(w.to_minute),
                    rate: w.rate.to_decimal_string(),
                })
                .collect(),
            velocity: Some(VelocitySpec {
                max_spends_per_minute: self.velocity.max_spends_per_minute,
                max_daily_spend: opt(self.velocity.max_daily_spend),
            }),
            refund_lock_days: Some(self.refund_lock_days),
            reminders: Some(RemindersSpec {
                low_balance: opt(self.reminders.low_balance),
                bonus_expiring_days: self.reminders.bonus_expiring_days,
            }),
            spend: Some(SpendSpec {
                max_single: opt(self.spend.max_single),
                max_daily_count: self.spend.max_daily_count,
                stores_allow: self.spend.stores_allow.clone(),
                stores_deny: self.spend.stores_deny.clone(),
            }),
        }
    }
}

/// How a spec's fields are read: amounts in the program's currency, rates with a ceiling,
/// day counts within bounds; every refusal names the field.
struct Fields {
    currency: Currency,
}

impl Fields {
    fn amount(&self, field: &str, s: &str) -> Result<Amount, SpecError> {
        self.currency
            .parse_amount(s)
            .map_err(|e| err(field, amount_reason(e)))
    }

    fn opt_amount(&self, field: &str, s: &Option<String>) -> Result<Option<Amount>, SpecError> {
        s.as_deref().map(|s| self.amount(field, s)).transpose()
    }

    fn rate_max(&self, field: &str, s: &str, max: Rate) -> Result<Rate, SpecError> {
        let r = Rate::parse(s).map_err(|e| err(field, amount_reason(e)))?;
        if r > max {
            return Err(err(field, format!("at most {}", max.to_decimal_string())));
        }
        Ok(r)
    }

    fn days(&self, field: &str, d: Option<u32>) -> Result<Option<u32>, SpecError> {
        match d {
            Some(d) if d == 0 || d > DAYS_MAX => Err(err(field, format!("1..={DAYS_MAX} days"))),
            d => Ok(d),
        }
    }
}

fn top_up_rules(f: &Fields, spec: Option<&TopUpSpec>) -> Result<TopUpRules, SpecError> {
    let Some(t) = spec else {
        return Ok(TopUpRules::default());
    };
    let top_up = TopUpRules {
        min: f.opt_amount("top_up.min", &t.min)?,
        max_single: f.opt_amount("top_up.max_single", &t.max_single)?,
        max_balance: f.opt_amount("top_up.max_balance", &t.max_balance)?,
        max_balance_anonymous: f
            .opt_amount("top_up.max_balance_anonymous", &t.max_balance_anonymous)?,
        max_daily: f.opt_amount("top_up.max_daily", &t.max_daily)?,
    };
    if let (Some(min), Some(max)) = (top_up.min, top_up.max_single) {
        if min > max {
            return Err(err("top_up.min", "above top_up.max_single"));
        }
    }
    Ok(top_up)
}

fn bonus_ladder(f: &Fields, spec: &[LadderStepSpec]) -> Result<Vec<LadderStep>, SpecError> {
    if spec.len() > RULES_MAX {
        return Err(err("bonus_ladder", format!("at most {RULES_MAX} steps")));
    }
    let mut ladder: Vec<LadderStep> = Vec::with_capacity(spec.len());
    for (i, s) in spec.iter().enumerate() {
        let name = |field: &str| format!("bonus_ladder[{i}].{field}");
        if s.nth == 0 {
            return Err(err(name("nth"), "starts at 1"));
        }
        if let Some(prev) = ladder.last().map(|p| p.nth) {
            if s.nth <= prev {
                return Err(err(name("nth"), "must increase from step to step"));
            }
        }
        let min = match &s.min {
            None => Amount::ZERO,
            Some(m) => f.amount(&name("min"), m)?,
        };
        let reward = match (&s.bonus, &s.rate) {
            (Some(b), None) => LadderReward::Fixed(f.amount(&name("bonus"), b)?),
            (None, Some(r)) => LadderReward::Rate(f.rate_max(&name("rate"), r, RATE_MAX)?),
            _ => return Err(err(name("bonus"), "exactly one of bonus or rate")),
        };
        ladder.push(LadderStep {
            nth: s.nth,
            min,
            reward,
        });
    }
    Ok(ladder)
}

fn spend_order(spec: Option<&str>) -> Result<SpendOrder, SpecError> {
    match spec {
        None => Ok(SpendOrder::default()),
        Some(s) => SpendOrder::parse(s).ok_or_else(|| {
            err(
                "spend_order",
                "proportional | bonus_first | principal_first",
            )
        }),
    }
}

fn points_rules(f: &Fields, spec: Option<&PointsSpec>) -> Result<PointsRules, SpecError> {
    let Some(p) = spec else {
        return Ok(PointsRules::default());
    };
    let points = PointsRules {
        earn_per_unit: match &p.earn_per_unit {
            None => Rate::ZERO,
            Some(s) => f.rate_max("points.earn_per_unit", s, Rate(1_000_000_000))?,
        },
        redeem_rate: match &p.redeem_rate {
            None => 0,
            Some(IntOrString::Int(n)) => *n,
            Some(IntOrString::Str(s)) => s
                .parse::<u64>()
                .map_err(|_| err("points.redeem_rate", "an integer number of points"))?,
        },
    };
    if points.redeem_rate > 1_000_000_000 {
        return Err(err("points.redeem_rate", "at most 10^9"));
    }
    Ok(points)
}

fn tiers(f: &Fields, spec: &[TierSpec]) -> Result<Vec<Tier>, SpecError> {
    if spec.len() > RULES_MAX {
        return Err(err("tiers", format!("at most {RULES_MAX} tiers")));
    }
    let mut tiers: Vec<Tier> = Vec::with_capacity(spec.len());
    for (i, t) in spec.iter().enumerate() {
        let name = |field: &str| format!("tiers[{i}].{field}");
        // Characters, as the API document's `maxLength` counts them.
        if t.name.is_empty() || t.name.chars().count() > TIER_NAME_LEN_MAX {
            return Err(err(name("name"), "1–32 characters"));
        }
        if tiers.iter().any(|o| o.name == t.name) {
            return Err(err(name("name"), "duplicate tier name"));
        }
        // Zero is a valid threshold here (a base tier), unlike a request amount.
        let lifetime_top_up = match f.currency.parse_amount(&t.lifetime_top_up) {
            Err(AmountError::NotPositive) if !t.lifetime_top_up.starts_with('-') => Amount::ZERO,
            r => r.map_err(|e| err(name("lifetime_top_up"), amount_reason(e)))?,
        };
        if let Some(prev) = tiers.last() {
            if lifetime_top_up <= prev.lifetime_top_up {
                return Err(err(
                    name("lifetime_top_up"),
                    "must increase from tier to tier",
                ));
            }
        }
        let points_multiplier = match &t.points_multiplier {
            None => Rate::ONE,
            Some(s) => f.rate_max(&name("points_multiplier"), s, RATE_MAX)?,
        };
        let discount = match &t.discount {
            None => Rate::ZERO,
            Some(s) => f.rate_max(&name("discount"), s, Rate::ONE)?,
        };
        tiers.push(Tier {
            name: t.name.clone(),
            lifetime_top_up,
            points_multiplier,
            discount,
        });
    }
    Ok(tiers)
}

fn discount_windows(
    f: &Fields,
    spec: &[DiscountWindowSpec],
) -> Result<Vec<DiscountWindow>, SpecError> {
    if spec.len() > RULES_MAX {
        return Err(err(
            "discount_windows",
            format!("at most {RULES_MAX} windows"),
        ));
    }
    let mut windows = Vec::with_capacity(spec.len());
    for (i, w) in spec.iter().enumerate() {
        let name = |field: &str| format!("discount_windows[{i}].{field}");
        let from_minute =
            parse_hh_mm(&w.from).ok_or_else(|| err(name("from"), "expected HH:MM, 00:00–24:00"))?;
        let to_minute =
            parse_hh_mm(&w.to).ok_or_else(|| err(name("to"), "expected HH:MM, 00:00–24:00"))?;
        if from_minute == 1440 {
            return Err(err(name("from"), "a window starts before 24:00"));
        }
        if from_minute == to_minute {
            return Err(err(name("to"), "empty window"));
        }
        let rate = f.rate_max(&name("rate"), &w.rate, Rate::ONE)?;
        windows.push(DiscountWindow {
            from_minute,
            to_minute,
            rate,
        });
    }
    Ok(windows)
}

fn velocity(f: &Fields, spec: Option<&VelocitySpec>) -> Result<Velocity, SpecError> {
    let Some(v) = spec else {
        return Ok(Velocity::default());
    };
    if v.max_spends_per_minute == Some(0) {
        return Err(err("velocity.max_spends_per_minute", "at least 1"));
    }
    Ok(Velocity {
        max_spends_per_minute: v.max_spends_per_minute,
        max_daily_spend: f.opt_amount("velocity.max_daily_spend", &v.max_daily_spend)?,
    })
}

fn reminders(f: &Fields, spec: Option<&RemindersSpec>) -> Result<Reminders, SpecError> {
    let Some(r) = spec else {
        return Ok(Reminders::default());
    };
    Ok(Reminders {
        low_balance: f.opt_amount("reminders.low_balance", &r.low_balance)?,
        bonus_expiring_days: f.days("reminders.bonus_expiring_days", r.bonus_expiring_days)?,
    })
}

fn spend_rules(f: &Fields, spec: Option<&SpendSpec>) -> Result<SpendRules, SpecError> {
    let Some(s) = spec else {
        return Ok(SpendRules::default());
    };
    if s.max_daily_count == Some(0) {
        return Err(err("spend.max_daily_count", "at least 1"));
    }
    Ok(SpendRules {
        max_single: f.opt_amount("spend.max_single", &s.max_single)?,
        max_daily_count: s.max_daily_count,
        stores_allow: s
            .stores_allow
            .as_deref()
            .map(|l| store_list("spend.stores_allow", l))
            .transpose()?,
        stores_deny: store_list("spend.stores_deny", &s.stores_deny)?,
    })
}

/// A store list: each store as requests may name it (`rules::check_store`), at most
/// [`STORES_MAX`]; sorted and deduplicated.
fn store_list(field: &str, list: &[String]) -> Result<Vec<String>, SpecError> {
    if list.len() > STORES_MAX {
        return Err(err(field, format!("at most {STORES_MAX} stores")));
    }
    for (i, s) in list.iter().enumerate() {
        crate::rules::check_store(s).map_err(|reason| err(format!("{field}[{i}]"), reason))?;
    }
    let mut v = list.to_vec();
    v.sort_unstable();
    v.dedup();
    Ok(v)
}

/// `"+08:00"` ⇒ 480; `"-05:30"` ⇒ -330; `"Z"` ⇒ 0.
fn parse_utc_offset(s: &str) -> Option<i16> {
    if s == "Z" {
        return Some(0);
    }
    let (sign, rest) = match s.as_bytes().first()? {
        b'+' => (1i16, &s[1..]),
        b'-' => (-1i16, &s[1..]),
        _ => return None,
    };
    let m = parse_hh_mm(rest)? as i16;
    (m <= 14 * 60).then_some(sign * m)
}

fn format_utc_offset(m: i16) -> String {
    let sign = if m < 0 { '-' } else { '+' };
    format!("{sign}{}", format_hh_mm(m.unsigned_abs()))
}

/// `"HH:MM"` ⇒ minutes after midnight, `00:00`..=`24:00`.
fn parse_hh_mm(s: &str) -> Option<u16> {
    let b = s.as_bytes();
    if b.len() != 5 || b[2] != b':' || ![b[0], b[1], b[3], b[4]].iter().all(u8::is_ascii_digit) {
        return None;
    }
    let h = u16::from(b[0] - b'0') * 10 + u16::from(b[1] - b'0');
    let m = u16::from(b[3] - b'0') * 10 + u16::from(b[4] - b'0');
    if m >= 60 || h > 24 || (h == 24 && m != 0) {
        return None;
    }
    Some(h * 60 + m)
}

fn format_hh_mm(m: u16) -> String {
    format!("{:02}:{:02}", m / 60, m % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Program, SpecError> {
        let s: ProgramSpec = serde_json::from_str(json).map_err(|e| err("json", e.to_string()))?;
        Program::from_spec(&s)
    }

    #[test]
    fn spec_example_parses() {
        let p = spec(
            r#"{"id":"coffee","currency":"CNY","utc_offset":"+08:00",
            "top_up":{"min":"1","max_single":"5000","max_balance":"5000","max_balance_anonymous":"1000","max_daily":"10000"},
            "bonus_ladder":[{"nth":1,"min":"100","bonus":"15"},{"nth":2,"min":"100","rate":"0.10"},{"nth":3,"min":"100","rate":"0.05"}],
            "bonus_expiry_days":365,"spend_order":"bonus_first",
            "points":{"earn_per_unit":"1","redeem_rate":"100"},
            "tiers":[{"name":"silver","lifetime_top_up":"1000","points_multiplier":"1.5","discount":"0.02"},{"name":"gold","lifetime_top_up":"5000","points_multiplier":"2","discount":"0.05"}],
            "discount_windows":[{"from":"20:00","to":"24:00","rate":"0.10"}],
            "velocity":{"max_spends_per_minute":5,"max_daily_spend":"2000"},
            "refund_lock_days":7,"reminders":{"low_balance":"20","bonus_expiring_days":30},
            "spend":{"max_single":"300","max_daily_count":20,"stores_allow":["s2","s1","s2"],"stores_deny":["s9"]}}"#,
        )
        .unwrap();
        assert_eq!(p.spend.max_single, Some(Amount(30_000)));
        assert_eq!(p.spend.max_daily_count, Some(20));
        assert_eq!(
            p.spend.stores_allow,
            Some(vec!["s1".to_string(), "s2".to_string()])
        );
        assert!(p.spend.store_allowed(Some("s1")) && !p.spend.store_allowed(Some("s3")));
        assert!(!p.spend.store_allowed(None), "an allow list needs a store");
        assert_eq!(p.utc_offset_minutes, 480);
        assert_eq!(p.top_up.max_balance_anonymous, Some(Amount(100_000)));
        assert_eq!(p.bonus_ladder[1].reward, LadderReward::Rate(Rate(100_000)));
        assert_eq!(p.spend_order, SpendOrder::BonusFirst);
        assert_eq!(p.tiers[0].discount, Rate(20_000));
        assert_eq!(p.discount_windows[0].to_minute, 1440);
        assert_eq!(p.points.redeem_rate, 100);
        // round trip through to_spec
        assert_eq!(Program::from_spec(&p.to_spec()).unwrap(), p);
    }

    #[test]
    fn demo_round_trips_and_matches_spec() {
        let d = Program::demo();
        assert_eq!(Program::from_spec(&d.to_spec()).unwrap(), d);
        assert_eq!(
            d.ladder_step(1).unwrap().reward,
            LadderReward::Fixed(Amount(1500))
        );
        assert_eq!(
            d.ladder_step(7).unwrap().reward,
            LadderReward::Rate(Rate(50_000))
        );
        assert_eq!(d.tier_for(Amount(99_999)).map(|t| t.name.as_str()), None);
        assert_eq!(
            d.tier_for(Amount(100_000)).map(|t| t.name.as_str()),
            Some("silver")
        );
        assert_eq!(
            d.tier_for(Amount(500_000)).map(|t| t.name.as_str()),
            Some("gold")
        );
    }

    #[test]
    fn minimal_spec_and_refusals_name_the_field() {
        let p = spec(r#"{"id":"p1","currency":"CNY"}"#).unwrap();
        assert_eq!(p.utc_offset_minutes, 0);
        assert!(p.bonus_ladder.is_empty());
        let field = |j: &str| spec(j).unwrap_err().field;
        assert_eq!(field(r#"{"id":"p1","currency":"USD"}"#), "currency");
        assert_eq!(field(r#"{"id":"","currency":"CNY"}"#), "id");
        assert_eq!(
            field(r#"{"id":"p","currency":"CNY","utc_offset":"8"}"#),
            "utc_offset"
        );
        assert_eq!(field(r#"{"id":"p","currency":"CNY","bogus":1}"#), "json");
        assert_eq!(
            field(r#"{"id":"p","currency":"CNY","top_up":{"max_single":"1.001"}}"#),
            "top_up.max_single"
        );
        assert_eq!(
            field(
                r#"{"id":"p","currency":"CNY","bonus_ladder":[{"nth":1,"bonus":"1"},{"nth":2,"rate":"x"}]}"#
            ),
            "bonus_ladder[1].rate"
        );
        assert_eq!(
            field(
                r#"{"id":"p","currency":"CNY","bonus_ladder":[{"nth":1,"bonus":"1","rate":"0.1"}]}"#
            ),
            "bonus_ladder[0].bonus"
        );
        assert_eq!(
            field(
                r#"{"id":"p","currency":"CNY","bonus_ladder":[{"nth":2,"bonus":"1"},{"nth":1,"bonus":"1"}]}"#
            ),
            "bonus_ladder[1].nth"
        );
        assert_eq!(
            field(
                r#"{"id":"p","currency":"CNY","discount_windows":[{"from":"20:00","to":"24:01","rate":"0.1"}]}"#
            ),
            "discount_windows[0].to"
        );
        assert_eq!(
            field(
                r#"{"id":"p","currency":"CNY","discount_windows":[{"from":"20:00","to":"21:00","rate":"1.5"}]}"#
            ),
            "discount_windows[0].rate"
        );
        assert_eq!(
            field(r#"{"id":"p","currency":"CNY","spend_order":"lifo"}"#),
            "spend_order"
        );
        assert_eq!(
            field(r#"{"id":"p","currency":"CNY","spend":{"max_single":"0"}}"#),
            "spend.max_single"
        );
        assert_eq!(
            field(r#"{"id":"p","currency":"CNY","spend":{"max_daily_count":0}}"#),
            "spend.max_daily_count"
        );
        assert_eq!(
            field(r#"{"id":"p","currency":"CNY","spend":{"stores_deny":["a",""]}}"#),
            "spend.stores_deny[1]"
        );
        assert_eq!(
            field(r#"{"id":"p","currency":"CNY","spend":{"max_count":1}}"#),
            "json"
        );
        assert_eq!(
            field(
                r#"{"id":"p","currency":"CNY","tiers":[{"name":"a","lifetime_top_up":"10"},{"name":"b","lifetime_top_up":"5"}]}"#
            ),
            "tiers[1].lifetime_top_up"
        );
    }

    #[test]
    fn windows_wrap_midnight() {
        let w = DiscountWindow {
            from_minute: 22 * 60,
            to_minute: 2 * 60,
            rate: Rate(1),
        };
        assert!(w.contains(23 * 60) && w.contains(60) && !w.contains(3 * 60));
        let w = DiscountWindow {
            from_minute: 20 * 60,
            to_minute: 1440,
            rate: Rate(1),
        };
        assert!(w.contains(1439) && w.contains(1200) && !w.contains(1199) && !w.contains(0));
    }

    #[test]
    fn tier_at_zero_is_allowed() {
        let p =
            spec(r#"{"id":"p","currency":"CNY","tiers":[{"name":"base","lifetime_top_up":"0"}]}"#)
                .unwrap();
        assert_eq!(
            p.tier_for(Amount::ZERO).map(|t| t.name.as_str()),
            Some("base")
        );
    }
}
