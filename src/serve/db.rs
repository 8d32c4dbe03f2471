//! The read API's ClickHouse access: every query counted per endpoint and bounded by the
//! timeout; the newest days with data. SQL text is fixed (table names come from
//! `tables`); request values are bound with `?`.
use super::error::ApiError;
use super::rows::DayRow;
use super::ServeState;
use crate::tables;

/// Runs one query, counted in `sipas_serve_clickhouse_queries_total`, bounded by the timeout.
pub async fn fetch<T>(
    state: &ServeState,
    endpoint: &str,
    query: clickhouse::query::Query,
) -> Result<Vec<T>, ApiError>
where
    T: clickhouse::Row + for<'b> clickhouse::RowRead<Value<'b> = T> + 'static,
{
    state
        .metrics
        .serve_queries
        .with_label_values(&[endpoint])
        .inc();
    let timeout = std::time::Duration::from_millis(state.config.query_timeout_ms);
    match tokio::time::timeout(timeout, query.fetch_all::<T>()).await {
        Ok(Ok(rows)) => Ok(rows),
        Ok(Err(error)) => {
            tracing::warn!(endpoint, %error, "ClickHouse query failed");
            Err(ApiError::unavailable())
        }
        Err(_) => {
            tracing::warn!(endpoint, "ClickHouse query timed out");
            Err(ApiError::unavailable())
        }
    }
}

/// The newest day with facts in `facts` (rows matching `events`). The `latest` table's
/// day (written by the index at the newest day it has seen) bounds the scan to the newest
/// partitions; when the facts hold nothing from that day on (a rebuild in progress), the
/// whole table is asked.
pub fn newest_day_sql(facts: &str, latest: &str, events: &str) -> [String; 2] {
    [
        format!(
            "SELECT toUInt16(max(day)) AS d FROM {facts} WHERE ({events}) AND day >= (SELECT max(as_of) FROM {latest})"
        ),
        format!("SELECT toUInt16(max(day)) AS d FROM {facts} WHERE {events}"),
    ]
}

async fn newest_day(
    state: &ServeState,
    endpoint: &str,
    sql: [String; 2],
) -> Result<Option<i64>, ApiError> {
    for sql in sql {
        let rows: Vec<DayRow> = fetch(state, endpoint, state.clickhouse.query(&sql)).await?;
        if let Some(day) = rows.first().map(|r| i64::from(r.d)).filter(|d| *d > 0) {
            return Ok(Some(day));
        }
    }
    Ok(None)
}

/// Every survey fact row is a respondent's.
pub const SURVEY_EVENTS: &str = "1";
/// Hotline days with events, as the index takes them: a deadline's past-due toggle may lie
/// ahead of every event and is no data of that day.
pub const HOTLINE_EVENTS: &str =
    "received != 0 OR responded != 0 OR rated != 0 OR reopened != 0 OR rejected != 0";

/// The newest Vietnam day with survey data anywhere: "latest" of the query-time endpoints.
pub async fn newest_survey_day(
    state: &ServeState,
    endpoint: &str,
) -> Result<Option<i64>, ApiError> {
    let sql = newest_day_sql(
        tables::SATISFACTION_DAY_COUNTS,
        tables::SATISFACTION_LATEST,
        SURVEY_EVENTS,
    );
    newest_day(state, endpoint, sql).await
}

/// The requested `as_of` day, or else the newest day with survey data anywhere.
pub async fn survey_as_of(
    state: &ServeState,
    endpoint: &str,
    requested: Option<i64>,
) -> Result<Option<i64>, ApiError> {
    match requested {
        Some(day) => Ok(Some(day)),
        None => newest_survey_day(state, endpoint).await,
    }
}

/// The newest Vietnam day with hotline events anywhere (the materialised KPIs' day).
pub async fn newest_hotline_day(
    state: &ServeState,
    endpoint: &str,
) -> Result<Option<i64>, ApiError> {
    let sql = newest_day_sql(
        tables::HOTLINE_DAY_COUNTS,
        tables::HOTLINE_KPI_LATEST,
        HOTLINE_EVENTS,
    );
    newest_day(state, endpoint, sql).await
}
