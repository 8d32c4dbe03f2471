//! One unit's values and daily history: `GET /api/v1/units/{unit_id}` (a province) and
//! `GET /api/v1/provinces/{province}/agencies/{agency_id}` (an agency, unique only within
//! its province). A province with a materialised window is read from
//! `satisfaction_latest` / `satisfaction_daily`; agencies and other windows are computed
//! from the day counts of that province (and agency) at query time.
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use clickhouse::query::Query;

use super::{
    answer, framework_param, loaded_framework, path_parts, query_map, to_json, ApiError,
    NormalisedRequest, PathParts, QueryMap,
};
use crate::domain::Framework;
use crate::index::rows::SatisfactionRow;
use crate::index::survey::SurveyCounts;
use crate::index::values::{UnitKey, UnitType};
use crate::index::window::Window;
use crate::serve::db::{fetch, newest_survey_day};
use crate::serve::params::{self, format_day, materialised, ParamError};
use crate::serve::sums::{daily_values, satisfaction_row, SurveyScope};
use crate::serve::views;
use crate::serve::ServeState;
use crate::tables;

/// A normalised unit request: a province, or an agency within it.
#[derive(Debug, Clone)]
pub struct UnitRequest {
    pub framework: String,
    pub province: String,
    pub agency: Option<String>,
    pub window: Window,
    pub days: u32,
}

impl NormalisedRequest for UnitRequest {
    fn key(&self) -> String {
        // Debug quoting keeps an agency id from running into the next field.
        format!(
            "unit|{:?}",
            (
                &self.framework,
                &self.province,
                &self.agency,
                self.window.label(),
                self.days
            )
        )
    }
}

impl UnitRequest {
    fn parse(
        state: &ServeState,
        query: &BTreeMap<String, String>,
        province: String,
        agency: Option<String>,
    ) -> Result<Self, ParamError> {
        params::check_names(query, &["window", "framework", "days"])?;
        Ok(Self {
            window: params::window(query)?,
            framework: framework_param(state, query)?,
            days: params::integer(query, "days", 90, 366)?,
            province,
            agency,
        })
    }

    /// The metrics label of the request's endpoint.
    fn endpoint(&self) -> &'static str {
        if self.agency.is_some() {
            "agency"
        } else {
            "units"
        }
    }

    fn unit(&self) -> UnitKey {
        match &self.agency {
            Some(agency) => UnitKey {
                unit_type: UnitType::Agency,
                unit_id: agency.clone(),
                province_code: self.province.clone(),
            },
            None => UnitKey {
                unit_type: UnitType::Province,
                unit_id: self.province.clone(),
                province_code: self.province.clone(),
            },
        }
    }
}

pub async fn compute_unit(state: &ServeState, request: &UnitRequest) -> Result<Vec<u8>, ApiError> {
    let framework = loaded_framework(state, &request.framework)?;
    let unit = request.unit();
    let found = if request.agency.is_none() && materialised(request.window) {
        materialised_unit(state, request, &unit).await?
    } else {
        query_time_unit(state, request, framework, &unit).await?
    };
    let Some((latest, history)) = found else {
        return Err(ApiError::not_found(format!(
            "no {} values for {} {} in province {} and framework {}",
            request.window.label(),
            unit.unit_type.as_str(),
            unit.unit_id,
            unit.province_code,
            request.framework
        )));
    };
    to_json(&views::unit(
        unit.unit_type.as_str(),
        &latest,
        &history,
        framework,
        &state.provinces,
    ))
}

type Found = Option<(SatisfactionRow, Vec<SatisfactionRow>)>;

pub fn latest_query(client: &clickhouse::Client, request: &UnitRequest, unit: &UnitKey) -> Query {
    client
        .query(&format!(
            "SELECT ?fields FROM {} FINAL WHERE framework = ? AND unit_type = ? AND unit_id = ? AND window = ?",
            tables::SATISFACTION_LATEST
        ))
        .bind(&request.framework)
        .bind(unit.unit_type.as_str())
        .bind(&unit.unit_id)
        .bind(request.window.label())
}

pub fn history_query(
    client: &clickhouse::Client,
    request: &UnitRequest,
    unit: &UnitKey,
    from: i64,
    to: i64,
) -> Query {
    client
        .query(&format!(
            "SELECT ?fields FROM {} FINAL WHERE framework = ? AND unit_type = ? AND unit_id = ? AND window = ? \
             AND as_of >= toDate(?) AND as_of <= toDate(?) ORDER BY as_of",
            tables::SATISFACTION_DAILY
        ))
        .bind(&request.framework)
        .bind(unit.unit_type.as_str())
        .bind(&unit.unit_id)
        .bind(request.window.label())
        .bind(format_day(from.max(0)))
        .bind(format_day(to))
}

async fn materialised_unit(
    state: &ServeState,
    request: &UnitRequest,
    unit: &UnitKey,
) -> Result<Found, ApiError> {
    let client = &state.clickhouse;
    let latest: Vec<SatisfactionRow> = fetch(
        state,
        request.endpoint(),
        latest_query(client, request, unit),
    )
    .await?;
    let Some(row) = latest.into_iter().next() else {
        return Ok(None);
    };
    let to = i64::from(row.as_of);
    let from = to - i64::from(request.days) + 1;
    let history: Vec<SatisfactionRow> = fetch(
        state,
        request.endpoint(),
        history_query(client, request, unit, from, to),
    )
    .await?;
    Ok(Some((row, history)))
}

/// The unit's window at the newest day with survey data anywhere (the same day as every
/// other unit) and its daily history; `None` when it has no data in that span.
async fn query_time_unit(
    state: &ServeState,
    request: &UnitRequest,
    framework: &Framework,
    unit: &UnitKey,
) -> Result<Found, ApiError> {
    let Some(to) = newest_survey_day(state, request.endpoint()).await? else {
        return Ok(None);
    };
    let from = to - i64::from(request.days) + 1;
    let scope = SurveyScope {
        framework,
        province: Some(&request.province),
        agency: request.agency.as_deref(),
    };
    let history = daily_values(
        state,
        request.endpoint(),
        scope,
        unit,
        request.window,
        from,
        to,
    )
    .await?;
    if history.is_empty() {
        return Ok(None);
    }
    let latest = match history.last() {
        Some(last) if i64::from(last.as_of) == to => last.clone(),
        // Nothing in the window ending on the newest day: its values are empty.
        _ => satisfaction_row(
            framework,
            unit,
            request.window,
            to,
            &SurveyCounts::new(framework),
        ),
    };
    Ok(Some((latest, history)))
}

/// `/api/v1/units/{unit_id}`: a 2025 province code; an agency id answers 400 naming
/// `province` (agency ids repeat across provinces).
pub async fn province_handler(
    State(state): State<ServeState>,
    unit_id: PathParts<String>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let parsed = query_map(query).and_then(|q| {
        let unit_id = path_parts(unit_id, "unit_id")?;
        let province = params::unit_province(&unit_id, &state.provinces)?;
        UnitRequest::parse(&state, &q, province, None)
    });
    answer(state, "units", &headers, parsed, |s, r| async move {
        compute_unit(&s, &r).await
    })
    .await
}

pub async fn agency_handler(
    State(state): State<ServeState>,
    path: PathParts<(String, String)>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let parsed = query_map(query).and_then(|q| {
        let (province, agency_id) = path_parts(path, "agency_id")?;
        let province = params::province_path(&province, &state.provinces)?;
        let agency = params::agency_id(&agency_id)?;
        UnitRequest::parse(&state, &q, province, Some(agency))
    });
    answer(state, "agency", &headers, parsed, |s, r| async move {
        compute_unit(&s, &r).await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_agency_id_in_two_provinces_is_two_cache_entries() {
        let request = |province: &str, agency: Option<&str>| UnitRequest {
            framework: "F".into(),
            province: province.into(),
            agency: agency.map(str::to_owned),
            window: Window::Rolling(30),
            days: 90,
        };
        let a = request("79", Some("so-noi-vu"));
        let b = request("01", Some("so-noi-vu"));
        assert_ne!(a.key(), b.key());
        assert_ne!(request("79", None).key(), a.key());
        assert_eq!(a.unit().province_code, "79");
        assert_eq!(b.unit().unit_type, UnitType::Agency);
        // An id that spells the next field does not collide.
        assert_ne!(
            request("79", Some("a\", \"30d")).key(),
            request("79", Some("a")).key()
        );
    }
}
