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

pub fn window(query: &BTreeMap<String, String>) -> Result<Window, ParamError> {
    let Some(text) = value(query, "window") else {
        return Ok(Window::Rolling(30));
    };
    WINDOWS
        .into_iter()
        .find(|w| w.label() == text)
        .ok_or_else(|| {
            let labels: Vec<String> = WINDOWS.iter().map(|w| w.label()).collect();
            ParamError::new(
                "window",
                format!("`window` must be one of {}", labels.join(", ")),
            )
        })
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
    let format = time::macros::format_description!("[year]-[month]-[day]");
    let parsed = time::Date::parse(text, &format)
        .map_err(|_| ParamError::new(name, format!("`{name}` must be a date YYYY-MM-DD")))?;
    Ok(Some(window::from_date(parsed)))
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

/// Hotline grouping: `province`, `agency` or `category`.
pub fn hotline_by(
    query: &BTreeMap<String, String>,
    province_given: bool,
) -> Result<&'static str, ParamError> {
    match value(query, "by") {
        None if province_given => Ok("category"),
        None => Ok("province"),
        Some("province") => Ok("province"),
        Some("agency") => Ok("agency"),
        Some("category") => Ok("category"),
        Some(_) => Err(ParamError::new(
            "by",
            "`by` must be one of province, agency, category",
        )),
    }
}

/// A unit id from the path: a province code or an agency id as producers send it. Values
/// are bound as query parameters; the bound only keeps absurd input out of the cache.
pub fn unit_id(text: &str) -> Result<String, ParamError> {
    if (1..=128).contains(&text.chars().count()) {
        Ok(text.to_owned())
    } else {
        Err(ParamError::new(
            "unit_id",
            "`unit_id` must be 1 to 128 characters",
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

pub use crate::domain::time::format_day;

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn windows_come_from_the_whitelist() {
        assert_eq!(window(&query(&[])).unwrap(), Window::Rolling(30));
        assert_eq!(
            window(&query(&[("window", "quarter")])).unwrap(),
            Window::Quarter
        );
        let err = window(&query(&[("window", "30d' OR 1=1")])).unwrap_err();
        assert_eq!(err.parameter, "window");
        assert!(
            err.message.contains("30d, 90d, 365d, month, quarter, year"),
            "{}",
            err.message
        );
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
        assert_eq!(hotline_by(&query(&[]), true).unwrap(), "category");
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
            unit_id("").is_err()
                && unit_id(&"x".repeat(129)).is_err()
                && unit_id("79-commune-012").is_ok()
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
}
