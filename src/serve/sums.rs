//! Values computed at query time from the day-count facts: one SQL sums the counts of
//! `satisfaction_day_counts` / `hotline_day_counts` (the newest version of each row, over every source) per group
//! and period, then the index's own math turns each sum into a row shaped like the
//! materialised ones (`satisfaction_value` / `hotline_value`), so the views do not care
//! where a value came from.
//!
//! Survey queries filter on the primary key's prefix (framework, province, day), so a
//! province's agency ranking over a year reads only that province's rows of that year.
//! SQL text is fixed: only the table names, the grouping column (a whitelisted
//! [`SurveyGroup`] / [`HotlineGroup`]) and the presence of a filter vary; values are bound.
use std::collections::BTreeMap;

use clickhouse::query::Query;

use super::db::fetch;
use super::error::ApiError;
use super::params::storable_day;
use super::rows::{HotlineSumRow, SurveySumRow};
use super::ServeState;
use crate::domain::framework::Framework;
use crate::domain::time::format_day;
use crate::index::rows::{HotlineKpiRow, SatisfactionRow};
use crate::index::survey::SurveyCounts;
use crate::index::ticket::{narrow_sum, summed_response_bins, HotlineDayCounts};
use crate::index::values::{hotline_value, satisfaction_value, window_sums, UnitKey, UnitType};
use crate::index::window::Window;
use crate::tables;

/// What survey counts are summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SurveyGroup {
    Province,
    Agency,
    /// One sum per day (the input of [`window_sums`]).
    Day,
    Channel,
    RespondentType,
    AgencyLevel,
    Procedure,
}

impl SurveyGroup {
    fn column(self) -> &'static str {
        match self {
            SurveyGroup::Province => "province_code",
            SurveyGroup::Agency => "agency_id",
            SurveyGroup::Day => "toString(toUInt16(day))",
            SurveyGroup::Channel => "channel",
            SurveyGroup::RespondentType => "respondent_type",
            SurveyGroup::AgencyLevel => "agency_level",
            SurveyGroup::Procedure => "procedure_code",
        }
    }
}

impl From<super::params::BreakdownBy> for SurveyGroup {
    fn from(by: super::params::BreakdownBy) -> Self {
        use super::params::BreakdownBy;
        match by {
            BreakdownBy::Channel => SurveyGroup::Channel,
            BreakdownBy::RespondentType => SurveyGroup::RespondentType,
            BreakdownBy::AgencyLevel => SurveyGroup::AgencyLevel,
            BreakdownBy::Procedure => SurveyGroup::Procedure,
        }
    }
}

/// Whose counts: a framework, optionally one province and one of its agencies.
#[derive(Debug, Clone, Copy)]
pub struct SurveyScope<'a> {
    pub framework: &'a Framework,
    pub province: Option<&'a str>,
    pub agency: Option<&'a str>,
}

/// The counts of one group over one period.
#[derive(Debug, Clone)]
pub struct GroupSum {
    pub key: String,
    /// An agency level seen in the group (the agency's own for `SurveyGroup::Agency`).
    pub agency_level: String,
    /// Index into the periods asked for.
    pub period: usize,
    pub counts: SurveyCounts,
}

/// The SQL of [`survey_sums`]. With several periods (they may overlap) each fact row is
/// joined to the periods that contain its day, then summed per group and period; one
/// period is summed directly (the join costs a fifth of the statement's time).
pub fn survey_sql(group: SurveyGroup, periods: usize, province: bool, agency: bool) -> String {
    // The periods a day is in are listed inside the subquery (18.16 cannot see the
    // subquery's columns from an ARRAY JOIN expression).
    let (period, periods_column, join) = if periods > 1 {
        (
            "period",
            ", arrayFilter((i, a, b) -> toUInt16(day) >= a AND toUInt16(day) <= b, arrayEnumerate(?), ?, ?) AS periods",
            " ARRAY JOIN periods AS period",
        )
    } else {
        ("toUInt32(1) AS period", "", "")
    };
    // The newest version of each fact row, by `LIMIT 1 BY` its key: on ClickHouse 18.16
    // this is about 3.5 times faster than FINAL over the array columns.
    format!(
        "SELECT {key} AS key, any(agency_level) AS level, {period}, \
         sum(respondents) AS respondents, \
         sumForEach(criterion_n1) AS n1, sumForEach(criterion_n2) AS n2, sumForEach(criterion_n3) AS n3, \
         sumForEach(criterion_n4) AS n4, sumForEach(criterion_n5) AS n5, \
         sumForEach(criterion_missing) AS missing, sumForEach(expectation_ticks) AS ticks \
         FROM (SELECT day, province_code, agency_id, agency_level, channel, respondent_type, procedure_code, \
         respondents, criterion_n1, criterion_n2, criterion_n3, criterion_n4, criterion_n5, criterion_missing, expectation_ticks{periods_column} \
         FROM {table} \
         WHERE framework = ?{filter} AND day >= toDate(?) AND day <= toDate(?) \
         ORDER BY version DESC \
         LIMIT 1 BY day, province_code, agency_id, agency_level, channel, respondent_type, procedure_code, source_partition, source_block){join} \
         GROUP BY key, period",
        key = group.column(),
        table = tables::SATISFACTION_DAY_COUNTS,
        filter = match (province, agency) {
            (true, true) => " AND province_code = ? AND agency_id = ?",
            (true, false) => " AND province_code = ?",
            (false, true) => " AND agency_id = ?",
            (false, false) => "",
        },
    )
}

/// Periods `[from, to]` as ClickHouse days, dropping what no `Date` can hold.
fn storable_periods(periods: &[(i64, i64)]) -> Option<(Vec<u16>, Vec<u16>)> {
    let clamp = |d: i64| d.clamp(0, i64::from(u16::MAX)) as u16;
    let last = i64::from(u16::MAX);
    if !periods.iter().any(|(a, b)| a <= b && *a <= last && *b >= 0) {
        return None;
    }
    Some(periods.iter().map(|(a, b)| (clamp(*a), clamp(*b))).unzip())
}

/// The statement of [`survey_sums`]; `None` when no period holds a storable day.
pub fn survey_query(
    client: &clickhouse::Client,
    scope: SurveyScope<'_>,
    group: SurveyGroup,
    periods: &[(i64, i64)],
) -> Option<Query> {
    let (starts, ends) = storable_periods(periods)?;
    let (from, to) = (*starts.iter().min()?, *ends.iter().max()?);
    let sql = survey_sql(
        group,
        periods.len(),
        scope.province.is_some(),
        scope.agency.is_some(),
    );
    let mut query = client.query(&sql);
    if periods.len() > 1 {
        query = query.bind(&starts).bind(&starts).bind(&ends);
    }
    query = query.bind(&scope.framework.id);
    if let Some(province) = scope.province {
        query = query.bind(province);
    }
    if let Some(agency) = scope.agency {
        query = query.bind(agency);
    }
    Some(
        query
            .bind(format_day(i64::from(from)))
            .bind(format_day(i64::from(to))),
    )
}

/// Sums of the scope's survey counts per `group` and period, summed over every source.
pub async fn survey_sums(
    state: &ServeState,
    endpoint: &str,
    scope: SurveyScope<'_>,
    group: SurveyGroup,
    periods: &[(i64, i64)],
) -> Result<Vec<GroupSum>, ApiError> {
    let Some(query) = survey_query(&state.clickhouse, scope, group, periods) else {
        return Ok(Vec::new());
    };
    let rows: Vec<SurveySumRow> = fetch(state, endpoint, query).await?;
    let shape = scope.framework.columns();
    let (criteria, expectations) = (shape.criterion_ids.len(), shape.expectation_ids.len());
    Ok(rows
        .into_iter()
        .filter_map(|row| {
            let period = usize::try_from(row.period).ok()?.checked_sub(1)?;
            let counts = SurveyCounts::from_distribution(
                narrow(row.respondents),
                [
                    &fit(&row.n1, criteria),
                    &fit(&row.n2, criteria),
                    &fit(&row.n3, criteria),
                    &fit(&row.n4, criteria),
                    &fit(&row.n5, criteria),
                ],
                &fit(&row.missing, criteria),
                &fit(&row.ticks, expectations),
            );
            Some(GroupSum {
                key: row.key,
                agency_level: row.level,
                period,
                counts,
            })
        })
        .collect())
}

fn narrow(value: u64) -> u32 {
    value.min(u64::from(u32::MAX)) as u32
}

/// The framework's shape: counts beyond it are dropped, missing ones are 0.
fn fit(values: &[u64], len: usize) -> Vec<u32> {
    (0..len)
        .map(|i| values.get(i).copied().map_or(0, narrow))
        .collect()
}

/// A window value of `unit` from summed counts, shaped like a `satisfaction_daily` row.
pub fn satisfaction_row(
    framework: &Framework,
    unit: &UnitKey,
    window: Window,
    as_of: i64,
    counts: &SurveyCounts,
) -> SatisfactionRow {
    SatisfactionRow::new(
        &satisfaction_value(framework, unit, window, as_of, counts, 0),
        framework,
    )
}

/// The daily values of one window for `scope` at every `as_of` in `[from, to]` (days
/// without any respondent in the window left out), from one query of day sums.
pub async fn daily_values(
    state: &ServeState,
    endpoint: &str,
    scope: SurveyScope<'_>,
    unit: &UnitKey,
    window: Window,
    from: i64,
    to: i64,
) -> Result<Vec<SatisfactionRow>, ApiError> {
    if !storable_day(to) || from > to {
        return Ok(Vec::new());
    }
    let first = window.start(from.max(0));
    let sums = survey_sums(state, endpoint, scope, SurveyGroup::Day, &[(first, to)]).await?;
    let days: BTreeMap<i64, SurveyCounts> = sums
        .into_iter()
        .filter_map(|s| Some((s.key.parse::<i64>().ok()?, s.counts)))
        .collect();
    Ok(window_sums(&days, from.max(0), to, &[window])
        .into_iter()
        .filter_map(|(as_of, mut sums)| {
            let counts = sums.pop()?;
            (counts.respondents > 0)
                .then(|| satisfaction_row(scope.framework, unit, window, as_of, &counts))
        })
        .collect())
}

/// What hotline counts are summed by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HotlineGroup {
    Province,
    Agency,
    Category,
    Channel,
}

impl From<super::params::HotlineBy> for HotlineGroup {
    fn from(by: super::params::HotlineBy) -> Self {
        use super::params::HotlineBy;
        match by {
            HotlineBy::Province => HotlineGroup::Province,
            HotlineBy::Agency => HotlineGroup::Agency,
            HotlineBy::Category => HotlineGroup::Category,
            HotlineBy::Channel => HotlineGroup::Channel,
        }
    }
}

impl HotlineGroup {
    /// (province expression, key column). Channels of every province are pooled.
    fn columns(self, one_province: bool) -> (&'static str, &'static str) {
        match self {
            HotlineGroup::Province => ("province_code", "province_code"),
            HotlineGroup::Agency => ("province_code", "agency_id"),
            HotlineGroup::Category => ("province_code", "category"),
            HotlineGroup::Channel if one_province => ("province_code", "channel"),
            HotlineGroup::Channel => ("''", "channel"),
        }
    }

    /// The unit id of a group: unique within one answer.
    fn unit_id(self, province: &str, key: &str) -> String {
        match self {
            HotlineGroup::Province => key.to_owned(),
            HotlineGroup::Agency | HotlineGroup::Category => format!("{province}/{key}"),
            HotlineGroup::Channel => key.to_owned(),
        }
    }
}

/// The SQL of [`hotline_sums`]: the window's counts, and every `past_due_delta` up to its
/// end (open past due is a running sum over all days).
pub fn hotline_sql(group: HotlineGroup, one_province: bool) -> String {
    let (province, key) = group.columns(one_province);
    format!(
        "WITH toDate(?) AS start \
         SELECT {province} AS province, {key} AS key, \
         sumIf(received, day >= start) AS received, sumIf(responded, day >= start) AS responded, \
         sumIf(responded_on_time, day >= start) AS responded_on_time, sumIf(rated, day >= start) AS rated, \
         sumIf(rated_satisfied, day >= start) AS rated_satisfied, sumIf(reopened, day >= start) AS reopened, \
         sumIf(rejected, day >= start) AS rejected, sum(past_due_delta) AS open_past_due, \
         tupleElement(sumMapIf(response_bins, response_counts, day >= start), 1) AS bins, \
         arrayMap(x -> toInt64(x), tupleElement(sumMapIf(response_bins, response_counts, day >= start), 2)) AS bin_counts \
         FROM {table} FINAL \
         WHERE day <= toDate(?){filter} \
         GROUP BY province, key",
        table = tables::HOTLINE_DAY_COUNTS,
        filter = if one_province { " AND province_code = ?" } else { "" },
    )
}

/// The statement of [`hotline_sums`]; `None` when `as_of` is no storable day.
pub fn hotline_query(
    client: &clickhouse::Client,
    province: Option<&str>,
    group: HotlineGroup,
    window: Window,
    as_of: i64,
) -> Option<Query> {
    if !storable_day(as_of) {
        return None;
    }
    let query = client
        .query(&hotline_sql(group, province.is_some()))
        .bind(format_day(window.start(as_of).max(0)))
        .bind(format_day(as_of));
    Some(match province {
        Some(province) => query.bind(province),
        None => query,
    })
}

/// Hotline KPIs per group for the window ending on `as_of`, shaped like
/// `hotline_kpi_latest` rows (`unit_type` is the grouping's name).
pub async fn hotline_sums(
    state: &ServeState,
    endpoint: &str,
    province: Option<&str>,
    group: HotlineGroup,
    window: Window,
    as_of: i64,
) -> Result<Vec<HotlineKpiRow>, ApiError> {
    let Some(query) = hotline_query(&state.clickhouse, province, group, window, as_of) else {
        return Ok(Vec::new());
    };
    let rows: Vec<HotlineSumRow> = fetch(state, endpoint, query).await?;
    // The index has no unit type for channels; the views name rows by the grouping asked.
    let unit_type = match group {
        HotlineGroup::Province => UnitType::Province,
        HotlineGroup::Agency => UnitType::Agency,
        HotlineGroup::Category | HotlineGroup::Channel => UnitType::Category,
    };
    Ok(rows
        .into_iter()
        .filter(|r| !(group == HotlineGroup::Category && r.key.is_empty()))
        .filter_map(|r| {
            let counts = HotlineDayCounts {
                received: narrow_sum(r.received),
                responded: narrow_sum(r.responded),
                responded_on_time: narrow_sum(r.responded_on_time),
                rated: narrow_sum(r.rated),
                rated_satisfied: narrow_sum(r.rated_satisfied),
                reopened: narrow_sum(r.reopened),
                rejected: narrow_sum(r.rejected),
                past_due_delta: 0,
                response_bins: summed_response_bins(&r.bins, &r.bin_counts),
            };
            if counts.is_zero() && r.open_past_due <= 0 {
                return None;
            }
            let unit = UnitKey {
                unit_type,
                unit_id: group.unit_id(&r.province, &r.key),
                province_code: r.province,
            };
            let value = hotline_value(&unit, window, as_of, &counts, r.open_past_due, 0);
            Some(HotlineKpiRow::new(&value))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_binds_every_value_and_names_only_whitelisted_columns() {
        let sql = survey_sql(SurveyGroup::Agency, 1, true, false);
        assert!(sql.contains("FROM satisfaction_day_counts WHERE"));
        assert!(sql.contains("LIMIT 1 BY day, province_code, agency_id"));
        assert!(sql.contains("SELECT agency_id AS key"));
        assert!(sql.contains("WHERE framework = ? AND province_code = ? AND day >= toDate(?)"));
        assert_eq!(sql.matches('?').count(), 4);
        assert_eq!(
            survey_sql(SurveyGroup::Day, 1, true, true)
                .matches('?')
                .count(),
            5
        );
        let sql = survey_sql(SurveyGroup::Province, 3, false, false);
        assert!(sql.contains("source_block) ARRAY JOIN"));
        assert_eq!(sql.matches('?').count(), 6);
        let sql = hotline_sql(HotlineGroup::Channel, false);
        assert!(sql.contains("SELECT '' AS province, channel AS key"));
        assert_eq!(sql.matches('?').count(), 2);
        let sql = hotline_sql(HotlineGroup::Agency, true);
        assert!(sql.contains("FROM hotline_day_counts FINAL"));
        assert!(sql.ends_with("AND province_code = ? GROUP BY province, key"));
        assert_eq!(sql.matches('?').count(), 3);
    }

    #[test]
    fn periods_outside_clickhouse_dates_are_dropped_or_clamped() {
        assert_eq!(storable_periods(&[(-10_000, -5_000)]), None);
        assert_eq!(storable_periods(&[(70_000, 80_000)]), None);
        assert_eq!(
            storable_periods(&[(-5, 10), (20, 30)]),
            Some((vec![0, 20], vec![10, 30]))
        );
    }

    #[test]
    fn counts_are_fitted_to_the_framework() {
        assert_eq!(fit(&[1, 2, 3], 2), vec![1, 2]);
        assert_eq!(fit(&[1], 3), vec![1, 0, 0]);
        assert_eq!(fit(&[u64::MAX], 1), vec![u32::MAX]);
        assert_eq!(
            HotlineGroup::Agency.unit_id("79", "a/b"),
            "79/a/b",
            "province first, so ids stay unique"
        );
    }
}
