//! Programs: a brand's rules (top-up limits, bonus ladder, points, tiers, discounts, velocity,
//! locks, reminders). Amounts in minor units, rates in ppm. (Stub fields: the engine work owns
//! this file, adds the JSON spec type `ProgramSpec` and its validation, and `Program::demo()`.)

use crate::money::{Amount, Currency, Rate};

/// A brand's rule set; `id` names it (`"demo"`).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Program {
    pub id: String,
    pub currency: Currency,
    /// Offset of the brand's local time from UTC, in minutes (`+08:00` ⇒ 480).
    pub utc_offset_minutes: i16,
    pub top_up: TopUpRules,
    pub bonus_ladder: Vec<LadderStep>,
    pub bonus_expiry_days: Option<u32>,
    pub spend_order: SpendOrder,
    pub points: PointsRules,
    pub tiers: Vec<Tier>,
    pub discount_windows: Vec<DiscountWindow>,
    pub velocity: Velocity,
    pub refund_lock_days: u32,
    pub reminders: Reminders,
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct TopUpRules {
    pub min: Option<Amount>,
    pub max_single: Option<Amount>,
    /// Balance cap for registered cards.
    pub max_balance: Option<Amount>,
    /// Balance cap for anonymous cards.
    pub max_balance_anonymous: Option<Amount>,
    pub max_daily: Option<Amount>,
}

/// One step of the ladder: the `nth` top-up of at least `min` earns a fixed `bonus` or a `rate`.
/// The last step applies to every later top-up.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct LadderStep {
    pub nth: u32,
    pub min: Amount,
    pub reward: LadderReward,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum LadderReward {
    Fixed(Amount),
    Rate(Rate),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[repr(u8)]
pub enum SpendOrder {
    #[default]
    Proportional,
    BonusFirst,
    PrincipalFirst,
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PointsRules {
    /// Points per major unit spent (before tier multiplier), as a rate (1 point ⇒ Rate::ONE).
    pub earn_per_unit: Rate,
    /// Points needed for 1.00 of bonus; 0 ⇒ redemption off.
    pub redeem_rate: u64,
}

#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Tier {
    pub name: String,
    pub lifetime_top_up: Amount,
    pub points_multiplier: Rate,
    pub discount: Rate,
}

/// Local-time window `[from, to)` in minutes after local midnight (`24:00` ⇒ 1440).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DiscountWindow {
    pub from_minute: u16,
    pub to_minute: u16,
    pub rate: Rate,
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Velocity {
    pub max_spends_per_minute: Option<u32>,
    pub max_daily_spend: Option<Amount>,
}

#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Reminders {
    pub low_balance: Option<Amount>,
    pub bonus_expiring_days: Option<u32>,
}

/// The JSON body of `POST /v1/programs`, exactly as SPEC.md spells it (decimals as strings).
/// (Stub: the engine work defines the fields, `#[serde(deny_unknown_fields)]`.)
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProgramSpec {
    pub id: String,
    pub currency: String,
}

/// Why a program spec was refused: `400` naming the field (`"bonus_ladder[1].rate"`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct SpecError {
    pub field: String,
    pub reason: String,
}

impl Program {
    /// Validates a spec and converts it to minor units and ppm rates.
    pub fn from_spec(spec: &ProgramSpec) -> Result<Program, SpecError> {
        let _ = spec;
        todo!()
    }
    /// The `demo` program of SPEC.md, created on first start.
    pub fn demo() -> Program {
        todo!()
    }
}
