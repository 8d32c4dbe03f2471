//! Rows of the raw event tables, in ClickHouse's RowBinary layout
//! (DateTime = UInt32 seconds, Date = UInt16 days).
use std::sync::Arc;

use serde::Serialize;

use crate::domain::event::Answers;
use crate::domain::time::{clickhouse_date, clickhouse_datetime, vietnam_day};
use crate::domain::{HotlineEvent, SurveySubmission};

/// Where a row came from in Kafka, plus when it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaCoordinates {
    /// Shared with the batch's messages: one allocation per topic, not per row.
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub ingested_at: i64,
}

#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct SurveyRow {
    pub submission_id: String,
    pub framework: String,
    pub submitted_at: u32,
    pub submitted_date: u16,
    pub province_code: String,
    pub province_code_original: String,
    pub province_code_system: u16,
    pub agency_id: String,
    pub agency_level: &'static str,
    pub procedure_code: String,
    pub channel: &'static str,
    pub respondent_type: &'static str,
    /// The framework's criterion ids, shared by the rows of a framework when the batch has
    /// them (serialised like a `Vec<String>`).
    pub answer_criteria: Arc<[String]>,
    /// 1..=5, 0 for no answer (the `survey_answers` view turns 0 into NULL).
    pub answer_scores: Vec<u8>,
    pub expectations: Vec<String>,
    pub encoding: &'static str,
    pub _topic: Arc<str>,
    pub _partition: u32,
    pub _offset: u64,
    pub ingested_at: u32,
}

impl SurveyRow {
    /// The row of a survey that goes on to the index: its strings are copied, its
    /// criterion ids shared with its framework.
    pub fn new(survey: &SurveySubmission, encoding: &'static str, at: &KafkaCoordinates) -> Self {
        Self::from_owned(survey.clone(), encoding, at)
    }

    /// The row of a survey that is not needed afterwards: its strings move into the row.
    pub fn from_owned(
        survey: SurveySubmission,
        encoding: &'static str,
        at: &KafkaCoordinates,
    ) -> Self {
        Self {
            answer_criteria: Arc::clone(survey.answers.criteria()),
            answer_scores: answer_scores(&survey.answers),
            submission_id: survey.submission_id,
            framework: survey.framework,
            submitted_at: clickhouse_datetime(survey.submitted_at),
            submitted_date: clickhouse_date(vietnam_day(survey.submitted_at)),
            province_code: survey.province_code,
            province_code_original: survey.province_code_original,
            province_code_system: survey.province_code_system.year(),
            agency_id: survey.agency_id,
            agency_level: survey.agency_level.as_str(),
            procedure_code: survey.procedure_code.unwrap_or_default(),
            channel: survey.channel.as_str(),
            respondent_type: survey.respondent_type.as_str(),
            expectations: survey.expectations,
            encoding,
            _topic: Arc::clone(&at.topic),
            _partition: at.partition.max(0) as u32,
            _offset: at.offset.max(0) as u64,
            ingested_at: clickhouse_datetime(at.ingested_at),
        }
    }
}

/// 1..=5, 0 for no answer.
fn answer_scores(answers: &Answers) -> Vec<u8> {
    answers.scores().iter().map(|s| s.unwrap_or(0)).collect()
}

#[derive(Debug, Clone, clickhouse::Row, Serialize)]
pub struct HotlineRow {
    pub event_id: String,
    pub ticket_id: String,
    #[serde(rename = "type")]
    pub event_type: &'static str,
    pub occurred_at: u32,
    pub occurred_date: u16,
    pub province_code: String,
    pub province_code_original: String,
    pub province_code_system: u16,
    pub channel: &'static str,
    pub category: String,
    pub agency_id: String,
    pub due_at: Option<u32>,
    pub rating: &'static str,
    pub reason: String,
    pub reporter_phone_hash: String,
    pub reporter_email_hash: String,
    pub encoding: &'static str,
    pub _topic: Arc<str>,
    pub _partition: u32,
    pub _offset: u64,
    pub ingested_at: u32,
}

impl HotlineRow {
    pub fn new(event: &HotlineEvent, encoding: &'static str, at: &KafkaCoordinates) -> Self {
        Self::from_owned(event.clone(), encoding, at)
    }

    /// The row of an event that is not needed afterwards: its strings move into the row.
    pub fn from_owned(event: HotlineEvent, encoding: &'static str, at: &KafkaCoordinates) -> Self {
        Self {
            event_id: event.event_id,
            ticket_id: event.ticket_id,
            event_type: event.event_type.as_str(),
            occurred_at: clickhouse_datetime(event.occurred_at),
            occurred_date: clickhouse_date(vietnam_day(event.occurred_at)),
            province_code: event.province_code,
            province_code_original: event.province_code_original,
            province_code_system: event.province_code_system.year(),
            channel: event.channel.map(|c| c.as_str()).unwrap_or(""),
            category: event.category.unwrap_or_default(),
            agency_id: event.agency_id.unwrap_or_default(),
            due_at: event.due_at.map(clickhouse_datetime),
            rating: event.rating.map(|r| r.as_str()).unwrap_or(""),
            reason: event.reason.unwrap_or_default(),
            reporter_phone_hash: event.reporter_phone_hash.unwrap_or_default(),
            reporter_email_hash: event.reporter_email_hash.unwrap_or_default(),
            encoding,
            _topic: Arc::clone(&at.topic),
            _partition: at.partition.max(0) as u32,
            _offset: at.offset.max(0) as u64,
            ingested_at: clickhouse_datetime(at.ingested_at),
        }
    }
}
