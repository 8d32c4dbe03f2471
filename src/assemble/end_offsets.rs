//! The end offsets of the input topics' partitions, where `sipas rebuild` stops.
use std::collections::HashMap;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;

use crate::config::Config;

#[derive(Debug, thiserror::Error)]
pub enum EndOffsetsError {
    #[error(transparent)]
    Client(#[from] KafkaError),
    #[error("metadata of {topic}")]
    Metadata {
        topic: String,
        #[source]
        source: KafkaError,
    },
    #[error(transparent)]
    Task(#[from] tokio::task::JoinError),
}

/// End offsets (high watermarks) of every partition of the survey and hotline topics,
/// by (topic, partition). Blocks on the broker (up to 30 s per request).
pub fn end_offsets_blocking(
    config: &Config,
) -> Result<HashMap<(String, i32), i64>, EndOffsetsError> {
    let consumer: BaseConsumer = crate::kafka::client_config(&config.kafka)
        .set("group.id", "sipas-rebuild-probe")
        .create()?;
    let mut ends = HashMap::new();
    for topic in config.kafka.input_topics().values().copied() {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .map_err(|source| EndOffsetsError::Metadata {
                topic: topic.to_owned(),
                source,
            })?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) =
                    consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(30))?;
                ends.insert((topic.to_owned(), p.id()), high);
            }
        }
    }
    Ok(ends)
}

/// [`end_offsets_blocking`] on a blocking thread.
pub async fn end_offsets(config: &Config) -> Result<HashMap<(String, i32), i64>, EndOffsetsError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || end_offsets_blocking(&config)).await?
}
