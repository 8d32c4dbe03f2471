//! The dead-letter topic: the original bytes (or a redacted copy for hotline messages that
//! carry personal data), with headers saying why and where the message came from.
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::ClientContext;

use crate::config::KafkaConfig;
use crate::kafka::producer::{self, Recovery};
use crate::kafka::reach::{self, BrokerReach};
use crate::metrics::Metrics;
use crate::retry::{Abandoned, Backoff};
use crate::shutdown::Shutdown;

/// The `client` label of this producer's metrics.
const CLIENT: &str = "dlq";

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

/// What librdkafka reports outside deliveries (on the producer's own polling thread, so
/// also while the delivery stage waits): connection failures while letters are being sent
/// feed the process's view of the brokers, other errors are counted and logged.
#[derive(Clone)]
pub struct DeadLetterContext {
    reach: BrokerReach,
    metrics: Metrics,
    /// `send_all` calls under way. An idle producer's connection closed by the broker
    /// (Kafka reaps idle connections) is no outage, and the consumer judges the brokers
    /// then; while letters wait, the producer keeps connecting and sees an outage first.
    sending: Arc<AtomicUsize>,
}

impl ClientContext for DeadLetterContext {
    fn error(&self, error: KafkaError, reason: &str) {
        self.metrics
            .kafka_errors
            .with_label_values(&[CLIENT, &producer::error_label(&error)])
            .inc();
        if !reach::means_unreachable(&error) {
            tracing::warn!(%error, reason, "Kafka dead-letter producer error");
        } else if self.sending.load(Ordering::SeqCst) > 0 {
            self.reach.failed(Instant::now(), CLIENT, &reason);
        }
    }
}

/// Counts a `send_all` under way for as long as it lives (also when it is dropped).
struct Sending<'a>(&'a AtomicUsize);

impl<'a> Sending<'a> {
    fn new(count: &'a AtomicUsize) -> Self {
        count.fetch_add(1, Ordering::SeqCst);
        Self(count)
    }
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The dead-letter producer. A producer that failed fatally, or whose deliveries keep
/// failing, is replaced by a new one (`producer::recovery`): an idempotent producer can be
/// left unable to deliver by a broker that lost or refuses its state, and would otherwise
/// retry one batch's letters forever while consumption waits.
pub struct DeadLetterProducer {
    kafka: KafkaConfig,
    producer: Mutex<FutureProducer<DeadLetterContext>>,
    context: DeadLetterContext,
    topic: String,
    metrics: Metrics,
    retry_initial: Duration,
    retry_max: Duration,
    shutdown: Shutdown,
    /// Consecutive delivery rounds with a failure, across calls; reset by a clean round or
    /// a new producer.
    failed_rounds: AtomicU32,
    /// A delivery round failed since the last clean one (also across a replacement, which
    /// resets `failed_rounds`): the next clean round is reported.
    failing: AtomicBool,
}

impl DeadLetterProducer {
    /// `reach` is told of every delivery and connection failure (`kafka::reach`).
    pub fn new(
        kafka: &KafkaConfig,
        topic: String,
        metrics: Metrics,
        reach: BrokerReach,
        retry_initial: Duration,
        retry_max: Duration,
        shutdown: Shutdown,
    ) -> Result<Self, KafkaError> {
        let context = DeadLetterContext {
            reach,
            metrics: metrics.clone(),
            sending: Arc::new(AtomicUsize::new(0)),
        };
        Ok(Self {
            producer: Mutex::new(producer::idempotent_producer_with(kafka, context.clone())?),
            context,
            kafka: kafka.clone(),
            topic,
            metrics,
            retry_initial,
            retry_max,
            shutdown,
            failed_rounds: AtomicU32::new(0),
            failing: AtomicBool::new(false),
        })
    }

    fn current(&self) -> FutureProducer<DeadLetterContext> {
        self.producer.lock().expect("producer lock").clone()
    }

    /// Sends every letter and waits for the broker's acknowledgement; retries failures
    /// until they succeed or shutdown is requested.
    pub async fn send_all(&self, letters: &[DeadLetter]) -> Result<(), Abandoned> {
        let _sending = Sending::new(&self.context.sending);
        let mut pending: Vec<&DeadLetter> = letters.iter().collect();
        let mut backoff = Backoff::new(self.retry_initial, self.retry_max, &self.shutdown);
        while !pending.is_empty() {
            let producer = self.current();
            let deliveries = pending
                .iter()
                .map(|letter| self.send_one(&producer, letter));
            let results = futures::future::join_all(deliveries).await;
            let pending_count = pending.len();
            let mut failed = Vec::new();
            let mut last_error = None;
            for (letter, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(()) => self.metrics.dlq.with_label_values(&[letter.reason]).inc(),
                    Err(error) => {
                        tracing::debug!(%error, reason = letter.reason, source_topic = %letter.source_topic, source_offset = letter.source_offset, "dead-letter write failed");
                        self.metrics
                            .kafka_errors
                            .with_label_values(&[CLIENT, &producer::error_label(&error)])
                            .inc();
                        failed.push(letter);
                        last_error = Some(error);
                    }
                }
            }
            let Some(last_error) = last_error else {
                self.recovered();
                break;
            };
            // One line per round, not per letter: an outage fails every letter of a batch
            // in every round (each letter's failure is at debug).
            let first = failed[0];
            tracing::warn!(
                error = %last_error,
                failed = failed.len(),
                sent = pending_count,
                first_source_topic = %first.source_topic,
                first_source_offset = first.source_offset,
                "dead-letter writes failed; retrying them"
            );
            pending = failed;
            self.metrics.insert_retries.inc();
            self.metrics
                .kafka_client_failing
                .with_label_values(&[CLIENT])
                .set(1);
            self.failing.store(true, Ordering::Relaxed);
            let failed_rounds = 1 + self.failed_rounds.fetch_add(1, Ordering::Relaxed);
            let fatal = producer.client().fatal_error();
            drop(producer);
            if producer::recovery(fatal.is_some(), failed_rounds) == Recovery::Recreate {
                self.recreate(failed_rounds, fatal, &last_error).await;
            }
            backoff.wait().await?;
        }
        Ok(())
    }

    /// Notes a clean round: the producer delivers (again).
    fn recovered(&self) {
        self.failed_rounds.store(0, Ordering::Relaxed);
        if self.failing.swap(false, Ordering::Relaxed) {
            tracing::info!("dead-letter producer delivers again");
        }
        self.metrics
            .kafka_client_failing
            .with_label_values(&[CLIENT])
            .set(0);
    }

    /// Replaces the producer; the old one's unsent records are purged when it is dropped.
    async fn recreate(
        &self,
        failed_rounds: u32,
        fatal: Option<(rdkafka::error::RDKafkaErrorCode, String)>,
        last_error: &KafkaError,
    ) {
        match producer::idempotent_producer_with(&self.kafka, self.context.clone()) {
            Ok(fresh) => {
                let old =
                    std::mem::replace(&mut *self.producer.lock().expect("producer lock"), fresh);
                // Dropping waits briefly for the purged records' reports: not on a runtime thread.
                let _ = tokio::task::spawn_blocking(move || drop(old)).await;
                self.failed_rounds.store(0, Ordering::Relaxed);
                self.metrics
                    .kafka_client_recreations
                    .with_label_values(&[CLIENT])
                    .inc();
                tracing::warn!(
                    brokers = %self.kafka.brokers,
                    failed_rounds,
                    fatal = ?fatal.map(|(code, reason)| format!("{code:?}: {reason}")),
                    error = %last_error,
                    "dead-letter producer recreated after a fatal error or repeated failed deliveries; its letters are sent again"
                );
            }
            Err(error) => {
                tracing::error!(%error, "cannot create a new dead-letter producer; retrying with the old one")
            }
        }
    }

    async fn send_one(
        &self,
        producer: &FutureProducer<DeadLetterContext>,
        letter: &DeadLetter,
    ) -> Result<(), KafkaError> {
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
        let result = producer
            .send(record, Duration::from_secs(30))
            .await
            .map(|_| ())
            .map_err(|(error, _)| error);
        // Told as the report arrives, not when the round ends: a letter delivered before
        // the broker went away is no answer after the producer saw it go.
        match &result {
            Ok(()) => self.context.reach.answered(Instant::now(), CLIENT),
            Err(error) if reach::means_unreachable(error) => {
                self.context.reach.failed(Instant::now(), CLIENT, error)
            }
            Err(_) => {}
        }
        result
    }
}

#[cfg(test)]
mod tests {
    //! Against librdkafka's mock cluster: a broker that fails the producer fatally, or
    //! answers every produce request with an error for a while.
    use std::time::Duration;

    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;

    const TOPIC: &str = "dlq";

    fn letter(offset: i64) -> DeadLetter {
        DeadLetter {
            payload: b"{}".to_vec(),
            key: None,
            reason: "undecodable",
            detail: "test".into(),
            source_topic: "surveys".into(),
            source_partition: 0,
            source_offset: offset,
            redacted: false,
        }
    }

    /// A one-broker mock cluster holding the letters' topic.
    fn cluster_with_topic() -> MockCluster<'static, rdkafka::producer::DefaultProducerContext> {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 1, 1).unwrap();
        cluster
    }

    fn dead_letter_producer(
        cluster: &MockCluster<'static, rdkafka::producer::DefaultProducerContext>,
        metrics: &Metrics,
    ) -> DeadLetterProducer {
        let mut kafka = KafkaConfig {
            brokers: cluster.bootstrap_servers(),
            ..Default::default()
        };
        // A failed delivery is reported within seconds instead of two minutes.
        kafka
            .producer_properties
            .insert("message.timeout.ms".into(), "1500".into());
        kafka
            .producer_properties
            .insert("retry.backoff.ms".into(), "50".into());
        let (trigger, shutdown) = crate::shutdown::channel();
        // Dropping the trigger would count as shutdown; these tests never shut down.
        std::mem::forget(trigger);
        DeadLetterProducer::new(
            &kafka,
            TOPIC.into(),
            metrics.clone(),
            BrokerReach::new(&kafka.brokers, metrics.kafka_broker_up.clone()),
            Duration::from_millis(50),
            Duration::from_millis(200),
            shutdown,
        )
        .unwrap()
    }

    fn recreations(metrics: &Metrics) -> u64 {
        metrics
            .kafka_client_recreations
            .with_label_values(&[CLIENT])
            .get()
    }

    /// Bounded: a wedged producer fails the test with a message instead of hanging it.
    async fn send_within(dlq: &DeadLetterProducer, letters: &[DeadLetter], what: &str) {
        tokio::time::timeout(Duration::from_secs(60), dlq.send_all(letters))
            .await
            .unwrap_or_else(|_| panic!("{what}: the letters were not delivered within 60 s"))
            .expect("not abandoned");
    }

    /// The producer's polling thread hears the broker go away while a letter waits, so
    /// `sipas_kafka_broker_up` drops whatever the consumer loop does meanwhile; the letter
    /// delivered when the broker is back raises it again.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broker_going_away_and_coming_back_is_seen_by_the_producer() {
        let cluster = cluster_with_topic();
        let metrics = Metrics::new();
        let dlq = Arc::new(dead_letter_producer(&cluster, &metrics));
        let up = || metrics.kafka_broker_up.get();
        assert_eq!(up(), 0, "unknown before any answer");
        send_within(&dlq, &[letter(0)], "before the outage").await;
        assert_eq!(up(), 1, "a delivery is an answer");

        cluster.broker_down(1).unwrap();
        let sending = tokio::spawn({
            let dlq = Arc::clone(&dlq);
            async move { dlq.send_all(&[letter(1)]).await }
        });
        let started = std::time::Instant::now();
        while up() != 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the producer did not report the broker unreachable within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        cluster.broker_up(1).unwrap();
        tokio::time::timeout(Duration::from_secs(60), sending)
            .await
            .expect("the letter is delivered within 60 s of the broker coming back")
            .unwrap()
            .expect("not abandoned");
        assert_eq!(up(), 1, "reachable again");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_fatally_failed_producer_is_replaced_and_the_letters_delivered() {
        let cluster = cluster_with_topic();
        let metrics = Metrics::new();
        let dlq = dead_letter_producer(&cluster, &metrics);
        send_within(&dlq, &[letter(0)], "before the fault").await;
        assert_eq!(recreations(&metrics), 0);

        // What an idempotent producer raises when the broker lost or refuses its sequence
        // state; the producer never delivers again.
        let reason = std::ffi::CString::new("injected by the test").unwrap();
        // SAFETY: the pointer is the live producer's; librdkafka copies the reason.
        unsafe {
            rdkafka::bindings::rd_kafka_test_fatal_error(
                dlq.current().client().native_ptr(),
                RDKafkaRespErr::RD_KAFKA_RESP_ERR_OUT_OF_ORDER_SEQUENCE_NUMBER,
                reason.as_ptr(),
            );
        }
        assert!(dlq.current().client().fatal_error().is_some());
        send_within(&dlq, &[letter(1), letter(2)], "after a fatal error").await;
        assert_eq!(recreations(&metrics), 1, "replaced once");
        assert!(dlq.current().client().fatal_error().is_none());
        assert_eq!(
            metrics
                .kafka_client_failing
                .with_label_values(&[CLIENT])
                .get(),
            0
        );
        assert_eq!(metrics.dlq.with_label_values(&["undecodable"]).get(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_broker_answering_every_request_with_an_error_does_not_wedge_the_producer() {
        let cluster = cluster_with_topic();
        let metrics = Metrics::new();
        let dlq = Arc::new(dead_letter_producer(&cluster, &metrics));
        send_within(&dlq, &[letter(0)], "before the fault").await;

        // Every produce request and every producer-id request fails, as from a broker that
        // lost its state, until the errors are cleared.
        let errors = [RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN; 100_000];
        cluster.request_errors(RDKafkaApiKey::Produce, &errors);
        cluster.request_errors(RDKafkaApiKey::InitProducerId, &errors);
        let sending = tokio::spawn({
            let dlq = Arc::clone(&dlq);
            async move { dlq.send_all(&[letter(1), letter(2)]).await }
        });
        let failing = || {
            metrics
                .kafka_client_failing
                .with_label_values(&[CLIENT])
                .get()
        };
        let started = std::time::Instant::now();
        while recreations(&metrics) == 0 {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the failing producer was not replaced within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(failing(), 1, "failing while the broker errs");
        assert!(
            !sending.is_finished(),
            "nothing delivered while the broker errs"
        );

        cluster.clear_request_errors(RDKafkaApiKey::Produce);
        cluster.clear_request_errors(RDKafkaApiKey::InitProducerId);
        tokio::time::timeout(Duration::from_secs(60), sending)
            .await
            .expect("the letters are delivered within 60 s of the broker recovering")
            .unwrap()
            .expect("not abandoned");
        assert_eq!(failing(), 0);
        assert!(
            metrics
                .kafka_errors
                .with_label_values(&[CLIENT, "MessageTimedOut"])
                .get()
                + metrics
                    .kafka_errors
                    .with_label_values(&[CLIENT, "Unknown"])
                    .get()
                > 0,
            "the failures are counted by error"
        );
    }
}
