//! `GET /api/v1/rankings`: every province with data at one `as_of` day, ranked, with the
//! nation and the comparison with the previous period and the previous year.
//!
//! Materialised windows read `satisfaction_daily` (three statements: the day's provinces,
//! the two earlier days, `nation_daily`); any other rolling window is summed from the day
//! counts (the newest day, then one statement for the three periods) and the nation is
//! computed the way `nation_daily` computes it.
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use clickhouse::query::Query;

use super::{
    answer, framework_param, loaded_framework, query_map, to_json, ApiError, NormalisedRequest,
    QueryMap,
};
use crate::index::rows::SatisfactionRow;
use crate::index::values::{UnitKey, UnitType};
use crate::index::window::Window;
use crate::serve::db::{fetch, survey_as_of};
use crate::serve::params::{self, format_day, materialised, storable_day, ParamError};
use crate::serve::rows::NationRow;
use crate::serve::sums::{satisfaction_row, survey_sums, SurveyGroup, SurveyScope};
use crate::serve::views::{self, Nation, RankingInput};
use crate::serve::ServeState;
use crate::tables;

const ENDPOINT: &str = "rankings";

/// A normalised rankings request.
#[derive(Debug, Clone)]
pub struct RankingsRequest {
    pub framework: String,
    pub window: Window,
    pub as_of: Option<i64>,
}

impl RankingsRequest {
    pub fn parse(state: &ServeState, query: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        params::check_names(query, &["window", "framework", "as_of"])?;
        Ok(Self {
            window: params::window(query)?,
            framework: framework_param(state, query)?,
            as_of: params::date(query, "as_of")?,
        })
    }
}

impl NormalisedRequest for RankingsRequest {
    fn key(&self) -> String {
        format!(
            "rankings|{}|{}|{:?}",
            self.framework,
            self.window.label(),
            self.as_of
        )
    }
}

pub async fn compute_rankings(
    state: &ServeState,
    request: &RankingsRequest,
) -> Result<Vec<u8>, ApiError> {
    let framework = loaded_framework(state, &request.framework)?;
    let (current, earlier, nation) = match request.as_of {
        Some(day) if !storable_day(day) => (Vec::new(), Vec::new(), None),
        _ if materialised(request.window) => materialised_values(state, request).await?,
        _ => query_time_values(state, request, framework).await?,
    };
    to_json(&views::rankings(RankingInput {
        framework: &request.framework,
        window: request.window,
        requested: request.as_of,
        current,
        earlier: &earlier,
        nation,
        provinces: &state.provinces,
    }))
}

type Values = (Vec<SatisfactionRow>, Vec<SatisfactionRow>, Option<Nation>);

fn select_provinces(filter: &str) -> String {
    format!(
        "SELECT ?fields FROM {} FINAL WHERE framework = ? AND unit_type = ? AND window = ? AND respondents > 0 AND {filter}",
        tables::SATISFACTION_DAILY
    )
}

/// The provinces at the requested day, or at the newest day any province has values
/// ("latest": the same day for all).
pub fn current_query(client: &clickhouse::Client, request: &RankingsRequest) -> Query {
    let province = UnitType::Province.as_str();
    let query = match request.as_of {
        None => client.query(&select_provinces(&format!(
            "as_of = (SELECT max(as_of) FROM {} WHERE unit_type = ?)",
            tables::SATISFACTION_DAILY
        ))),
        Some(_) => client.query(&select_provinces("as_of = toDate(?)")),
    }
    .bind(&request.framework)
    .bind(province)
    .bind(request.window.label());
    match request.as_of {
        None => query.bind(province),
        Some(day) => query.bind(format_day(day)),
    }
}

/// The provinces at the earlier days.
pub fn earlier_query(
    client: &clickhouse::Client,
    request: &RankingsRequest,
    days: &[i64],
) -> Query {
    let days: Vec<String> = days.iter().map(|d| format_day(*d)).collect();
    client
        .query(&select_provinces("has(?, toString(as_of))"))
        .bind(&request.framework)
        .bind(UnitType::Province.as_str())
        .bind(request.window.label())
        .bind(days)
}

pub fn nation_query(client: &clickhouse::Client, request: &RankingsRequest, as_of: i64) -> Query {
    client
        .query(&format!(
            "SELECT ?fields FROM {} WHERE framework = ? AND window = ? AND as_of = toDate(?)",
            tables::NATION_DAILY
        ))
        .bind(&request.framework)
        .bind(request.window.label())
        .bind(format_day(as_of))
}

async fn materialised_values(
    state: &ServeState,
    request: &RankingsRequest,
) -> Result<Values, ApiError> {
    let client = &state.clickhouse;
    let current: Vec<SatisfactionRow> =
        fetch(state, ENDPOINT, current_query(client, request)).await?;
    let Some(as_of) = current.iter().map(|r| i64::from(r.as_of)).max() else {
        return Ok((current, Vec::new(), None));
    };
    let days = params::comparison_days(request.window, as_of);
    let earlier: Vec<SatisfactionRow> =
        fetch(state, ENDPOINT, earlier_query(client, request, &days)).await?;
    let nation: Vec<NationRow> =
        fetch(state, ENDPOINT, nation_query(client, request, as_of)).await?;
    let nation = nation
        .into_iter()
        .next()
        .map(|row| Nation::from_row(row, as_of));
    Ok((current, earlier, nation))
}

async fn query_time_values(
    state: &ServeState,
    request: &RankingsRequest,
    framework: &crate::domain::Framework,
) -> Result<Values, ApiError> {
    let Some(as_of) = survey_as_of(state, ENDPOINT, request.as_of).await? else {
        return Ok((Vec::new(), Vec::new(), None));
    };
    let window = request.window;
    let mut days = vec![as_of];
    days.extend(params::comparison_days(window, as_of));
    let periods: Vec<(i64, i64)> = days.iter().map(|d| (window.start(*d), *d)).collect();
    let scope = SurveyScope {
        framework,
        province: None,
        agency: None,
    };
    let sums = survey_sums(state, ENDPOINT, scope, SurveyGroup::Province, &periods).await?;
    let (mut current, mut earlier) = (Vec::new(), Vec::new());
    for sum in sums {
        let Some(day) = days.get(sum.period).copied() else {
            continue;
        };
        if sum.counts.respondents == 0 {
            continue;
        }
        let unit = UnitKey {
            unit_type: UnitType::Province,
            unit_id: sum.key.clone(),
            province_code: sum.key,
        };
        let row = satisfaction_row(framework, &unit, window, day, &sum.counts);
        if sum.period == 0 {
            current.push(row);
        } else {
            earlier.push(row);
        }
    }
    let nation = Nation::of(&current, as_of);
    Ok((current, earlier, nation))
}

pub async fn handler(
    State(state): State<ServeState>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let parsed = query_map(query).and_then(|q| RankingsRequest::parse(&state, &q));
    answer(state, ENDPOINT, &headers, parsed, |s, r| async move {
        compute_rankings(&s, &r).await
    })
    .await
}
