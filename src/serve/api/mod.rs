//! The read API: one file per endpoint (`rankings`, `units`, `agencies`, `breakdown`,
//! `hotline`) and what they share here: the OpenAPI document, query-string parsing, the
//! framework a request names, the cache-and-ETag answer. Every response body goes through
//! the cache (one ClickHouse computation per normalised request and refresh interval) and
//! carries a strong ETag.
//! SQL text is fixed; request values are bound with `?`.
//!
//! Values come from the materialised tables (`satisfaction_daily`, `hotline_kpi_latest`:
//! provinces and hotline categories, six windows) when they hold them; everything else
//! (agencies, breakdowns, other rolling windows, hotline agencies and channels) is
//! computed at query time from the day counts (`serve::sums`).
pub mod agencies;
pub mod breakdown;
pub mod hotline;
pub mod rankings;
pub mod units;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use super::cache::Cached;
use super::params::ParamError;
use super::ServeState;
use crate::domain::Framework;

pub use super::error::ApiError;
pub use hotline::{compute_hotline, HotlineRequest};
pub use rankings::{compute_rankings, RankingsRequest};

pub const OPENAPI: &str = include_str!("../openapi.json");

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
                // `unit_id` names provinces only (agencies are asked per province).
                let list = match parameter["name"].as_str() {
                    Some("framework") => serde_json::json!(framework_ids),
                    Some("province") | Some("unit_id") => serde_json::json!(province_codes),
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
        .route("/api/v1/rankings", get(rankings::handler))
        .route("/api/v1/units/{unit_id}", get(units::province_handler))
        .route(
            "/api/v1/provinces/{province}/agencies",
            get(agencies::handler),
        )
        .route(
            "/api/v1/provinces/{province}/agencies/{agency_id}",
            get(units::agency_handler),
        )
        .route("/api/v1/breakdown", get(breakdown::handler))
        .route("/api/v1/hotline/kpis", get(hotline::handler))
        .route("/api/v1/openapi.json", get(openapi))
        .with_state(state)
}

/// The query string as name → value; a malformed one is a 400 like any bad parameter.
pub type QueryMap = Result<Query<BTreeMap<String, String>>, QueryRejection>;

pub fn query_map(query: QueryMap) -> Result<BTreeMap<String, String>, ParamError> {
    query.map(|Query(q)| q).map_err(|e| ParamError {
        parameter: "query".into(),
        message: format!("malformed query string: {}", e.body_text()),
    })
}

/// Path segments; one that does not decode (e.g. not UTF-8) is a 400 naming `parameter`.
pub type PathParts<T> = Result<Path<T>, PathRejection>;

pub fn path_parts<T>(path: PathParts<T>, parameter: &str) -> Result<T, ParamError> {
    path.map(|Path(p)| p).map_err(|e| ParamError {
        parameter: parameter.into(),
        message: format!("`{parameter}`: {}", e.body_text()),
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

/// The `framework` parameter: one of the loaded frameworks, the configured default when
/// the request names none (`params::framework`).
pub fn framework_param(
    state: &ServeState,
    query: &BTreeMap<String, String>,
) -> Result<String, ParamError> {
    super::params::framework(query, &state.frameworks, &state.config.default_framework)
}

/// The loaded framework a parsed request names (404 if there is none).
pub fn loaded_framework<'s>(state: &'s ServeState, id: &str) -> Result<&'s Framework, ApiError> {
    state
        .frameworks
        .get(id)
        .ok_or_else(|| ApiError::not_found(format!("framework {id}")))
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))
}

/// A normalised request: its fields are the whole input of its computation.
pub trait NormalisedRequest: Clone + Send + Sync + 'static {
    /// The cache key: equal for requests that must get the same body.
    fn key(&self) -> String;
}

/// Parses, then answers from the cache (computing once per key and interval), with ETag.
/// A parameter error is answered (400) before anything reaches ClickHouse.
pub async fn answer<R, F, Fut>(
    state: ServeState,
    endpoint: &'static str,
    headers: &HeaderMap,
    request: Result<R, ParamError>,
    compute: F,
) -> Response
where
    R: NormalisedRequest,
    F: FnOnce(ServeState, R) -> Fut,
    Fut: Future<Output = Result<Vec<u8>, ApiError>> + Send + 'static,
{
    let request = match request {
        Ok(r) => r,
        Err(e) => return respond(&state, endpoint, headers, Err(e.into())),
    };
    let key = request.key();
    let s = state.clone();
    let outcome = state
        .cache
        .get_or_compute(&key, move || compute(s, request))
        .await;
    respond(&state, endpoint, headers, outcome)
}

async fn openapi(State(state): State<ServeState>, headers: HeaderMap) -> Response {
    let cached = Arc::new(Cached::new(state.openapi.to_vec()));
    respond(&state, "openapi", &headers, Ok(cached))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::params;

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
            "/api/v1/provinces/{province}/agencies",
            "/api/v1/provinces/{province}/agencies/{agency_id}",
            "/api/v1/breakdown",
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
        // Path parameters naming provinces list the 34 codes; agency ids are free text.
        let agency = &filled["paths"]["/api/v1/provinces/{province}/agencies/{agency_id}"]["get"]
            ["parameters"];
        assert_eq!(agency[0]["schema"]["enum"].as_array().unwrap().len(), 34);
        assert!(agency[1]["schema"]["enum"].is_null());
        let unit = &filled["paths"]["/api/v1/units/{unit_id}"]["get"]["parameters"][0];
        assert_eq!(unit["schema"]["enum"].as_array().unwrap().len(), 34);
        // The window grammar the document states is the one the API parses.
        let pattern = filled["components"]["schemas"]["Window"]["pattern"]
            .as_str()
            .unwrap();
        assert_eq!(
            pattern,
            "^(month|quarter|year|([1-9]|[1-9][0-9]|[12][0-9][0-9]|3[0-5][0-9]|36[0-6])d)$"
        );
        for n in 1..=366 {
            assert!(params::parse_window(&format!("{n}d")).is_some());
        }
    }
}
