//! The consumer loop. Invariant: an offset is stored for commit only after every row derived
//! from the messages before it was acknowledged by ClickHouse and every dead letter by the
//! broker. A crash at any point therefore re-delivers unacknowledged messages, and the
//! ReplacingMergeTree tables collapse whatever was written twice.
//!
//! With an index attached, the same decoded messages are handed to the index processor, in
//! consumed order, before their raw rows are written: the log is read and decoded once.
//! The index keeps its own position (its checkpoints); `index::position` reconciles the
//! two when a partition is assigned.
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::Config;
use crate::contract::decode::{Decoder, EventKind};
use crate::contract::reject::RejectReason;
use crate::index::position::Start;
use crate::index::processor::{IndexHandle, IndexStopped};
use crate::kafka::consumer::{IngestConsumer, RebalanceEvent};
use crate::kafka::dlq::DeadLetterProducer;
use crate::metrics::Metrics;
use crate::pipeline::batch::{dead_letter, BatchOutput, InputMessage};
use crate::registry::SchemaRegistry;
use crate::shutdown::Shutdown;
use crate::sink::writer::{Abandoned, RawEventWriter};

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    IndexStopped(#[from] IndexStopped),
}

/// Why a batch was not carried through.
enum Interrupted {
    /// Shutdown while ClickHouse or the broker was failing: the batch will be re-consumed.
    Abandoned,
    IndexStopped,
}

impl From<Abandoned> for Interrupted {
    fn from(_: Abandoned) -> Self {
        Interrupted::Abandoned
    }
}

/// Totals of one `run`, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub messages: u64,
    pub batches: u64,
    pub abandoned_batches: u64,
}

pub struct IngestPipeline {
    pub consumer: IngestConsumer,
    pub decoder: Arc<Decoder>,
    pub writer: RawEventWriter,
    pub dlq: DeadLetterProducer,
    pub metrics: Metrics,
    pub registry: Option<SchemaRegistry>,
    pub shutdown: Shutdown,
    surveys_topic: Arc<str>,
    hotline_topic: Arc<str>,
    batch_max_messages: usize,
    batch_max_wait: Duration,
    /// Offsets stored so far, committed explicitly on shutdown.
    stored: BTreeMap<(String, i32), i64>,
    /// The index processor fed from this loop, if any.
    index: Option<IndexHandle>,
    /// False for a rebuild: only the index is fed; no raw rows, letters or offsets.
    raw: bool,
    /// How each assigned partition started, while an index is attached.
    starts: Vec<(String, i32, Start)>,
    /// A message consumed just after a rebalance, held until the rebalance is handed on.
    held: Option<InputMessage>,
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
        Self {
            consumer,
            decoder,
            writer,
            dlq,
            metrics,
            registry,
            shutdown,
            surveys_topic: config.kafka.surveys_topic.as_str().into(),
            hotline_topic: config.kafka.hotline_topic.as_str().into(),
            batch_max_messages: config.pipeline.batch_max_messages,
            batch_max_wait: Duration::from_millis(config.pipeline.batch_max_wait_ms),
            stored: BTreeMap::new(),
            index: None,
            raw: true,
            starts: Vec::new(),
            held: None,
        }
    }

    /// Also feeds the index processor behind `handle`.
    pub fn with_index(mut self, handle: IndexHandle) -> Self {
        self.index = Some(handle);
        self
    }

    /// Feeds only the index processor behind `handle` (a rebuild): nothing is written to
    /// the raw tables or the dead-letter topic, and no offset is stored.
    pub fn index_only(mut self, handle: IndexHandle) -> Self {
        self.index = Some(handle);
        self.raw = false;
        self
    }

    pub async fn run(mut self) -> Result<RunSummary, PipelineError> {
        self.consumer
            .subscribe(&[&self.surveys_topic, &self.hotline_topic])?;
        tracing::info!(surveys = %self.surveys_topic, hotline = %self.hotline_topic, index = self.index.is_some(), raw = self.raw, "consuming");
        let mut summary = RunSummary::default();
        let ended = loop {
            if let Err(stopped) = self.forward_rebalances().await {
                break Err(stopped);
            }
            let batch = match self.next_batch().await {
                Ok(batch) => Arc::new(batch),
                Err(PipelineError::IndexStopped(stopped)) => break Err(stopped),
                Err(error) => return Err(error),
            };
            if !batch.is_empty() {
                summary.messages += batch.len() as u64;
                summary.batches += 1;
                match self.process(Arc::clone(&batch)).await {
                    Ok(()) => {}
                    Err(Interrupted::Abandoned) => {
                        summary.abandoned_batches += 1;
                        tracing::warn!(
                            messages = batch.len(),
                            "in-flight batch abandoned at shutdown; it will be re-consumed"
                        );
                    }
                    Err(Interrupted::IndexStopped) => break Err(IndexStopped),
                }
            }
            if self.shutdown.is_triggered() {
                break Ok(());
            }
        };
        if self.raw {
            self.commit_stored();
        }
        tracing::info!(?summary, "consumer loop stopped");
        match ended {
            // A rebuild's processor stops by itself at the end offsets; a live one only
            // at shutdown, or on a fatal error, which must stop this loop too.
            Err(stopped) if self.raw && !self.shutdown.is_triggered() => Err(stopped.into()),
            _ => Ok(summary),
        }
    }

    /// Hands rebalances to the index, after everything consumed before them and before
    /// anything consumed after them.
    async fn forward_rebalances(&mut self) -> Result<(), IndexStopped> {
        for event in self.consumer.context().take_rebalance_events() {
            let Some(index) = &self.index else {
                continue;
            };
            match event {
                RebalanceEvent::Revoked(revoked) => {
                    self.starts
                        .retain(|(t, p, _)| !revoked.iter().any(|(rt, rp)| rt == t && rp == p));
                    index.revoke(revoked).await?;
                }
                RebalanceEvent::Assigned(assigned) => {
                    for partition in assigned {
                        self.starts.retain(|(t, p, _)| {
                            !(*t == partition.topic && *p == partition.partition)
                        });
                        self.starts
                            .push((partition.topic.clone(), partition.partition, partition.start));
                        index
                            .assign(partition.topic, partition.partition, partition.state)
                            .await?;
                    }
                }
            }
        }
        Ok(())
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
    async fn next_batch(&mut self) -> Result<Vec<InputMessage>, PipelineError> {
        let mut batch = Vec::new();
        let mut shutdown = self.shutdown.clone();
        let deadline = tokio::time::sleep(Duration::from_secs(3600));
        tokio::pin!(deadline);
        if let Some(mut held) = self.held.take() {
            held.index_only = self.only_for_index(&held);
            batch.push(held);
            deadline.as_mut().reset(tokio::time::Instant::now() + self.batch_max_wait);
        }
        while batch.len() < self.batch_max_messages {
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = &mut deadline, if !batch.is_empty() => break,
                received = self.consumer.recv() => {
                    let message = match received {
                        Ok(message) => message,
                        Err(error) => {
                            tracing::warn!(%error, "Kafka consumer error");
                            continue;
                        }
                    };
                    let topic = message.topic();
                    let (kind, topic) = if topic == &*self.surveys_topic {
                        (EventKind::Survey, Arc::clone(&self.surveys_topic))
                    } else if topic == &*self.hotline_topic {
                        (EventKind::Hotline, Arc::clone(&self.hotline_topic))
                    } else {
                        continue;
                    };
                    self.metrics.consumed.with_label_values(&[&topic]).inc();
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
        Ok(batch)
    }

    async fn process(&mut self, batch: Arc<Vec<InputMessage>>) -> Result<(), Interrupted> {
        self.fetch_missing_schemas(&batch).await;
        let now = unix_now();
        let decoder = Arc::clone(&self.decoder);
        let shared = Arc::clone(&batch);
        let fold = self.index.is_some();
        // Decoding is CPU work; keep it off the I/O threads (the batch is shared, not copied).
        let mut output =
            tokio::task::spawn_blocking(move || BatchOutput::build(&decoder, &shared, now, fold))
                .await
                .expect("decoding does not panic");
        if let Some(index) = &self.index {
            // Before the raw write: the index has its own acknowledgement path.
            index
                .fold(std::mem::take(&mut output.folds))
                .await
                .map_err(|_| Interrupted::IndexStopped)?;
        }
        if !self.raw {
            return Ok(());
        }
        self.metrics.batch_messages.observe(batch.len() as f64);
        for ((kind, encoding), count) in &output.valid_by_kind {
            self.metrics
                .valid
                .with_label_values(&[kind, encoding])
                .inc_by(*count);
        }

        let (survey_failures, hotline_failures) = tokio::join!(
            self.writer.insert("survey_submissions", &output.surveys),
            self.writer.insert("hotline_events", &output.hotline),
        );
        for (failures, sources) in [
            (survey_failures?, &output.survey_sources),
            (hotline_failures?, &output.hotline_sources),
        ] {
            for failure in failures {
                let message = &batch[sources[failure.index]];
                let (payload, redacted) = self
                    .decoder
                    .dlq_safe_payload(message.kind, message.payload.as_deref().unwrap_or_default());
                output.dead_letters.push(dead_letter(
                    message,
                    payload,
                    RejectReason::ClickhouseRejected,
                    failure.message,
                    redacted,
                ));
            }
        }
        self.dlq.send_all(&output.dead_letters).await?;
        self.metrics.paused.set(0);
        if let Some(newest) = output.newest_event_time {
            self.metrics.observe_event_time(newest);
        }
        self.store_offsets(&output.next_offsets);
        for ((topic, partition), next_offset) in &output.next_offsets {
            tracing::debug_span!("partition", %topic, partition)
                .in_scope(|| tracing::debug!(next_offset, "acknowledged"));
        }
        Ok(())
    }

    async fn fetch_missing_schemas(&self, batch: &[InputMessage]) {
        let Some(registry) = &self.registry else {
            return;
        };
        let mut missing: Vec<u32> = batch
            .iter()
            .filter_map(|m| {
                m.payload
                    .as_deref()
                    .and_then(|p| self.decoder.missing_schema(p))
            })
            .collect();
        missing.sort_unstable();
        missing.dedup();
        for id in missing {
            registry.fetch_into(id, &self.decoder.catalog).await;
        }
    }

    fn store_offsets(&mut self, next_offsets: &BTreeMap<(String, i32), i64>) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in next_offsets {
            if tpl
                .add_partition_offset(topic, *partition, Offset::Offset(*offset))
                .is_err()
            {
                continue;
            }
            self.metrics
                .committed_offset
                .with_label_values(&[topic, &partition.to_string()])
                .set(*offset);
            self.stored.insert((topic.clone(), *partition), *offset);
        }
        if let Err(error) = self.consumer.store_offsets(&tpl) {
            // Typically a partition revoked mid-batch: its new owner re-reads from the last
            // commit and the duplicates collapse in ClickHouse.
            tracing::warn!(%error, "could not store offsets");
        }
    }

    /// Synchronously commits everything stored for partitions we still own.
    fn commit_stored(&self) {
        let assignment = match self.consumer.assignment() {
            Ok(assignment) => assignment,
            Err(error) => {
                tracing::warn!(%error, "cannot read assignment at shutdown");
                return;
            }
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), offset) in &self.stored {
            if assignment.find_partition(topic, *partition).is_some() {
                let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset));
            }
        }
        if tpl.count() == 0 {
            return;
        }
        match self.consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => tracing::info!(partitions = tpl.count(), "offsets committed at shutdown"),
            Err(error) => {
                tracing::warn!(%error, "final offset commit failed; the last acknowledged batch may be re-consumed")
            }
        }
    }
}

pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
