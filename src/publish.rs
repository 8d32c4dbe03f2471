//! Validating and producing records on behalf of a client that cannot run a Kafka producer
//! itself (the ingest gateway, `sipas import`). Records are checked by the pipeline's own
//! `Decoder`, so what is accepted here is exactly what `sipas run` accepts, and produced
//! keyed by their 2025 province code with the idempotent producer (acks=all).
use std::time::Duration;

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::config::KafkaConfig;
use crate::contract::decode::{Decoded, Decoder, EventKind};
use crate::contract::kind::PerKind;
use crate::contract::Reject;

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
}

impl Publisher {
    pub fn new(kafka: &KafkaConfig) -> Result<Self, rdkafka::error::KafkaError> {
        Ok(Self {
            producer: crate::kafka::producer::idempotent_producer(kafka)?,
            topics: PerKind::from_fn(|kind| kafka.topic(kind).to_owned()),
        })
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
                        note(pending.next().await, &mut failures);
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
            note(Some(result), &mut failures);
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

fn note(result: Option<Delivery>, failures: &mut Vec<KafkaError>) {
    match result {
        Some(Ok(Ok(_))) | None => {}
        Some(Ok(Err((error, _)))) => failures.push(error),
        Some(Err(_)) => failures.push(KafkaError::Canceled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::decode::tests::{decoder, hotline, survey};
    use crate::contract::RejectReason;
    use crate::domain::time::parse_rfc3339;

    #[test]
    fn records_dated_after_their_receive_time_are_refused() {
        let decoder = decoder();
        let received = parse_rfc3339("2026-11-21T08:30:00+07:00").unwrap();
        let checked = check(
            &decoder,
            EventKind::Survey,
            survey("2026-11-22T08:30:00+07:00"),
            received,
        )
        .unwrap();
        assert_eq!(
            (checked.id.as_str(), checked.province_code.as_str()),
            ("s-1", "79")
        );
        for (kind, payload) in [
            (EventKind::Survey, survey("2026-11-22T08:30:01+07:00")),
            (EventKind::Hotline, hotline("2036-11-21T08:30:00+07:00")),
        ] {
            let reject = check(&decoder, kind, payload, received).unwrap_err();
            assert_eq!(reject.reason, RejectReason::FutureTimestamp);
            assert!(!reject.detail.contains("912345678"), "{}", reject.detail);
        }
        assert!(check(
            &decoder,
            EventKind::Hotline,
            hotline("2020-01-01T00:00:00+07:00"),
            received
        )
        .is_ok());
    }
}
