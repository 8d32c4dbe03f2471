//! The second stage of the consumer loop: a batch is decoded once, handed to the index
//! processor, written as raw rows and dead letters, and its offsets are stored once all of
//! that was acknowledged. It runs in its own task, so the loop collects the next batch
//! while this one is written; batches and rebalances arrive in consumed order.
use std::sync::Arc;

use clickhouse::{RowOwned, RowWrite};
use tokio::sync::mpsc;
use tracing::Instrument;

use crate::contract::decode::Decoder;
use crate::contract::reject::RejectReason;
use crate::domain::time::unix_now;
use crate::index::input::IndexHandle;
use crate::kafka::consumer::{IngestConsumer, RebalanceEvent};
use crate::kafka::dlq::DeadLetterProducer;
use crate::metrics::Metrics;
use crate::pipeline::batch::{
    dead_letter, BatchOutput, InputMessage, KindRows, PartitionRange, RawRows,
};
use crate::pipeline::offsets::{OffsetStore, Stored};
use crate::registry::SchemaRegistry;
use crate::sink::writer::{Abandoned, RawEventWriter};
use crate::tables;

/// Totals of one `run`, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunSummary {
    pub messages: u64,
    pub batches: u64,
    pub abandoned_batches: u64,
}

/// What the consumer loop hands over, in the order it consumed it.
pub enum Work {
    Batch(Vec<InputMessage>, BatchTrace),
    Rebalance(Vec<RebalanceEvent>),
}

/// How a batch is followed in the log: its span (`batch` = its number in this process,
/// `messages`, `offsets` = `topic/partition:first-last` per partition; `valid` and
/// `dead_letters` once decoded) and its partitions.
pub struct BatchTrace {
    pub span: tracing::Span,
    pub ranges: Vec<PartitionRange>,
}

impl BatchTrace {
    pub fn new(sequence: u64, batch: &[InputMessage]) -> Self {
        let ranges = PartitionRange::of(batch);
        let offsets = ranges
            .iter()
            .map(|r| {
                format!(
                    "{}/{}:{}-{}",
                    r.topic, r.partition, r.first_offset, r.last_offset
                )
            })
            .collect::<Vec<_>>()
            .join(" ");
        let span = tracing::info_span!(
            "batch",
            batch = sequence,
            messages = batch.len(),
            offsets = %offsets,
            valid = tracing::field::Empty,
            dead_letters = tracing::field::Empty,
        );
        Self { span, ranges }
    }
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

/// How the delivery stage ended.
pub struct Delivered {
    pub summary: RunSummary,
    /// The index processor hung up (it stops only at shutdown, at a rebuild's end, or on
    /// a fatal error).
    pub index_stopped: bool,
}

pub struct Delivery {
    pub consumer: Arc<IngestConsumer>,
    pub decoder: Arc<Decoder>,
    pub writer: RawEventWriter,
    pub dlq: DeadLetterProducer,
    pub metrics: Metrics,
    pub registry: Option<SchemaRegistry>,
    pub index: Option<IndexHandle>,
    /// False for a rebuild: only the index is fed; no raw rows, letters or offsets.
    pub raw: bool,
    /// Offsets stored for the partitions held, committed explicitly at the end.
    pub offsets: OffsetStore,
}

impl Delivery {
    /// Runs until the consumer loop hangs up (or the index processor does).
    pub async fn run(mut self, mut work: mpsc::Receiver<Work>) -> Delivered {
        let mut summary = RunSummary::default();
        let mut index_stopped = false;
        while let Some(item) = work.recv().await {
            match item {
                Work::Rebalance(events) => {
                    for event in &events {
                        if let RebalanceEvent::Revoked(revoked) = event {
                            self.offsets.revoked(revoked);
                        }
                    }
                    if self.forward_rebalances(events).await.is_err() {
                        index_stopped = true;
                        break;
                    }
                }
                Work::Batch(batch, trace) => {
                    let batch = Arc::new(batch);
                    summary.messages += batch.len() as u64;
                    summary.batches += 1;
                    let span = tracing::info_span!(parent: &trace.span, "deliver");
                    match self
                        .process(Arc::clone(&batch), &trace)
                        .instrument(span.clone())
                        .await
                    {
                        Ok(()) => {}
                        Err(Interrupted::Abandoned) => {
                            summary.abandoned_batches += 1;
                            span.in_scope(|| {
                                tracing::warn!(
                                    messages = batch.len(),
                                    "in-flight batch abandoned at shutdown; it will be re-consumed"
                                )
                            });
                        }
                        Err(Interrupted::IndexStopped) => {
                            index_stopped = true;
                            break;
                        }
                    }
                }
            }
        }
        if self.raw {
            self.offsets.commit(&*self.consumer);
        }
        Delivered {
            summary,
            index_stopped,
        }
    }

    /// Hands rebalances to the index, after everything consumed before them and before
    /// anything consumed after them.
    async fn forward_rebalances(
        &self,
        events: Vec<RebalanceEvent>,
    ) -> Result<(), crate::index::input::IndexStopped> {
        let Some(index) = &self.index else {
            return Ok(());
        };
        for event in events {
            match event {
                RebalanceEvent::Revoked(revoked) => index.revoke(revoked).await?,
                RebalanceEvent::Assigned(assigned) => {
                    for partition in assigned {
                        index
                            .assign(partition.topic, partition.partition, partition.state)
                            .await?;
                    }
                }
            }
        }
        Ok(())
    }

    async fn process(
        &mut self,
        batch: Arc<Vec<InputMessage>>,
        trace: &BatchTrace,
    ) -> Result<(), Interrupted> {
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
        let valid: u64 = output.valid_by_kind.values().sum();
        trace.span.record("valid", valid);
        trace.span.record("dead_letters", output.dead_letters.len());
        tracing::debug!("batch decoded");
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

        // Every kind's table (a kind missing here does not compile).
        let RawRows { surveys, hotline } = &output.rows;
        let (surveys, hotline) = tokio::join!(
            insert(&self.writer, tables::SURVEY_SUBMISSIONS, surveys),
            insert(&self.writer, tables::HOTLINE_EVENTS, hotline),
        );
        for (source, refusal) in surveys?.into_iter().chain(hotline?) {
            let message = &batch[source];
            let (payload, redacted) = self
                .decoder
                .dlq_safe_payload(message.payload.as_deref().unwrap_or_default());
            output.dead_letters.push(dead_letter(
                message,
                payload,
                RejectReason::ClickhouseRejected,
                refusal,
                redacted,
            ));
        }
        self.dlq.send_all(&output.dead_letters).await?;
        self.metrics.paused.set(0);
        if let Some(newest) = output.newest_event_time {
            self.metrics.observe_event_time(newest);
        }
        let outcomes = self.offsets.store(&*self.consumer, &output.next_offsets);
        for range in &trace.ranges {
            let key = (range.topic.to_string(), range.partition);
            let next_offset = output.next_offsets.get(&key);
            let span = tracing::info_span!(
                "partition",
                topic = %range.topic,
                partition = range.partition,
                first_offset = range.first_offset,
                last_offset = range.last_offset,
                messages = range.messages,
            );
            span.in_scope(|| match outcomes.get(&key) {
                Some(Stored::Stored) => tracing::debug!(next_offset, "offsets stored"),
                // Expected around every rebalance (`pipeline::offsets`).
                Some(Stored::Revoked) => tracing::debug!(
                    next_offset,
                    "offsets not stored: the partition was revoked after the batch was consumed; its next owner resumes from the last commit"
                ),
                Some(Stored::Failed(error)) => tracing::warn!(
                    next_offset,
                    %error,
                    "could not store offsets; a later batch's offsets cover them, else the partition resumes from its last commit"
                ),
                None => {}
            });
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
}

/// Inserts one kind's rows into `table`; returns the rows ClickHouse refused as data, each
/// as its message's index in the batch and ClickHouse's message.
async fn insert<R: RowOwned + RowWrite>(
    writer: &RawEventWriter,
    table: &str,
    rows: &KindRows<R>,
) -> Result<Vec<(usize, String)>, Abandoned> {
    let failures = writer.insert(table, &rows.rows).await?;
    Ok(failures
        .into_iter()
        .map(|failure| (rows.sources[failure.index], failure.message))
        .collect())
}
