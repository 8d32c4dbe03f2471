//! The consumer loop. Invariant: an offset is stored for commit only after every row derived
//! from the messages before it was acknowledged by ClickHouse and every dead letter by the
//! broker. A crash at any point therefore re-delivers unacknowledged messages, and the
//! ReplacingMergeTree tables collapse whatever was written twice.
//!
//! With an index attached, the same decoded messages are handed to the index processor, in
//! consumed order, before their raw rows are written: the log is read and decoded once.
//! The index keeps its own position (its checkpoints); `index::position` reconciles the
//! two when a partition is assigned.
//!
//! Two stages: this loop collects batches and notes rebalances; `deliver` decodes, hands
//! to the index, writes and stores offsets, in a task of its own, so reading the next
//! batch overlaps writing this one.
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::config::Config;
use crate::contract::decode::{Decoder, EventKind};
use crate::contract::kind::PerKind;
use crate::index::input::{IndexHandle, IndexStopped};
use crate::index::position::Start;
use crate::kafka::consumer::{IngestConsumer, RebalanceEvent};
use crate::kafka::dlq::DeadLetterProducer;
use crate::metrics::Metrics;
use crate::pipeline::batch::InputMessage;
use crate::pipeline::deliver::{BatchTrace, Delivery, Work};
use crate::pipeline::offsets::OffsetStore;
use crate::registry::SchemaRegistry;
use crate::shutdown::Shutdown;
use crate::sink::writer::RawEventWriter;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    IndexStopped(#[from] IndexStopped),
}

pub use crate::pipeline::deliver::RunSummary;

pub struct IngestPipeline {
    consumer: Arc<IngestConsumer>,
    shutdown: Shutdown,
    /// The second stage, until `run` moves it into its task.
    delivery: Option<Delivery>,
    /// The input topic of each kind.
    topics: PerKind<Arc<str>>,
    /// `consumed_messages_total` of each input topic, looked up once rather than per
    /// message.
    consumed: PerKind<prometheus::IntCounter>,
    batch_max_messages: usize,
    batch_max_wait: Duration,
    /// False for a rebuild: only the index is fed; no raw rows, letters or offsets.
    raw: bool,
    /// How each assigned partition started, while an index is attached.
    starts: Vec<(String, i32, Start)>,
    /// A message consumed just after a rebalance, held until the rebalance is handed on.
    held: Option<InputMessage>,
    /// The consumer group, for the log.
    group: String,
}

impl IngestPipeline {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: &Config,
        consumer: IngestConsumer,
        decoder: Arc<Decoder>,
        writer: RawEventWriter,
        dlq: DeadLetterProducer,
        metrics: Metrics,
        registry: Option<SchemaRegistry>,
        shutdown: Shutdown,
    ) -> Self {
        let consumer = Arc::new(consumer);
        let topics = config.kafka.input_topics();
        let consumed = PerKind::from_fn(|kind| metrics.consumed.with_label_values(&[topics[kind]]));
        Self {
            consumer: Arc::clone(&consumer),
            shutdown,
            delivery: Some(Delivery {
                consumer,
                decoder,
                writer,
                dlq,
                offsets: OffsetStore::new(metrics.clone()),
                metrics,
                registry,
                index: None,
                raw: true,
            }),
            consumed,
            topics: PerKind::from_fn(|kind| Arc::from(topics[kind])),
            batch_max_messages: config.pipeline.batch_max_messages,
            batch_max_wait: Duration::from_millis(config.pipeline.batch_max_wait_ms),
            raw: true,
            starts: Vec::new(),
            held: None,
            group: config.kafka.group_id.clone(),
        }
    }

    /// The consumer group named in the log, when it is not `kafka.group_id` (a rebuild's).
    pub fn in_group(mut self, group: &str) -> Self {
        self.group = group.to_owned();
        self
    }

    /// Also feeds the index processor behind `handle`.
    pub fn with_index(mut self, handle: IndexHandle) -> Self {
        self.stage().index = Some(handle);
        self
    }

    /// Feeds only the index processor behind `handle` (a rebuild): nothing is written to
    /// the raw tables or the dead-letter topic, and no offset is stored.
    pub fn index_only(mut self, handle: IndexHandle) -> Self {
        self.stage().index = Some(handle);
        self.stage().raw = false;
        self.raw = false;
        self
    }

    fn stage(&mut self) -> &mut Delivery {
        self.delivery.as_mut().expect("configured before run")
    }

    pub async fn run(self) -> Result<RunSummary, PipelineError> {
        let span = tracing::info_span!("consumer", group = %self.group);
        self.consume().instrument(span).await
    }

    async fn consume(mut self) -> Result<RunSummary, PipelineError> {
        let topics: Vec<String> = self.topics.values().map(|t| t.to_string()).collect();
        let subscribed: Vec<&str> = topics.iter().map(String::as_str).collect();
        self.consumer.subscribe(&subscribed)?;
        let index = self.stage().index.is_some();
        tracing::info!(topics = %subscribed.join(", "), index, raw = self.raw, "consuming");
        // One batch waiting while one is written: the loop reads ahead by at most that.
        let (work, queue) = mpsc::channel(1);
        let delivery = self.delivery.take().expect("run once");
        let delivering = tokio::spawn(delivery.run(queue).in_current_span());
        // Statistics stop while this loop waits on the delivery stage; held partitions are
        // judged on a clock of their own so that such a stall still shows.
        let watching = tokio::spawn(watch(Arc::clone(&self.consumer), topics).in_current_span());
        let mut sequence = 0u64;
        loop {
            let events = self.consumer.context().take_rebalance_events();
            if !events.is_empty() {
                self.note_starts(&events);
                if work.send(Work::Rebalance(events)).await.is_err() {
                    break;
                }
            }
            let batch = self.next_batch().await;
            if !batch.is_empty() {
                sequence += 1;
                let trace = BatchTrace::new(sequence, &batch);
                trace.span.in_scope(|| tracing::debug!("batch polled"));
                if work.send(Work::Batch(batch, trace)).await.is_err() {
                    break;
                }
            }
            if self.shutdown.is_triggered() {
                break;
            }
        }
        drop(work);
        watching.abort();
        let delivered = delivering.await.expect("the delivery stage does not panic");
        tracing::info!(summary = ?delivered.summary, "consumer loop stopped");
        // A rebuild's processor stops by itself at the end offsets; a live one only at
        // shutdown, or on a fatal error, which must stop this loop too.
        if delivered.index_stopped && self.raw && !self.shutdown.is_triggered() {
            return Err(IndexStopped.into());
        }
        Ok(delivered.summary)
    }

    /// Records where newly assigned partitions started (which messages are index-only).
    fn note_starts(&mut self, events: &[RebalanceEvent]) {
        for event in events {
            match event {
                RebalanceEvent::Revoked(revoked) => self
                    .starts
                    .retain(|(t, p, _)| !revoked.iter().any(|(rt, rp)| rt == t && rp == p)),
                RebalanceEvent::Assigned(assigned) => {
                    for partition in assigned {
                        self.starts.retain(|(t, p, _)| {
                            !(*t == partition.topic && *p == partition.partition)
                        });
                        self.starts.push((
                            partition.topic.clone(),
                            partition.partition,
                            partition.start,
                        ));
                    }
                }
            }
        }
    }

    /// Whether a message is only re-read for the index (its raw rows were acknowledged).
    fn only_for_index(&self, input: &InputMessage) -> bool {
        !self.raw
            || self
                .starts
                .iter()
                .find(|(t, p, _)| **t == *input.topic && *p == input.partition)
                .is_some_and(|(_, _, start)| start.index_only(input.offset))
    }

    /// Collects up to `batch_max_messages`, waiting at most `batch_max_wait` after the first.
    async fn next_batch(&mut self) -> Vec<InputMessage> {
        let mut batch = Vec::new();
        let mut shutdown = self.shutdown.clone();
        let deadline = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(deadline);
        if let Some(mut held) = self.held.take() {
            held.index_only = self.only_for_index(&held);
            batch.push(held);
            deadline
                .as_mut()
                .reset(tokio::time::Instant::now() + self.batch_max_wait);
        }
        let consumer = Arc::clone(&self.consumer);
        while batch.len() < self.batch_max_messages {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = &mut deadline, if !batch.is_empty() => break,
                // A rebalance is handed on at once, even when no message follows it.
                _ = consumer.context().rebalanced() => break,
                received = self.consumer.recv() => {
                    let message = match received {
                        Ok(message) => message,
                        Err(error) => {
                            consumer.context().consumer_error(&error);
                            continue;
                        }
                    };
                    consumer.context().broker_answered();
                    let topic = message.topic();
                    let Some(kind) = EventKind::ALL.into_iter().find(|&k| topic == &*self.topics[k]) else {
                        continue;
                    };
                    let topic = Arc::clone(&self.topics[kind]);
                    self.consumed[kind].inc();
                    let mut input = InputMessage {
                        kind,
                        topic,
                        partition: message.partition(),
                        offset: message.offset(),
                        produced_ms: message.timestamp().to_millis(),
                        index_only: false,
                        key: message.key().map(<[u8]>::to_vec),
                        payload: message.payload().map(<[u8]>::to_vec),
                    };
                    drop(message);
                    if self.consumer.context().has_rebalance_events() {
                        self.held = Some(input);
                        break;
                    }
                    input.index_only = self.only_for_index(&input);
                    if batch.is_empty() {
                        deadline.as_mut().reset(tokio::time::Instant::now() + self.batch_max_wait);
                    }
                    batch.push(input);
                }
            }
        }
        batch
    }
}

/// Every second: judges the held partitions, and warns when none are held although the
/// topics have some. Librdkafka's statistics cover only topics with a held partition, so
/// the topics' partitions are counted from metadata, and only when a warning is due.
async fn watch(consumer: Arc<IngestConsumer>, topics: Vec<String>) {
    let mut every = tokio::time::interval(Duration::from_secs(1));
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        consumer.context().check_progress();
        if !consumer.context().unassigned_due() {
            continue;
        }
        let metadata = {
            let consumer = Arc::clone(&consumer);
            let topics = topics.clone();
            tokio::task::spawn_blocking(move || {
                topics.iter().try_fold(0, |count, topic| {
                    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
                    Ok::<_, rdkafka::error::KafkaError>(
                        count
                            + metadata
                                .topics()
                                .iter()
                                .map(|t| t.partitions().len())
                                .sum::<usize>(),
                    )
                })
            })
            .await
        };
        match metadata {
            Ok(Ok(partitions)) => consumer.context().warn_if_unassigned(partitions),
            Ok(Err(error)) => tracing::debug!(%error, "cannot read the topics' metadata"),
            Err(_) => {}
        }
    }
}
