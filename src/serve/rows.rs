//! Rows read from the index tables and views (see `src/sink/migrations/0002_indices.sql`).
//! Dates arrive as days since 1970-01-01.
use serde::Deserialize;

#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct RankingRow {
    pub province_code: String,
    pub province_name: String,
    pub period: String,
    pub as_of: u16,
    pub sipas: Option<f64>,
    pub access: Option<f64>,
    pub procedure: Option<f64>,
    pub staff: Option<f64>,
    pub result: Option<f64>,
    pub feedback: Option<f64>,
    pub respondents: u32,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ranked: u8,
    pub rank: Option<u32>,
}

/// A province's value in an earlier period, for the change columns.
#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct PreviousRow {
    pub province_code: String,
    pub as_of: u16,
    pub sipas: Option<f64>,
    pub rank: Option<u32>,
}

#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct UnitRow {
    pub unit_type: String,
    pub unit_id: String,
    pub province_code: String,
    pub period: String,
    pub as_of: u16,
    pub window_start: u16,
    pub respondents: u32,
    pub sipas: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ranked: u8,
    pub min_sample: u32,
    pub factor_ids: Vec<String>,
    pub factor_values: Vec<Option<f64>>,
    pub criterion_ids: Vec<String>,
    pub criterion_values: Vec<Option<f64>>,
    pub criterion_valid: Vec<u32>,
    pub criterion_satisfied: Vec<u32>,
    pub criterion_missing: Vec<u32>,
    pub expectation_ids: Vec<String>,
    pub expectation_shares: Vec<f64>,
}

#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct HistoryRow {
    pub as_of: u16,
    pub respondents: u32,
    pub sipas: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ranked: u8,
    pub factor_ids: Vec<String>,
    pub factor_values: Vec<Option<f64>>,
}

#[derive(Debug, Clone, clickhouse::Row, Deserialize)]
pub struct HotlineRow {
    pub unit_type: String,
    pub unit_id: String,
    pub province_code: String,
    pub period: String,
    pub as_of: u16,
    pub window_start: u16,
    pub received: u32,
    pub responded: u32,
    pub responded_on_time: u32,
    pub on_time_rate: Option<f64>,
    pub median_response_hours: Option<f64>,
    pub rated: u32,
    pub satisfaction_rate: Option<f64>,
    pub reopened: u32,
    pub reopen_rate: Option<f64>,
    pub rejected: u32,
    pub open_past_due: u32,
}
