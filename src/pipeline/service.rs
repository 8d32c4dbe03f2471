//! Assembles the consumer loop and the index processor it feeds, for `sipas run`,
//! `sipas rebuild` and the benchmarks.
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::contract::decode::Decoder;
use crate::index::processor::{IndexProcessor, Mode};
use crate::kafka::consumer::{self, IndexStates};
use crate::kafka::dlq::DeadLetterProducer;
use crate::kafka::reach::BrokerReach;
use crate::metrics::Metrics;
use crate::pipeline::ingest::{IngestPipeline, PipelineError};
use crate::registry::SchemaRegistry;
use crate::shutdown::Shutdown;
use crate::sink::{self, RawEventWriter};

/// `sipas run`: one consumer writes the raw tables and dead letters and, unless
/// `index.enabled` is false, feeds the index processor.
pub fn live(
    config: &Config,
    decoder: Arc<Decoder>,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<(IngestPipeline, Option<IndexProcessor>), PipelineError> {
    let index_states = config.index.enabled.then(|| {
        IndexStates::live(
            sink::connect(&config.clickhouse),
            config.index.group_id.clone(),
            shutdown.clone(),
        )
    });
    let reach = BrokerReach::new(&config.kafka.brokers, metrics.kafka_broker_up.clone());
    let consumer = consumer::ingest_consumer(
        &config.kafka,
        &config.pipeline,
        metrics.clone(),
        reach.clone(),
        index_states,
    )?;
    let pipeline = assemble(
        config,
        consumer,
        reach,
        Arc::clone(&decoder),
        metrics.clone(),
        shutdown.clone(),
    )?;
    if !config.index.enabled {
        return Ok((pipeline, None));
    }
    let (processor, handle) = IndexProcessor::new(
        config,
        decoder.validator.frameworks.clone(),
        metrics,
        shutdown,
        Mode::Live,
    );
    Ok((pipeline.with_index(handle), Some(processor)))
}

/// `sipas rebuild`: a fresh consumer group reads every partition from its start up to
/// `end_offsets` and feeds only the index processor (checkpoints are neither read nor
/// written). The processor stops at the end offsets, and the loop with it.
pub fn rebuild(
    config: &Config,
    decoder: Arc<Decoder>,
    metrics: Metrics,
    shutdown: Shutdown,
    end_offsets: HashMap<(String, i32), i64>,
) -> Result<(IngestPipeline, IndexProcessor), PipelineError> {
    let group = format!(
        "{}-rebuild-{}",
        config.index.group_id,
        crate::domain::time::unix_now()
    );
    let reach = BrokerReach::new(&config.kafka.brokers, metrics.kafka_broker_up.clone());
    let consumer = consumer::rebuild_consumer(
        &config.kafka,
        &group,
        metrics.clone(),
        reach.clone(),
        IndexStates::rebuild(shutdown.clone()),
    )?;
    let (processor, handle) = IndexProcessor::new(
        config,
        decoder.validator.frameworks.clone(),
        metrics.clone(),
        shutdown.clone(),
        Mode::Rebuild { end_offsets },
    );
    let pipeline = assemble(config, consumer, reach, decoder, metrics, shutdown)?
        .index_only(handle)
        .in_group(&group);
    Ok((pipeline, processor))
}

/// `reach` is the consumer's view of the brokers, which the dead-letter producer feeds too.
fn assemble(
    config: &Config,
    consumer: consumer::IngestConsumer,
    reach: BrokerReach,
    decoder: Arc<Decoder>,
    metrics: Metrics,
    shutdown: Shutdown,
) -> Result<IngestPipeline, PipelineError> {
    let p = &config.pipeline;
    let retry = (
        Duration::from_millis(p.retry_initial_ms),
        Duration::from_millis(p.retry_max_ms),
    );
    let dlq = DeadLetterProducer::new(
        &config.kafka,
        config.kafka.dlq_topic.clone(),
        metrics.clone(),
        reach,
        retry.0,
        retry.1,
        shutdown.clone(),
    )?;
    let writer = RawEventWriter::new(
        sink::connect(&config.clickhouse),
        metrics.clone(),
        retry.0,
        retry.1,
        shutdown.clone(),
    );
    let registry = config
        .kafka
        .schema_registry_url
        .as_deref()
        .map(SchemaRegistry::new);
    Ok(IngestPipeline::new(
        config, consumer, decoder, writer, dlq, metrics, registry, shutdown,
    ))
}
