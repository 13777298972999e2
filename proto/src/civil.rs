//! Calendar arithmetic for birth dates and validity windows (UTC, proleptic Gregorian).

use crate::UnixTime;

/// A calendar date.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Date {
    /// The year, astronomical numbering (year 0 is 1 BC).
    pub year: i32,
    /// 1 to 12.
    pub month: u32,
    /// 1 to the length of the month; [`Date::new`] checks it, building the struct by
    /// hand does not.
    pub day: u32,
}

impl Date {
    /// Builds a date, or `None` if the day does not exist (30 February, month 13, ...).
    pub fn new(year: i32, month: u32, day: u32) -> Option<Date> {
        if !(1..=12).contains(&month) || day == 0 || day > days_in_month(year, month) {
            return None;
        }
        Some(Date { year, month, day })
    }

    /// The UTC date of a Unix time.
    pub fn from_unix(t: UnixTime) -> Date {
        // Howard Hinnant's civil_from_days.
        let z = (t / 86_400) as i64 + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = (yoe + era * 400 + i64::from(month <= 2)) as i32;
        Date { year, month, day }
    }

    /// The Unix time of this date's midnight (UTC); `None` before 1970.
    pub fn to_unix(self) -> Option<UnixTime> {
        // Howard Hinnant's days_from_civil.
        let y = i64::from(self.year) - i64::from(self.month <= 2);
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let m = i64::from(self.month);
        let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(self.day) - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        let days = era * 146_097 + doe - 719_468;
        u64::try_from(days).ok().map(|d| d * 86_400)
    }

    /// Whole years from `self` (a birth date) to `today`.
    pub fn age_on(self, today: Date) -> i32 {
        let mut age = today.year - self.year;
        if (today.month, today.day) < (self.month, self.day) {
            age -= 1;
        }
        age
    }
}

impl std::fmt::Display for Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// Parses `YYYY-MM-DD`.
pub fn parse_date(s: &str) -> Option<Date> {
    let mut it = s.split('-');
    let (y, m, d) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || y.len() != 4 || m.len() != 2 || d.len() != 2 {
        return None;
    }
    Date::new(y.parse().ok()?, m.parse().ok()?, d.parse().ok()?)
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_go_back_to_unix_times() {
        assert_eq!(Date::new(1970, 1, 1).unwrap().to_unix(), Some(0));
        assert_eq!(Date::new(1969, 12, 31).unwrap().to_unix(), None);
        // Every day over a few leap years and a century rule, both ways.
        for day in (0..60_000u64).step_by(7) {
            let d = Date::from_unix(day * 86_400 + 3_600);
            assert_eq!(d.to_unix(), Some(day * 86_400), "{d}");
        }
        assert_eq!(
            Date::new(2026, 12, 1).unwrap().to_unix(),
            Some(1_796_083_200)
        );
    }

    #[test]
    fn unix_dates_match_known_days() {
        assert_eq!(Date::from_unix(0), Date::new(1970, 1, 1).unwrap());
        // 2020-02-09T12:00:00Z, the day the order was issued.
        assert_eq!(
            Date::from_unix(1_581_249_600),
            Date::new(2020, 2, 9).unwrap()
        );
        assert_eq!(
            Date::from_unix(951_782_400),
            Date::new(2000, 2, 29).unwrap()
        );
        assert_eq!(Date::new(2000, 2, 29).unwrap().to_unix(), Some(951_782_400));
        assert_eq!(Date::new(1970, 1, 1).unwrap().to_unix(), Some(0));
        assert_eq!(
            Date::new(2026, 12, 1).unwrap().to_unix(),
            Some(1_796_083_200)
        );
    }

    #[test]
    fn impossible_days_are_refused() {
        assert!(Date::new(2021, 2, 29).is_none());
        assert!(Date::new(2000, 2, 29).is_some());
        assert!(Date::new(1900, 2, 29).is_none());
        assert!(Date::new(2020, 13, 1).is_none());
        assert!(parse_date("2020-02-30").is_none());
        assert_eq!(parse_date("2020-02-09"), Date::new(2020, 2, 9));
    }

    #[test]
    fn age_counts_birthdays() {
        let born = Date::new(2008, 3, 1).unwrap();
        assert_eq!(born.age_on(Date::new(2026, 2, 28).unwrap()), 17);
        assert_eq!(born.age_on(Date::new(2026, 3, 1).unwrap()), 18);
    }
}
