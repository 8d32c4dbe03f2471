//! `GET /api/v1/hotline/kpis`: the latest 1022 hotline KPIs by province, agency, category
//! or channel. Provinces and categories with a materialised window are read from
//! `hotline_kpi_latest`; agencies, channels and other rolling windows are summed from
//! `hotline_day_counts` at query time (open past due: every delta up to the newest day).
use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use clickhouse::query::Query;

use super::{answer, query_map, to_json, ApiError, NormalisedRequest, QueryMap};
use crate::index::rows::HotlineKpiRow;
use crate::index::window::Window;
use crate::serve::db::{fetch, newest_hotline_day};
use crate::serve::params::{self, materialised, HotlineBy, ParamError};
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
}

impl NormalisedRequest for HotlineRequest {
    fn key(&self) -> String {
        format!(
            "hotline|{}|{:?}|{}",
            self.by.as_str(),
            self.province,
            self.window.label()
        )
    }
}

impl HotlineRequest {
    pub fn parse(state: &ServeState, query: &BTreeMap<String, String>) -> Result<Self, ParamError> {
        params::check_names(query, &["province", "window", "by"])?;
        let province = params::province(query, &state.provinces)?;
        Ok(Self {
            by: params::hotline_by(query, province.is_some())?,
            window: params::window(query)?,
            province,
        })
    }
}

/// Materialised KPIs (provinces and categories) at the newest hotline day.
pub fn latest_query(client: &clickhouse::Client, request: &HotlineRequest) -> Query {
    let select = format!(
        "SELECT ?fields FROM {} FINAL WHERE unit_type = ? AND window = ?",
        tables::HOTLINE_KPI_LATEST
    );
    let label = request.window.label();
    match &request.province {
        Some(province) => client
            .query(&format!("{select} AND province_code = ?"))
            .bind(request.by.as_str())
            .bind(label)
            .bind(province),
        None => client.query(&select).bind(request.by.as_str()).bind(label),
    }
}

pub async fn compute_hotline(
    state: &ServeState,
    request: &HotlineRequest,
) -> Result<Vec<u8>, ApiError> {
    let label = request.window.label();
    let stored = materialised(request.window)
        && matches!(request.by, HotlineBy::Province | HotlineBy::Category);
    let rows: Vec<HotlineKpiRow> = if stored {
        fetch(state, ENDPOINT, latest_query(&state.clickhouse, request)).await?
    } else {
        match newest_hotline_day(state, ENDPOINT).await? {
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
    };
    to_json(&views::hotline(
        &label,
        request.by,
        request.province.clone(),
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
