//! An idempotent producer (acks=all) for the simulator, the DLQ and tests.
use rdkafka::producer::FutureProducer;

use crate::config::KafkaConfig;

pub fn idempotent_producer(
    kafka: &KafkaConfig,
) -> Result<FutureProducer, rdkafka::error::KafkaError> {
    let mut config = super::client_config(kafka);
    config
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "120000");
    for (key, value) in &kafka.producer_properties {
        config.set(key, value);
    }
    config.create()
}
