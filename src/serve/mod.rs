//! `sipas serve`: the read API over the index tables, the web dashboard and `/metrics`.
//!
//! Route groups are separate modules, each returning an `axum::Router` that already holds
//! its state; `router` merges them. A group with other needs (e.g. an ingest gateway with
//! its own producer) builds its own `Router` and is merged in `router` the same way.
pub mod api;
pub mod cache;
#[cfg(test)]
mod catalogue;
pub mod dashboard;
pub mod db;
pub mod error;
pub mod health;
pub mod params;
pub mod rows;
pub mod stream;
pub mod sums;
pub mod views;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use crate::config::{Config, KafkaConfig, ServeConfig};
use crate::domain::framework::FrameworkError;
use crate::domain::{FrameworkCatalog, ProvinceRegistry};
use crate::metrics::Metrics;
use error::ApiError;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("loading frameworks: {0}")]
    Frameworks(#[from] FrameworkError),
    #[error("default framework {0} is not in the frameworks directory")]
    UnknownDefaultFramework(String),
}

/// Everything the read API needs; cheap to clone (shared behind `Arc`s).
#[derive(Clone)]
pub struct ServeState {
    pub config: Arc<ServeConfig>,
    pub kafka: Arc<KafkaConfig>,
    pub clickhouse: clickhouse::Client,
    pub metrics: Metrics,
    pub frameworks: Arc<FrameworkCatalog>,
    pub provinces: Arc<ProvinceRegistry>,
    /// Response bodies per normalised request (see `cache`).
    pub cache: Arc<cache::Cache<error::ApiError>>,
    /// `/api/v1/openapi.json`, rendered once.
    pub openapi: Arc<[u8]>,
    pub last_probe: health::LastProbe,
}

impl ServeState {
    pub fn new(config: &Config, metrics: Metrics) -> Result<Self, ServeError> {
        let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)?;
        if frameworks.get(&config.serve.default_framework).is_none() {
            return Err(ServeError::UnknownDefaultFramework(
                config.serve.default_framework.clone(),
            ));
        }
        let provinces = ProvinceRegistry::builtin();
        Ok(Self {
            openapi: api::openapi_document(&frameworks, &provinces).into(),
            last_probe: Default::default(),
            config: Arc::new(config.serve.clone()),
            kafka: Arc::new(config.kafka.clone()),
            clickhouse: crate::sink::connect(&config.clickhouse),
            metrics,
            frameworks: Arc::new(frameworks),
            provinces: Arc::new(provinces),
            cache: Arc::new(cache::Cache::new(
                Duration::from_millis(config.serve.refresh_interval_ms),
                config.serve.cache_max_entries,
            )),
        })
    }

    pub fn refresh_interval(&self) -> Duration {
        Duration::from_millis(self.config.refresh_interval_ms)
    }
}

/// All route groups of `sipas serve`, each request in an `api_request` span.
pub fn router(state: ServeState) -> Router {
    Router::new()
        .merge(health::routes(state.clone()))
        .merge(api::routes(state.clone()))
        .merge(stream::routes(state))
        .merge(dashboard::routes())
        // Further route groups are merged here, e.g. `.merge(gateway::routes(gateway_state))`;
        // they must not set fallbacks of their own (axum allows one).
        .fallback(|| async { ApiError::not_found("no such path".into()).response() })
        .method_not_allowed_fallback(|| async {
            ApiError {
                status: axum::http::StatusCode::METHOD_NOT_ALLOWED,
                message: "method not allowed on this path".into(),
                parameter: None,
            }
            .response()
        })
        .layer(axum::middleware::from_fn(trace_request))
}

/// The request's method and path (not its query: free text from anyone) and, when it is
/// answered, its status. Numbered per process, so a request's lines can be told apart.
async fn trace_request(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use std::sync::atomic::{AtomicU64, Ordering};
    use tracing::Instrument;
    static REQUESTS: AtomicU64 = AtomicU64::new(0);
    let span = tracing::info_span!(
        "api_request",
        request = REQUESTS.fetch_add(1, Ordering::Relaxed) + 1,
        method = %request.method(),
        path = %request.uri().path(),
        status = tracing::field::Empty,
    );
    let response = next.run(request).instrument(span.clone()).await;
    span.record("status", response.status().as_u16());
    span.in_scope(|| tracing::debug!("request answered"));
    response
}

/// Serves `router(state)` on `listener` until `shutdown` resolves.
pub async fn serve(
    state: ServeState,
    listener: tokio::net::TcpListener,
    limits: &crate::config::HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::serve(listener, router(state), limits, shutdown).await
}
