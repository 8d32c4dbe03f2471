//! The ingest gateway: `POST /api/v1/surveys` and `POST /api/v1/hotline` for provinces that
//! cannot run a Kafka client. Records are validated by the pipeline's `Decoder` and produced
//! with the idempotent producer; the answer is sent only after the broker acknowledged every
//! accepted record.
pub mod limit;
pub mod records;
pub mod tokens;

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use prometheus::IntCounterVec;
use tracing::Instrument;

use crate::config::GatewayConfig;
use crate::contract::decode::{Decoder, EventKind};
use crate::domain::time::unix_now;
use crate::metrics::Metrics;
use crate::publish::{check, Checked, Publisher};
use limit::RateLimiter;
use records::{ErrorBody, IngestResponse, RecordResult};
use tokens::{Grant, TokenTable};

pub struct Gateway {
    decoder: Arc<Decoder>,
    publisher: Publisher,
    tokens: TokenTable,
    limiter: RateLimiter,
    max_body_bytes: usize,
    max_records: usize,
    requests: IntCounterVec,
    records: IntCounterVec,
}

/// How often an idle gateway's producer asks the broker for metadata
/// (`sipas_kafka_broker_up`).
pub const BROKER_PROBE_EVERY: std::time::Duration = std::time::Duration::from_secs(15);

impl Gateway {
    /// Keeps `sipas_kafka_broker_up` current while no records arrive: a probe of the
    /// broker every [`BROKER_PROBE_EVERY`] (see [`Publisher::watch_broker`]). Runs until
    /// dropped.
    pub async fn watch_broker(&self) {
        self.publisher.watch_broker(BROKER_PROBE_EVERY).await;
    }

    /// Registers `sipas_gateway_requests_total{status}` and
    /// `sipas_gateway_records_total{kind,outcome}` in `metrics`.
    pub fn new(
        config: &GatewayConfig,
        tokens: TokenTable,
        decoder: Arc<Decoder>,
        publisher: Publisher,
        metrics: &Metrics,
    ) -> Self {
        let requests = IntCounterVec::new(
            prometheus::Opts::new("gateway_requests_total", "Gateway requests by HTTP status."),
            &["status"],
        )
        .expect("valid metric");
        let records = IntCounterVec::new(
            prometheus::Opts::new(
                "gateway_records_total",
                "Gateway records by kind and outcome (accepted or a rejection reason).",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        register(metrics, &requests);
        register(metrics, &records);
        Self {
            decoder,
            publisher,
            tokens,
            limiter: RateLimiter::new(config.burst, config.requests_per_second),
            max_body_bytes: config.max_body_bytes,
            max_records: config.max_records,
            requests,
            records,
        }
    }
}

fn register(metrics: &Metrics, counter: &IntCounterVec) {
    // Only fails if a gateway was already registered there; the first one's counters stay exported.
    let _ = metrics.registry.register(Box::new(counter.clone()));
}

/// The gateway's routes, to merge into a server.
pub fn router(gateway: Arc<Gateway>) -> Router {
    Router::new()
        .route(
            "/api/v1/surveys",
            post(
                |State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body| async move {
                    g.ingest(EventKind::Survey, headers, body).await
                },
            ),
        )
        .route(
            "/api/v1/hotline",
            post(
                |State(g): State<Arc<Gateway>>, headers: HeaderMap, body: Body| async move {
                    g.ingest(EventKind::Hotline, headers, body).await
                },
            ),
        )
        .with_state(gateway)
}

/// The gateway's OpenAPI document, served at `GET /openapi.json` by `sipas gateway`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// `sipas gateway` alone: the ingest routes, `/openapi.json`, `/health` and `/metrics`;
/// unknown paths and methods answer the same JSON error shape as the ingest routes.
pub fn standalone_router(gateway: Arc<Gateway>, metrics: Metrics) -> Router {
    router(gateway)
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "application/json")],
                    OPENAPI.as_bytes(),
                )
            }),
        )
        .merge(crate::metrics::routes(metrics))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not_found",
                "no such path; see /openapi.json",
                Vec::new(),
            )
        })
        .method_not_allowed_fallback(|| async {
            error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "method not allowed on this path; see /openapi.json",
                Vec::new(),
            )
        })
}

fn json(status: StatusCode, body: &impl serde::Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        bytes,
    )
        .into_response()
}

fn error(
    status: StatusCode,
    code: &'static str,
    message: impl Into<String>,
    results: Vec<RecordResult>,
) -> Response {
    json(
        status,
        &ErrorBody {
            error: code,
            message: message.into(),
            results,
        },
    )
}

impl Gateway {
    /// One request in a `gateway_request` span: `token` is the token's configured name
    /// (never the token), recorded once it is authenticated.
    async fn ingest(&self, kind: EventKind, headers: HeaderMap, body: Body) -> Response {
        let span = tracing::info_span!(
            "gateway_request",
            kind = kind.as_str(),
            token = tracing::field::Empty,
            records = tracing::field::Empty,
            status = tracing::field::Empty,
        );
        let response = self
            .handle(kind, &headers, body)
            .instrument(span.clone())
            .await;
        let status = response.status();
        span.record("status", status.as_u16());
        self.requests.with_label_values(&[status.as_str()]).inc();
        span.in_scope(|| tracing::info!("gateway request answered"));
        response
    }

    async fn handle(&self, kind: EventKind, headers: &HeaderMap, body: Body) -> Response {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let grant = match self.tokens.authenticate(authorization) {
            Ok(grant) => {
                tracing::Span::current().record("token", grant.name.as_str());
                grant
            }
            Err(e) => {
                let mut response = error(
                    StatusCode::UNAUTHORIZED,
                    "unauthorized",
                    e.message(),
                    Vec::new(),
                );
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                return response;
            }
        };
        if let Err(wait) = self.limiter.check(&grant.name, grant.rate, Instant::now()) {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            tracing::info!(token = %grant.name, "gateway: rate limit exceeded");
            let mut response = error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than the allowed requests per second for this token; retry in {seconds} s"),
                Vec::new(),
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            return response;
        }
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .map(|v| v.to_str().map_err(|_| ()));
        let encoding = headers
            .get(header::CONTENT_ENCODING)
            .map(|v| v.to_str().map_err(|_| ()));
        if let Err(e) = records::check_media_type(content_type)
            .and_then(|()| records::check_content_encoding(encoding))
        {
            return body_error(&e);
        }
        let too_large = || {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                format!(
                    "the request body is larger than {} bytes",
                    self.max_body_bytes
                ),
                Vec::new(),
            )
        };
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.max_body_bytes as u64) {
            return too_large();
        }
        let body = match axum::body::to_bytes(body, self.max_body_bytes).await {
            Ok(body) => body,
            Err(e) if is_length_limit(&e) => return too_large(),
            Err(e) if crate::http::is_body_timeout(&e) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    "body_timeout",
                    e.to_string(),
                    Vec::new(),
                )
            }
            Err(_) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "unreadable_body",
                    "the request body could not be read",
                    Vec::new(),
                )
            }
        };
        // The receive instant of every record in the request: the event-time guard refuses
        // records dated more than `contract.max_future_skew_seconds` after it.
        let received_at = unix_now();
        let parts = match records::records(&body, self.max_records) {
            Ok(parts) => parts,
            Err(e) => return body_error(&e),
        };
        tracing::Span::current().record("records", parts.len());
        let (results, accepted) = self.validate(kind, &parts, received_at);
        if let Some(response) = forbidden(&grant, &results, &accepted) {
            tracing::info!(token = %grant.name, "gateway: records for provinces the token may not submit for");
            return response;
        }
        for result in &results {
            self.records
                .with_label_values(&[kind.as_str(), result.reason.unwrap_or("accepted")])
                .inc();
        }
        let checked: Vec<Checked> = accepted.into_iter().map(|(_, c)| c).collect();
        if checked.is_empty() {
            let rejected = results.len();
            return error(
                StatusCode::UNPROCESSABLE_ENTITY,
                "all_rejected",
                format!("all {rejected} records were rejected"),
                results,
            );
        }
        if let Err(e) = self.publisher.publish(kind, &checked).await {
            tracing::warn!(token = %grant.name, error = %e, "gateway: produce failed");
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                "broker_unavailable",
                "the broker did not acknowledge every record; retry the request (records are deduplicated by id)",
                Vec::new(),
            );
        }
        tracing::debug!(token = %grant.name, accepted = checked.len(), rejected = results.len() - checked.len(), "gateway: records produced");
        let response = IngestResponse {
            accepted: checked.len(),
            rejected: results.len() - checked.len(),
            results,
        };
        json(StatusCode::ACCEPTED, &response)
    }

    /// Per-record results and the accepted records with their index.
    fn validate(
        &self,
        kind: EventKind,
        parts: &[(usize, &[u8])],
        received_at: i64,
    ) -> (Vec<RecordResult>, Vec<(usize, Checked)>) {
        let mut results = Vec::with_capacity(parts.len());
        let mut accepted = Vec::new();
        for (index, (line, bytes)) in parts.iter().enumerate() {
            match check(&self.decoder, kind, bytes.to_vec(), received_at) {
                Ok(checked) => {
                    results.push(RecordResult {
                        index,
                        line: *line,
                        status: "accepted",
                        id: Some(checked.id.clone()),
                        reason: None,
                        detail: None,
                    });
                    accepted.push((index, checked));
                }
                Err(reject) => results.push(RecordResult {
                    index,
                    line: *line,
                    status: "rejected",
                    id: None,
                    reason: Some(reject.reason.code()),
                    detail: Some(reject.detail),
                }),
            }
        }
        (results, accepted)
    }
}

/// 403 when any valid record is for a province the token may not submit for; nothing of
/// the request is produced then.
fn forbidden(
    grant: &Grant,
    results: &[RecordResult],
    accepted: &[(usize, Checked)],
) -> Option<Response> {
    let refused: Vec<&(usize, Checked)> = accepted
        .iter()
        .filter(|(_, c)| !grant.allows(&c.province_code))
        .collect();
    if refused.is_empty() {
        return None;
    }
    let listed: Vec<RecordResult> = refused
        .iter()
        .map(|(index, c)| RecordResult {
            detail: Some(format!(
                "province {} is not allowed for this token",
                c.province_code
            )),
            reason: Some("province_not_allowed"),
            status: "rejected",
            ..results[*index].clone()
        })
        .collect();
    let mut provinces: Vec<&str> = refused
        .iter()
        .map(|(_, c)| c.province_code.as_str())
        .collect();
    provinces.sort();
    provinces.dedup();
    Some(error(
        StatusCode::FORBIDDEN,
        "province_not_allowed",
        format!(
            "this token may not submit for province {}; nothing was produced",
            provinces.join(", ")
        ),
        listed,
    ))
}

fn body_error(e: &records::BodyError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST);
    error(status, e.code(), e.to_string(), Vec::new())
}

/// Whether reading a body failed because it exceeded the limit (a body sent without
/// `Content-Length`, e.g. chunked, is only measured while it is read).
fn is_length_limit(error: &axum::Error) -> bool {
    std::error::Error::source(error).is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_names_every_route_and_error_code() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap();
        let mut paths: Vec<&str> = doc["paths"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        paths.sort();
        assert_eq!(
            paths,
            [
                "/api/v1/hotline",
                "/api/v1/surveys",
                "/health",
                "/metrics",
                "/openapi.json"
            ]
        );
        let codes = doc["components"]["schemas"]["Error"]["properties"]["error"]["enum"]
            .as_array()
            .unwrap();
        let body_errors = [
            records::BodyError::UnsupportedMediaType(String::new()),
            records::BodyError::UnsupportedEncoding(String::new()),
            records::BodyError::Empty,
            records::BodyError::TooManyRecords { count: 0, limit: 0 },
        ];
        // Every code this module answers with: the `"code"` right after the status in each
        // `error(StatusCode::…, "code", …)` above.
        let source = include_str!("mod.rs");
        let literal_codes: Vec<&str> = source
            .split("StatusCode::")
            .skip(1)
            .filter_map(|rest| {
                let rest = rest.trim_start_matches(|c: char| c.is_ascii_uppercase() || c == '_');
                let rest = rest.strip_prefix(',')?.trim_start().strip_prefix('"')?;
                rest.split('"').next()
            })
            .collect();
        assert!(literal_codes.len() >= 8, "{literal_codes:?}");
        for code in body_errors.iter().map(|e| e.code()).chain(literal_codes) {
            assert!(
                codes.contains(&code.into()),
                "{code} is not in the document"
            );
        }
        for operation in ["/api/v1/surveys", "/api/v1/hotline"] {
            let responses = doc["paths"][operation]["post"]["responses"]
                .as_object()
                .unwrap();
            for status in body_errors.iter().map(|e| e.status().to_string()) {
                assert!(responses.contains_key(&status), "{operation}: {status}");
            }
        }
    }

    #[tokio::test]
    async fn an_oversized_body_is_recognised_while_reading() {
        let error = axum::body::to_bytes(Body::from(vec![b'x'; 100]), 10)
            .await
            .unwrap_err();
        assert!(is_length_limit(&error));
        assert!(axum::body::to_bytes(Body::from(vec![b'x'; 10]), 10)
            .await
            .is_ok());
    }
}
