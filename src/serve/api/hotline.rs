//! `GET /api/v1/hotline/kpis`: 1022 hotline KPIs by province, agency, category or channel,
//! at one `as_of` day (default: the newest day with hotline events anywhere, the same
//! day for every unit). Provinces and categories with a materialised window are read from
//! `hotline_kpi_latest` (or `hotline_kpi_daily` at a requested day); agencies, channels
//! and other rolling windows are summed from `hotline_day_counts` at query time (open past
//! due: every delta up to `as_of`).
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use clickhouse::query::Query;

use super::{answer, query_map, to_json, ApiError, NormalisedRequest, QueryMap};
use crate::index::rows::HotlineKpiRow;
use crate::index::window::Window;
use crate::serve::db::{fetch, newest_hotline_day};
use crate::serve::params::{self, format_day, materialised, storable_day, HotlineBy, ParamError};
use crate::serve::sums::hotline_sums;
use crate::serve::views;
use crate::serve::ServeState;
use crate::tables;

const ENDPOINT: &str = "hotline";

/// A normalised hotline request.
#[derive(Debug, Clone)]
pub struct HotlineRequest {
    pub by: HotlineBy,
    pub province: Option<String>,
    pub window: Window,
    pub as_of: Option<i64>,
}

impl NormalisedRequest for HotlineRequest {
    fn key(&self) -> String {
        format!(
            "hotline|{}|{:?}|{}|{:?}",
            self.by.as_str(),
            self.province,
            self.window.label(),
            self.as_of
        )
    }
}

impl HotlineRequest {
    pub fn parse(state: &ServeState, query: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        params::check_names(query, &["province", "window", "by", "as_of"])?;
        let province = params::province(query, &state.provinces)?;
        Ok(Self {
            by: params::hotline_by(query, province.is_some())?,
            window: params::window(query)?,
            as_of: params::date(query, "as_of")?,
            province,
        })
    }
}

/// Materialised KPIs (provinces and categories) at the newest hotline day, or at the
/// requested one.
pub fn materialised_query(client: &clickhouse::Client, request: &HotlineRequest) -> Query {
    let select = match request.as_of {
        None => format!(
            "SELECT ?fields FROM {} FINAL WHERE unit_type = ? AND window = ?",
            tables::HOTLINE_KPI_LATEST
        ),
        Some(_) => format!(
            "SELECT ?fields FROM {} FINAL WHERE unit_type = ? AND window = ? AND as_of = toDate(?)",
            tables::HOTLINE_KPI_DAILY
        ),
    };
    let label = request.window.label();
    let mut query = match &request.province {
        Some(_) => client.query(&format!("{select} AND province_code = ?")),
        None => client.query(&select),
    }
    .bind(request.by.as_str())
    .bind(label);
    if let Some(day) = request.as_of {
        query = query.bind(format_day(day));
    }
    match &request.province {
        Some(province) => query.bind(province),
        None => query,
    }
}

pub async fn compute_hotline(
    state: &ServeState,
    request: &HotlineRequest,
) -> Result<Vec<u8>, ApiError> {
    let label = request.window.label();
    let stored = materialised(request.window)
        && matches!(request.by, HotlineBy::Province | HotlineBy::Category);
    let rows: Vec<HotlineKpiRow> = match request.as_of {
        // A day no table can hold has no values.
        Some(day) if !storable_day(day) => Vec::new(),
        _ if stored => {
            fetch(
                state,
                ENDPOINT,
                materialised_query(&state.clickhouse, request),
            )
            .await?
        }
        requested => {
            let as_of = match requested {
                Some(day) => Some(day),
                None => newest_hotline_day(state, ENDPOINT).await?,
            };
            match as_of {
                Some(as_of) => {
                    hotline_sums(
                        state,
                        ENDPOINT,
                        request.province.as_deref(),
                        request.by.into(),
                        request.window,
                        as_of,
                    )
                    .await?
                }
                None => Vec::new(),
            }
        }
    };
    to_json(&views::hotline(
        &label,
        request.by,
        request.province.clone(),
        request.as_of,
        rows,
        &state.provinces,
    ))
}

pub async fn handler(
    State(state): State<ServeState>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let parsed = query_map(query).and_then(|q| HotlineRequest::parse(&state, &q));
    answer(state, ENDPOINT, &headers, parsed, |s, r| async move {
        compute_hotline(&s, &r).await
    })
    .await
}
