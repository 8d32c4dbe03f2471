//! Kafka I/O: client settings, the ingest consumer, the dead-letter producer, topic admin.
pub mod admin;
pub mod consumer;
pub mod dlq;
pub mod producer;

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
