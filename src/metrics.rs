//! Prometheus metrics of the pipeline and the `/metrics` endpoint.
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use prometheus::core::Collector;
use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    pub consumed: IntCounterVec,
    pub valid: IntCounterVec,
    pub dlq: IntCounterVec,
    pub inserted_rows: IntCounterVec,
    pub insert_seconds: HistogramVec,
    /// ClickHouse read latency of the pipeline's own queries, per query.
    pub query_seconds: HistogramVec,
    pub insert_retries: IntCounter,
    /// Failed ClickHouse reads that were retried (apart from writes).
    pub query_retries: IntCounter,
    pub batch_messages: Histogram,
    pub consumer_lag: IntGaugeVec,
    pub committed_offset: IntGaugeVec,
    /// Offsets of acknowledged batches not stored for commit, per partition, by reason:
    /// `revoked` (the partition was given up after the batch was consumed), `error`.
    pub offsets_store_skipped: IntCounterVec,
    pub paused: IntGauge,
    /// Partitions this instance holds.
    pub assigned_partitions: IntGauge,
    /// 1 for a held partition not advancing while its log has messages ahead.
    pub partition_stalled: IntGaugeVec,
    /// Seconds a held partition has not advanced while its log had messages ahead.
    pub partition_idle_seconds: IntGaugeVec,
    pub freshness_seconds: IntGauge,
    /// 1 while the ingest consumer reaches a broker, 0 while none answers.
    pub kafka_broker_up: IntGauge,
    /// Errors of the Kafka clients, per client (`consumer`, `dlq`) and librdkafka error name.
    pub kafka_errors: IntCounterVec,
    /// 1 while a client's requests keep failing (its records are retried), per client.
    pub kafka_client_failing: IntGaugeVec,
    /// Kafka clients replaced by a new one after a fatal error or repeated failures.
    pub kafka_client_recreations: IntCounterVec,
    pub late_events: IntCounter,
    pub index_position: IntGaugeVec,
    pub index_duplicates: IntCounter,
    /// Provinces whose recent day counts come from more than one input partition.
    pub index_split_provinces: IntGaugeVec,
    /// Window rows the materialiser wrote, per table kind.
    pub index_window_rows: IntCounterVec,
    /// Unit-day sums the materialiser took, by source: `read` back from ClickHouse, or
    /// `delta` (this process's own new rows added to a sum it holds).
    pub index_day_sums: IntCounterVec,
    /// Produce time (the message timestamp) to the latest values including it being stored.
    pub index_freshness: Histogram,
    /// Time of each stage of an index flush: `facts` (day-count rows), `windows` (the
    /// materialiser's pass), `checkpoint`.
    pub index_stage_seconds: HistogramVec,
    /// `sipas serve`: ClickHouse queries issued (cache misses), per endpoint.
    pub serve_queries: IntCounterVec,
    /// `sipas serve`: responses per endpoint and status code.
    pub serve_responses: IntCounterVec,
    /// Newest event time (Unix seconds) written to ClickHouse; freshness derives from it.
    newest_event_time: Arc<AtomicI64>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

/// `metric`, registered in `registry` (each metric once).
fn registered<M: Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    registry
        .register(Box::new(metric.clone()))
        .expect("unique metric");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    registered(registry, IntCounter::new(name, help).expect("valid metric"))
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    registered(registry, IntGauge::new(name, help).expect("valid metric"))
}

fn histogram(registry: &Registry, opts: HistogramOpts) -> Histogram {
    registered(registry, Histogram::with_opts(opts).expect("valid metric"))
}

fn histogram_vec(registry: &Registry, opts: HistogramOpts, labels: &[&str]) -> HistogramVec {
    registered(
        registry,
        HistogramVec::new(opts, labels).expect("valid metric"),
    )
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(registry, metric)
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    registered(registry, metric)
}

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("sipas".into()), None).expect("valid registry");
        let consumed = counter_vec(
            &registry,
            "consumed_messages_total",
            "Messages read from the input topics.",
            &["topic"],
        );
        let valid = counter_vec(
            &registry,
            "valid_events_total",
            "Messages that passed validation.",
            &["kind", "encoding"],
        );
        let dlq = counter_vec(
            &registry,
            "dlq_messages_total",
            "Messages sent to the dead-letter topic, by reason.",
            &["reason"],
        );
        let inserted_rows = counter_vec(
            &registry,
            "inserted_rows_total",
            "Rows acknowledged by ClickHouse.",
            &["table"],
        );
        let insert_seconds = histogram_vec(
            &registry,
            HistogramOpts::new(
                "insert_duration_seconds",
                "ClickHouse insert latency, per attempt.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["table"],
        );
        let query_seconds = histogram_vec(
            &registry,
            HistogramOpts::new(
                "query_duration_seconds",
                "ClickHouse read latency of the pipeline's own queries (index materialiser, checkpoints), per query.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["query"],
        );
        let insert_retries = counter(
            &registry,
            "insert_retries_total",
            "Failed ClickHouse/DLQ writes that were retried.",
        );
        let query_retries = counter(
            &registry,
            "query_retries_total",
            "Failed ClickHouse reads of the pipeline's own queries (index materialiser, checkpoints) that were retried.",
        );
        let batch_messages = histogram(
            &registry,
            HistogramOpts::new("batch_messages", "Messages per written batch.").buckets(vec![
                1.0, 10.0, 100.0, 1_000.0, 5_000.0, 10_000.0, 20_000.0, 50_000.0,
            ]),
        );
        let consumer_lag = gauge_vec(
            &registry,
            "consumer_lag_messages",
            "High watermark minus consumer position.",
            &["topic", "partition"],
        );
        let committed_offset = gauge_vec(
            &registry,
            "stored_offset",
            "Next offset stored for commit, per partition this instance holds.",
            &["topic", "partition"],
        );
        let offsets_store_skipped = counter_vec(
            &registry,
            "offsets_store_skipped_total",
            "Offsets of acknowledged batches not stored for commit, per partition: revoked (the partition was revoked after the batch was consumed; its next owner resumes from the last commit), error (any other refusal, logged as a warning).",
            &["reason"],
        );
        let paused = gauge(
            &registry,
            "consumption_paused",
            "1 while consumption is paused because ClickHouse or the DLQ is failing.",
        );
        let assigned_partitions = gauge(
            &registry,
            "assigned_partitions",
            "Input partitions this instance holds.",
        );
        let partition_stalled = gauge_vec(
            &registry,
            "partition_stalled",
            "1 while a held partition's position has not moved for pipeline.stall_after_ms although its log has messages ahead; 0 otherwise.",
            &["topic", "partition"],
        );
        let partition_idle_seconds = gauge_vec(
            &registry,
            "partition_idle_seconds",
            "Seconds a held partition's position has not moved while its log had messages ahead (0 when advancing or caught up).",
            &["topic", "partition"],
        );
        let freshness_seconds = gauge(
            &registry,
            "freshness_seconds",
            "Now minus the newest event time written to ClickHouse.",
        );
        let late_events = counter(
            &registry,
            "late_events_total",
            "Events older than the allowed lateness behind their partition's newest event; they are counted in their own day, and the windows containing it are recomputed.",
        );
        let index_duplicates = counter(
            &registry,
            "index_duplicate_events_total",
            "Events the index processor skipped because their id was already folded in.",
        );
        let index_freshness = histogram(
            &registry,
            HistogramOpts::new(
                "index_freshness_seconds",
                "From an event's produce time (message timestamp) until the latest index values that include it are acknowledged by ClickHouse.",
            )
            .buckets(vec![0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0]),
        );
        let index_stage_seconds = histogram_vec(
            &registry,
            HistogramOpts::new(
                "index_stage_duration_seconds",
                "Time of each stage of an index flush: facts, windows, checkpoint.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            &["stage"],
        );
        let index_position = gauge_vec(
            &registry,
            "index_position",
            "Next offset of each input partition whose derived index rows are all written.",
            &["topic", "partition"],
        );
        let index_split_provinces = gauge_vec(
            &registry,
            "index_provinces_on_several_partitions",
            "Provinces whose day counts of the last year come from more than one input partition (a mis-keyed producer or a grown topic); still counted exactly.",
            &["kind"],
        );
        let index_window_rows = counter_vec(
            &registry,
            "index_window_rows_total",
            "Window rows (province and category values per as_of day) written by the materialiser.",
            &["kind"],
        );
        let index_day_sums = counter_vec(
            &registry,
            "index_day_sums_total",
            "Unit-day sums the materialiser took: read back from ClickHouse (`read`) or updated with this process's own new rows (`delta`).",
            &["source"],
        );
        let serve_queries = counter_vec(
            &registry,
            "serve_clickhouse_queries_total",
            "ClickHouse queries issued by the read API (one per cache miss), per endpoint.",
            &["endpoint"],
        );
        let kafka_broker_up = gauge(&registry,
            "kafka_broker_up",
            "1 while the process reaches a Kafka broker; 0 while none answers (at start-up until the first answer, or after every broker went away). One state fed by the ingest consumer and the dead-letter producer (sipas run), or by the gateway producer's deliveries and its metadata request every 15 s (sipas serve, sipas gateway): the newest observation.",
        );
        let kafka_errors = counter_vec(
            &registry,
            "kafka_errors_total",
            "Errors reported by the Kafka clients, per client (consumer, dlq) and librdkafka error name.",
            &["client", "error"],
        );
        let kafka_client_failing = gauge_vec(
            &registry,
            "kafka_client_failing",
            "1 while a Kafka client's requests keep failing and its records are retried; 0 once they succeed again.",
            &["client"],
        );
        let kafka_client_recreations = counter_vec(
            &registry,
            "kafka_client_recreations_total",
            "Kafka clients replaced by a new one after a fatal error or repeated failed deliveries.",
            &["client"],
        );
        let serve_responses = counter_vec(
            &registry,
            "serve_responses_total",
            "Read API responses, per endpoint and status code.",
            &["endpoint", "status"],
        );
        Self {
            serve_queries,
            serve_responses,
            late_events,
            index_position,
            index_duplicates,
            index_split_provinces,
            index_window_rows,
            index_day_sums,
            index_freshness,
            index_stage_seconds,
            registry,
            consumed,
            valid,
            dlq,
            inserted_rows,
            insert_seconds,
            query_seconds,
            insert_retries,
            query_retries,
            batch_messages,
            consumer_lag,
            committed_offset,
            offsets_store_skipped,
            paused,
            assigned_partitions,
            partition_stalled,
            partition_idle_seconds,
            freshness_seconds,
            kafka_broker_up,
            kafka_errors,
            kafka_client_failing,
            kafka_client_recreations,
            newest_event_time: Arc::new(AtomicI64::new(0)),
        }
    }

    pub fn observe_event_time(&self, unix: i64) {
        self.newest_event_time.fetch_max(unix, Ordering::Relaxed);
    }

    /// Prometheus text format; refreshes the freshness gauge first.
    pub fn render(&self) -> String {
        let newest = self.newest_event_time.load(Ordering::Relaxed);
        if newest > 0 {
            let now = crate::domain::time::unix_now();
            self.freshness_seconds.set(now - newest);
        }
        let mut out = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut out)
            .expect("text encoding");
        String::from_utf8(out).expect("utf-8 metrics")
    }
}

/// The answer to `GET /metrics`: the Prometheus text format of `metrics`.
pub fn response(metrics: &Metrics) -> axum::response::Response {
    use axum::response::IntoResponse;
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        metrics.render(),
    )
        .into_response()
}

/// `GET /metrics` and `GET /health` (always `ok`), for the processes that serve nothing
/// else of their own there (`sipas run`, `sipas gateway`).
pub fn routes(metrics: Metrics) -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move { response(&metrics) }
            }),
        )
        .route("/health", get(|| async { "ok" }))
}

/// Serves `GET /metrics` until `shutdown` resolves.
pub async fn serve(
    metrics: Metrics,
    listener: tokio::net::TcpListener,
    limits: &crate::config::HttpConfig,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    crate::http::serve(listener, routes(metrics), limits, shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_with_labels() {
        let metrics = Metrics::new();
        metrics.dlq.with_label_values(&["oversize"]).inc_by(3);
        metrics.observe_event_time(1);
        let text = metrics.render();
        assert!(
            text.contains("sipas_dlq_messages_total{reason=\"oversize\"} 3"),
            "{text}"
        );
        assert!(text.contains("sipas_freshness_seconds"), "{text}");
    }
}
