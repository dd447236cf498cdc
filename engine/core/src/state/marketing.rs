//! The brand's marketing rules as pure functions: ladder bonus, discounts, points, tiers,
//! the principal/bonus split, local time. Every percentage rounds half-even to the minor unit
//! (`money::mul_div_half_even`) unless a doc comment here says otherwise.

use crate::money::{mul_div_half_even, Amount, Rate};
use crate::outcome::DiscountSource;

use crate::program::{LadderReward, Program, SpendOrder};

/// `amount × rate`, half-even (as `Rate::apply`, on the fast path).
pub(crate) fn rate_of(rate: Rate, amount: Amount) -> Amount {
    if rate.0 == 0 {
        return Amount::ZERO;
    }
    Amount(mul_div_half_even(amount.0, i64::from(rate.0), 1_000_000))
}

/// Partial approval: the largest merchant amount `g ≤ amount` whose price after discount at
/// `rate` (`g − rate_of(rate, g)`) is at most `available`. The price rises by 0 or 1 minor unit
/// per unit of `g` (a rate of at most 1, rounded half-even), so when `amount`'s price is above
/// `available` the price of `g` is exactly `available`.
pub(crate) fn gross_within(rate: Rate, amount: Amount, available: Amount) -> Amount {
    let price = |g: i64| g - rate_of(rate, Amount(g)).0;
    if available.0 <= 0 {
        return Amount::ZERO;
    }
    if price(amount.0) <= available.0 {
        return amount;
    }
    // Binary search on the monotone price: price(lo) ≤ available < price(hi).
    let (mut lo, mut hi) = (0i64, amount.0);
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if price(mid) <= available.0 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let g = lo;
    Amount(g)
}

pub(crate) const DAY_MS: i64 = 86_400_000;
pub(crate) const MINUTE_MS: i64 = 60_000;

/// Milliseconds of local time (the program's UTC offset applied).
pub(crate) fn local_ms(p: &Program, now: i64) -> i64 {
    now.saturating_add(i64::from(p.utc_offset_minutes) * MINUTE_MS)
}

/// The local day number (days since 1970-01-01 local) of `now`.
pub(crate) fn local_day(p: &Program, now: i64) -> i32 {
    local_ms(p, now).div_euclid(DAY_MS) as i32
}

/// The local minute of the day (0..1440) of `now`.
pub(crate) fn local_minute_of_day(p: &Program, now: i64) -> u16 {
    (local_ms(p, now).rem_euclid(DAY_MS) / MINUTE_MS) as u16
}

/// When bonus credited at `now` expires: at local midnight ending the `bonus_expiry_days`-th
/// day after the day of credit (bonus credited any time on 1 March with 365 days is good
/// through 1 March next year, 24:00 local). Rounding to whole local days lets all bonus of
/// one day share one lot.
pub(crate) fn lot_expiry(p: &Program, now: i64) -> i64 {
    match p.bonus_expiry_days {
        None => super::lots::NEVER,
        Some(d) => {
            let day = local_ms(p, now).div_euclid(DAY_MS) + i64::from(d) + 1;
            day * DAY_MS - i64::from(p.utc_offset_minutes) * MINUTE_MS
        }
    }
}

/// Ladder bonus for the `nth` top-up of `amount`: the step with the largest `nth` not above
/// it pays when `amount ≥ step.min`; a rate rounds half-even. Ordinal counts every approved,
/// unreversed top-up (a small first top-up uses up the first-top-up offer).
pub(crate) fn ladder_bonus(p: &Program, nth: u32, amount: Amount) -> Amount {
    match p.ladder_step(nth) {
        Some(s) if amount >= s.min => match s.reward {
            LadderReward::Fixed(b) => b,
            LadderReward::Rate(r) => rate_of(r, amount),
        },
        _ => Amount::ZERO,
    }
}

/// Discount rate on a spend or hold at `now` for a card with lifetime top-up `paid_in`.
/// The tier discount and the time-window discount do not stack: the larger applies (as
/// brands usually print "not combinable with other offers"); overlapping windows likewise.
#[cfg(test)]
pub(crate) fn discount_rate(p: &Program, paid_in: Amount, now: i64) -> Rate {
    discount_of(p, paid_in, now).0
}

/// [`discount_rate`] and which discount it is (`None` when there is none); on a tie the
/// tier's.
pub(crate) fn discount_of(
    p: &Program,
    paid_in: Amount,
    now: i64,
) -> (Rate, Option<DiscountSource>) {
    let tier = p.tier_for(paid_in).map_or(Rate::ZERO, |t| t.discount);
    let window = if p.discount_windows.is_empty() {
        Rate::ZERO
    } else {
        let m = local_minute_of_day(p, now);
        p.discount_windows
            .iter()
            .filter(|w| w.contains(m))
            .map(|w| w.rate)
            .fold(Rate::ZERO, Rate::max)
    };
    if window > tier {
        (window, Some(DiscountSource::Window))
    } else if tier.0 > 0 {
        (tier, Some(DiscountSource::Tier))
    } else {
        (Rate::ZERO, None)
    }
}

/// Points earned by charging `amount`: `earn_per_unit` per major unit × the tier multiplier,
/// rounded **down** to a whole point (points are only earned for whole units, the usual rule).
pub(crate) fn points_earned(p: &Program, paid_in: Amount, amount: Amount) -> u64 {
    let earn = p.points.earn_per_unit.0;
    if earn == 0 || amount.0 <= 0 {
        return 0;
    }
    let mult = p
        .tier_for(paid_in)
        .map_or(Rate::ONE, |t| t.points_multiplier)
        .0;
    // Fast path: the product usually fits in u64.
    let product = (amount.0 as u64)
        .checked_mul(u64::from(earn))
        .and_then(|n| n.checked_mul(u64::from(mult)));
    if let Some(n) = product {
        return n / (10u64.pow(p.currency.scale()) * 1_000_000 * 1_000_000);
    }
    let minor_per_major = 10i128.pow(p.currency.scale());
    let n = i128::from(amount.0) * i128::from(earn) * i128::from(mult);
    let d = minor_per_major * 1_000_000 * 1_000_000;
    u64::try_from(n / d).unwrap_or(u64::MAX)
}

/// Bonus bought by redeeming `points` at `redeem_rate` points per 1.00, half-even.
pub(crate) fn redeem_value(p: &Program, points: u64) -> Amount {
    let r = p.points.redeem_rate;
    if r == 0 {
        return Amount::ZERO;
    }
    let minor_per_major = 10i128.pow(p.currency.scale());
    let n = i128::from(points) * minor_per_major;
    let d = i128::from(r);
    let q = n / d;
    let rem = n % d;
    let q = if 2 * rem > d || (2 * rem == d && q % 2 != 0) {
        q + 1
    } else {
        q
    };
    Amount(i64::try_from(q).unwrap_or(i64::MAX))
}

/// Splits `amount` into (principal part, bonus part) by the program's spend order.
/// Proportional: principal part = amount × principal ÷ (principal + bonus), half-even; the
/// bonus part is the rest, so the parts always sum to `amount` exactly.
pub(crate) fn split(
    order: SpendOrder,
    principal: Amount,
    bonus: Amount,
    amount: Amount,
) -> (Amount, Amount) {
    debug_assert!(amount <= principal + bonus);
    let (p, b) = match order {
        SpendOrder::Proportional => {
            let total = principal.0 + bonus.0;
            if total == 0 {
                return (Amount::ZERO, Amount::ZERO);
            }
            let p = mul_div_half_even(amount.0, principal.0, total);
            (p, amount.0 - p)
        }
        SpendOrder::BonusFirst => {
            let b = amount.0.min(bonus.0);
            (amount.0 - b, b)
        }
        SpendOrder::PrincipalFirst => {
            let p = amount.0.min(principal.0);
            (p, amount.0 - p)
        }
    };
    // Rounding can never push a part beyond what is there (see the module tests), but keep
    // the invariant explicit.
    let (p, b) = if b > bonus.0 {
        (amount.0 - bonus.0, bonus.0)
    } else if p > principal.0 {
        (principal.0, amount.0 - principal.0)
    } else {
        (p, b)
    };
    (Amount(p), Amount(b))
}

/// The principal a card would have left had every spend taken principal and bonus in the
/// proportion they were loaded (SPEC's `merchant_fault` cash-out, whatever the spend order):
/// `paid_in − consumed × paid_in ÷ (paid_in + bonus_given)`, half-even, never below zero.
/// 100.00 paid + 15.00 bonus, 30.00 consumed ⇒ 100 − 26.09 = 73.91.
pub(crate) fn proportional_principal_left(
    paid_in: Amount,
    bonus_given: Amount,
    consumed: Amount,
) -> Amount {
    let loaded = paid_in.0.saturating_add(bonus_given.0);
    if loaded <= 0 || paid_in.0 <= 0 {
        return Amount::ZERO;
    }
    let taken = mul_div_half_even(consumed.0.max(0), paid_in.0, loaded);
    Amount((paid_in.0 - taken).max(0))
}

/// The share `part × done ÷ whole`, half-even: used cumulatively so that a series of partial
/// refunds returns exactly `part` once `done` reaches `whole`.
pub(crate) fn pro_rata(part: i64, done: i64, whole: i64) -> i64 {
    if whole <= 0 {
        return 0;
    }
    mul_div_half_even(part, done, whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_split_of_seed_numbers() {
        let (p, b) = split(
            SpendOrder::Proportional,
            Amount(10_000),
            Amount(1_500),
            Amount(6_000),
        );
        assert_eq!((p, b), (Amount(5_217), Amount(783)));
        assert_eq!(
            split(
                SpendOrder::BonusFirst,
                Amount(10_000),
                Amount(1_500),
                Amount(6_000)
            ),
            (Amount(4_500), Amount(1_500))
        );
        assert_eq!(
            split(
                SpendOrder::PrincipalFirst,
                Amount(10_000),
                Amount(1_500),
                Amount(6_000)
            ),
            (Amount(6_000), Amount(0))
        );
    }

    #[test]
    fn split_parts_stay_within_balances() {
        for p in 0..40i64 {
            for b in 0..40i64 {
                for a in 0..=(p + b) {
                    for o in [
                        SpendOrder::Proportional,
                        SpendOrder::BonusFirst,
                        SpendOrder::PrincipalFirst,
                    ] {
                        let (pp, bp) = split(o, Amount(p), Amount(b), Amount(a));
                        assert!(
                            pp.0 >= 0 && bp.0 >= 0 && pp.0 <= p && bp.0 <= b && pp.0 + bp.0 == a
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn demo_rules() {
        let d = Program::demo();
        assert_eq!(ladder_bonus(&d, 1, Amount(10_000)), Amount(1_500));
        assert_eq!(ladder_bonus(&d, 1, Amount(9_999)), Amount(0));
        assert_eq!(ladder_bonus(&d, 2, Amount(20_000)), Amount(2_000));
        assert_eq!(ladder_bonus(&d, 9, Amount(20_000)), Amount(1_000));
        // 2024-01-01 12:30 UTC = 20:30 at +08:00
        let t = 1_704_112_200_000;
        assert_eq!(local_minute_of_day(&d, t), 20 * 60 + 30);
        assert_eq!(discount_rate(&d, Amount::ZERO, t), Rate(100_000));
        assert_eq!(
            discount_rate(&d, Amount(500_000), t - 3_600_000),
            Rate(50_000)
        );
        assert_eq!(discount_rate(&d, Amount::ZERO, t - 3_600_000), Rate(0));
        assert_eq!(points_earned(&d, Amount::ZERO, Amount(5_217)), 52);
        assert_eq!(points_earned(&d, Amount(100_000), Amount(5_217)), 78); // ×1.5 = 78.255
        assert_eq!(redeem_value(&d, 250), Amount(250));
        // credited 20:30 local on 1 Jan 2024 ⇒ expires 2025-01-01 00:00 local (365 days later, end of day)
        let e = lot_expiry(&d, t);
        assert_eq!(local_minute_of_day(&d, e), 0);
        assert_eq!(local_day(&d, e) - local_day(&d, t), 366);
    }

    #[test]
    fn pro_rata_sums_exactly() {
        let (part, whole) = (5_217, 6_000);
        let mut got = 0;
        let mut done = 0;
        for step in [1_000, 333, 2_667, 2_000] {
            done += step;
            let now = pro_rata(part, done, whole);
            got += now - pro_rata(part, done - step, whole);
        }
        assert_eq!(got, part);
    }
}
