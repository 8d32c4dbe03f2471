//! Windows over Vietnam calendar days (days since 1970-01-01, UTC+7).
//! Rolling windows end on an `as_of` day and cover `[as_of - N + 1, as_of]`; calendar
//! windows cover the month, quarter or year (the SIPAS survey round) to date.
use time::{Date, Month};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Window {
    Rolling(u16),
    Month,
    Quarter,
    Year,
}

pub const WINDOWS: [Window; 6] = [
    Window::Rolling(30),
    Window::Rolling(90),
    Window::Rolling(365),
    Window::Month,
    Window::Quarter,
    Window::Year,
];

/// The longest window reaches this many days back (a leap year); older buckets can go.
pub const MAX_WINDOW_DAYS: i64 = 366;

impl Window {
    pub fn label(self) -> String {
        match self {
            Window::Rolling(n) => format!("{n}d"),
            Window::Month => "month".into(),
            Window::Quarter => "quarter".into(),
            Window::Year => "year".into(),
        }
    }

    /// First day of the window that ends on `as_of`.
    pub fn start(self, as_of: i64) -> i64 {
        match self {
            Window::Rolling(n) => as_of - i64::from(n) + 1,
            Window::Month | Window::Quarter | Window::Year => {
                let date = to_date(as_of);
                let month = match self {
                    Window::Month => date.month() as u8,
                    Window::Quarter => (date.month() as u8 - 1) / 3 * 3 + 1,
                    _ => 1,
                };
                let first = Date::from_calendar_date(
                    date.year(),
                    Month::try_from(month).expect("1..=12"),
                    1,
                )
                .expect("valid date");
                from_date(first)
            }
        }
    }

    /// `2026-11`, `2026-Q4`, `2026`; empty for rolling windows.
    pub fn period(self, as_of: i64) -> String {
        let date = to_date(as_of);
        match self {
            Window::Rolling(_) => String::new(),
            Window::Month => format!("{}-{:02}", date.year(), date.month() as u8),
            Window::Quarter => format!("{}-Q{}", date.year(), (date.month() as u8 - 1) / 3 + 1),
            Window::Year => date.year().to_string(),
        }
    }
}

pub fn to_date(day: i64) -> Date {
    Date::from_julian_day((day + 2_440_588) as i32).expect("day in range")
}

pub fn from_date(date: Date) -> i64 {
    i64::from(date.to_julian_day()) - 2_440_588
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::date;

    #[test]
    fn rolling_windows_include_as_of_and_n_minus_one_days_before() {
        let as_of = from_date(date!(2026 - 11 - 21));
        assert_eq!(
            Window::Rolling(30).start(as_of),
            from_date(date!(2026 - 10 - 23))
        );
        assert_eq!(as_of - Window::Rolling(30).start(as_of) + 1, 30);
        assert_eq!(
            Window::Rolling(365).start(as_of),
            from_date(date!(2025 - 11 - 22))
        );
    }

    #[test]
    fn calendar_windows_start_at_period_start() {
        let as_of = from_date(date!(2026 - 11 - 21));
        assert_eq!(Window::Month.start(as_of), from_date(date!(2026 - 11 - 01)));
        assert_eq!(
            Window::Quarter.start(as_of),
            from_date(date!(2026 - 10 - 01))
        );
        assert_eq!(Window::Year.start(as_of), from_date(date!(2026 - 01 - 01)));
        assert_eq!(Window::Month.period(as_of), "2026-11");
        assert_eq!(Window::Quarter.period(as_of), "2026-Q4");
        assert_eq!(Window::Year.period(as_of), "2026");
        assert_eq!(
            Window::Quarter.period(from_date(date!(2026 - 03 - 31))),
            "2026-Q1"
        );
        assert_eq!(
            Window::Month.start(from_date(date!(2026 - 03 - 01))),
            from_date(date!(2026 - 03 - 01))
        );
    }

    #[test]
    fn day_numbers_agree_with_vietnam_days() {
        // 2026-11-20T17:00:00Z is 2026-11-21 00:00 in Vietnam.
        let unix = crate::domain::time::parse_rfc3339("2026-11-20T17:00:00Z").unwrap();
        assert_eq!(
            crate::domain::time::vietnam_day(unix),
            from_date(date!(2026 - 11 - 21))
        );
        assert_eq!(
            to_date(from_date(date!(2024 - 02 - 29))),
            date!(2024 - 02 - 29)
        );
    }
}
