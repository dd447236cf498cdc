//! From merged sums to the figures people read, and their three forms (table, JSON, CSV).
//!
//! Every figure is a string computed without floats: money as an exact decimal at the
//! currency's full scale, ratios as decimals with four places (rounded half-even), times in
//! the program's UTC offset. The three forms print the same tree of figures ([`Node`]), so they
//! always agree: a CSV row is `program,figure,value` with the figure's dotted path.

use super::tally::{window_label, Sum};
use super::time;
use super::{ProgramReport, Report};
use rust_decimal::{Decimal, RoundingStrategy};
use std::fmt::Write;
use svault_core::command::Channel;

/// A figure or a named group of figures, in print order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Value(String),
    Group(Vec<(String, Node)>),
}

struct G(Vec<(String, Node)>);

impl G {
    fn new() -> G {
        G(Vec::new())
    }
    fn v(mut self, k: &str, v: impl Into<String>) -> G {
        self.0.push((k.to_string(), Node::Value(v.into())));
        self
    }
    fn g(mut self, k: &str, g: G) -> G {
        self.0.push((k.to_string(), Node::Group(g.0)));
        self
    }
    fn node(self) -> Node {
        Node::Group(self.0)
    }
}

/// Money in minor units printed at the currency's full scale.
pub fn money(minor: i128, scale: u32) -> String {
    Decimal::try_from_i128_with_scale(minor, scale)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{minor}e-{scale}"))
}

/// `n ÷ d` with four decimals (half-even); `"n/a"` when `d` is zero.
pub fn ratio(n: i128, d: i128) -> String {
    if d == 0 {
        return "n/a".into();
    }
    match (
        Decimal::try_from_i128_with_scale(n, 0),
        Decimal::try_from_i128_with_scale(d, 0),
    ) {
        (Ok(n), Ok(d)) => n
            .checked_div(d)
            .map(|q| {
                q.round_dp_with_strategy(4, RoundingStrategy::MidpointNearestEven)
                    .to_string()
            })
            .map(|s| with_places(&s, 4))
            .unwrap_or_else(|| "n/a".into()),
        _ => "n/a".into(),
    }
}

/// Pads a decimal string to `places` decimals.
fn with_places(s: &str, places: usize) -> String {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut frac = frac.to_string();
    while frac.len() < places {
        frac.push('0');
    }
    format!("{int}.{frac}")
}

/// `v × ppm / 1 000 000`, half-even, exact.
fn mul_ppm(v: i128, ppm: u32) -> i128 {
    div_half_even(v * i128::from(ppm), 1_000_000)
}

/// `n ÷ d` rounded half-even (`d` > 0).
pub fn div_half_even(n: i128, d: i128) -> i128 {
    debug_assert!(d > 0);
    let q = n.div_euclid(d);
    let r = n.rem_euclid(d);
    match (2 * r).cmp(&d) {
        std::cmp::Ordering::Less => q,
        std::cmp::Ordering::Greater => q + 1,
        std::cmp::Ordering::Equal => q + (q & 1),
    }
}

fn rate_str(ppm: u32) -> String {
    Decimal::new(i64::from(ppm), 6).normalize().to_string()
}

fn sum(s: &Sum, scale: u32) -> G {
    G::new()
        .v("count", s.count.to_string())
        .v("amount", money(s.amount, scale))
}

/// The figures of one program.
pub fn program_node(r: &Report, pr: &ProgramReport) -> Node {
    let p = &pr.program;
    let t = &pr.tally;
    let scale = p.currency.scale();
    let off = p.utc_offset_minutes;
    let m = |v: i128| money(v, scale);
    let window_ms = i128::from((r.to.0 - r.from.0).max(1));

    // 1. top-ups
    let mut by_channel = G::new();
    for c in Channel::ALL {
        let s = t
            .top_ups_by_channel
            .get(c.as_str())
            .copied()
            .unwrap_or_default();
        by_channel = by_channel.g(
            c.as_str(),
            sum(&s, scale).v("share_of_amount", ratio(s.amount, t.top_ups.amount)),
        );
    }
    let mut by_day = G::new();
    for (day, s) in &t.top_ups_by_day {
        by_day = by_day.g(&time::day_label(*day), sum(s, scale));
    }
    let mut by_step = G::new();
    for (step, s) in &t.bonus_by_step {
        by_step = by_step.g(
            step,
            G::new()
                .v("top_ups", s.count.to_string())
                .v("bonus", m(s.amount)),
        );
    }
    let top_ups = G::new()
        .v("count", t.top_ups.count.to_string())
        .v("amount", m(t.top_ups.amount))
        .v("bonus_given", m(t.top_up_bonus))
        .g("by_channel", by_channel)
        .g("by_local_day", by_day)
        .g("bonus_by_ladder_step", by_step)
        .g(
            "first_top_up_conversion",
            G::new()
                .v("cards_opened", t.cards_opened.to_string())
                .v("cards_with_a_top_up", t.cards_converted.to_string())
                .v(
                    "rate",
                    ratio(i128::from(t.cards_converted), i128::from(t.cards_opened)),
                )
                .v("formula", "cards opened in the window that topped up by --to ÷ cards opened in the window"),
        );

    // 2. spends
    let mut by_hour = G::new();
    let mut evening = Sum::default();
    for h in 0..24u32 {
        let s = t.spends_by_hour.get(&h).copied().unwrap_or_default();
        if h >= 20 {
            evening.count += s.count;
            evening.amount += s.amount;
        }
        by_hour = by_hour.g(&format!("{h:02}"), sum(&s, scale));
    }
    let mut by_method = G::new();
    for (k, s) in &t.spends_by_method {
        by_method = by_method.g(k, sum(s, scale));
    }
    let mut by_store = G::new();
    for (k, s) in &t.spends_by_store {
        by_store = by_store.g(k, sum(s, scale));
    }
    let mut by_tier = G::new();
    for (k, s) in &t.discount_by_tier {
        by_tier = by_tier.g(k, sum(s, scale));
    }
    let mut by_window = G::new();
    for w in &p.discount_windows {
        let label = window_label(w.from_minute, w.to_minute);
        let s = t
            .discount_by_window
            .get(&label)
            .copied()
            .unwrap_or_default();
        by_window = by_window.g(&label, sum(&s, scale));
    }
    let discount_total: i128 = t.discount_by_tier.values().map(|s| s.amount).sum::<i128>()
        + t.discount_by_window
            .values()
            .map(|s| s.amount)
            .sum::<i128>();
    let mut reversals = G::new();
    for (k, s) in &t.reversals {
        reversals = reversals.g(k, sum(s, scale));
    }
    let spends = G::new()
        .v("count", t.spends.count.to_string())
        .v("amount", m(t.spends.amount))
        .g("by_local_hour", by_hour)
        .g(
            "after_8pm",
            sum(&evening, scale)
                .v("share_of_amount", ratio(evening.amount, t.spends.amount))
                .v(
                    "formula",
                    "spends charged from 20:00 to 24:00 local ÷ all spends charged",
                ),
        )
        .g("by_method", by_method)
        .g("by_store", by_store)
        .g(
            "discounts",
            G::new()
                .v("total", m(discount_total))
                .g("by_tier", by_tier)
                .g("by_window", by_window),
        )
        .g("refunds", sum(&t.refunds, scale))
        .g("reversals", reversals)
        .g(
            "cash_outs",
            sum(&t.cash_outs, scale).v("bonus_forfeited", m(t.cash_out_forfeited)),
        )
        .g("bonus_expired", sum(&t.bonus_expired, scale))
        .g("holds_expired", sum(&t.holds_expired, scale))
        .g("grants", sum(&t.grants_bonus, scale));

    // 3. points
    let rate = p.points.redeem_rate;
    let unit = 10i128.pow(scale);
    let liability = if rate == 0 {
        0
    } else {
        div_half_even(i128::from(t.points_outstanding) * unit, i128::from(rate))
    };
    let points = G::new()
        .v("issued", t.points_issued.to_string())
        .v("redeemed", t.points_redeemed.to_string())
        .v("outstanding", t.points_outstanding.to_string())
        .v("redeem_rate", format!("{rate} points = 1"))
        .v("liability_value", m(liability))
        .v(
            "liability_formula",
            format!(
                "{} points ÷ {rate} points per 1 = {}",
                t.points_outstanding,
                m(liability)
            ),
        )
        .v(
            "issue_to_redeem_ratio",
            ratio(i128::from(t.points_redeemed), i128::from(t.points_issued)),
        )
        .v(
            "issue_to_redeem_formula",
            "points redeemed ÷ points issued in the window",
        );

    // 4. channels
    let mut channels = G::new();
    let channel_cards_total: u64 = t.channel_cards.values().sum();
    for c in Channel::ALL {
        let k = c.as_str();
        let s = t.top_ups_by_channel.get(k).copied().unwrap_or_default();
        let cards = t.channel_cards.get(k).copied().unwrap_or(0);
        let repeat = t.channel_repeat_cards.get(k).copied().unwrap_or(0);
        channels = channels.g(
            k,
            G::new()
                .v("share_of_top_up_value", ratio(s.amount, t.top_ups.amount))
                .v("active_cards", cards.to_string())
                .v(
                    "share_of_active_cards",
                    ratio(i128::from(cards), i128::from(channel_cards_total)),
                )
                .v("repeat_cards", repeat.to_string())
                .v(
                    "repeat_top_up_rate",
                    ratio(i128::from(repeat), i128::from(cards)),
                ),
        );
    }
    channels = channels.v(
        "formula",
        "active cards: cards with a top-up through the channel in the window; repeat rate: cards with two or more ÷ active cards",
    );

    // 5. users
    let mut cohorts = G::new();
    let last_month = time::local_month(svault_core::command::Millis(r.to.0 - 1), off);
    for (month, size) in &t.cohort_size {
        let mut g = G::new().v("cards", size.to_string());
        for k in 0..=((last_month - month).clamp(0, 63) as u32) {
            let active = t.cohort_active.get(&(*month, k)).copied().unwrap_or(0);
            g = g.v(
                &format!("month_{k}"),
                ratio(i128::from(active), i128::from(*size)),
            );
        }
        cohorts = cohorts.g(&time::month_label(*month), g);
    }
    let mut tiers = G::new();
    for (k, n) in &t.tiers {
        tiers = tiers.v(k, n.to_string());
    }
    let ltv = if t.paying_cards == 0 {
        0
    } else {
        div_half_even(t.paying_consumed, i128::from(t.paying_cards))
    };
    let users = G::new()
        .v("active_cards", t.active_cards.to_string())
        .v(
            "active_formula",
            "cards with a top-up, spend, hold, capture, redeem or cash-out in the window",
        )
        .g("monthly_cohort_retention", cohorts)
        .g(
            "churn",
            G::new()
                .v("days", r.options.churn_days.to_string())
                .v("cards_ever_active", t.churn_base.to_string())
                .v("churned", t.churned.to_string())
                .v("rate", ratio(i128::from(t.churned), i128::from(t.churn_base)))
                .v(
                    "formula",
                    format!(
                        "cards whose last activity is more than {} days before --to ÷ cards ever active",
                        r.options.churn_days
                    ),
                ),
        )
        .g(
            "lifetime_value",
            G::new()
                .v("paying_cards", t.paying_cards.to_string())
                .v("consumed", m(t.paying_consumed))
                .v("average", m(ltv))
                .v("formula", "value consumed at face value by --to (spends + captures − refunds) of cards that ever topped up ÷ those cards"),
        )
        .g("tiers", tiers);

    // float, custody floor, payback period
    let quarter = time::quarter_start_at_or_before(r.to, off);
    let ratio_ppm = r.options.custody_ratio.0;
    let floor = mul_ppm(t.quarter_end_principal, ratio_ppm);
    let float = G::new()
        .v("at", time::rfc3339(r.to, off))
        .v("principal", m(t.float_principal))
        .v("bonus", m(t.float_bonus))
        .v("held", m(t.float_held))
        .v("total", m(t.float_principal + t.float_bonus))
        .v("cards", t.float_cards.to_string());
    let custody = G::new()
        .v("quarter_end", time::rfc3339(quarter, off))
        .v("principal_outstanding", m(t.quarter_end_principal))
        .v("ratio", rate_str(ratio_ppm))
        .v("amount", m(floor))
        .v(
            "formula",
            format!(
                "{} (principal outstanding at the last quarter end) × {} = {}",
                m(t.quarter_end_principal),
                rate_str(ratio_ppm),
                m(floor)
            ),
        );
    let factor = r.options.payback_factor.0;
    let days = Decimal::from_i128_with_scale(window_ms, 0) / Decimal::from(86_400_000);
    let daily = div_half_even(t.spends.amount * 86_400_000, window_ms);
    let counted_top_ups = mul_ppm(t.top_ups.amount, factor);
    let period = if daily <= 0 {
        "n/a".to_string()
    } else {
        let q = Decimal::from_i128_with_scale(counted_top_ups * window_ms, 0)
            / Decimal::from_i128_with_scale(t.spends.amount * 86_400_000, 0);
        with_places(
            &q.round_dp_with_strategy(2, RoundingStrategy::MidpointNearestEven)
                .to_string(),
            2,
        )
    };
    let payback = G::new()
        .v("top_ups", m(t.top_ups.amount))
        .v("factor", rate_str(factor))
        .v("spends", m(t.spends.amount))
        .v(
            "days",
            with_places(
                &days
                    .round_dp_with_strategy(4, RoundingStrategy::MidpointNearestEven)
                    .to_string(),
                4,
            ),
        )
        .v("average_daily_spend", m(daily))
        .v("period_days", period.clone())
        .v(
            "formula",
            format!(
                "{} top-ups × {} ÷ {} average daily spend = {period} days",
                m(t.top_ups.amount),
                rate_str(factor),
                m(daily)
            ),
        );

    G::new()
        .v("currency", p.currency.code())
        .v("utc_offset", time::offset_label(off))
        .v("from", time::rfc3339(r.from, off))
        .v("to", time::rfc3339(r.to, off))
        .g("top_ups", top_ups)
        .g("spends", spends)
        .g("points", points)
        .g("channels", channels)
        .g("users", users)
        .g("float", float)
        .g("custody_floor", custody)
        .g("payback_period", payback)
        .node()
}

/// Every program's figures.
pub fn nodes(r: &Report) -> Vec<(String, Node)> {
    r.programs
        .iter()
        .map(|p| (p.program.id.clone(), program_node(r, p)))
        .collect()
}

fn to_json(n: &Node) -> serde_json::Value {
    match n {
        Node::Value(v) => serde_json::Value::String(v.clone()),
        Node::Group(g) => {
            serde_json::Value::Object(g.iter().map(|(k, v)| (k.clone(), to_json(v))).collect())
        }
    }
}

/// `{"records": N, "programs": {id: figures}, "warnings": [...]}`.
pub fn json(r: &Report) -> String {
    let programs: serde_json::Map<String, serde_json::Value> = nodes(r)
        .iter()
        .map(|(id, n)| (id.clone(), to_json(n)))
        .collect();
    let v = serde_json::json!({
        "records": r.records,
        "programs": programs,
        "warnings": r.warnings,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn flatten(prefix: &str, n: &Node, out: &mut Vec<(String, String)>) {
    match n {
        Node::Value(v) => out.push((prefix.to_string(), v.clone())),
        Node::Group(g) => {
            for (k, v) in g {
                let path = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&path, v, out);
            }
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `program,figure,value`, one row per figure.
pub fn csv(r: &Report) -> String {
    let mut s = String::from("program,figure,value\n");
    for (id, n) in nodes(r) {
        let mut rows = Vec::new();
        flatten("", &n, &mut rows);
        for (k, v) in rows {
            let _ = writeln!(s, "{},{},{}", csv_field(&id), csv_field(&k), csv_field(&v));
        }
    }
    s
}

fn table_lines(n: &Node, depth: usize, out: &mut String) {
    if let Node::Group(g) = n {
        for (k, v) in g {
            let pad = "  ".repeat(depth);
            match v {
                Node::Value(x) => {
                    let _ = writeln!(
                        out,
                        "{pad}{:<width$} {x}",
                        format!("{k}:"),
                        width = 34usize.saturating_sub(2 * depth).max(8)
                    );
                }
                Node::Group(_) => {
                    let _ = writeln!(out, "{pad}{k}");
                    table_lines(v, depth + 1, out);
                }
            }
        }
    }
}

/// Indented figures per program, for people.
pub fn table(r: &Report) -> String {
    let mut s = String::new();
    for w in &r.warnings {
        let _ = writeln!(s, "warning: {w}");
    }
    for (id, n) in nodes(r) {
        let _ = writeln!(s, "== program {id} ==");
        table_lines(&n, 1, &mut s);
    }
    s
}

/// Sums the figures of a CSV or table back for tests: the value at a dotted path.
pub fn find<'a>(n: &'a Node, path: &str) -> Option<&'a str> {
    let mut cur = n;
    for part in path.split('.') {
        match cur {
            Node::Group(g) => cur = &g.iter().find(|(k, _)| k == part)?.1,
            Node::Value(_) => return None,
        }
    }
    match cur {
        Node::Value(v) => Some(v),
        Node::Group(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimals() {
        assert_eq!(money(11_500, 2), "115.00");
        assert_eq!(money(-5, 2), "-0.05");
        assert_eq!(money(0, 2), "0.00");
        assert_eq!(ratio(1, 3), "0.3333");
        assert_eq!(ratio(1, 2), "0.5000");
        assert_eq!(ratio(2, 1), "2.0000");
        assert_eq!(ratio(1, 0), "n/a");
        assert_eq!(div_half_even(5, 2), 2);
        assert_eq!(div_half_even(7, 2), 4);
        assert_eq!(div_half_even(-5, 2), -2);
        assert_eq!(mul_ppm(12_345, 400_000), 4_938);
        assert_eq!(rate_str(400_000), "0.4");
    }
}
