//! Rows the read API reads besides the index's own (`index::rows::SatisfactionRow` and
//! `HotlineKpiRow`): the nation view and the sums of day counts computed at query time
//! (see `src/sink/migrations/0003_day_counts.sql`). Dates arrive as days since 1970-01-01.
use serde::Deserialize;

/// A row of `nation_daily`.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct NationRow {
    pub provinces: u64,
    pub sipas_mean_of_provinces: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub sipas_respondent_weighted: Option<f64>,
    pub total_respondents: u64,
}

/// The newest day with data (0 when there is none).
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct DayRow {
    pub d: u16,
}

/// Survey day counts of one group summed over one period and every source.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct SurveySumRow {
    pub key: String,
    /// An agency level seen in the group (`level`: the name `agency_level` is a column).
    pub level: String,
    /// 1-based index of the period (the ARRAY JOIN of the periods asked for).
    pub period: u32,
    pub respondents: u64,
    pub n1: Vec<u64>,
    pub n2: Vec<u64>,
    pub n3: Vec<u64>,
    pub n4: Vec<u64>,
    pub n5: Vec<u64>,
    pub missing: Vec<u64>,
    pub ticks: Vec<u64>,
}

/// Hotline day counts of one group summed over a window (and `open_past_due` over every
/// day up to its end).
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct HotlineSumRow {
    pub province: String,
    pub key: String,
    pub received: i64,
    pub responded: i64,
    pub responded_on_time: i64,
    pub rated: i64,
    pub rated_satisfied: i64,
    pub reopened: i64,
    pub rejected: i64,
    pub open_past_due: i64,
    pub bins: Vec<u8>,
    pub bin_counts: Vec<i64>,
}
