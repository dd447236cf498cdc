//! The program layout before the `spend` block (log record versions 1 to 4, snapshot versions
//! 1 and 2), read so that old logs and snapshots still load.
//!
//! Field for field today's [`Program`] without `spend`; the nested rule types are unchanged
//! and shared. Nothing writes this layout any more (but the tests, which pin its bytes).

use super::{
    DiscountWindow, LadderStep, PointsRules, Program, Reminders, SpendOrder, SpendRules, Tier,
    TopUpRules, Velocity,
};
use crate::money::Currency;

/// A program as records before version 5 archived it.
#[derive(Debug, Clone, PartialEq, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
#[allow(missing_docs)] // as `Program`: the layout it mirrors
pub struct ProgramV1 {
    pub id: String,
    pub currency: Currency,
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

impl From<ProgramV1> for Program {
    /// An old program has no spend limits and no store lists.
    fn from(p: ProgramV1) -> Program {
        Program {
            id: p.id,
            currency: p.currency,
            utc_offset_minutes: p.utc_offset_minutes,
            top_up: p.top_up,
            bonus_ladder: p.bonus_ladder,
            bonus_expiry_days: p.bonus_expiry_days,
            spend_order: p.spend_order,
            points: p.points,
            tiers: p.tiers,
            discount_windows: p.discount_windows,
            velocity: p.velocity,
            refund_lock_days: p.refund_lock_days,
            reminders: p.reminders,
            spend: SpendRules::default(),
        }
    }
}

impl ProgramV1 {
    /// `p` in the old layout, dropping its `spend` block (for tests that write old records).
    pub fn from_current(p: &Program) -> ProgramV1 {
        ProgramV1 {
            id: p.id.clone(),
            currency: p.currency,
            utc_offset_minutes: p.utc_offset_minutes,
            top_up: p.top_up.clone(),
            bonus_ladder: p.bonus_ladder.clone(),
            bonus_expiry_days: p.bonus_expiry_days,
            spend_order: p.spend_order,
            points: p.points.clone(),
            tiers: p.tiers.clone(),
            discount_windows: p.discount_windows.clone(),
            velocity: p.velocity.clone(),
            refund_lock_days: p.refund_lock_days,
            reminders: p.reminders.clone(),
        }
    }
}
