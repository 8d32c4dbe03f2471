//! Request parameters: parsed, checked against fixed whitelists and normalised (pure).
//! A normalised request is also the cache key, so `?window=30d` and `?window=30d&framework=`
//! with the default framework share one cached response.
use std::collections::BTreeMap;

use crate::domain::{FrameworkCatalog, ProvinceRegistry};
use crate::index::window::{self, Window, WINDOWS};

/// A parameter that is missing, unknown or malformed; answered with 400 naming it.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamError {
    pub parameter: String,
    pub message: String,
}

impl ParamError {
    fn new(parameter: &str, message: impl Into<String>) -> Self {
        Self {
            parameter: parameter.to_owned(),
            message: message.into(),
        }
    }
}

/// Query string as parsed by axum; every name must be one the endpoint knows.
pub fn check_names(query: &BTreeMap<String, String>, allowed: &[&str]) -> Result<(), ParamError> {
    match query.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(ParamError::new(
            unknown,
            format!(
                "unknown parameter `{unknown}` (allowed: {})",
                allowed.join(", ")
            ),
        )),
        None => Ok(()),
    }
}

fn value<'a>(query: &'a BTreeMap<String, String>, name: &str) -> Option<&'a str> {
    query.get(name).map(String::as_str)
}

/// A window: `month`, `quarter`, `year` or a rolling `Nd` with N from 1 to 366 (no sign, no
/// leading zero). The materialised tables hold the six of [`WINDOWS`]; other rolling
/// windows are computed from the day counts at query time.
pub fn window(query: &BTreeMap<String, String>) -> Result<Window, ParamError> {
    match value(query, "window") {
        None => Ok(Window::Rolling(30)),
        Some(text) => parse_window(text).ok_or_else(|| {
            ParamError::new(
                "window",
                format!(
                    "`window` must be Nd with N from 1 to {MAX_ROLLING_DAYS} (e.g. {}) or month, quarter, year",
                    WINDOWS
                        .iter()
                        .filter(|w| matches!(w, Window::Rolling(_)))
                        .map(|w| w.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
        }),
    }
}

/// The longest rolling window a request may name (a leap year).
pub const MAX_ROLLING_DAYS: u16 = window::MAX_WINDOW_DAYS as u16;

pub fn parse_window(text: &str) -> Option<Window> {
    match text {
        "month" => return Some(Window::Month),
        "quarter" => return Some(Window::Quarter),
        "year" => return Some(Window::Year),
        _ => {}
    }
    let digits = text.strip_suffix('d')?;
    if digits.is_empty()
        || digits.len() > 3
        || digits.starts_with('0')
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let n: u16 = digits.parse().ok()?;
    (1..=MAX_ROLLING_DAYS)
        .contains(&n)
        .then_some(Window::Rolling(n))
}

/// True when the `*_daily` / `*_latest` tables hold values of this window.
pub fn materialised(window: Window) -> bool {
    WINDOWS.contains(&window)
}

pub fn framework(
    query: &BTreeMap<String, String>,
    catalog: &FrameworkCatalog,
    default: &str,
) -> Result<String, ParamError> {
    match value(query, "framework") {
        None => Ok(default.to_owned()),
        Some(id) if catalog.get(id).is_some() => Ok(id.to_owned()),
        Some(_) => Err(ParamError::new(
            "framework",
            format!("`framework` must be one of {}", catalog.ids().join(", ")),
        )),
    }
}

/// `YYYY-MM-DD` as days since 1970-01-01.
pub fn date(query: &BTreeMap<String, String>, name: &str) -> Result<Option<i64>, ParamError> {
    let Some(text) = value(query, name) else {
        return Ok(None);
    };
    parse_date(text)
        .map(Some)
        .ok_or_else(|| ParamError::new(name, format!("`{name}` must be a date YYYY-MM-DD")))
}

/// Exactly four digits, two, two: `time`'s `[year]` also takes a sign (`+2026-11-01`,
/// `-0001-01-01`), which would then be echoed back in another spelling.
pub fn parse_date(text: &str) -> Option<i64> {
    let bytes = text.as_bytes();
    let shape = bytes.len() == 10
        && bytes.iter().enumerate().all(|(i, b)| match i {
            4 | 7 => *b == b'-',
            _ => b.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, &format).ok().map(window::from_date)
}

/// `true` or `false`, default false.
pub fn flag(query: &BTreeMap<String, String>, name: &str) -> Result<bool, ParamError> {
    match value(query, name) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(ParamError::new(
            name,
            format!("`{name}` must be `true` or `false`"),
        )),
    }
}

/// A bounded positive integer with a default.
pub fn integer(
    query: &BTreeMap<String, String>,
    name: &str,
    default: u32,
    max: u32,
) -> Result<u32, ParamError> {
    let Some(text) = value(query, name) else {
        return Ok(default);
    };
    match text.parse::<u32>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ParamError::new(
            name,
            format!("`{name}` must be an integer from 1 to {max}"),
        )),
    }
}

/// A 2025 province code.
pub fn province(
    query: &BTreeMap<String, String>,
    provinces: &ProvinceRegistry,
) -> Result<Option<String>, ParamError> {
    match value(query, "province") {
        None => Ok(None),
        Some(code) if provinces.name_2025(code).is_some() => Ok(Some(code.to_owned())),
        Some(_) => Err(ParamError::new(
            "province",
            "`province` must be a 2025 province code such as 01 or 79",
        )),
    }
}

/// Hotline grouping. Provinces and categories are materialised; agencies and channels
/// (and other rolling windows) are summed from `hotline_day_counts` at query time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotlineBy {
    Province,
    Agency,
    Category,
    Channel,
}

impl HotlineBy {
    pub const ALL: [HotlineBy; 4] = [
        HotlineBy::Province,
        HotlineBy::Agency,
        HotlineBy::Category,
        HotlineBy::Channel,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HotlineBy::Province => "province",
            HotlineBy::Agency => "agency",
            HotlineBy::Category => "category",
            HotlineBy::Channel => "channel",
        }
    }
}

/// `by` of the hotline KPIs; default `category` with a province, else `province`.
pub fn hotline_by(
    query: &BTreeMap<String, String>,
    province_given: bool,
) -> Result<HotlineBy, ParamError> {
    match value(query, "by") {
        None if province_given => Ok(HotlineBy::Category),
        None => Ok(HotlineBy::Province),
        Some(text) => one_of("by", text, &HotlineBy::ALL, |b| b.as_str()),
    }
}

/// What a breakdown splits a unit's respondents by: a column of `satisfaction_day_counts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakdownBy {
    Channel,
    RespondentType,
    AgencyLevel,
    Procedure,
}

impl BreakdownBy {
    pub const ALL: [BreakdownBy; 4] = [
        BreakdownBy::Channel,
        BreakdownBy::RespondentType,
        BreakdownBy::AgencyLevel,
        BreakdownBy::Procedure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BreakdownBy::Channel => "channel",
            BreakdownBy::RespondentType => "respondent_type",
            BreakdownBy::AgencyLevel => "agency_level",
            BreakdownBy::Procedure => "procedure",
        }
    }
}

/// `by` of a breakdown; default `channel`.
pub fn breakdown_by(query: &BTreeMap<String, String>) -> Result<BreakdownBy, ParamError> {
    match value(query, "by") {
        None => Ok(BreakdownBy::Channel),
        Some(text) => one_of("by", text, &BreakdownBy::ALL, |b| b.as_str()),
    }
}

fn one_of<T: Copy>(
    name: &str,
    text: &str,
    all: &[T],
    label: impl Fn(T) -> &'static str,
) -> Result<T, ParamError> {
    all.iter()
        .copied()
        .find(|v| label(*v) == text)
        .ok_or_else(|| {
            let labels: Vec<&str> = all.iter().map(|v| label(*v)).collect();
            ParamError::new(
                name,
                format!("`{name}` must be one of {}", labels.join(", ")),
            )
        })
}

/// A 2025 province code from the path.
pub fn province_path(text: &str, provinces: &ProvinceRegistry) -> Result<String, ParamError> {
    if provinces.name_2025(text).is_some() {
        Ok(text.to_owned())
    } else {
        Err(ParamError::new(
            "province",
            "`province` must be a 2025 province code such as 01 or 79",
        ))
    }
}

/// `/units/{unit_id}` names provinces only: an agency id is unique only within its
/// province, so it is asked for under `/provinces/{province}/agencies/{agency_id}`.
pub fn unit_province(text: &str, provinces: &ProvinceRegistry) -> Result<String, ParamError> {
    if provinces.name_2025(text).is_some() {
        Ok(text.to_owned())
    } else {
        Err(ParamError::new(
            "province",
            "`unit_id` is not a 2025 province code; an agency id is unique only within its \
             province: ask /api/v1/provinces/{province}/agencies/{agency_id}",
        ))
    }
}

/// An agency id from the path, as producers send it. Values are bound as query
/// parameters; the bound only keeps absurd input out of the cache.
pub fn agency_id(text: &str) -> Result<String, ParamError> {
    if (1..=128).contains(&text.chars().count()) {
        Ok(text.to_owned())
    } else {
        Err(ParamError::new(
            "agency_id",
            "`agency_id` must be 1 to 128 characters",
        ))
    }
}

/// ClickHouse `Date` covers 1970-01-01 ..= 2149-06-06; other days hold no values.
pub fn storable_day(day: i64) -> bool {
    (0..=i64::from(u16::MAX)).contains(&day)
}

/// The period a value is compared with: the same length just before it. Rolling windows
/// compare with the value `N` days earlier; calendar windows with the whole previous
/// month, quarter or year (its value on its last day).
pub fn previous_as_of(window: Window, as_of: i64) -> i64 {
    match window {
        Window::Rolling(n) => as_of - i64::from(n),
        Window::Month | Window::Quarter | Window::Year => window.start(as_of) - 1,
    }
}

/// The earlier days a value at `as_of` is compared with: the previous period and the same
/// period of the previous year (one day when they coincide), ascending.
pub fn comparison_days(window: Window, as_of: i64) -> Vec<i64> {
    let mut days = vec![previous_as_of(window, as_of)];
    days.extend(previous_year_as_of(window, as_of));
    days.sort_unstable();
    days.dedup();
    days
}

/// The same period of the previous year: for rolling windows the value one calendar year
/// earlier (29 February → 28 February); for calendar windows the whole same month,
/// quarter or year of the previous year (its value on its last day). `None` outside the
/// calendar the `time` crate covers.
pub fn previous_year_as_of(window: Window, as_of: i64) -> Option<i64> {
    let date = to_date(as_of)?;
    let year = date.year() - 1;
    let same_day = time::Date::from_calendar_date(year, date.month(), date.day())
        .or_else(|_| time::Date::from_calendar_date(year, date.month(), date.day() - 1))
        .ok()?;
    let last_month = match window {
        Window::Rolling(_) => return Some(window::from_date(same_day)),
        Window::Month => date.month(),
        Window::Quarter => time::Month::try_from((date.month() as u8 - 1) / 3 * 3 + 3).ok()?,
        Window::Year => time::Month::December,
    };
    let last = time::Date::from_calendar_date(year, last_month, last_month.length(year)).ok()?;
    Some(window::from_date(last))
}

fn to_date(day: i64) -> Option<time::Date> {
    let julian = i32::try_from(day.checked_add(2_440_588)?).ok()?;
    time::Date::from_julian_day(julian).ok()
}

pub use crate::domain::time::format_day;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_compared_with_two_earlier_days() {
        let day = crate::index::window::from_date(time::macros::date!(2026 - 11 - 20));
        assert_eq!(
            comparison_days(Window::Rolling(30), day),
            vec![
                crate::index::window::from_date(time::macros::date!(2025 - 11 - 20)),
                day - 30
            ]
        );
        // The year window's previous period is the previous year.
        assert_eq!(comparison_days(Window::Year, day).len(), 1);
    }

    #[test]
    fn flags_are_true_or_false() {
        let q = |v: &str| BTreeMap::from([("compare".to_owned(), v.to_owned())]);
        assert!(flag(&q("true"), "compare").unwrap());
        assert!(!flag(&q("false"), "compare").unwrap());
        assert!(!flag(&BTreeMap::new(), "compare").unwrap());
        assert!(flag(&q("1"), "compare").is_err());
    }

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn windows_are_calendar_or_1_to_366_days() {
        assert_eq!(window(&query(&[])).unwrap(), Window::Rolling(30));
        assert_eq!(
            window(&query(&[("window", "quarter")])).unwrap(),
            Window::Quarter
        );
        for (text, want) in [
            ("1d", Some(Window::Rolling(1))),
            ("7d", Some(Window::Rolling(7))),
            ("45d", Some(Window::Rolling(45))),
            ("366d", Some(Window::Rolling(366))),
            ("367d", None),
            ("0d", None),
            ("07d", None),
            ("+7d", None),
            ("-7d", None),
            ("7", None),
            ("d", None),
            ("7D", None),
            ("1000d", None),
            ("99999999999999999999d", None),
            ("7d\n", None),
            (" 7d", None),
            ("week", None),
            ("Month", None),
        ] {
            assert_eq!(parse_window(text), want, "{text:?}");
        }
        let err = window(&query(&[("window", "30d' OR 1=1")])).unwrap_err();
        assert_eq!(err.parameter, "window");
        assert!(
            err.message.contains("1 to 366") && err.message.contains("month, quarter, year"),
            "{}",
            err.message
        );
        assert!(materialised(Window::Rolling(90)) && !materialised(Window::Rolling(45)));
    }

    #[test]
    fn unknown_names_and_bad_values_name_the_parameter() {
        assert_eq!(
            check_names(&query(&[("windw", "30d")]), &["window"])
                .unwrap_err()
                .parameter,
            "windw"
        );
        assert_eq!(
            date(&query(&[("as_of", "2026-13-01")]), "as_of")
                .unwrap_err()
                .parameter,
            "as_of"
        );
        for signed in [
            "-0001-01-01",
            "+2026-11-01",
            "+002026-11-01",
            "2026-11-1",
            "02026-11-01",
        ] {
            assert_eq!(
                date(&query(&[("as_of", signed)]), "as_of")
                    .unwrap_err()
                    .parameter,
                "as_of",
                "{signed}"
            );
        }
        assert_eq!(
            parse_date("0001-01-01"),
            Some(window::from_date(time::macros::date!(0001 - 01 - 01)))
        );
        assert_eq!(parse_date("2026-02-30"), None);
        assert_eq!(
            date(&query(&[("as_of", "2026-11-20")]), "as_of").unwrap(),
            Some(window::from_date(time::macros::date!(2026 - 11 - 20)))
        );
        assert_eq!(
            integer(&query(&[("days", "0")]), "days", 90, 366)
                .unwrap_err()
                .parameter,
            "days"
        );
        assert_eq!(
            integer(&query(&[("days", "367")]), "days", 90, 366)
                .unwrap_err()
                .parameter,
            "days"
        );
        assert_eq!(integer(&query(&[]), "days", 90, 366).unwrap(), 90);
        assert_eq!(
            hotline_by(&query(&[("by", "x")]), false)
                .unwrap_err()
                .parameter,
            "by"
        );
        assert_eq!(hotline_by(&query(&[]), true).unwrap(), HotlineBy::Category);
        assert_eq!(hotline_by(&query(&[]), false).unwrap(), HotlineBy::Province);
        assert_eq!(
            hotline_by(&query(&[("by", "channel")]), false).unwrap(),
            HotlineBy::Channel
        );
        assert_eq!(breakdown_by(&query(&[])).unwrap(), BreakdownBy::Channel);
        assert_eq!(
            breakdown_by(&query(&[("by", "procedure")])).unwrap(),
            BreakdownBy::Procedure
        );
        let err = breakdown_by(&query(&[("by", "agency")])).unwrap_err();
        assert_eq!(err.parameter, "by");
        assert!(err
            .message
            .contains("channel, respondent_type, agency_level, procedure"));
        let provinces = ProvinceRegistry::builtin();
        assert_eq!(
            province(&query(&[("province", "79")]), &provinces)
                .unwrap()
                .as_deref(),
            Some("79")
        );
        assert_eq!(
            province(&query(&[("province", "52x")]), &provinces)
                .unwrap_err()
                .parameter,
            "province"
        );
        assert!(
            agency_id("").is_err()
                && agency_id(&"x".repeat(129)).is_err()
                && agency_id("79-commune-012").is_ok()
        );
        assert_eq!(agency_id("").unwrap_err().parameter, "agency_id");
        assert_eq!(unit_province("79", &provinces).unwrap(), "79");
        let agency = unit_province("79-commune-012", &provinces).unwrap_err();
        assert_eq!(agency.parameter, "province");
        assert!(agency
            .message
            .contains("/api/v1/provinces/{province}/agencies/{agency_id}"));
        assert_eq!(
            province_path("99", &provinces).unwrap_err().parameter,
            "province"
        );
        assert!(storable_day(0) && !storable_day(-1) && !storable_day(70_000));
    }

    #[test]
    fn previous_period_has_the_same_length() {
        let day = |y, m, d| {
            window::from_date(
                time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap(),
            )
        };
        assert_eq!(
            previous_as_of(Window::Rolling(30), day(2026, 11, 20)),
            day(2026, 10, 21)
        );
        assert_eq!(
            previous_as_of(Window::Month, day(2026, 11, 20)),
            day(2026, 10, 31)
        );
        assert_eq!(
            previous_as_of(Window::Quarter, day(2026, 11, 20)),
            day(2026, 9, 30)
        );
        assert_eq!(
            previous_as_of(Window::Year, day(2026, 11, 20)),
            day(2025, 12, 31)
        );
        assert_eq!(format_day(day(2026, 1, 5)), "2026-01-05");
    }

    #[test]
    fn previous_year_is_the_same_period_a_year_earlier() {
        let day = |y, m, d| {
            window::from_date(
                time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap(),
            )
        };
        let as_of = day(2026, 11, 20);
        assert_eq!(
            previous_year_as_of(Window::Rolling(30), as_of),
            Some(day(2025, 11, 20))
        );
        assert_eq!(
            previous_year_as_of(Window::Rolling(45), day(2024, 2, 29)),
            Some(day(2023, 2, 28)),
            "29 February has no day a year earlier"
        );
        assert_eq!(
            previous_year_as_of(Window::Month, as_of),
            Some(day(2025, 11, 30))
        );
        assert_eq!(
            previous_year_as_of(Window::Month, day(2025, 2, 10)),
            Some(day(2024, 2, 29)),
            "the whole February of a leap year"
        );
        assert_eq!(
            previous_year_as_of(Window::Quarter, as_of),
            Some(day(2025, 12, 31))
        );
        assert_eq!(
            previous_year_as_of(Window::Quarter, day(2026, 5, 1)),
            Some(day(2025, 6, 30))
        );
        assert_eq!(
            previous_year_as_of(Window::Year, as_of),
            Some(day(2025, 12, 31))
        );
        // Outside the calendar: no day, no panic.
        assert_eq!(previous_year_as_of(Window::Month, i64::MAX), None);
        assert_eq!(previous_year_as_of(Window::Year, i64::MIN), None);
    }
}
