//! Validating and producing records on behalf of a client that cannot run a Kafka producer
//! itself (the ingest gateway, `sipas import`). Records are checked by the pipeline's own
//! `Decoder`, so what is accepted here is exactly what `sipas run` accepts, and produced
//! keyed by their 2025 province code with the idempotent producer (acks=all).
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::config::KafkaConfig;
use crate::contract::decode::{Decoded, Decoder, EventKind};
use crate::contract::kind::PerKind;
use crate::contract::Reject;
use crate::kafka::reach::{self, BrokerReach};

/// What the broker state is reported as coming from.
const CLIENT: &str = "gateway";

/// A record that passed validation, ready to produce.
#[derive(Debug, Clone, PartialEq)]
pub struct Checked {
    /// 2025-system province code: the message key.
    pub province_code: String,
    /// `submission_id` or `event_id`.
    pub id: String,
    /// The bytes that were validated; they are produced unchanged.
    pub payload: Vec<u8>,
}

/// Runs the pipeline's validation on one record received at `received_at` (Unix seconds,
/// the wall clock when the request or row was read). Rejection details
/// never hold personal data.
pub fn check(
    decoder: &Decoder,
    kind: EventKind,
    payload: Vec<u8>,
    received_at: i64,
) -> Result<Checked, Reject> {
    match decoder.decode(kind, &payload, Some(received_at)) {
        Ok((Decoded::Survey(s), _)) => Ok(Checked {
            province_code: s.province_code,
            id: s.submission_id,
            payload,
        }),
        Ok((Decoded::Hotline(h), _)) => Ok(Checked {
            province_code: h.province_code,
            id: h.event_id,
            payload,
        }),
        Err(rejected) => Err(rejected.reject),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the broker did not acknowledge {failed} of {total} records: {first}")]
    NotAcknowledged {
        failed: usize,
        total: usize,
        first: rdkafka::error::KafkaError,
    },
}

/// Produces to the input topics and waits for the broker's acknowledgements.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    topics: PerKind<String>,
    /// Told of every acknowledgement and unreachable broker, when set.
    reach: Option<BrokerReach>,
}

impl Publisher {
    pub fn new(kafka: &KafkaConfig) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: crate::kafka::producer::idempotent_producer(kafka)?,
            topics: PerKind::from_fn(|kind| kafka.topic(kind).to_owned()),
            reach: None,
        })
    }

    /// Reports the broker's reachability from what this producer hears (its deliveries,
    /// and [`Publisher::watch_broker`]'s probes) to `reach`.
    pub fn with_reach(mut self, reach: BrokerReach) -> Self {
        self.reach = Some(reach);
        self
    }

    /// Asks the broker for its metadata every `every`, so that `sipas_kafka_broker_up`
    /// stays current while no records arrive (a gateway may be idle for hours). Runs until
    /// dropped; does nothing without [`Publisher::with_reach`].
    pub async fn watch_broker(&self, every: Duration) {
        let Some(reach) = &self.reach else { return };
        loop {
            let producer = self.producer.clone();
            let asked = Instant::now();
            // fetch_metadata blocks its thread until the broker answers or the time is up.
            let answer = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(None, Duration::from_secs(5))
                    .map(|_| ())
            })
            .await;
            match answer {
                Ok(Ok(())) => reach.answered(asked, CLIENT),
                Ok(Err(error)) => reach.failed(asked, CLIENT, &error),
                Err(_) => {} // the runtime is shutting down
            }
            tokio::time::sleep(every).await;
        }
    }

    pub fn topic(&self, kind: EventKind) -> &str {
        &self.topics[kind]
    }

    /// Sends every record and returns once the broker acknowledged all of them, or with an
    /// error if any was not acknowledged (the others may have been: re-sending is safe,
    /// the pipeline deduplicates by id).
    pub async fn publish(&self, kind: EventKind, records: &[Checked]) -> Result<(), PublishError> {
        let topic = self.topic(kind);
        let mut pending = FuturesUnordered::new();
        let mut failures = Vec::new();
        for record in records {
            // Enqueued in order (per-province order is preserved); a full local queue waits
            // for acknowledgements instead of failing.
            loop {
                let message = FutureRecord::to(topic)
                    .key(&record.province_code)
                    .payload(&record.payload);
                match self.producer.send_result(message) {
                    Ok(delivery) => {
                        pending.push(delivery);
                        break;
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                        if !pending.is_empty() =>
                    {
                        self.note(pending.next().await, &mut failures);
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    Err((error, _)) => {
                        failures.push(error);
                        break;
                    }
                }
            }
        }
        while let Some(result) = pending.next().await {
            self.note(Some(result), &mut failures);
        }
        match failures.len() {
            0 => Ok(()),
            failed => Err(PublishError::NotAcknowledged {
                failed,
                total: records.len(),
                first: failures.swap_remove(0),
            }),
        }
    }
}

type Delivery = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

impl Publisher {
    /// Keeps a delivery's failure, and tells the broker state what it shows.
    fn note(&self, result: Option<Delivery>, failures: &mut Vec<KafkaError>) {
        let error = match result {
            None => return,
            Some(Ok(Ok(_))) => {
                if let Some(reach) = &self.reach {
                    reach.answered(Instant::now(), CLIENT);
                }
                return;
            }
            Some(Ok(Err((error, _)))) => error,
            Some(Err(_)) => KafkaError::Canceled,
        };
        if let Some(reach) = self
            .reach
            .as_ref()
            .filter(|_| reach::means_unreachable(&error))
        {
            reach.failed(Instant::now(), CLIENT, &error);
        }
        failures.push(error);
    }
}
