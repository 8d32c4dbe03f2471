//! The ingest consumer. Offsets are stored by the pipeline only after ClickHouse (and the
//! DLQ) acknowledged everything derived from them; librdkafka commits stored offsets
//! every `pipeline.commit_interval_ms` and once more on shutdown.
use rdkafka::consumer::{BaseConsumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::statistics::Statistics;
use rdkafka::ClientContext;

use crate::config::{KafkaConfig, PipelineConfig};
use crate::metrics::Metrics;

/// Feeds librdkafka's statistics (consumer lag per partition) into our metrics and logs
/// rebalances.
pub struct IngestContext {
    metrics: Metrics,
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
        .create_with_context(IngestContext { metrics })
}
