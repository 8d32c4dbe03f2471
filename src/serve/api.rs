//! The read API: `/api/v1/rankings`, `/api/v1/units/{unit_id}`, `/api/v1/hotline/kpis` and
//! the OpenAPI document. Every response body goes through the cache (one ClickHouse
//! computation per normalised request and refresh interval) and carries a strong ETag.
//! SQL text is fixed; request values are bound with `?`.
use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::cache::Cached;
use super::params::{self, format_day, previous_as_of, ParamError};
use super::rows::{HistoryRow, HotlineRow, PreviousRow, RankingRow, UnitRow};
use super::{views, ServeState};
use crate::index::window::Window;

pub const OPENAPI: &str = include_str!("openapi.json");

/// The OpenAPI document with the lists that come from configuration filled in: the
/// loaded frameworks and the 2025 provinces.
pub fn openapi_document(
    frameworks: &crate::domain::FrameworkCatalog,
    provinces: &crate::domain::ProvinceRegistry,
) -> Vec<u8> {
    let mut doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
    let framework_ids: Vec<&str> = frameworks.ids();
    let province_codes: Vec<String> = provinces
        .provinces_2025()
        .into_iter()
        .map(|p| p.code)
        .collect();
    if let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) {
        for operation in paths.values_mut().filter_map(|p| p.get_mut("get")) {
            for parameter in operation
                .get_mut("parameters")
                .and_then(|p| p.as_array_mut())
                .into_iter()
                .flatten()
            {
                let list = match parameter["name"].as_str() {
                    Some("framework") => serde_json::json!(framework_ids),
                    Some("province") => serde_json::json!(province_codes),
                    _ => continue,
                };
                parameter["schema"]["enum"] = list;
            }
        }
    }
    serde_json::to_vec_pretty(&doc).unwrap_or_default()
}

pub fn routes(state: ServeState) -> Router {
    Router::new()
        .route("/api/v1/rankings", get(rankings))
        .route("/api/v1/units/{unit_id}", get(unit))
        .route("/api/v1/hotline/kpis", get(hotline))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// An error answer: `{"error": …, "parameter": …}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub parameter: Option<String>,
}

impl From<ParamError> for ApiError {
    fn from(e: ParamError) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: e.message,
            parameter: Some(e.parameter),
        }
    }
}

/// A computation that panicked (a bug): 500 rather than a hung request.
impl From<tokio::task::JoinError> for ApiError {
    fn from(error: tokio::task::JoinError) -> Self {
        tracing::error!(%error, "response computation failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "internal error".into(),
            parameter: None,
        }
    }
}

impl ApiError {
    pub fn not_found(message: String) -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            message,
            parameter: None,
        }
    }

    fn unavailable() -> Self {
        Self {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: "the index database is unavailable; try again later".into(),
            parameter: None,
        }
    }

    pub fn response(&self) -> Response {
        let body = serde_json::json!({ "error": self.message, "parameter": self.parameter });
        (
            self.status,
            [
                (header::CONTENT_TYPE, "application/json"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            body.to_string(),
        )
            .into_response()
    }
}

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

/// The query string as name → value; a malformed one is a 400 like any bad parameter.
pub type QueryMap = Result<Query<BTreeMap<String, String>>, QueryRejection>;

pub fn query_map(query: QueryMap) -> Result<BTreeMap<String, String>, ParamError> {
    query.map(|Query(q)| q).map_err(|e| ParamError {
        parameter: "query".into(),
        message: format!("malformed query string: {}", e.body_text()),
    })
}

/// True when an `If-None-Match` header lists `etag` (or `*`).
pub fn matches_etag(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim())
        .any(|t| t == "*" || t == etag || t.strip_prefix("W/") == Some(etag))
}

/// 200 with the body, or 304 when the client already has it; both with the ETag and a
/// max-age of what is left of the entry's refresh interval.
pub fn respond(
    state: &ServeState,
    endpoint: &str,
    headers: &HeaderMap,
    outcome: Result<Arc<Cached>, ApiError>,
) -> Response {
    let cached = match outcome {
        Ok(cached) => cached,
        Err(error) => {
            state
                .metrics
                .serve_responses
                .with_label_values(&[endpoint, error.status.as_str()])
                .inc();
            return error.response();
        }
    };
    let left = state
        .refresh_interval()
        .saturating_sub(cached.computed_at.elapsed())
        .as_secs();
    let cache_control = HeaderValue::from_str(&format!("public, max-age={left}"))
        .unwrap_or(HeaderValue::from_static("no-cache"));
    let etag = HeaderValue::from_str(&cached.etag).unwrap_or(HeaderValue::from_static("\"\""));
    let status = if matches_etag(headers, &cached.etag) {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::OK
    };
    state
        .metrics
        .serve_responses
        .with_label_values(&[endpoint, status.as_str()])
        .inc();
    let mut response = if status == StatusCode::NOT_MODIFIED {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut r = cached.body.clone().into_response();
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        r
    };
    response.headers_mut().insert(header::ETAG, etag);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, cache_control);
    response
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError {
        status: StatusCode::INTERNAL_SERVER_ERROR,
        message: e.to_string(),
        parameter: None,
    })
}

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
            framework: params::framework(
                query,
                &state.frameworks,
                &state.config.default_framework,
            )?,
            as_of: params::date(query, "as_of")?,
        })
    }

    pub fn key(&self) -> String {
        format!(
            "rankings|{}|{}|{:?}",
            self.framework,
            self.window.label(),
            self.as_of
        )
    }
}

const RANKING_ORDER: &str = "ORDER BY isNull(rank), rank, province_code";

pub async fn compute_rankings(
    state: &ServeState,
    request: &RankingsRequest,
) -> Result<Vec<u8>, ApiError> {
    let window = request.window.label();
    let client = &state.clickhouse;
    let rows: Vec<RankingRow> = match request.as_of {
        None => {
            let sql = format!("SELECT ?fields FROM province_ranking_latest WHERE framework = ? AND window = ? {RANKING_ORDER}");
            fetch(
                state,
                "rankings",
                client.query(&sql).bind(&request.framework).bind(&window),
            )
            .await?
        }
        Some(day) if !params::storable_day(day) => Vec::new(),
        Some(day) => {
            let sql = format!("SELECT ?fields FROM province_ranking_daily WHERE framework = ? AND window = ? AND as_of = toDate(?) {RANKING_ORDER}");
            fetch(
                state,
                "rankings",
                client
                    .query(&sql)
                    .bind(&request.framework)
                    .bind(&window)
                    .bind(format_day(day)),
            )
            .await?
        }
    };
    let mut days: Vec<String> = rows
        .iter()
        .map(|r| format_day(previous_as_of(request.window, i64::from(r.as_of))))
        .collect();
    days.sort();
    days.dedup();
    let previous: Vec<PreviousRow> = if days.is_empty() {
        Vec::new()
    } else {
        let sql = "SELECT ?fields FROM province_ranking_daily WHERE framework = ? AND window = ? AND has(?, toString(as_of))";
        fetch(
            state,
            "rankings",
            client
                .query(sql)
                .bind(&request.framework)
                .bind(&window)
                .bind(days),
        )
        .await?
    };
    let w = request.window;
    to_json(&views::rankings(
        &request.framework,
        &window,
        request.as_of,
        rows,
        &previous,
        |d| previous_as_of(w, d),
    ))
}

async fn rankings(
    State(state): State<ServeState>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let request = match query_map(query).and_then(|query| RankingsRequest::parse(&state, &query)) {
        Ok(r) => r,
        Err(e) => return respond(&state, "rankings", &headers, Err(e.into())),
    };
    let (s, r) = (state.clone(), request.clone());
    let outcome = state
        .cache
        .get_or_compute(&request.key(), move || async move {
            compute_rankings(&s, &r).await
        })
        .await;
    respond(&state, "rankings", &headers, outcome)
}

async fn unit(
    State(state): State<ServeState>,
    Path(unit_id): Path<String>,
    query: QueryMap,
    headers: HeaderMap,
) -> Response {
    let parsed = (|| {
        let query = query_map(query)?;
        params::check_names(&query, &["window", "framework", "days"])?;
        let unit_id = params::unit_id(&unit_id)?;
        let window = params::window(&query)?;
        let framework =
            params::framework(&query, &state.frameworks, &state.config.default_framework)?;
        let days = params::integer(&query, "days", 90, 366)?;
        Ok::<_, ParamError>((unit_id, window, framework, days))
    })();
    let (unit_id, window, framework, days) = match parsed {
        Ok(p) => p,
        Err(e) => return respond(&state, "units", &headers, Err(e.into())),
    };
    // A 2025 province code names the province; anything else an agency.
    let unit_type = if state.provinces.name_2025(&unit_id).is_some() {
        "province"
    } else {
        "agency"
    };
    let key = format!(
        "unit|{framework}|{unit_type}|{unit_id}|{}|{days}",
        window.label()
    );
    let (s, state) = (state.clone(), state);
    let outcome = s
        .cache
        .get_or_compute(&key, move || async move {
            let label = window.label();
            let client = &state.clickhouse;
            let latest: Vec<UnitRow> = fetch(
                &state,
                "units",
                client
                    .query("SELECT ?fields FROM satisfaction_latest FINAL WHERE framework = ? AND unit_type = ? AND unit_id = ? AND window = ?")
                    .bind(&framework)
                    .bind(unit_type)
                    .bind(&unit_id)
                    .bind(&label),
            )
            .await?;
            let Some(row) = latest.into_iter().next() else {
                return Err(ApiError::not_found(format!("no {label} values for {unit_type} {unit_id} in framework {framework}")));
            };
            let to = i64::from(row.as_of);
            let from = to - i64::from(days) + 1;
            let history: Vec<HistoryRow> = fetch(
                &state,
                "units",
                client
                    .query("SELECT ?fields FROM satisfaction_daily FINAL WHERE framework = ? AND unit_type = ? AND unit_id = ? AND window = ? AND as_of >= toDate(?) AND as_of <= toDate(?) ORDER BY as_of")
                    .bind(&framework)
                    .bind(unit_type)
                    .bind(&unit_id)
                    .bind(&label)
                    .bind(format_day(from.max(0)))
                    .bind(format_day(to)),
            )
            .await?;
            let framework = state.frameworks.get(&framework).ok_or_else(|| ApiError::not_found(format!("framework {framework}")))?;
            to_json(&views::unit(row, history, framework, &label, &state.provinces))
        })
        .await;
    respond(&s, "units", &headers, outcome)
}

/// A normalised hotline request.
#[derive(Debug, Clone)]
pub struct HotlineRequest {
    pub by: &'static str,
    pub province: Option<String>,
    pub window: Window,
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

    pub fn key(&self) -> String {
        format!(
            "hotline|{}|{:?}|{}",
            self.by,
            self.province,
            self.window.label()
        )
    }
}

pub async fn compute_hotline(
    state: &ServeState,
    request: &HotlineRequest,
) -> Result<Vec<u8>, ApiError> {
    let label = request.window.label();
    let client = &state.clickhouse;
    let rows: Vec<HotlineRow> = match &request.province {
        Some(province) => {
            let sql = "SELECT ?fields FROM hotline_kpi_latest FINAL WHERE unit_type = ? AND window = ? AND province_code = ? ORDER BY received DESC, unit_id";
            fetch(
                state,
                "hotline",
                client
                    .query(sql)
                    .bind(request.by)
                    .bind(&label)
                    .bind(province),
            )
            .await?
        }
        None => {
            let sql = "SELECT ?fields FROM hotline_kpi_latest FINAL WHERE unit_type = ? AND window = ? ORDER BY received DESC, unit_id";
            fetch(
                state,
                "hotline",
                client.query(sql).bind(request.by).bind(&label),
            )
            .await?
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

async fn hotline(State(state): State<ServeState>, query: QueryMap, headers: HeaderMap) -> Response {
    let request = match query_map(query).and_then(|query| HotlineRequest::parse(&state, &query)) {
        Ok(r) => r,
        Err(e) => return respond(&state, "hotline", &headers, Err(e.into())),
    };
    let (s, r) = (state.clone(), request.clone());
    let outcome = state
        .cache
        .get_or_compute(&request.key(), move || async move {
            compute_hotline(&s, &r).await
        })
        .await;
    respond(&state, "hotline", &headers, outcome)
}

async fn openapi(State(state): State<ServeState>, headers: HeaderMap) -> Response {
    let cached = Arc::new(Cached::new(state.openapi.to_vec()));
    respond(&state, "openapi", &headers, Ok(cached))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_wildcards() {
        let mut headers = HeaderMap::new();
        assert!(!matches_etag(&headers, "\"a\""));
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"x\", \"a\""),
        );
        assert!(matches_etag(&headers, "\"a\""));
        assert!(!matches_etag(&headers, "\"b\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(matches_etag(&headers, "\"b\""));
    }

    #[test]
    fn the_openapi_document_is_json_and_names_every_route() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        for path in [
            "/api/v1/rankings",
            "/api/v1/units/{unit_id}",
            "/api/v1/hotline/kpis",
            "/api/v1/health",
            "/api/v1/stream",
        ] {
            assert!(doc["paths"][path].is_object(), "{path} missing");
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let frameworks =
            crate::domain::FrameworkCatalog::load_dir(&root.join("config/frameworks")).unwrap();
        let filled: serde_json::Value = serde_json::from_slice(&openapi_document(
            &frameworks,
            &crate::domain::ProvinceRegistry::builtin(),
        ))
        .unwrap();
        let province = &filled["paths"]["/api/v1/hotline/kpis"]["get"]["parameters"][0];
        assert_eq!(province["name"], "province");
        assert_eq!(province["schema"]["enum"].as_array().unwrap().len(), 34);
        assert_eq!(
            filled["paths"]["/api/v1/rankings"]["get"]["parameters"][1]["schema"]["enum"],
            serde_json::json!(["BNV-2640-2017"])
        );
    }
}
