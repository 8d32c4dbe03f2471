//! `[pipeline]`: batching, retries, commits and stall detection of `sipas run`.
use serde::Deserialize;

use super::ConfigError;

/// How often the ingest consumer's librdkafka reports statistics (lag, offsets).
pub const STATISTICS_INTERVAL_MS: u64 = 5_000;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// A batch is written when it holds this many messages. Default 5000 (a catch-up holds a
    /// few batches at once: their messages, decoded events and rows; BENCHMARKS.md, "Catch-up
    /// memory: batch size and prefetch").
    pub batch_max_messages: usize,
    /// ...or when its first message is this old. Default 100 ms (index freshness
    /// includes it).
    pub batch_max_wait_ms: u64,
    /// Messages larger than this go to the DLQ as `oversize`. Default 65536 (64 KiB).
    pub max_message_bytes: usize,
    /// First retry delay after a failed ClickHouse insert or DLQ write. Default 200 ms.
    pub retry_initial_ms: u64,
    /// Cap of the exponential retry delay. Default 10000 ms.
    pub retry_max_ms: u64,
    /// How often stored offsets are committed to Kafka. Default 1000 ms.
    pub commit_interval_ms: u64,
    /// An assigned partition whose position has not moved for this long while its log has
    /// messages ahead is reported stalled (`sipas_partition_stalled`, a warning). Also the
    /// grace period after a rebalance before an instance holding no partitions is warned
    /// about. At least 10000 (twice the statistics interval). Default 60000 ms.
    pub stall_after_ms: u64,
    /// librdkafka's `max.poll.interval.ms` for the ingest consumer: a consumer loop held
    /// longer than this (a long ClickHouse or DLQ outage) leaves its group, and rejoins at
    /// its next poll. At least `session.timeout.ms`. Default 600000 ms.
    pub max_poll_interval_ms: u64,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            batch_max_messages: 5_000,
            batch_max_wait_ms: 100,
            max_message_bytes: 64 * 1024,
            retry_initial_ms: 200,
            retry_max_ms: 10_000,
            commit_interval_ms: 1_000,
            stall_after_ms: 60_000,
            max_poll_interval_ms: 600_000,
        }
    }
}

impl PipelineConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.batch_max_messages == 0 || self.max_message_bytes == 0 || self.retry_initial_ms == 0
        {
            return Err(ConfigError::Invalid(
                "pipeline sizes and delays must be positive".into(),
            ));
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err(ConfigError::Invalid(
                "pipeline.retry_max_ms must be >= pipeline.retry_initial_ms".into(),
            ));
        }
        if self.stall_after_ms < 2 * STATISTICS_INTERVAL_MS {
            // Offsets are observed once per statistics interval: a shorter threshold would
            // call a partition stalled between two observations of it advancing.
            return Err(ConfigError::Invalid(format!(
                "pipeline.stall_after_ms must be at least {} (twice the consumer's statistics interval)",
                2 * STATISTICS_INTERVAL_MS
            )));
        }
        Ok(())
    }
}
