//! Drives partition states from folded messages into ClickHouse.
//!
//! Each input partition is an independent fold (`PartitionState`). The consumer loop that
//! feeds it (`sipas run`'s, or a rebuild's) hands over each assigned partition's state,
//! restored from its checkpoint and with the partition started at or before its
//! `next_offset` (`kafka::consumer`, `index::position`), and then the partition's messages
//! in order. The state therefore always equals the fold of exactly the offsets below
//! `next_offset`. Outputs are written as soon as the oldest
//! unwritten fold is `flush_interval` old (or a row budget fills up); a checkpoint is
//! written only after everything derived from the offsets it covers has been
//! acknowledged, so a crash at any point resumes from a state whose outputs are all
//! stored, and replays to the same rows.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::config::Config;
use crate::contract::decode::Decoded;
use crate::domain::FrameworkCatalog;
use crate::index::checkpoint;
use crate::index::state::PartitionState;
use crate::metrics::Metrics;
use crate::pipeline::batch::FoldInput;
use crate::shutdown::Shutdown;
use crate::sink::index_rows::{CheckpointRow, HotlineKpiRow, SatisfactionRow};
use crate::sink::writer::{Abandoned, RawEventWriter};

/// Daily rows held before they are written, whatever the flush interval: catching up on
/// history closes many days per second, each with a row per unit and window.
const MAX_PENDING_DAILY_ROWS: usize = 50_000;

/// Fold batches buffered between a feeder and the processor. Small: a full channel slows
/// the feeder down rather than letting decoded events pile up in memory.
const CHANNEL_BATCHES: usize = 4;

/// How long, at shutdown, the processor waits for the feeder's last batch.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// What a feeder sends, in the order it consumed.
#[derive(Debug)]
pub enum IndexInput {
    /// A partition was assigned, with the state its messages continue.
    Assign {
        topic: String,
        partition: i32,
        state: Box<PartitionState>,
    },
    Fold(Vec<FoldInput>),
    /// Partitions were revoked: their state is dropped (the next owner restores it).
    Revoke(Vec<(String, i32)>),
}

/// The feeder's end of the channel.
#[derive(Clone)]
pub struct IndexHandle {
    sender: mpsc::Sender<IndexInput>,
}

/// The processor is gone (it stopped on a fatal error or at shutdown).
#[derive(Debug, thiserror::Error)]
#[error("the index processor has stopped")]
pub struct IndexStopped;

impl IndexHandle {
    pub async fn assign(
        &self,
        topic: String,
        partition: i32,
        state: PartitionState,
    ) -> Result<(), IndexStopped> {
        self.sender
            .send(IndexInput::Assign {
                topic,
                partition,
                state: Box::new(state),
            })
            .await
            .map_err(|_| IndexStopped)
    }

    pub async fn fold(&self, folds: Vec<FoldInput>) -> Result<(), IndexStopped> {
        if folds.is_empty() {
            return Ok(());
        }
        self.sender
            .send(IndexInput::Fold(folds))
            .await
            .map_err(|_| IndexStopped)
    }

    pub async fn revoke(&self, partitions: Vec<(String, i32)>) -> Result<(), IndexStopped> {
        if partitions.is_empty() {
            return Ok(());
        }
        self.sender
            .send(IndexInput::Revoke(partitions))
            .await
            .map_err(|_| IndexStopped)
    }
}

/// How the processor runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Follow the feeder until shutdown; restore from and write checkpoints.
    Live,
    /// Recompute from offset 0 of every partition up to the given end offsets, then stop.
    /// Ignores checkpoints.
    Rebuild {
        end_offsets: HashMap<(String, i32), i64>,
    },
}

struct Slot {
    state: PartitionState,
    daily_satisfaction: Vec<SatisfactionRow>,
    daily_hotline: Vec<HotlineKpiRow>,
}

pub struct IndexProcessor {
    inputs: mpsc::Receiver<IndexInput>,
    frameworks: FrameworkCatalog,
    writer: RawEventWriter,
    metrics: Metrics,
    shutdown: Shutdown,
    mode: Mode,
    checkpoint_key: String,
    lateness: i64,
    flush_interval: Duration,
    checkpoint_interval: Duration,
    /// Keyed by the topic name the folds carry (`Arc<str>`), so that finding a fold's slot
    /// allocates nothing.
    slots: HashMap<(Arc<str>, i32), Slot>,
    /// Daily rows waiting in all slots.
    pending_daily_rows: usize,
    /// When the oldest fold not yet written was received.
    oldest_unwritten: Option<Instant>,
    /// Folded since the last checkpoint.
    dirty: bool,
    /// Produce timestamps (ms) of the messages folded since the last flush.
    unflushed_timestamps: Vec<i64>,
    pub progress: Option<indicatif::ProgressBar>,
    /// Receives every freshness sample (seconds) as well as the histogram; for benchmarks.
    pub freshness_probe: Option<Arc<Mutex<Vec<f64>>>>,
}

impl IndexProcessor {
    /// The processor and the handle its feeder sends to.
    pub fn new(
        config: &Config,
        frameworks: FrameworkCatalog,
        metrics: Metrics,
        shutdown: Shutdown,
        mode: Mode,
    ) -> (Self, IndexHandle) {
        let (sender, inputs) = mpsc::channel(CHANNEL_BATCHES);
        let p = &config.pipeline;
        let writer = RawEventWriter::new(
            crate::sink::connect(&config.clickhouse),
            metrics.clone(),
            Duration::from_millis(p.retry_initial_ms),
            Duration::from_millis(p.retry_max_ms),
            shutdown.clone(),
        );
        let processor = Self {
            inputs,
            frameworks,
            writer,
            metrics,
            shutdown,
            mode,
            checkpoint_key: config.index.group_id.clone(),
            lateness: config.index.lateness_seconds(),
            flush_interval: Duration::from_millis(config.index.flush_interval_ms),
            checkpoint_interval: Duration::from_millis(config.index.checkpoint_interval_ms),
            slots: HashMap::new(),
            pending_daily_rows: 0,
            oldest_unwritten: None,
            dirty: false,
            unflushed_timestamps: Vec::new(),
            progress: None,
            freshness_probe: None,
        };
        (processor, IndexHandle { sender })
    }

    /// Runs until shutdown (Live), the end offsets (Rebuild), or the feeder hanging up.
    /// Returns early only if ClickHouse writes are abandoned at shutdown.
    pub async fn run(mut self) {
        let live = matches!(self.mode, Mode::Live);
        let mut checkpoint_due = Instant::now() + self.checkpoint_interval;
        let mut shutdown = self.shutdown.clone();
        let far = Duration::from_secs(86_400);
        loop {
            if self.rebuild_done() {
                break;
            }
            let flush_at = self
                .oldest_unwritten
                .map_or(Instant::now() + far, |oldest| oldest + self.flush_interval);
            let checkpoint_at = if live && self.dirty {
                checkpoint_due
            } else {
                Instant::now() + far
            };
            tokio::select! {
                biased;
                _ = shutdown.wait() => {
                    // The feeder finishes its batch and hangs up; take what it sends until
                    // then (anything not folded is replayed from the checkpoint).
                    let grace = tokio::time::sleep(SHUTDOWN_GRACE);
                    tokio::pin!(grace);
                    loop {
                        tokio::select! {
                            input = self.inputs.recv() => match input {
                                Some(input) => self.accept(input).await,
                                None => break,
                            },
                            _ = &mut grace => break,
                        }
                    }
                    break;
                }
                _ = tokio::time::sleep_until(checkpoint_at) => {
                    if self.flush(true).await.is_err() {
                        return;
                    }
                    checkpoint_due = Instant::now() + self.checkpoint_interval;
                }
                _ = tokio::time::sleep_until(flush_at) => {
                    let checkpoint = live && Instant::now() >= checkpoint_due;
                    if self.flush(checkpoint).await.is_err() {
                        return;
                    }
                    if checkpoint {
                        checkpoint_due = Instant::now() + self.checkpoint_interval;
                    }
                }
                input = self.inputs.recv() => match input {
                    Some(input) => {
                        self.accept(input).await;
                        if self.pending_daily_rows >= MAX_PENDING_DAILY_ROWS && self.flush(false).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
            }
        }
        // Final flush and checkpoint; abandoned if ClickHouse is down at shutdown.
        if self.flush(live).await.is_ok() {
            tracing::info!(
                partitions = self.slots.len(),
                "index processor stopped after a final flush"
            );
        }
        if let Some(bar) = &self.progress {
            bar.finish();
        }
    }

    async fn accept(&mut self, input: IndexInput) {
        match input {
            IndexInput::Assign {
                topic,
                partition,
                state,
            } => {
                self.metrics
                    .index_position
                    .with_label_values(&[&topic, &partition.to_string()])
                    .set(state.next_offset);
                if let Some(old) = self.slots.insert(
                    (topic.into(), partition),
                    Slot {
                        state: *state,
                        daily_satisfaction: Vec::new(),
                        daily_hotline: Vec::new(),
                    },
                ) {
                    // Assigned again without a revocation: its unwritten rows are replayed.
                    self.pending_daily_rows -=
                        old.daily_satisfaction.len() + old.daily_hotline.len();
                }
            }
            IndexInput::Fold(folds) => {
                let received = Instant::now();
                for fold in folds {
                    self.fold(fold, received);
                }
            }
            IndexInput::Revoke(partitions) => {
                for (topic, partition) in partitions {
                    let key = (Arc::from(topic), partition);
                    if let Some(slot) = self.slots.remove(&key) {
                        self.pending_daily_rows -=
                            slot.daily_satisfaction.len() + slot.daily_hotline.len();
                        tracing::info!(topic = %key.0, partition = key.1, "index state dropped for a revoked partition");
                    }
                }
            }
        }
    }

    fn rebuild_done(&self) -> bool {
        let Mode::Rebuild { end_offsets } = &self.mode else {
            return false;
        };
        end_offsets.iter().all(|((topic, partition), end)| {
            *end <= 0
                || self
                    .slots
                    .get(&(Arc::from(topic.as_str()), *partition))
                    .is_some_and(|s| s.state.next_offset >= *end)
        })
    }

    fn fold(&mut self, fold: FoldInput, received: Instant) {
        let key = (fold.topic, fold.partition);
        let Some(slot) = self.slots.get_mut(&key) else {
            // Consumed before a revocation reached us; its next owner folds it.
            tracing::debug!(topic = %key.0, partition = key.1, offset = fold.offset, "fold for a partition not held");
            return;
        };
        if fold.offset < slot.state.next_offset {
            return; // already folded into the restored state
        }
        let _span =
            tracing::debug_span!("index_partition", topic = %key.0, partition = key.1).entered();
        self.oldest_unwritten.get_or_insert(received);
        self.dirty = true;
        self.unflushed_timestamps.extend(fold.produced_ms);
        let emitted = match &fold.event {
            Some(Decoded::Survey(survey)) => {
                slot.state
                    .apply_survey(survey, fold.offset, &self.frameworks, self.lateness)
            }
            Some(Decoded::Hotline(event)) => {
                slot.state
                    .apply_hotline(event, fold.offset, &self.frameworks, self.lateness)
            }
            None => {
                slot.state.skip(fold.offset);
                Default::default()
            }
        };
        if emitted.duplicates > 0 {
            self.metrics.index_duplicates.inc_by(emitted.duplicates);
        }
        if emitted.beyond_lateness > 0 {
            self.metrics.late_events.inc_by(emitted.beyond_lateness);
        }
        // Consumed one by one: a closing day can emit hundreds of thousands of values, and
        // each is freed as soon as its row exists.
        let before = slot.daily_satisfaction.len() + slot.daily_hotline.len();
        slot.daily_satisfaction
            .reserve(emitted.satisfaction_daily.len());
        for value in emitted.satisfaction_daily {
            if let Some(framework) = self.frameworks.get(&value.framework) {
                slot.daily_satisfaction
                    .push(SatisfactionRow::new(&value, framework));
            }
        }
        slot.daily_hotline
            .extend(emitted.hotline_daily.iter().map(HotlineKpiRow::new));
        self.pending_daily_rows +=
            slot.daily_satisfaction.len() + slot.daily_hotline.len() - before;
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
    }

    /// Writes pending daily rows and changed latest values; then (optionally) checkpoints.
    async fn flush(&mut self, checkpoint: bool) -> Result<(), Abandoned> {
        let mut daily_satisfaction = Vec::new();
        let mut daily_hotline = Vec::new();
        let mut latest_satisfaction = Vec::new();
        let mut latest_hotline = Vec::new();
        for slot in self.slots.values_mut() {
            daily_satisfaction.append(&mut slot.daily_satisfaction);
            daily_hotline.append(&mut slot.daily_hotline);
            let (satisfaction, hotline) = slot.state.take_latest(&self.frameworks);
            latest_satisfaction.extend(satisfaction.iter().filter_map(|v| {
                self.frameworks
                    .get(&v.framework)
                    .map(|f| SatisfactionRow::new(v, f))
            }));
            latest_hotline.extend(hotline.iter().map(HotlineKpiRow::new));
        }
        let (a, b, c, d) = tokio::join!(
            self.writer
                .insert("satisfaction_daily", &daily_satisfaction),
            self.writer.insert("hotline_kpi_daily", &daily_hotline),
            self.writer
                .insert("satisfaction_latest", &latest_satisfaction),
            self.writer.insert("hotline_kpi_latest", &latest_hotline),
        );
        self.pending_daily_rows = 0;
        self.oldest_unwritten = None;
        for failures in [a?, b?, c?, d?] {
            for failure in failures {
                tracing::error!(message = %failure.message, "ClickHouse refused an index row");
            }
        }
        for ((topic, partition), slot) in &self.slots {
            self.metrics
                .index_position
                .with_label_values(&[&**topic, &partition.to_string()])
                .set(slot.state.next_offset);
        }
        self.record_freshness();
        if checkpoint && !self.slots.is_empty() {
            let now = crate::pipeline::ingest::unix_now() as u32;
            let rows: Vec<CheckpointRow> = self
                .slots
                .iter()
                .map(|((topic, partition), slot)| {
                    let state = checkpoint::encode(&slot.state);
                    CheckpointRow {
                        consumer_group: self.checkpoint_key.clone(),
                        topic: topic.to_string(),
                        partition: *partition as u32,
                        next_offset: slot.state.next_offset,
                        state,
                        written_at: now,
                    }
                })
                .collect();
            self.writer.insert("index_checkpoints", &rows).await?;
            self.dirty = false;
        }
        Ok(())
    }

    /// Every message folded since the last flush is now visible in the latest tables.
    fn record_freshness(&mut self) {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as i64);
        let samples: Vec<f64> = self
            .unflushed_timestamps
            .drain(..)
            .map(|produced| (now_ms - produced).max(0) as f64 / 1000.0)
            .collect();
        for sample in &samples {
            self.metrics.index_freshness.observe(*sample);
        }
        if let Some(probe) = &self.freshness_probe {
            probe.lock().expect("freshness probe lock").extend(samples);
        }
    }
}
