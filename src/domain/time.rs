//! Event time. Days are Vietnam calendar days (UTC+7, no daylight saving).
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Vietnam is UTC+7 all year.
pub const VIETNAM_OFFSET_SECONDS: i64 = 7 * 3600;
const SECONDS_PER_DAY: i64 = 86_400;

/// 2025-07-01 00:00 Vietnam time: events before it carry 2004-system province codes
/// unless they say otherwise (Nghị quyết 202/2025/QH15).
pub const PROVINCE_MERGER_UNIX: i64 = 1_751_302_800;

/// The wall clock, as Unix seconds (only at the edges: ingest time, checkpoint stamps).
pub fn unix_now() -> i64 {
    since_epoch().as_secs() as i64
}

/// The wall clock in Unix milliseconds (the unit of Kafka message timestamps).
pub fn unix_now_millis() -> i64 {
    since_epoch().as_millis() as i64
}

/// The wall clock in Unix microseconds (window rows' `version`: the later snapshot wins).
pub fn unix_now_micros() -> u64 {
    since_epoch().as_micros() as u64
}

/// Time since 1970; zero for a clock set before it.
fn since_epoch() -> std::time::Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
}

/// Parses an RFC 3339 timestamp that carries an explicit offset; returns Unix seconds.
/// Sub-second precision is dropped (ClickHouse 18.16 stores seconds).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let parsed = OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("{text:?} is not RFC 3339: {e}"))?;
    Ok(parsed.unix_timestamp())
}

/// Formats Unix seconds as RFC 3339 in Vietnam time, e.g. `2026-11-21T08:30:00+07:00`.
pub fn format_vietnam(unix: i64) -> String {
    let offset =
        time::UtcOffset::from_whole_seconds(VIETNAM_OFFSET_SECONDS as i32).expect("valid offset");
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.to_offset(offset).format(&Rfc3339).unwrap_or_default())
        .unwrap_or_default()
}

/// The Vietnam calendar day of an instant, as days since 1970-01-01.
pub fn vietnam_day(unix: i64) -> i64 {
    (unix + VIETNAM_OFFSET_SECONDS).div_euclid(SECONDS_PER_DAY)
}

/// End of a Vietnam day (exclusive), as Unix seconds.
pub fn day_end(day: i64) -> i64 {
    (day + 1) * 86_400 - VIETNAM_OFFSET_SECONDS
}

/// Days since 1970-01-01 as `YYYY-MM-DD` (what ClickHouse's `toDate` reads).
pub fn format_day(day: i64) -> String {
    match time::Date::from_julian_day((day + 2_440_588).clamp(0, 5_000_000) as i32) {
        Ok(date) => format!(
            "{:04}-{:02}-{:02}",
            date.year(),
            date.month() as u8,
            date.day()
        ),
        Err(_) => "1970-01-01".into(),
    }
}

/// Days since 1970-01-01 as ClickHouse `Date` (UInt16), saturating outside its range.
pub fn clickhouse_date(day: i64) -> u16 {
    day.clamp(0, u16::MAX as i64) as u16
}

/// Unix seconds as ClickHouse `DateTime` (UInt32), saturating outside its range.
pub fn clickhouse_datetime(unix: i64) -> u32 {
    unix.clamp(0, u32::MAX as i64) as u32
}

/// ClickHouse `DateTime` cannot hold instants before 1970 or after 2106; such timestamps
/// are rejected rather than silently clamped.
pub fn in_storable_range(unix: i64) -> bool {
    (0..=u32::MAX as i64).contains(&unix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_offsets() {
        assert_eq!(
            parse_rfc3339("2025-07-01T00:00:00+07:00").unwrap(),
            PROVINCE_MERGER_UNIX
        );
        assert_eq!(
            parse_rfc3339("2025-06-30T17:00:00Z").unwrap(),
            PROVINCE_MERGER_UNIX
        );
        assert!(parse_rfc3339("2025-06-30 17:00:00").is_err());
        assert!(
            parse_rfc3339("2025-06-30T17:00:00").is_err(),
            "offset is required"
        );
        assert!(parse_rfc3339("").is_err());
    }

    #[test]
    fn day_boundaries_are_in_vietnam_time() {
        // 16:59:59Z is 23:59:59 in Vietnam; 17:00:00Z is the next Vietnam day.
        let before = parse_rfc3339("2026-11-20T16:59:59Z").unwrap();
        let after = parse_rfc3339("2026-11-20T17:00:00Z").unwrap();
        assert_eq!(vietnam_day(after) - vietnam_day(before), 1);
        let midnight_vn = parse_rfc3339("2026-11-21T00:00:00+07:00").unwrap();
        assert_eq!(vietnam_day(midnight_vn), vietnam_day(after));
        // 2026-11-21 is day 20778 since 1970-01-01.
        assert_eq!(vietnam_day(after), 20778);
    }

    #[test]
    fn formats_in_vietnam_time() {
        assert_eq!(
            format_vietnam(PROVINCE_MERGER_UNIX),
            "2025-07-01T00:00:00+07:00"
        );
    }
}
