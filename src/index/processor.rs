//! Drives partition states from folded messages into ClickHouse.
//!
//! Each input partition is an independent fold (`PartitionState`) into day-count fact rows.
//! The consumer loop that feeds it (`sipas run`'s, or a rebuild's) hands over each assigned
//! partition's state, restored from its checkpoint and with the partition started at or
//! before its `next_offset` (`kafka::consumer`, `index::position`), and then the
//! partition's messages in order. The state therefore always equals the fold of exactly
//! the offsets below `next_offset`.
//!
//! A flush, once the oldest unwritten fold is `flush_interval` old (or many rows are
//! pending): the changed fact rows are written; then the materialiser recomputes the
//! province and category windows that contain the changed days, from the facts summed over
//! every partition; then (every `checkpoint_interval`) the states are checkpointed. A
//! checkpoint is written only after everything derived from the offsets it covers was
//! acknowledged, so a crash at any point resumes from a state whose outputs are stored, and
//! replays to the same rows.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::config::Config;
use crate::contract::decode::Decoded;
use crate::contract::kind::{EventKind, PerKind};
use crate::domain::FrameworkCatalog;
use crate::index::checkpoint;
use crate::index::input::{FoldInput, IndexHandle, IndexInput};
use crate::index::materialiser::{Materialiser, PassStats, Writes};
use crate::index::rows::CheckpointRow;
use crate::index::state::{ChangedDays, HotlineFact, PartitionState, TakenRows};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::writer::{Abandoned, RawEventWriter};
use crate::tables;

/// Fact rows held before they are written, whatever the flush interval (a catch-up closes
/// a block every 4096 offsets).
const MAX_PENDING_ROWS: usize = 50_000;

/// Fold batches buffered between a feeder and the processor. Small: a full channel slows
/// the feeder down rather than letting decoded events pile up in memory (2 instead of 4:
/// a full-scale catch-up of 1 M events peaked 6 MiB lower, and was not slower).
const CHANNEL_BATCHES: usize = 2;

/// How long, at shutdown, the processor waits for the feeder's last batch.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

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
    /// Where this process took the partition over (the restored `next_offset`): the rows
    /// below it were written by a predecessor.
    since: i64,
    /// Folds since the last flush (a bound on the rows pending).
    unflushed: usize,
}

pub struct IndexProcessor {
    inputs: mpsc::Receiver<IndexInput>,
    frameworks: FrameworkCatalog,
    writer: RawEventWriter,
    materialiser: Materialiser,
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
    /// Folds not yet written, over all slots.
    pending_folds: usize,
    /// When the oldest fold not yet written was received.
    oldest_unwritten: Option<Instant>,
    /// Folded since the last checkpoint.
    dirty: bool,
    /// Produce timestamps (ms) of the messages folded since the last flush.
    unflushed_timestamps: Vec<i64>,
    /// Each kind's topic: which slots' rows are that kind's fact rows.
    topics: PerKind<Arc<str>>,
    /// Counts assignments, revocations and refused rows: the materialiser trusts the day
    /// sums it holds for this process's deltas only within one generation.
    generation: u64,
    /// Flushes so far, numbering their log span.
    flushes: u64,
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
        let writer = || {
            RawEventWriter::new(
                crate::sink::connect(&config.clickhouse),
                metrics.clone(),
                Duration::from_millis(p.retry_initial_ms),
                Duration::from_millis(p.retry_max_ms),
                shutdown.clone(),
            )
        };
        let materialiser = Materialiser::new(writer(), frameworks.clone());
        let writer = writer();
        let processor = Self {
            inputs,
            frameworks,
            writer,
            materialiser,
            metrics,
            shutdown,
            mode,
            checkpoint_key: config.index.group_id.clone(),
            lateness: config.index.lateness_seconds(),
            flush_interval: Duration::from_millis(config.index.flush_interval_ms),
            checkpoint_interval: Duration::from_millis(config.index.checkpoint_interval_ms),
            slots: HashMap::new(),
            pending_folds: 0,
            oldest_unwritten: None,
            dirty: false,
            unflushed_timestamps: Vec::new(),
            topics: PerKind::from_fn(|kind| Arc::from(config.kafka.topic(kind))),
            generation: 0,
            flushes: 0,
            progress: None,
            freshness_probe: None,
        };
        (processor, IndexHandle { sender })
    }

    /// Runs until shutdown (Live), the end offsets (Rebuild), or the feeder hanging up.
    /// Returns early only if ClickHouse writes are abandoned at shutdown.
    pub async fn run(self) {
        let mode = match self.mode {
            Mode::Live => "live",
            Mode::Rebuild { .. } => "rebuild",
        };
        let span = tracing::info_span!("index", mode, checkpoints = %self.checkpoint_key);
        self.process().instrument(span).await
    }

    async fn process(mut self) {
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
                        if self.pending_folds >= MAX_PENDING_ROWS && self.flush(false).await.is_err() {
                            return;
                        }
                    }
                    None => break,
                },
            }
        }
        // Final flush and checkpoint; abandoned if ClickHouse is down at shutdown.
        let mut finished = self.flush(live).await;
        if finished.is_ok() && !live {
            finished = self.materialise(&ChangedDays::default(), true).await;
        }
        if finished.is_ok() {
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
                self.generation += 1;
                self.metrics
                    .index_position
                    .with_label_values(&[&topic, &partition.to_string()])
                    .set(state.next_offset);
                tracing::info!(%topic, partition, next_offset = state.next_offset, "index state taken over for an assigned partition");
                if let Some(old) = self.slots.insert(
                    (topic.into(), partition),
                    Slot {
                        since: state.next_offset,
                        state: *state,
                        unflushed: 0,
                    },
                ) {
                    // Assigned again without a revocation: its unwritten rows are replayed.
                    self.pending_folds -= old.unflushed;
                }
            }
            IndexInput::Fold(folds) => {
                let received = Instant::now();
                for fold in folds {
                    self.fold(fold, received);
                }
            }
            IndexInput::Revoke(partitions) => {
                self.generation += 1;
                for (topic, partition) in partitions {
                    let key = (Arc::from(topic), partition);
                    if let Some(slot) = self.slots.remove(&key) {
                        self.pending_folds -= slot.unflushed;
                        // Its next owner reports it; this instance's last value would
                        // otherwise stay exported beside the owner's.
                        let _ = self
                            .metrics
                            .index_position
                            .remove_label_values(&[&*key.0, &key.1.to_string()]);
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
        let applied = match &fold.event {
            Some(Decoded::Survey(survey)) => {
                slot.state
                    .apply_survey(survey, fold.offset, &self.frameworks, self.lateness)
            }
            Some(Decoded::Hotline(event)) => {
                slot.state.apply_hotline(event, fold.offset, self.lateness)
            }
            None => {
                slot.state.skip(fold.offset);
                Default::default()
            }
        };
        if applied.duplicate {
            self.metrics.index_duplicates.inc();
        }
        if applied.late {
            self.metrics.late_events.inc();
        }
        slot.unflushed += 1;
        self.pending_folds += 1;
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
    }

    /// Writes the changed fact rows, recomputes the windows they change, then
    /// (optionally) checkpoints.
    async fn flush(&mut self, checkpoint: bool) -> Result<(), Abandoned> {
        self.flushes += 1;
        let span = tracing::info_span!(
            "index_flush",
            flush = self.flushes,
            folds = self.pending_folds,
            checkpoint,
            survey_rows = tracing::field::Empty,
            hotline_rows = tracing::field::Empty,
        );
        self.write_flush(checkpoint, &span)
            .instrument(span.clone())
            .await
    }

    async fn write_flush(
        &mut self,
        checkpoint: bool,
        span: &tracing::Span,
    ) -> Result<(), Abandoned> {
        let mut changed = ChangedDays::default();
        // Each partition's facts as they come, written in one INSERT per table, their rows
        // built as they are sent (`insert_parts`).
        let (mut surveys, mut hotline) = (Vec::new(), Vec::new());
        for slot in self.slots.values_mut() {
            // Taken apart whole: a kind's fact rows missing here would not compile.
            let TakenRows {
                surveys: survey_rows,
                hotline: hotline_rows,
                changed: days,
            } = slot.state.take_rows();
            surveys.push(survey_rows);
            hotline.push(hotline_rows);
            changed.merge(days);
            slot.unflushed = 0;
        }
        span.record("survey_rows", surveys.iter().map(Vec::len).sum::<usize>());
        span.record("hotline_rows", hotline.iter().map(Vec::len).sum::<usize>());
        let started = Instant::now();
        // The rows are gone once written, before the pass: its window rows are the flush's
        // other large allocation.
        let frameworks = &self.frameworks;
        let (a, b) = tokio::join!(
            self.writer
                .insert_parts(tables::SATISFACTION_DAY_COUNTS, surveys, |fact| {
                    fact.row(frameworks)
                }),
            self.writer
                .insert_parts(tables::HOTLINE_DAY_COUNTS, hotline, HotlineFact::row),
        );
        self.pending_folds = 0;
        self.oldest_unwritten = None;
        for failure in a?.into_iter().chain(b?) {
            // The deltas no longer describe the table: read the days back.
            self.generation += 1;
            tracing::error!(message = %failure.message, "ClickHouse refused an index row");
        }
        self.observe_stage("facts", started);
        // Only once the fact rows are acknowledged: a window row's version is the time its
        // pass started, and a later version must mean a view that holds every fact row
        // acknowledged before it (ARCHITECTURE.md, "Windows from the summed facts"). A
        // rebuild computes the windows once, at the end, from every fact.
        if matches!(self.mode, Mode::Live) && !changed.is_empty() {
            let started = Instant::now();
            self.materialise(&changed, false).await?;
            self.observe_stage("windows", started);
        }
        for ((topic, partition), slot) in &self.slots {
            self.metrics
                .index_position
                .with_label_values(&[&**topic, &partition.to_string()])
                .set(slot.state.next_offset);
        }
        self.record_freshness();
        tracing::debug!("index rows written");
        if checkpoint && !self.slots.is_empty() {
            let started = Instant::now();
            let span = tracing::info_span!("checkpoint", partitions = self.slots.len());
            self.write_checkpoint().instrument(span).await?;
            self.observe_stage("checkpoint", started);
        }
        Ok(())
    }

    /// Every held partition's state: its chunk of ids and tickets, then its state row.
    async fn write_checkpoint(&mut self) -> Result<(), Abandoned> {
        let now = crate::domain::time::unix_now() as u32;
        let mut rows: Vec<CheckpointRow> = Vec::new();
        for ((topic, partition), slot) in self.slots.iter_mut() {
            let (row, chunk) = checkpoint::rows(
                &self.checkpoint_key,
                topic,
                *partition,
                &mut slot.state,
                now,
            );
            rows.push(row);
            // The chunks first: a checkpoint row never refers to ids or tickets not stored.
            // One partition's chunk at a time, dropped once sent: a whole chunk holds every
            // id and ticket of its partition, so all partitions' at once would grow with the
            // history held (at 1 M events no peak of RSS was measurably lower for it).
            if let Some(chunk) = chunk {
                self.writer
                    .insert(tables::INDEX_STATE_CHUNKS, std::slice::from_ref(&chunk))
                    .await?;
            }
        }
        self.writer.insert(tables::INDEX_CHECKPOINTS, &rows).await?;
        self.dirty = false;
        for row in &rows {
            tracing::debug!(topic = %row.topic, partition = row.partition, next_offset = row.next_offset, "index checkpoint written");
        }
        tracing::info!(
            positions = %self.positions(),
            "index checkpoint written"
        );

        Ok(())
    }

    fn observe_stage(&self, stage: &str, started: Instant) {
        self.metrics
            .index_stage_seconds
            .with_label_values(&[stage])
            .observe(started.elapsed().as_secs_f64());
    }

    /// The partitions of `topic` held, and how far their rows are written.
    fn writes(&self, topic: &str) -> Writes {
        Writes {
            generation: self.generation,
            through: self
                .slots
                .iter()
                .filter(|((t, _), _)| &**t == topic)
                .map(|((_, partition), slot)| (*partition as u32, slot.state.next_offset - 1))
                .collect(),
            since: self
                .slots
                .iter()
                .filter(|((t, _), _)| &**t == topic)
                .map(|((_, partition), slot)| (*partition as u32, slot.since))
                .collect(),
        }
    }

    /// `topic/partition:next_offset` of every held partition, for the log.
    fn positions(&self) -> String {
        let mut positions: Vec<(&str, i32, i64)> = self
            .slots
            .iter()
            .map(|((topic, partition), slot)| (&**topic, *partition, slot.state.next_offset))
            .collect();
        positions.sort_unstable();
        positions
            .iter()
            .map(|(topic, partition, next)| format!("{topic}/{partition}:{next}"))
            .collect::<Vec<_>>()
            .join(" ")
    }

    async fn materialise(
        &mut self,
        changed: &ChangedDays,
        everything: bool,
    ) -> Result<(), Abandoned> {
        let writes = PerKind::from_fn(|kind| self.writes(&self.topics[kind]));
        let stats = self.materialiser.pass(changed, &writes, everything).await?;
        self.note_pass(&stats);
        Ok(())
    }

    /// A pass's figures into the metrics and the log.
    fn note_pass(&self, stats: &PassStats) {
        for (kind, split) in stats.split_provinces.iter() {
            let kind = kind.stream_name();
            let gauge = self
                .metrics
                .index_split_provinces
                .with_label_values(&[kind]);
            if split.len() as i64 != gauge.get() && !split.is_empty() {
                tracing::warn!(
                    kind,
                    provinces = ?split,
                    "provinces whose events arrive on more than one partition (a producer not keyed by province, or a grown topic); their counts are summed over partitions, but ids are de-duplicated per partition only"
                );
            }
            gauge.set(split.len() as i64);
        }
        for (kind, rows) in stats.window_rows.iter() {
            let windows = match kind {
                EventKind::Survey => "satisfaction",
                EventKind::Hotline => "hotline",
            };
            self.metrics
                .index_window_rows
                .with_label_values(&[windows])
                .inc_by(*rows as u64);
        }
        self.metrics
            .index_day_sums
            .with_label_values(&["read"])
            .inc_by(stats.days_read as u64);
        self.metrics
            .index_day_sums
            .with_label_values(&["delta"])
            .inc_by(stats.days_from_deltas as u64);
        tracing::debug!(
            days_from_deltas = stats.days_from_deltas,
            satisfaction_rows = stats.window_rows[EventKind::Survey],
            hotline_rows = stats.window_rows[EventKind::Hotline],
            days_read = stats.days_read,
            "windows recomputed"
        );
    }

    /// Every message folded since the last flush is now visible in the latest tables.
    fn record_freshness(&mut self) {
        let now_ms = crate::domain::time::unix_now_millis();
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
