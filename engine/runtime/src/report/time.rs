//! Calendar arithmetic in a program's local time (a fixed UTC offset, as programs define it):
//! local day, hour, month and quarter of a batch time, and printing instants in RFC 3339.

use svault_core::command::Millis;

const DAY_MS: i64 = 86_400_000;

/// Local civil date `(year, month, day)` and time of `at` in a zone `offset_minutes` east of UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Local {
    pub year: i64,
    pub month: u32,
    pub day: u32,
    pub hour: u32,
    pub minute: u32,
    pub second: u32,
    pub milli: u32,
}

/// `(year, month, day)` of days since 1970-01-01 (H. Hinnant's algorithm).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Days since 1970-01-01 of a civil date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let (m, d) = (i64::from(m), i64::from(d));
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The local date and time of `at`.
pub fn local(at: Millis, offset_minutes: i16) -> Local {
    let ms = at.0 + i64::from(offset_minutes) * 60_000;
    let days = ms.div_euclid(DAY_MS);
    let in_day = ms.rem_euclid(DAY_MS);
    let (year, month, day) = civil_from_days(days);
    Local {
        year,
        month,
        day,
        hour: (in_day / 3_600_000) as u32,
        minute: (in_day / 60_000 % 60) as u32,
        second: (in_day / 1_000 % 60) as u32,
        milli: (in_day % 1_000) as u32,
    }
}

/// Local day number (days since 1970-01-01 in local time).
pub fn local_day(at: Millis, offset_minutes: i16) -> i64 {
    (at.0 + i64::from(offset_minutes) * 60_000).div_euclid(DAY_MS)
}

/// Local month number (months since 1970-01).
pub fn local_month(at: Millis, offset_minutes: i16) -> i64 {
    let l = local(at, offset_minutes);
    (l.year - 1970) * 12 + i64::from(l.month) - 1
}

/// `YYYY-MM` of a month number.
pub fn month_label(month: i64) -> String {
    format!(
        "{:04}-{:02}",
        1970 + month.div_euclid(12),
        month.rem_euclid(12) + 1
    )
}

/// `YYYY-MM-DD` of a local day number.
pub fn day_label(day: i64) -> String {
    let (y, m, d) = civil_from_days(day);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The latest local quarter start (00:00 on 1 January, April, July or October) at or before
/// `at`: the end of the last closed quarter, as an instant.
pub fn quarter_start_at_or_before(at: Millis, offset_minutes: i16) -> Millis {
    let l = local(at, offset_minutes);
    let month = (l.month - 1) / 3 * 3 + 1;
    let days = days_from_civil(l.year, month, 1);
    Millis(days * DAY_MS - i64::from(offset_minutes) * 60_000)
}

/// The next local quarter start after `at`.
pub fn next_quarter_start(at: Millis, offset_minutes: i16) -> Millis {
    let l = local(at, offset_minutes);
    let q = (l.month - 1) / 3;
    let (y, m) = if q == 3 {
        (l.year + 1, 1)
    } else {
        (l.year, q * 3 + 4)
    };
    Millis(days_from_civil(y, m, 1) * DAY_MS - i64::from(offset_minutes) * 60_000)
}

/// `+08:00` style offset.
pub fn offset_label(offset_minutes: i16) -> String {
    let sign = if offset_minutes < 0 { '-' } else { '+' };
    let m = offset_minutes.unsigned_abs();
    format!("{sign}{:02}:{:02}", m / 60, m % 60)
}

/// RFC 3339 in local time with milliseconds: `2026-01-05T10:00:00.000+08:00`.
pub fn rfc3339(at: Millis, offset_minutes: i16) -> String {
    let l = local(at, offset_minutes);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}{}",
        l.year,
        l.month,
        l.day,
        l.hour,
        l.minute,
        l.second,
        l.milli,
        offset_label(offset_minutes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_round_trip_and_quarters() {
        for z in [-800_000, -1, 0, 1, 10_957, 20_458, 2_000_000] {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
        // 2026-01-05T02:00:00Z = 10:00 in +08:00.
        let t = Millis(1_767_578_400_000);
        let l = local(t, 480);
        assert_eq!((l.year, l.month, l.day, l.hour), (2026, 1, 5, 10));
        assert_eq!(rfc3339(t, 480), "2026-01-05T10:00:00.000+08:00");
        assert_eq!(rfc3339(t, 0), "2026-01-05T02:00:00.000+00:00");
        assert_eq!(rfc3339(t, -90), "2026-01-05T00:30:00.000-01:30");
        let q = quarter_start_at_or_before(t, 480);
        assert_eq!(rfc3339(q, 480), "2026-01-01T00:00:00.000+08:00");
        assert_eq!(
            rfc3339(next_quarter_start(t, 480), 480),
            "2026-04-01T00:00:00.000+08:00"
        );
        let oct = next_quarter_start(Millis(q.0 - 1), 480);
        assert_eq!(oct, q);
        assert_eq!(month_label(local_month(t, 480)), "2026-01");
        assert_eq!(day_label(local_day(t, 480)), "2026-01-05");
        // 23:30 UTC on 4 Jan is already 5 Jan in +08:00.
        assert_eq!(
            day_label(local_day(Millis(t.0 - 150 * 60_000), 480)),
            "2026-01-05"
        );
        assert_eq!(
            day_label(local_day(Millis(t.0 - 150 * 60_000), 0)),
            "2026-01-04"
        );
    }
}
