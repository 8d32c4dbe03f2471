//! `GET /api/v1/health` (broker and ClickHouse reachability) and `GET /metrics`.
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Serialize;

use super::ServeState;

/// A reachability probe fails after this long; health must answer quickly.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Probes create a Kafka client; frequent health checks share one probe per second.
const PROBE_REUSE: Duration = Duration::from_secs(1);

/// The last probe: when, its status code and body. Held while probing (single flight).
pub type LastProbe = Arc<tokio::sync::Mutex<Option<(Instant, StatusCode, String)>>>;

pub fn routes(state: ServeState) -> Router {
    Router::new()
        .route("/api/v1/health", get(health))
        .route("/metrics", get(metrics))
        .with_state(state)
}

#[derive(Serialize)]
pub struct Dependency {
    pub reachable: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Serialize)]
pub struct Health {
    /// `ok` when both dependencies answer, else `degraded`.
    pub status: &'static str,
    pub clickhouse: Dependency,
    pub kafka: Dependency,
}

fn dependency(result: Result<(), String>) -> Dependency {
    match result {
        Ok(()) => Dependency {
            reachable: true,
            error: None,
        },
        Err(error) => Dependency {
            reachable: false,
            error: Some(error),
        },
    }
}

async fn clickhouse_probe(state: &ServeState) -> Result<(), String> {
    let query = state.clickhouse.query("SELECT 1").fetch_one::<u8>();
    match tokio::time::timeout(PROBE_TIMEOUT, query).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err(format!("no answer within {} s", PROBE_TIMEOUT.as_secs())),
    }
}

/// Broker metadata through a short-lived client: proves the bootstrap servers answer.
async fn kafka_probe(state: &ServeState) -> Result<(), String> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let kafka = state.kafka.clone();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = crate::kafka::client_config(&kafka)
            .create()
            .map_err(|e| e.to_string())?;
        consumer
            .fetch_metadata(None, PROBE_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

async fn health(axum::extract::State(state): axum::extract::State<ServeState>) -> Response {
    let mut last = state.last_probe.lock().await;
    let (status, json) = match last.as_ref() {
        Some((at, status, json)) if at.elapsed() < PROBE_REUSE => (*status, json.clone()),
        _ => {
            let (clickhouse, kafka) = tokio::join!(clickhouse_probe(&state), kafka_probe(&state));
            let healthy = clickhouse.is_ok() && kafka.is_ok();
            let body = Health {
                status: if healthy { "ok" } else { "degraded" },
                clickhouse: dependency(clickhouse),
                kafka: dependency(kafka),
            };
            let status = if healthy {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let json = serde_json::to_string(&body).unwrap_or_else(|_| "{}".into());
            *last = Some((Instant::now(), status, json.clone()));
            (status, json)
        }
    };
    drop(last);
    state
        .metrics
        .serve_responses
        .with_label_values(&["health", status.as_str()])
        .inc();
    (
        status,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        json,
    )
        .into_response()
}

async fn metrics(axum::extract::State(state): axum::extract::State<ServeState>) -> Response {
    crate::metrics::response(&state.metrics)
}
