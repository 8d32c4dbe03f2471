//! The process's one view of whether it reaches its brokers, fed by every client that
//! talks to them (the ingest consumer, the dead-letter producer): the first to notice an
//! outage sets `sipas_kafka_broker_up` to 0, the first to be answered sets it back to 1,
//! and each change is logged once (`kafka::health` judges, this shares and reports).
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::IntGauge;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

use crate::instant::AtomicInstant;
use crate::kafka::health::{BrokerHealth, Change};

/// Whether an error says no broker could be reached (as opposed to a broker answering with
/// an error, or a delivery timing out: neither proves the broker unreachable).
pub fn means_unreachable(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::BrokerTransportFailure
                | RDKafkaErrorCode::AllBrokersDown
                | RDKafkaErrorCode::Resolve
                | RDKafkaErrorCode::NetworkException
        )
    )
}

/// Cheap to clone: every clone is the same state.
#[derive(Clone)]
pub struct BrokerReach {
    inner: Arc<Inner>,
}

struct Inner {
    /// `kafka.brokers`, named in the log.
    brokers: String,
    up: IntGauge,
    health: Mutex<BrokerHealth>,
    /// Mirrors the health under its lock, for the per-message path: reachable, and the
    /// newest observation's instant (this state's creation until there is one).
    reachable: AtomicBool,
    newest: AtomicInstant,
}

impl BrokerReach {
    /// Unreachable (the gauge at 0) until a client is answered.
    pub fn new(brokers: &str, up: IntGauge) -> Self {
        up.set(0);
        Self {
            inner: Arc::new(Inner {
                brokers: brokers.to_owned(),
                up,
                health: Mutex::new(BrokerHealth::default()),
                reachable: AtomicBool::new(false),
                newest: AtomicInstant::new(Instant::now()),
            }),
        }
    }

    /// `client` could not reach a broker at `at`.
    pub fn failed(&self, at: Instant, client: &'static str, error: &dyn std::fmt::Display) {
        let inner = &*self.inner;
        let mut health = inner.health.lock().expect("health lock");
        let change = health.connection_failed(at);
        self.mirror(&health);
        match change {
            Some(Change::Unreachable) => tracing::warn!(
                brokers = %inner.brokers,
                client,
                %error,
                "Kafka broker {} unreachable; retrying until it answers (consumption waits meanwhile)",
                inner.brokers
            ),
            Some(Change::StillUnreachable(for_)) => tracing::warn!(
                brokers = %inner.brokers,
                client,
                %error,
                unreachable_s = for_.as_secs(),
                "Kafka broker {} still unreachable after {} s; retrying",
                inner.brokers,
                for_.as_secs()
            ),
            _ => {}
        }
    }

    /// A broker answered `client` at `at`. Called per consumed message: without a lock
    /// when it tells nothing new (reachable already, by an observation no older).
    pub fn answered(&self, at: Instant, client: &'static str) {
        let inner = &*self.inner;
        if inner.reachable.load(Ordering::SeqCst) && at <= inner.newest.load() {
            return;
        }
        let mut health = inner.health.lock().expect("health lock");
        let change = health.answered(at);
        self.mirror(&health);
        if let Some(Change::Reachable { after }) = change {
            match after {
                Some(after) => tracing::info!(
                    brokers = %inner.brokers,
                    client,
                    unreachable_s = after.as_secs(),
                    "Kafka broker {} reachable again",
                    inner.brokers
                ),
                None => tracing::info!(
                    brokers = %inner.brokers,
                    client,
                    "Kafka broker {} reachable",
                    inner.brokers
                ),
            }
        }
    }

    pub fn is_reachable(&self) -> bool {
        self.inner.reachable.load(Ordering::SeqCst)
    }

    /// Publishes the state taken under the lock: the gauge and the lock-free mirror.
    fn mirror(&self, health: &BrokerHealth) {
        let inner = &*self.inner;
        if let Some(newest) = health.newest() {
            inner.newest.store(newest);
        }
        inner
            .reachable
            .store(health.is_reachable(), Ordering::SeqCst);
        inner.up.set(i64::from(health.is_reachable()));
    }

    /// The instant `age` before now (now if that precedes this state's creation).
    pub fn ago(&self, age: Duration) -> Instant {
        let now = Instant::now();
        now.checked_sub(age)
            .unwrap_or(now)
            .max(self.inner.newest.base())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reach() -> (BrokerReach, IntGauge) {
        let up = IntGauge::new("up", "test").unwrap();
        (BrokerReach::new("broker:9092", up.clone()), up)
    }

    /// Whichever client notices first sets the gauge, and any answer newer than the
    /// outage's start sets it back.
    #[test]
    fn every_client_feeds_one_state() {
        let (reach, up) = reach();
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert_eq!(up.get(), 0);
        reach.answered(at(0), "consumer");
        assert_eq!(up.get(), 1);
        reach.failed(at(10), "dlq", &"transport failure");
        assert_eq!(up.get(), 0, "the producer noticed first");
        reach.answered(at(5), "consumer");
        assert_eq!(up.get(), 0, "a message fetched before the outage");
        assert!(!reach.is_reachable());
        reach.answered(at(20), "dlq");
        assert_eq!(up.get(), 1);
        reach.failed(at(15), "consumer", &"queued during the outage");
        assert_eq!(up.get(), 1, "an error queued during the outage");
        reach.answered(at(16), "consumer");
        assert!(reach.is_reachable());
        reach.failed(at(30), "consumer", &"transport failure");
        assert_eq!(up.get(), 0);
    }

    #[test]
    fn only_connection_errors_mean_unreachable() {
        for code in [
            RDKafkaErrorCode::BrokerTransportFailure,
            RDKafkaErrorCode::AllBrokersDown,
            RDKafkaErrorCode::Resolve,
        ] {
            assert!(means_unreachable(&KafkaError::Global(code)), "{code:?}");
            assert!(means_unreachable(&KafkaError::MessageProduction(code)));
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::Unknown,
            RDKafkaErrorCode::OutOfOrderSequenceNumber,
        ] {
            assert!(!means_unreachable(&KafkaError::MessageProduction(code)));
        }
    }

    #[test]
    fn ago_is_not_before_the_state_began() {
        let (reach, _) = reach();
        let long_ago = reach.ago(Duration::from_secs(1_000_000));
        assert_eq!(
            long_ago,
            reach.inner.newest.base(),
            "clamped to the state's creation"
        );
        let now = reach.ago(Duration::ZERO);
        assert!(now > long_ago && now <= Instant::now());
    }
}
