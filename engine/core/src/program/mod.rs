//! Programs: a brand's rules (top-up limits, bonus ladder, points, tiers, discounts, velocity,
//! spend limits and store lists, locks, reminders).
//!
//! Why two types: [`ProgramSpec`] is the JSON of `POST /v1/programs` exactly as SPEC.md spells
//! it (decimals as strings, words as words); [`Program`] is the validated form the state
//! machine uses and the WAL stores (minor units, ppm rates, minutes). [`Program::from_spec`]
//! is the only way from one to the other, and names the field at fault when it refuses.

mod spec;
pub mod v1;

pub use spec::{
    DiscountWindowSpec, IntOrString, LadderStepSpec, PointsSpec, ProgramSpec, RemindersSpec,
    SpecError, SpendSpec, TierSpec, TopUpSpec, VelocitySpec, STORES_MAX,
};

use crate::money::{Amount, Currency, Rate};

/// A brand's rule set; `id` names it (`"demo"`).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Program {
    pub id: String,
    pub currency: Currency,
    /// Offset of the brand's local time from UTC, in minutes (`+08:00` ⇒ 480).
    pub utc_offset_minutes: i16,
    pub top_up: TopUpRules,
    /// Sorted by `nth`, strictly increasing; the last step applies to every later top-up.
    pub bonus_ladder: Vec<LadderStep>,
    /// Bonus lots expire this many days after the local day they were credited (see
    /// `state` docs); `None` ⇒ bonus never expires.
    pub bonus_expiry_days: Option<u32>,
    pub spend_order: SpendOrder,
    pub points: PointsRules,
    /// Sorted by `lifetime_top_up`, strictly increasing.
    pub tiers: Vec<Tier>,
    pub discount_windows: Vec<DiscountWindow>,
    pub velocity: Velocity,
    pub refund_lock_days: u32,
    pub reminders: Reminders,
    /// Per-spend and per-day limits and where the card may be used (since log record
    /// version 5; programs of older records have none).
    pub spend: SpendRules,
}

/// The program's `spend` block: caps on a single spend and on spends per local day, and the
/// stores a card may be used at. Checked for spends, holds and increments (SPEC's order: store
/// rule, single cap, daily amount, daily count).
#[derive(
    Debug, Clone, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
pub struct SpendRules {
    /// Largest amount one spend, hold or increment may charge (after discount): 单笔消费上限.
    pub max_single: Option<Amount>,
    /// Spends, holds and increments a card may make per local day.
    pub max_daily_count: Option<u32>,
    /// Sorted and deduplicated. `Some` ⇒ only these stores, and a store must be given.
    pub stores_allow: Option<Vec<String>>,
    /// Sorted and deduplicated; these stores are refused.
    pub stores_deny: Vec<String>,
}

impl SpendRules {
    /// Whether a spend or hold at `store` (`None`: no store given) passes the store rule.
    pub fn store_allowed(&self, store: Option<&str>) -> bool {
        let listed =
            |list: &[String], s: &str| list.binary_search_by(|x| x.as_str().cmp(s)).is_ok();
        if let Some(s) = store {
            if listed(&self.stores_deny, s) {
                return false;
            }
        }
        match (&self.stores_allow, store) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(allow), Some(s)) => listed(allow, s),
        }
    }
}

/// The program's `top_up` block in minor units; `None` leaves a limit off. A top-up below `min`
/// is refused `400`; past the others it is declined.
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

/// What a ladder step pays: a fixed bonus, or a rate of the top-up (rounded half-even).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub enum LadderReward {
    Fixed(Amount),
    Rate(Rate),
}

/// Which part of the balance a spend draws first. `Proportional` (the default) splits by
/// principal : bonus, so both parts shrink together.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[repr(u8)]
pub enum SpendOrder {
    #[default]
    Proportional,
    BonusFirst,
    PrincipalFirst,
}

impl SpendOrder {
    /// The JSON word.
    pub fn as_str(self) -> &'static str {
        match self {
            SpendOrder::Proportional => "proportional",
            SpendOrder::BonusFirst => "bonus_first",
            SpendOrder::PrincipalFirst => "principal_first",
        }
    }
    /// Parses the JSON word.
    pub fn parse(s: &str) -> Option<SpendOrder> {
        match s {
            "proportional" => Some(SpendOrder::Proportional),
            "bonus_first" => Some(SpendOrder::BonusFirst),
            "principal_first" => Some(SpendOrder::PrincipalFirst),
            _ => None,
        }
    }
}

/// The program's `points` block: how spends earn points and how points buy bonus.
#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct PointsRules {
    /// Points per major unit spent (before tier multiplier), as a rate (1 point ⇒ Rate::ONE).
    pub earn_per_unit: Rate,
    /// Points needed for 1.00 of bonus; 0 ⇒ redemption off.
    pub redeem_rate: u64,
}

/// A tier a card reaches once its lifetime top-ups (`paid_in`) reach `lifetime_top_up`; it
/// multiplies earned points and may discount spends.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Tier {
    pub name: String,
    pub lifetime_top_up: Amount,
    pub points_multiplier: Rate,
    pub discount: Rate,
}

/// Local-time window `[from, to)` in minutes after local midnight (`24:00` ⇒ 1440).
/// `from > to` wraps midnight (`22:00`–`02:00`).
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct DiscountWindow {
    pub from_minute: u16,
    pub to_minute: u16,
    pub rate: Rate,
}

impl DiscountWindow {
    /// Whether local minute-of-day `m` (0..1440) falls in the window.
    pub fn contains(&self, m: u16) -> bool {
        if self.from_minute <= self.to_minute {
            m >= self.from_minute && m < self.to_minute
        } else {
            m >= self.from_minute || m < self.to_minute
        }
    }
}

/// Anti-fraud limits on spends and holds: approved spends per UTC minute and what they charge
/// per local day. Either declines `velocity_limit`.
#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Velocity {
    pub max_spends_per_minute: Option<u32>,
    pub max_daily_spend: Option<Amount>,
}

/// When to tell the brand about a card: `low_balance` when available falls below it,
/// `bonus_expiring_days` before a bonus lot expires.
#[derive(Debug, Clone, PartialEq, Default, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
pub struct Reminders {
    pub low_balance: Option<Amount>,
    pub bonus_expiring_days: Option<u32>,
}

impl Program {
    /// The `demo` program of SPEC.md, created on first start.
    pub fn demo() -> Program {
        let yuan = |n: i64| Amount(n * 100);
        Program {
            id: "demo".to_string(),
            currency: Currency::Cny,
            utc_offset_minutes: 8 * 60,
            top_up: TopUpRules {
                min: Some(yuan(1)),
                max_single: Some(yuan(5000)),
                max_balance: Some(yuan(5000)),
                max_balance_anonymous: Some(yuan(1000)),
                max_daily: None,
            },
            bonus_ladder: vec![
                LadderStep {
                    nth: 1,
                    min: yuan(100),
                    reward: LadderReward::Fixed(yuan(15)),
                },
                LadderStep {
                    nth: 2,
                    min: yuan(100),
                    reward: LadderReward::Rate(Rate(100_000)),
                },
                LadderStep {
                    nth: 3,
                    min: yuan(100),
                    reward: LadderReward::Rate(Rate(50_000)),
                },
            ],
            bonus_expiry_days: Some(365),
            spend_order: SpendOrder::Proportional,
            points: PointsRules {
                earn_per_unit: Rate::ONE,
                redeem_rate: 100,
            },
            tiers: vec![
                Tier {
                    name: "silver".to_string(),
                    lifetime_top_up: yuan(1000),
                    points_multiplier: Rate(1_500_000),
                    discount: Rate::ZERO,
                },
                Tier {
                    name: "gold".to_string(),
                    lifetime_top_up: yuan(5000),
                    points_multiplier: Rate(2_000_000),
                    discount: Rate(50_000),
                },
            ],
            discount_windows: vec![DiscountWindow {
                from_minute: 20 * 60,
                to_minute: 24 * 60,
                rate: Rate(100_000),
            }],
            velocity: Velocity::default(),
            refund_lock_days: 7,
            reminders: Reminders {
                low_balance: Some(yuan(20)),
                bonus_expiring_days: Some(30),
            },
            spend: SpendRules::default(),
        }
    }

    /// The tier a card with this lifetime top-up is in (`None` below the first).
    pub fn tier_for(&self, lifetime_top_up: Amount) -> Option<&Tier> {
        self.tiers
            .iter()
            .rev()
            .find(|t| lifetime_top_up >= t.lifetime_top_up)
    }

    /// The ladder step for the `nth` top-up: the step with the largest `nth` not above it.
    pub fn ladder_step(&self, nth: u32) -> Option<&LadderStep> {
        self.bonus_ladder.iter().rev().find(|s| s.nth <= nth)
    }
}
