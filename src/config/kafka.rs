//! `[kafka]`: brokers, topics, the consumer group and extra librdkafka properties.
use std::collections::BTreeMap;

use serde::Deserialize;

use super::ConfigError;
use crate::contract::kind::{EventKind, PerKind};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers. Default `127.0.0.1:9092`.
    pub brokers: String,
    /// Consumer group of `sipas run`. Default `sipas-ingest`.
    pub group_id: String,
    /// Default `sipas.surveys`.
    pub surveys_topic: String,
    /// Default `sipas.hotline`.
    pub hotline_topic: String,
    /// Dead letters of both input topics. Default `sipas.dlq`.
    pub dlq_topic: String,
    /// Partitions for topics created by `sipas topics`. Default 4.
    pub partitions: i32,
    /// Replication factor for topics created by `sipas topics`. Default 1.
    pub replication_factor: i32,
    /// Optional Confluent Schema Registry base URL for Avro ids not in the local catalog.
    pub schema_registry_url: Option<String>,
    /// Extra librdkafka properties for every client (e.g. `security.protocol`).
    pub properties: BTreeMap<String, String>,
    /// Extra librdkafka properties for producers only (DLQ, simulator).
    pub producer_properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "sipas-ingest".into(),
            surveys_topic: "sipas.surveys".into(),
            hotline_topic: "sipas.hotline".into(),
            dlq_topic: "sipas.dlq".into(),
            partitions: 4,
            replication_factor: 1,
            schema_registry_url: None,
            properties: BTreeMap::new(),
            producer_properties: BTreeMap::new(),
        }
    }
}

impl KafkaConfig {
    /// The input topic of `kind`.
    pub fn topic(&self, kind: EventKind) -> &str {
        match kind {
            EventKind::Survey => &self.surveys_topic,
            EventKind::Hotline => &self.hotline_topic,
        }
    }

    /// The input topic of every kind.
    pub fn input_topics(&self) -> PerKind<&str> {
        PerKind::from_fn(|kind| self.topic(kind))
    }

    /// The input topics and the dead-letter topic: what `sipas topics` creates.
    pub fn all_topics(&self) -> Vec<&str> {
        let mut topics: Vec<&str> = self.input_topics().values().copied().collect();
        topics.push(&self.dlq_topic);
        topics
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        let topics = self.all_topics();
        if topics.iter().any(|t| t.is_empty()) {
            return Err(ConfigError::Invalid(
                "kafka topic names must not be empty".into(),
            ));
        }
        let distinct: std::collections::BTreeSet<&str> = topics.iter().copied().collect();
        if distinct.len() < topics.len() {
            return Err(ConfigError::Invalid(
                "kafka.surveys_topic, kafka.hotline_topic and kafka.dlq_topic must differ".into(),
            ));
        }
        Ok(())
    }
}
