//! Rows of the index tables: the day-count facts (`*_day_counts`), the window values
//! computed from them (`satisfaction_*`, `hotline_kpi_*`) and the processor's checkpoints.
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::domain::framework::Framework;
use crate::domain::time::clickhouse_date;
use crate::index::hotline::HotlineKpi;
use crate::index::values::{HotlineValue, SatisfactionValue};

/// One survey fact: what one block of one partition's offsets added to one cell and day.
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct SurveyDayCountRow {
    pub framework: String,
    pub province_code: String,
    pub day: u16,
    pub agency_id: String,
    pub agency_level: String,
    pub channel: String,
    pub respondent_type: String,
    pub procedure_code: String,
    pub source_partition: u32,
    pub source_block: u32,
    pub respondents: u32,
    pub criterion_ids: Arc<[String]>,
    pub criterion_n1: Vec<u32>,
    pub criterion_n2: Vec<u32>,
    pub criterion_n3: Vec<u32>,
    pub criterion_n4: Vec<u32>,
    pub criterion_n5: Vec<u32>,
    pub criterion_missing: Vec<u32>,
    pub expectation_ids: Arc<[String]>,
    pub expectation_ticks: Vec<u32>,
    pub version: u64,
}

/// One hotline fact (signed: moved contributions are -1 on the old cell, +1 on the new).
#[derive(Debug, Clone, PartialEq, Eq, clickhouse::Row, Serialize, Deserialize)]
pub struct HotlineDayCountRow {
    pub province_code: String,
    pub day: u16,
    pub agency_id: String,
    pub category: String,
    pub channel: String,
    pub source_partition: u32,
    pub source_block: u32,
    pub received: i32,
    pub responded: i32,
    pub responded_on_time: i32,
    pub rated: i32,
    pub rated_satisfied: i32,
    pub reopened: i32,
    pub rejected: i32,
    pub past_due_delta: i32,
    pub response_bins: Vec<u8>,
    pub response_counts: Vec<i32>,
    pub version: u64,
}

/// What a partition's state changed at offsets `[from_offset, to_offset)`: ids folded
/// and tickets changed (varint bincode of `index::state::StateChunk`).
#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub struct StateChunkRow {
    pub consumer_group: String,
    pub topic: String,
    pub partition: u32,
    pub from_offset: i64,
    pub to_offset: i64,
    #[serde(with = "serde_bytes")]
    pub chunk: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct SatisfactionRow {
    pub framework: String,
    pub unit_type: String,
    pub unit_id: String,
    pub province_code: String,
    pub window: String,
    pub period: String,
    pub as_of: u16,
    pub window_start: u16,
    pub respondents: u32,
    pub sipas: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub ci_n: u32,
    pub ranked: u8,
    pub min_sample: u32,
    pub factor_ids: Arc<[String]>,
    pub factor_values: Vec<Option<f64>>,
    pub factor_n: Vec<u32>,
    pub criterion_ids: Arc<[String]>,
    pub criterion_values: Vec<Option<f64>>,
    pub criterion_valid: Vec<u32>,
    pub criterion_satisfied: Vec<u32>,
    pub criterion_missing: Vec<u32>,
    pub expectation_ids: Arc<[String]>,
    pub expectation_shares: Vec<f64>,
    pub version: u64,
}

impl SatisfactionRow {
    pub fn new(value: &SatisfactionValue, framework: &Framework) -> Self {
        let index = &value.index;
        Self {
            framework: value.framework.clone(),
            unit_type: value.unit.unit_type.as_str().to_owned(),
            unit_id: value.unit.unit_id.clone(),
            province_code: value.unit.province_code.clone(),
            window: value.window.label(),
            period: value.window.period(value.as_of),
            as_of: clickhouse_date(value.as_of),
            window_start: clickhouse_date(value.window.start(value.as_of)),
            respondents: index.respondents,
            sipas: index.sipas,
            ci_low: index.ci_low,
            ci_high: index.ci_high,
            ci_n: index.interval_n,
            ranked: u8::from(index.ranked),
            min_sample: framework.min_sample,
            factor_ids: Arc::clone(&framework.columns().factor_ids),
            factor_values: index.factor.clone(),
            factor_n: index.factor_n.clone(),
            criterion_ids: Arc::clone(&framework.columns().criterion_ids),
            criterion_values: index.criterion.clone(),
            criterion_valid: value.counts.valid_counts(),
            criterion_satisfied: value.counts.satisfied_counts(),
            criterion_missing: value.counts.missing_counts(),
            expectation_ids: Arc::clone(&framework.columns().expectation_ids),
            expectation_shares: index.expectation_share.clone(),
            version: value.version,
        }
    }
}

#[derive(Debug, Clone, PartialEq, clickhouse::Row, Serialize, Deserialize)]
pub struct HotlineKpiRow {
    pub unit_type: String,
    pub unit_id: String,
    pub province_code: String,
    pub window: String,
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
    pub version: u64,
}

impl HotlineKpiRow {
    pub fn new(value: &HotlineValue) -> Self {
        let k = &value.kpi;
        Self {
            unit_type: value.unit.unit_type.as_str().to_owned(),
            unit_id: value.unit.unit_id.clone(),
            province_code: value.unit.province_code.clone(),
            window: value.window.label(),
            period: value.window.period(value.as_of),
            as_of: clickhouse_date(value.as_of),
            window_start: clickhouse_date(value.window.start(value.as_of)),
            received: k.received,
            responded: k.responded,
            responded_on_time: k.responded_on_time,
            on_time_rate: k.on_time_rate,
            median_response_hours: k.median_response_hours,
            rated: k.rated,
            satisfaction_rate: k.satisfaction_rate,
            reopened: k.reopened,
            reopen_rate: k.reopen_rate,
            rejected: k.rejected,
            open_past_due: k.open_past_due,
            version: value.version,
        }
    }

    /// The row's KPI columns as the KPI set.
    pub fn kpi(&self) -> HotlineKpi {
        HotlineKpi {
            received: self.received,
            responded: self.responded,
            responded_on_time: self.responded_on_time,
            on_time_rate: self.on_time_rate,
            median_response_hours: self.median_response_hours,
            rated: self.rated,
            satisfaction_rate: self.satisfaction_rate,
            reopened: self.reopened,
            reopen_rate: self.reopen_rate,
            rejected: self.rejected,
            open_past_due: self.open_past_due,
        }
    }
}

#[derive(Debug, Clone, clickhouse::Row, Serialize, Deserialize)]
pub struct CheckpointRow {
    pub consumer_group: String,
    pub topic: String,
    pub partition: u32,
    pub next_offset: i64,
    #[serde(with = "serde_bytes")]
    pub state: Vec<u8>,
    pub written_at: u32,
}
