//! Creates the pipeline's topics if they do not exist.
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::RDKafkaErrorCode;

use crate::config::KafkaConfig;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("cannot create Kafka admin client: {0}")]
    Client(rdkafka::error::KafkaError),
    #[error("creating topic {topic} failed: {code}")]
    Create {
        topic: String,
        code: RDKafkaErrorCode,
    },
    #[error("Kafka admin request failed: {0}")]
    Request(rdkafka::error::KafkaError),
}

/// Ensures `topics` exist with the configured partitions. Existing topics are left alone.
pub async fn ensure_topics(
    kafka: &KafkaConfig,
    topics: &[&str],
) -> Result<Vec<String>, AdminError> {
    let admin: AdminClient<DefaultClientContext> = super::client_config(kafka)
        .create()
        .map_err(AdminError::Client)?;
    let new_topics: Vec<NewTopic> = topics
        .iter()
        .map(|t| {
            NewTopic::new(
                t,
                kafka.partitions,
                TopicReplication::Fixed(kafka.replication_factor),
            )
        })
        .collect();
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    let results = admin
        .create_topics(&new_topics, &options)
        .await
        .map_err(AdminError::Request)?;
    let mut created = Vec::new();
    for result in results {
        match result {
            Ok(topic) => created.push(topic),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => return Err(AdminError::Create { topic, code }),
        }
    }
    Ok(created)
}
