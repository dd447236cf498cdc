//! Money: integer minor units inside, `rust_decimal` only at the edge.
//!
//! Why: floats lose fen. Every amount in the engine is an [`Amount`] of minor units
//! (fen for CNY); JSON strings like `"100.00"` are parsed and printed here and nowhere else.
//! Rates (bonus, discount, multipliers) are [`Rate`]s in parts per million, and every
//! rate × amount rounds half-even to the minor unit.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

/// An amount of money in minor units (fen). Signed so that deltas can be expressed;
/// balances are asserted never negative.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Amount(pub i64);

impl Amount {
    /// No money: what a new card's figures and an approval's unused fields start at.
    pub const ZERO: Amount = Amount(0);
    /// Largest amount a request may carry, and largest figure svault carries: 10^12 major
    /// units (see [`Currency::max_amount`]).
    pub const MAX_MAJOR: i64 = 1_000_000_000_000;

    /// The figure as a count of minor units (fen), for code that carries the raw integer.
    pub fn minor(self) -> i64 {
        self.0
    }
    /// Strictly above zero, as every amount a request carries must be
    /// ([`Currency::request_amount`]).
    pub fn is_positive(self) -> bool {
        self.0 > 0
    }
}

impl Amount {
    /// `self + o`, or `None` when the sum does not fit in an `i64`.
    pub fn checked_add(self, o: Amount) -> Option<Amount> {
        self.0.checked_add(o.0).map(Amount)
    }
    /// `self − o`, or `None` when the difference does not fit in an `i64`.
    pub fn checked_sub(self, o: Amount) -> Option<Amount> {
        self.0.checked_sub(o.0).map(Amount)
    }
}

// Operators are checked in every build: money never wraps silently. The state machine refuses
// any request that would take a figure past the 10^12 bound before it changes anything, so an
// overflow here is a missing check, and stopping beats carrying a wrong balance.
impl std::ops::Add for Amount {
    type Output = Amount;
    #[inline]
    fn add(self, o: Amount) -> Amount {
        match self.checked_add(o) {
            Some(s) => s,
            None => overflow(),
        }
    }
}
impl std::ops::Sub for Amount {
    type Output = Amount;
    #[inline]
    fn sub(self, o: Amount) -> Amount {
        match self.checked_sub(o) {
            Some(s) => s,
            None => overflow(),
        }
    }
}
impl std::ops::AddAssign for Amount {
    #[inline]
    fn add_assign(&mut self, o: Amount) {
        *self = *self + o;
    }
}
impl std::ops::SubAssign for Amount {
    #[inline]
    fn sub_assign(&mut self, o: Amount) {
        *self = *self - o;
    }
}

#[cold]
#[inline(never)]
fn overflow() -> ! {
    panic!("amount arithmetic overflowed i64: a bound check is missing")
}

/// Most points a card may hold (the same 10^12 bound as money: SPEC's "no figure past 10^12").
pub const POINTS_MAX: u64 = 1_000_000_000_000;

/// A currency: its code and how many decimal places it has.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, rkyv::Archive, rkyv::Serialize, rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub enum Currency {
    Cny,
}

impl Currency {
    /// Decimal places of the minor unit.
    pub const fn scale(self) -> u32 {
        match self {
            Currency::Cny => 2,
        }
    }
    /// The ISO 4217 code, as JSON and reports spell the currency (`"CNY"`).
    pub fn code(self) -> &'static str {
        match self {
            Currency::Cny => "CNY",
        }
    }
    /// The currency of an ISO 4217 code; `None` for a code svault does not support (only `"CNY"`).
    pub fn from_code(s: &str) -> Option<Currency> {
        match s {
            "CNY" => Some(Currency::Cny),
            _ => None,
        }
    }
    const fn minor_per_major(self) -> i64 {
        10i64.pow(self.scale())
    }

    /// The largest figure svault carries in this currency: 10^12 major units, in minor units.
    /// Every balance, lifetime total and program float stays within it (SPEC "Money"), so
    /// sums of a few figures never come near `i64::MAX`.
    pub const fn max_amount(self) -> Amount {
        Amount(Amount::MAX_MAJOR * self.minor_per_major())
    }

    /// The bounds of an amount a request carries, in minor units: positive and at most
    /// [`Currency::max_amount`]. Both doors check through here (HTTP after parsing the
    /// decimal, the binary protocol on the raw integer).
    pub fn request_amount(self, minor: i64) -> Result<Amount, AmountError> {
        if minor <= 0 {
            Err(AmountError::NotPositive)
        } else if minor > self.max_amount().0 {
            Err(AmountError::TooLarge)
        } else {
            Ok(Amount(minor))
        }
    }

    /// Parses a request amount: at most the currency's scale, then [`Currency::request_amount`].
    pub fn parse_amount(self, s: &str) -> Result<Amount, AmountError> {
        let d = parse_plain_decimal(s)?;
        // As written: "1.000" has three places and CNY allows two (SPEC), even though the
        // value would fit.
        if d.scale() > self.scale() {
            return Err(AmountError::TooManyDecimals);
        }
        let beyond_i64 = if d.is_sign_negative() {
            AmountError::NotPositive
        } else {
            AmountError::TooLarge
        };
        let minor = d
            .checked_mul(Decimal::from(self.minor_per_major()))
            .and_then(|m| m.to_i64())
            .ok_or(beyond_i64)?;
        self.request_amount(minor)
    }

    /// Prints an amount at the currency's full scale: `Amount(11500)` ⇒ `"115.00"`.
    pub fn format(self, a: Amount) -> String {
        Decimal::new(a.0, self.scale()).to_string()
    }
}

/// Why an amount string was refused (all map to `400 invalid_amount`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    #[error("not a decimal number")]
    NotANumber,
    #[error("more decimal places than the currency allows")]
    TooManyDecimals,
    #[error("must be greater than zero")]
    NotPositive,
    #[error("above 10^12")]
    TooLarge,
}

/// Only plain decimals: digits with an optional single point and an optional leading minus
/// (so that "-5" is refused as not positive rather than as garbage). No exponents, no spaces.
fn parse_plain_decimal(s: &str) -> Result<Decimal, AmountError> {
    let body = s.strip_prefix('-').unwrap_or(s);
    let mut parts = body.splitn(2, '.');
    let int = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits_ok = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits_ok(int) || frac.is_some_and(|f| !digits_ok(f)) || s.len() > 40 {
        return Err(AmountError::NotANumber);
    }
    Decimal::from_str(s).map_err(|_| AmountError::NotANumber)
}

/// A rate or multiplier in parts per million: `0.10` ⇒ `Rate(100_000)`, `1.5` ⇒ `Rate(1_500_000)`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Default,
    rkyv::Archive,
    rkyv::Serialize,
    rkyv::Deserialize,
)]
#[rkyv(derive(Debug, PartialEq, Eq))]
pub struct Rate(pub u32);

impl Rate {
    /// 1.0 (1 000 000 ppm): the neutral multiplier, and the largest discount rate a program
    /// may set.
    pub const ONE: Rate = Rate(1_000_000);
    /// 0 ppm: no discount or bonus; applying it always yields zero.
    pub const ZERO: Rate = Rate(0);

    /// Parses `"0.10"`, `"1.5"`: non-negative, at most 6 decimals, at most 1000.
    pub fn parse(s: &str) -> Result<Rate, AmountError> {
        let d = parse_plain_decimal(s)?;
        // A sign is refused even on zero ("-0"): a rate is written without one.
        if d < Decimal::ZERO || s.starts_with('-') {
            return Err(AmountError::NotPositive);
        }
        if d.normalize().scale() > 6 {
            return Err(AmountError::TooManyDecimals);
        }
        let ppm = d
            .checked_mul(Decimal::from(1_000_000))
            .and_then(|x| x.to_u32())
            .ok_or(AmountError::TooLarge)?;
        if ppm > 1_000_000_000 {
            return Err(AmountError::TooLarge);
        }
        Ok(Rate(ppm))
    }

    /// `amount × rate`, rounded half-even to the minor unit.
    pub fn apply(self, amount: Amount) -> Amount {
        Amount(mul_div_half_even(amount.0, self.0 as i64, 1_000_000))
    }

    /// Prints the rate as a plain decimal (`"0.1"`).
    pub fn to_decimal_string(self) -> String {
        Decimal::new(self.0 as i64, 6).normalize().to_string()
    }
}

/// `a × b ÷ d` rounded half-even, exact. `d` must be positive. Every percentage of money
/// (rates, discounts, the principal/bonus split, pro rata) goes through this one function.
///
/// Fast path: a non-negative product that fits in i64 divides in i64 (the i128 division is a
/// library call and shows in profiles); anything else takes the exact i128 path.
pub fn mul_div_half_even(a: i64, b: i64, d: i64) -> i64 {
    assert!(d > 0, "divisor must be positive");
    match a.checked_mul(b) {
        Some(n) if n >= 0 => {
            let (q, r) = (n / d, n % d);
            // `r > d - r` is `2r > d` without overflow.
            if r > d - r || (r == d - r && q % 2 != 0) {
                q + 1
            } else {
                q
            }
        }
        _ => mul_div_half_even_wide(a, b, d),
    }
}

/// The definition of [`mul_div_half_even`], in i128 (the fast path is tested against it).
fn mul_div_half_even_wide(a: i64, b: i64, d: i64) -> i64 {
    let n = a as i128 * b as i128;
    let d = d as i128;
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    let twice = 2 * r;
    let q = if twice > d || (twice == d && q % 2 != 0) {
        q + 1
    } else {
        q
    };
    i64::try_from(q).expect("rate products of bounded amounts fit in i64")
}

#[allow(dead_code)]
fn _round_strategy_documented() -> RoundingStrategy {
    RoundingStrategy::MidpointNearestEven
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_of_mul_div_matches_the_definition() {
        let edge = [
            0, 1, 2, 3, 5, 15, 25, 35, 6000, 10_000, 11_500, 999_999, 1_000_000,
        ];
        let mut cases: Vec<(i64, i64, i64)> = vec![
            (i64::MAX / 2, 3, 7),
            (i64::MAX, 1, i64::MAX),
            (i64::MAX, 1, i64::MAX - 1),
            (i64::MAX - 1, 1, i64::MAX),
            (4_611_686_018_427_387_904, 1, i64::MAX),
            (-25, 1, 10),
            (-35, 1, 10),
        ];
        for a in edge {
            for b in edge {
                for d in edge.iter().copied().filter(|d| *d > 0) {
                    cases.push((a, b, d));
                    cases.push((-a, b, d));
                }
            }
        }
        for (a, b, d) in cases {
            assert_eq!(
                mul_div_half_even(a, b, d),
                mul_div_half_even_wide(a, b, d),
                "{a} × {b} ÷ {d}"
            );
        }
    }

    #[test]
    fn parses_and_formats_cny() {
        let c = Currency::Cny;
        assert_eq!(c.parse_amount("100.00"), Ok(Amount(10000)));
        assert_eq!(c.parse_amount("15"), Ok(Amount(1500)));
        assert_eq!(c.parse_amount("0.01"), Ok(Amount(1)));
        assert_eq!(c.parse_amount("1.50"), Ok(Amount(150)));
        // Places as written, not as normalised (SPEC: "1.000" is refused for CNY).
        assert_eq!(c.parse_amount("1.500"), Err(AmountError::TooManyDecimals));
        assert_eq!(c.parse_amount("1.000"), Err(AmountError::TooManyDecimals));
        assert_eq!(c.parse_amount("1.001"), Err(AmountError::TooManyDecimals));
        assert_eq!(c.parse_amount("0"), Err(AmountError::NotPositive));
        assert_eq!(c.parse_amount("-5"), Err(AmountError::NotPositive));
        assert_eq!(c.parse_amount("abc"), Err(AmountError::NotANumber));
        assert_eq!(c.parse_amount("1e5"), Err(AmountError::NotANumber));
        assert_eq!(c.parse_amount(" 1"), Err(AmountError::NotANumber));
        assert_eq!(
            c.parse_amount("1000000000000.01"),
            Err(AmountError::TooLarge)
        );
        assert_eq!(
            c.parse_amount("1000000000000"),
            Ok(Amount(100_000_000_000_000))
        );
        assert_eq!(c.format(Amount(11500)), "115.00");
        assert_eq!(c.format(Amount(5)), "0.05");
        assert_eq!(c.format(Amount(0)), "0.00");
    }

    #[test]
    fn rates_round_half_even() {
        assert_eq!(Rate::parse("0.10"), Ok(Rate(100_000)));
        assert_eq!(Rate::parse("1.5"), Ok(Rate(1_500_000)));
        assert_eq!(Rate::parse("0"), Ok(Rate(0)));
        for signed in ["-0", "-0.00", "-0.1"] {
            assert_eq!(
                Rate::parse(signed),
                Err(AmountError::NotPositive),
                "{signed}"
            );
        }
        // 0.25 × 0.10 = 0.025 fen-exact ⇒ 2.5 fen ⇒ 2 (even)
        assert_eq!(Rate(100_000).apply(Amount(25)), Amount(2));
        assert_eq!(Rate(100_000).apply(Amount(35)), Amount(4));
        assert_eq!(Rate(100_000).apply(Amount(20000)), Amount(2000));
        assert_eq!(mul_div_half_even(-25, 1, 10), -2);
        assert_eq!(mul_div_half_even(6000, 10000, 11500), 5217);
    }

    /// Found while fuzzing the parsers: 28 digits times 10^6 overflowed the decimal and panicked.
    #[test]
    fn huge_rates_are_refused_not_a_panic() {
        for s in [
            "1000000000000000000000000000",
            "79228162514264337593543950335",
        ] {
            assert_eq!(Rate::parse(s), Err(AmountError::TooLarge), "{s}");
        }
    }

    #[test]
    fn arithmetic_is_checked() {
        let big = Amount(i64::MAX);
        assert_eq!(big.checked_add(Amount(1)), None);
        assert_eq!(Amount(i64::MIN).checked_sub(Amount(1)), None);
        assert_eq!(Amount(2).checked_add(Amount(3)), Some(Amount(5)));
        assert!(std::panic::catch_unwind(|| big + Amount(1)).is_err());
        assert!(std::panic::catch_unwind(|| Amount(i64::MIN) - Amount(1)).is_err());
        assert!(std::panic::catch_unwind(|| {
            let mut a = big;
            a += Amount(1);
            a
        })
        .is_err());
        assert_eq!(Currency::Cny.max_amount(), Amount(100_000_000_000_000));
    }
}
