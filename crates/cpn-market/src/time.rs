//! Time as the caller passes it: seconds since the Unix epoch (UTC), and the calendar months
//! that billing periods, monthly terms and budgets follow. No clock is read here.

use std::fmt;

/// A moment, in whole seconds since 1970-01-01T00:00:00Z. Metering is to the second, so a
/// finer unit would only invite rounding questions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_unix(seconds: i64) -> Timestamp {
        Timestamp(seconds)
    }

    pub const fn unix(self) -> i64 {
        self.0
    }

    pub const fn plus_seconds(self, seconds: i64) -> Timestamp {
        Timestamp(self.0 + seconds)
    }

    /// Seconds from `earlier` to `self`; zero when `earlier` is later (time never runs back
    /// for metering).
    pub fn seconds_since(self, earlier: Timestamp) -> u64 {
        u64::try_from(self.0 - earlier.0).unwrap_or(0)
    }

    /// The UTC calendar month holding this moment.
    pub fn month(self) -> Month {
        let (year, month, _) = civil_from_days(self.0.div_euclid(86_400));
        Month { year, month }
    }

    /// The same day-of-month and time `months` calendar months later, clamped to the end of
    /// a shorter month (31 January + 1 month = 28 or 29 February), as subscription terms run.
    pub fn plus_months(self, months: u32) -> Timestamp {
        let days = self.0.div_euclid(86_400);
        let second_of_day = self.0.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let total = i64::from(y) * 12 + i64::from(m - 1) + i64::from(months);
        let (ny, nm) = (
            i32::try_from(total.div_euclid(12)).expect("year fits i32"),
            u32::try_from(total.rem_euclid(12)).expect("0..12") + 1,
        );
        let nd = d.min(days_in_month(ny, nm));
        Timestamp(days_from_civil(ny, nm, nd) * 86_400 + second_of_day)
    }
}

impl fmt::Display for Timestamp {
    /// RFC 3339 in UTC, as invoices and CSV print it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (y, m, d) = civil_from_days(self.0.div_euclid(86_400));
        let s = self.0.rem_euclid(86_400);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }
}

/// A calendar month in UTC: the billing period of invoices, statements and budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Month {
    year: i32,
    /// 1..=12
    month: u32,
}

impl Month {
    /// `None` unless `month` is 1..=12.
    pub fn new(year: i32, month: u32) -> Option<Month> {
        (1..=12).contains(&month).then_some(Month { year, month })
    }

    pub fn start(self) -> Timestamp {
        Timestamp(days_from_civil(self.year, self.month, 1) * 86_400)
    }

    /// The first moment after the month (exclusive end).
    pub fn end(self) -> Timestamp {
        self.start().plus_months(1)
    }

    pub fn contains(self, t: Timestamp) -> bool {
        self.start() <= t && t < self.end()
    }
}

impl fmt::Display for Month {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

fn is_leap(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's `days_from_civil` and `civil_from_days` (proleptic Gregorian calendar).
fn days_from_civil(y: i32, m: u32, d: u32) -> i64 {
    let y = i64::from(y) - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = u32::try_from(doy - (153 * mp + 2) / 5 + 1).expect("day 1..=31");
    let m = u32::try_from(if mp < 10 { mp + 3 } else { mp - 9 }).expect("month 1..=12");
    let y = yoe + era * 400 + i64::from(m <= 2);
    (i32::try_from(y).expect("year fits i32"), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trip_and_display() {
        // 2026-12-07T10:00:00Z
        let t = Timestamp::from_unix(1_796_637_600);
        assert_eq!(t.to_string(), "2026-12-07T10:00:00Z");
        assert_eq!(t.month().to_string(), "2026-12");
        assert_eq!(t.month().end().to_string(), "2027-01-01T00:00:00Z");
    }

    #[test]
    fn month_arithmetic_clamps_to_short_months() {
        let jan31 = Month::new(2028, 1)
            .unwrap()
            .start()
            .plus_seconds(30 * 86_400 + 5);
        assert_eq!(jan31.to_string(), "2028-01-31T00:00:05Z");
        assert_eq!(jan31.plus_months(1).to_string(), "2028-02-29T00:00:05Z");
        assert_eq!(jan31.plus_months(12).to_string(), "2029-01-31T00:00:05Z");
    }
}
