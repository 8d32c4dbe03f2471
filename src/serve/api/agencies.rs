//! `GET /api/v1/provinces/{province}/agencies`: every agency of one province at one
//! `as_of` day (default: the newest day with survey data anywhere), ranked among the
//! agencies with at least `min_sample` respondents. Computed at query time: one statement
//! sums the province's day counts per agency over the window (the primary key's prefix
//! framework, province, day bounds what it reads), then the index math per agency. With
//! `compare=true` the same statement also sums the previous period and the same period of
//! the previous year, and each agency carries `change` and `previous_year` as in the
//! province ranking (opt-in: it reads up to twice the days).
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{
    answer, framework_param, loaded_framework, path_parts, query_map, to_json, ApiError,
    NormalisedRequest, PathParts, QueryMap,
};
use crate::index::values::{UnitKey, UnitType};
use crate::index::window::Window;
use crate::serve::db::survey_as_of;
use crate::serve::params::{self, storable_day, ParamError};
use crate::serve::sums::{satisfaction_row, survey_sums, SurveyGroup, SurveyScope};
use crate::serve::views::{self, AgencyRankingInput};
use crate::serve::ServeState;

const ENDPOINT: &str = "agencies";

#[derive(Debug, Clone)]
pub struct AgenciesRequest {
    pub framework: String,
    pub province: String,
    pub window: Window,
    pub as_of: Option<i64>,
    pub compare: bool,
}

impl NormalisedRequest for AgenciesRequest {
    fn key(&self) -> String {
        format!(
            "agencies|{}|{}|{}|{:?}|{}",
            self.framework,
            self.province,
            self.window.label(),
            self.as_of,
            self.compare
        )
    }
}

impl AgenciesRequest {
    fn parse(
        state: &ServeState,
        query: &BTreeMap<String, String>,
        province: &str,
    ) -> Result<Self, ParamError> {
        params::check_names(query, &["window", "framework", "as_of", "compare"])?;
        Ok(Self {
            province: params::province_path(province, &state.provinces)?,
            window: params::window(query)?,
            framework: framework_param(state, query)?,
            as_of: params::date(query, "as_of")?,
            compare: params::flag(query, "compare")?,
        })
    }
}

pub async fn compute_agencies(
    state: &ServeState,
    request: &AgenciesRequest,
) -> Result<Vec<u8>, ApiError> {
    let framework = loaded_framework(state, &request.framework)?;
    let as_of = survey_as_of(state, ENDPOINT, request.as_of).await?;
    let mut agencies = Vec::new();
    let mut earlier = Vec::new();
    if let Some(day) = as_of.filter(|d| storable_day(*d)) {
        let scope = SurveyScope {
            framework,
            province: Some(&request.province),
            agency: None,
        };
        let mut days = vec![day];
        if request.compare {
            days.extend(
                params::comparison_days(request.window, day)
                    .into_iter()
                    .filter(|d| storable_day(*d)),
            );
        }
        let periods: Vec<(i64, i64)> = days
            .iter()
            .map(|d| (request.window.start(*d), *d))
            .collect();
        for sum in survey_sums(state, ENDPOINT, scope, SurveyGroup::Agency, &periods).await? {
            if sum.counts.respondents == 0 {
                continue;
            }
            let unit = UnitKey {
                unit_type: UnitType::Agency,
                unit_id: sum.key,
                province_code: request.province.clone(),
            };
            let at = days[sum.period];
            let row = satisfaction_row(framework, &unit, request.window, at, &sum.counts);
            if sum.period == 0 {
                agencies.push((row, sum.agency_level));
            } else {
                earlier.push(row);
            }
        }
    }
    to_json(&views::agency_ranking(AgencyRankingInput {
        framework,
        window: request.window,
        province: &request.province,
        requested: request.as_of,
        as_of,
        agencies,
        earlier: request.compare.then_some(earlier),
        provinces: &state.provinces,
    }))
}

pub async fn handler(
    State(state): State<ServeState>,
    province: PathParts<String>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let parsed = query_map(query).and_then(|q| {
        let province = path_parts(province, "province")?;
        AgenciesRequest::parse(&state, &q, &province)
    });
    answer(state, ENDPOINT, &headers, parsed, |s, r| async move {
        compute_agencies(&s, &r).await
    })
    .await
}
