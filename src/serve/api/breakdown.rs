//! `GET /api/v1/breakdown`: a province's respondents (or every province's, pooled) split
//! by channel, respondent type, agency level or procedure, each part with its own values,
//! at one `as_of` day. Computed at query time: one statement sums the day counts per
//! value over the window.
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::{
    answer, framework_param, loaded_framework, query_map, to_json, ApiError, NormalisedRequest,
    QueryMap,
};
use crate::index::values::{UnitKey, UnitType};
use crate::index::window::Window;
use crate::serve::db::survey_as_of;
use crate::serve::params::{self, storable_day, BreakdownBy, ParamError};
use crate::serve::sums::{satisfaction_row, survey_sums, SurveyScope};
use crate::serve::views::{self, BreakdownInput};
use crate::serve::ServeState;

const ENDPOINT: &str = "breakdown";

#[derive(Debug, Clone)]
pub struct BreakdownRequest {
    pub framework: String,
    pub province: Option<String>,
    pub by: BreakdownBy,
    pub window: Window,
    pub as_of: Option<i64>,
}

impl NormalisedRequest for BreakdownRequest {
    fn key(&self) -> String {
        format!(
            "breakdown|{}|{:?}|{}|{}|{:?}",
            self.framework,
            self.province,
            self.by.as_str(),
            self.window.label(),
            self.as_of
        )
    }
}

impl BreakdownRequest {
    fn parse(state: &ServeState, query: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        params::check_names(query, &["framework", "province", "by", "window", "as_of"])?;
        Ok(Self {
            framework: framework_param(state, query)?,
            province: params::province(query, &state.provinces)?,
            by: params::breakdown_by(query)?,
            window: params::window(query)?,
            as_of: params::date(query, "as_of")?,
        })
    }
}

pub async fn compute_breakdown(
    state: &ServeState,
    request: &BreakdownRequest,
) -> Result<Vec<u8>, ApiError> {
    let framework = loaded_framework(state, &request.framework)?;
    let as_of = survey_as_of(state, ENDPOINT, request.as_of).await?;
    let mut parts = Vec::new();
    if let Some(day) = as_of.filter(|d| storable_day(*d)) {
        let scope = SurveyScope {
            framework,
            province: request.province.as_deref(),
            agency: None,
        };
        let period = [(request.window.start(day), day)];
        let sums = survey_sums(state, ENDPOINT, scope, request.by.into(), &period).await?;
        for sum in sums.into_iter().filter(|s| s.counts.respondents > 0) {
            // The part is named by its value; the unit is the province (or the nation).
            let unit = UnitKey {
                unit_type: UnitType::Province,
                unit_id: sum.key,
                province_code: request.province.clone().unwrap_or_default(),
            };
            parts.push(satisfaction_row(
                framework,
                &unit,
                request.window,
                day,
                &sum.counts,
            ));
        }
    }
    to_json(&views::breakdown(BreakdownInput {
        framework: &request.framework,
        window: request.window,
        by: request.by,
        province: request.province.as_deref(),
        requested: request.as_of,
        as_of,
        parts,
        provinces: &state.provinces,
    }))
}

pub async fn handler(
    State(state): State<ServeState>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let parsed = query_map(query).and_then(|q| BreakdownRequest::parse(&state, &q));
    answer(state, ENDPOINT, &headers, parsed, |s, r| async move {
        compute_breakdown(&s, &r).await
    })
    .await
}
