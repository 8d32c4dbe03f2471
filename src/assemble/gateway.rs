//! The ingest gateway's state (tokens, decoder, producer) from configuration.
use std::sync::Arc;

use crate::assemble::decoder::{decoder, DecoderError};
use crate::config::{Config, ConfigError};
use crate::domain::ProvinceRegistry;
use crate::gateway::tokens::{TokenConfigError, TokenTable};
use crate::gateway::Gateway;
use crate::kafka::reach::BrokerReach;
use crate::metrics::Metrics;
use crate::publish::Publisher;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tokens(#[from] TokenConfigError),
    #[error(transparent)]
    Decoder(#[from] DecoderError),
    #[error("creating the Kafka producer")]
    Producer(#[source] rdkafka::error::KafkaError),
}

/// The gateway's state from configuration. Its producer feeds `sipas_kafka_broker_up`
/// (deliveries, and the probes of [`Gateway::watch_broker`], which the caller runs).
pub fn gateway(config: &Config, metrics: &Metrics) -> Result<Arc<Gateway>, GatewayError> {
    let tokens = TokenTable::new(&config.gateway.all_tokens()?, &ProvinceRegistry::builtin())?;
    if tokens.is_empty() {
        tracing::warn!("gateway: no tokens configured ([[gateway.tokens]] or gateway.tokens_file); every request will get 401");
    }
    let decoder = Arc::new(decoder(config)?);
    let reach = BrokerReach::new(&config.kafka.brokers, metrics.kafka_broker_up.clone());
    let publisher = Publisher::new(&config.kafka)
        .map_err(GatewayError::Producer)?
        .with_reach(reach);
    Ok(Arc::new(Gateway::new(
        &config.gateway,
        tokens,
        decoder,
        publisher,
        metrics,
    )))
}
