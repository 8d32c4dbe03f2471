//! The dead-letter topic: the original bytes (or a redacted copy for hotline messages that
//! carry personal data), with headers saying why and where the message came from.
use std::time::Duration;

use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::writer::Abandoned;

/// One dead letter. Header values never contain personal data.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub payload: Vec<u8>,
    pub key: Option<Vec<u8>>,
    pub reason: &'static str,
    pub detail: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub redacted: bool,
}

pub struct DeadLetterProducer {
    producer: FutureProducer,
    topic: String,
    metrics: Metrics,
    retry_initial: Duration,
    retry_max: Duration,
    shutdown: Shutdown,
}

impl DeadLetterProducer {
    pub fn new(
        producer: FutureProducer,
        topic: String,
        metrics: Metrics,
        retry_initial: Duration,
        retry_max: Duration,
        shutdown: Shutdown,
    ) -> Self {
        Self {
            producer,
            topic,
            metrics,
            retry_initial,
            retry_max,
            shutdown,
        }
    }

    /// Sends every letter and waits for the broker's acknowledgement; retries failures
    /// until they succeed or shutdown is requested.
    pub async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), Abandoned> {
        let mut pending: Vec<&DeadLetter> = letters.iter().collect();
        let mut delay = self.retry_initial;
        while !pending.is_empty() {
            let deliveries = pending.iter().map(|letter| self.send_one(letter));
            let results = futures::future::join_all(deliveries).await;
            let mut failed = Vec::new();
            for (letter, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => self.metrics.dlq.with_label_values(&[letter.reason]).inc(),
                    Err(error) => {
                        tracing::warn!(%error, reason = letter.reason, source_topic = %letter.source_topic, source_offset = letter.source_offset, "dead-letter write failed; retrying");
                        failed.push(letter);
                    }
                }
            }
            pending = failed;
            if !pending.is_empty() {
                self.metrics.insert_retries.inc();
                let mut shutdown = self.shutdown.clone();
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => return Err(Abandoned),
                }
                delay = (delay * 2).min(self.retry_max);
            }
        }
        Ok(())
    }

    async fn send_one(&self, letter: &DeadLetter) -> Result<(), rdkafka::error::KafkaError> {
        let partition = letter.source_partition.to_string();
        let offset = letter.source_offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "reason",
                value: Some(letter.reason),
            })
            .insert(Header {
                key: "detail",
                value: Some(letter.detail.as_str()),
            })
            .insert(Header {
                key: "source_topic",
                value: Some(letter.source_topic.as_str()),
            })
            .insert(Header {
                key: "source_partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source_offset",
                value: Some(offset.as_str()),
            })
            .insert(Header {
                key: "redacted",
                value: Some(if letter.redacted { "true" } else { "false" }),
            });
        let mut record = FutureRecord::to(&self.topic)
            .payload(&letter.payload)
            .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error)
    }
}
