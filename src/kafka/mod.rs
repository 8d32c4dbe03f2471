//! Kafka I/O: client settings, the ingest consumer, the dead-letter producer, topic admin,
//! the process's one view of the brokers' reachability (`reach`, fed by every client);
//! `stall` and `health` (pure) judge partitions' progress and the brokers' reachability.
pub mod admin;
pub mod consumer;
pub mod dlq;
pub mod health;
pub mod producer;
pub mod reach;
pub mod stall;

use rdkafka::ClientConfig;

use crate::config::KafkaConfig;

/// Settings shared by every client: brokers plus the user's extra librdkafka properties.
pub fn client_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", &kafka.brokers);
    for (key, value) in &kafka.properties {
        config.set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    /// Producers may compress batches with any codec Kafka knows; a consumer built without
    /// one cannot read those batches (librdkafka reports a decompression error per batch).
    #[test]
    fn librdkafka_is_built_with_every_codec() {
        let features = rdkafka::ClientConfig::new()
            .create_native_config()
            .unwrap()
            .get("builtin.features")
            .unwrap();
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            assert!(
                features.split(',').any(|f| f == codec),
                "{codec} not in {features}"
            );
        }
    }
}
