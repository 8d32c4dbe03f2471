//! An idempotent producer (acks=all) for the simulator, the DLQ and tests, and when a
//! failing one is retried, replaced or given up.
use std::time::Duration;

use rdkafka::client::DefaultClientContext;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::FutureProducer;
use rdkafka::ClientContext;

use crate::config::KafkaConfig;

pub fn idempotent_producer(kafka: &KafkaConfig) -> Result<FutureProducer, KafkaError> {
    idempotent_producer_with(kafka, DefaultClientContext)
}

/// [`idempotent_producer`] with a context that hears librdkafka's errors and statistics.
pub fn idempotent_producer_with<C: ClientContext + 'static>(
    kafka: &KafkaConfig,
    context: C,
) -> Result<FutureProducer<C>, KafkaError> {
    let mut config = super::client_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "120000");
    for (key, value) in &kafka.producer_properties {
        config.set(key, value);
    }
    config.create_with_context(context)
}

/// Consecutive failed delivery rounds after which a producer is replaced by a new one.
pub const RECREATE_AFTER_FAILED_ROUNDS: u32 = 3;

/// What to do with a producer after a delivery round that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// Send the failed records again with this producer.
    Retry,
    /// Replace the producer, then send them again.
    Recreate,
}

/// A producer with a fatal error never delivers again. One whose deliveries keep failing
/// may hold state the broker has lost (an idempotent producer's id and sequence numbers
/// after a broker restart) and is replaced too: a new one starts from a fresh id.
pub fn recovery(fatal: bool, failed_rounds: u32) -> Recovery {
    if fatal || failed_rounds >= RECREATE_AFTER_FAILED_ROUNDS {
        Recovery::Recreate
    } else {
        Recovery::Retry
    }
}

/// Whether sending the same record again cannot succeed: the producer failed fatally, or
/// the record itself is refused. Everything else (timeouts, unreachable or erring brokers,
/// unknown errors) is worth retrying.
pub fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::Fatal
                | RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
                | RDKafkaErrorCode::TopicAuthorizationFailed
                | RDKafkaErrorCode::ClusterAuthorizationFailed
        )
    )
}

/// librdkafka's name of an error, bounded for a metric label.
pub fn error_label(error: &KafkaError) -> String {
    match error.rdkafka_error_code() {
        Some(code) => format!("{code:?}"),
        None => "other".into(),
    }
}

/// Capped exponential backoff: `initial`, doubled per failure, at most `max`.
pub fn backoff(initial: Duration, max: Duration, failures: u32) -> Duration {
    initial
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1)))
        .min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fatal_errors_replace_at_once_others_after_repeated_rounds() {
        assert_eq!(recovery(true, 1), Recovery::Recreate);
        assert_eq!(recovery(false, 1), Recovery::Retry);
        assert_eq!(
            recovery(false, RECREATE_AFTER_FAILED_ROUNDS - 1),
            Recovery::Retry
        );
        assert_eq!(
            recovery(false, RECREATE_AFTER_FAILED_ROUNDS),
            Recovery::Recreate
        );
    }

    #[test]
    fn transient_and_unknown_errors_are_retried() {
        let retried = [
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut),
            KafkaError::MessageProduction(RDKafkaErrorCode::Unknown),
            KafkaError::MessageProduction(RDKafkaErrorCode::AllBrokersDown),
            KafkaError::MessageProduction(RDKafkaErrorCode::NotLeaderForPartition),
            KafkaError::MessageProduction(RDKafkaErrorCode::PurgeInflight),
            KafkaError::Canceled,
        ];
        for error in retried {
            assert!(!is_permanent(&error), "{error}");
        }
        for error in [
            KafkaError::MessageProduction(RDKafkaErrorCode::Fatal),
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge),
        ] {
            assert!(is_permanent(&error), "{error}");
        }
        assert_eq!(
            error_label(&KafkaError::MessageProduction(RDKafkaErrorCode::Unknown)),
            "Unknown"
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let (initial, max) = (Duration::from_millis(100), Duration::from_millis(1000));
        let delays: Vec<_> = (1..=6).map(|n| backoff(initial, max, n)).collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1000, 1000].map(Duration::from_millis)
        );
        assert_eq!(backoff(initial, max, 400), max);
    }
}
