//! The ingest consumer. Offsets are stored by the pipeline only after ClickHouse (and the
//! DLQ) acknowledged everything derived from them; librdkafka commits stored offsets
//! every `pipeline.commit_interval_ms` and once more on shutdown.
use std::sync::Mutex;

use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use crate::config::{KafkaConfig, PipelineConfig};
use crate::metrics::Metrics;

/// Feeds librdkafka's statistics (consumer lag per partition) into our metrics, logs
/// rebalances and remembers revoked partitions for the consumer loop (their index state
/// must be dropped before anything else of theirs is processed).
pub struct IngestContext {
    metrics: Metrics,
    revoked: Mutex<Vec<(String, i32)>>,
}

impl IngestContext {
    /// Whether a revocation waits to be taken.
    pub fn has_revoked(&self) -> bool {
        !self.revoked.lock().expect("revoked lock").is_empty()
    }

    /// Partitions revoked since the last call.
    pub fn take_revoked(&self) -> Vec<(String, i32)> {
        std::mem::take(&mut *self.revoked.lock().expect("revoked lock"))
    }
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue; lag -1 means unknown.
                if *partition >= 0 && p.consumer_lag >= 0 {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(p.consumer_lag);
                }
            }
        }
    }
}

impl ConsumerContext for IngestContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock");
            revoked.extend(
                tpl.elements()
                    .iter()
                    .map(|e| (e.topic().to_owned(), e.partition())),
            );
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = ?describe(tpl), "partitions assigned")
            }
            Rebalance::Revoke(tpl) => {
                tracing::info!(partitions = ?describe(tpl), "partitions revoked")
            }
            Rebalance::Error(error) => tracing::warn!(%error, "rebalance error"),
        }
    }
}

fn describe(tpl: &rdkafka::TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

pub type IngestConsumer = StreamConsumer<IngestContext>;

pub fn ingest_consumer(
    kafka: &KafkaConfig,
    pipeline: &PipelineConfig,
    metrics: Metrics,
) -> Result<IngestConsumer, rdkafka::error::KafkaError> {
    super::client_config(kafka)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            pipeline.commit_interval_ms.to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("statistics.interval.ms", "5000")
        // Bounds what librdkafka prefetches while the pipeline is paused on a failing sink.
        .set("queued.max.messages.kbytes", "32768")
        // Headroom for a ClickHouse outage before the group considers us dead; if exceeded,
        // the partitions are re-consumed from the last commit and duplicates collapse.
        .set("max.poll.interval.ms", "600000")
        // Index values are written within a flush interval of their events being read; a
        // fetch must not wait on the broker for half a second first (librdkafka's default).
        .set("fetch.wait.max.ms", "100")
        .create_with_context(context(metrics))
}

/// A consumer for `sipas rebuild`: a fresh group reading every partition from its start,
/// committing nothing.
pub fn rebuild_consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    metrics: Metrics,
) -> Result<IngestConsumer, rdkafka::error::KafkaError> {
    super::client_config(kafka)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", "32768")
        .set("max.poll.interval.ms", "600000")
        .create_with_context(context(metrics))
}

fn context(metrics: Metrics) -> IngestContext {
    IngestContext {
        metrics,
        revoked: Mutex::new(Vec::new()),
    }
}
