//! Drives partition states from Kafka into ClickHouse.
//!
//! Each input partition is an independent fold (`PartitionState`). On the first message
//! of a newly assigned partition the processor restores the latest checkpoint for it (or
//! starts empty at offset 0) and seeks to the checkpoint's offset, so the state always
//! equals the fold of exactly the offsets below `next_offset`. Outputs are written every
//! `flush_interval`; a checkpoint is written only after everything derived from the
//! offsets it covers has been acknowledged, so a crash at any point resumes from a state
//! whose outputs are all stored, and replays to the same rows.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer,
};
use rdkafka::message::Message;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::Config;
use crate::contract::decode::{Decoded, Decoder, EventKind};
use crate::domain::FrameworkCatalog;
use crate::index::state::PartitionState;
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::sink::index_rows::{CheckpointRow, HotlineKpiRow, SatisfactionRow};
use crate::sink::writer::{Abandoned, RawEventWriter};

/// Daily rows held before they are written, whatever the flush interval.
const MAX_PENDING_DAILY_ROWS: usize = 50_000;

/// Bumped whenever `PartitionState`'s layout changes; older checkpoints are ignored
/// (the partition is then rebuilt from the log).
const STATE_FORMAT: u8 = 4;

#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Remembers revoked and assigned partitions for the processing loop: revoked ones lose
/// their state, assigned ones get theirs restored before anything is emitted for them.
pub struct IndexContext {
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    assigned: Arc<Mutex<Vec<(String, i32)>>>,
}

impl ClientContext for IndexContext {}

impl ConsumerContext for IndexContext {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            let mut revoked = self.revoked.lock().expect("revoked lock");
            for e in tpl.elements() {
                revoked.push((e.topic().to_owned(), e.partition()));
            }
            tracing::info!(partitions = tpl.count(), "index partitions revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(tpl) = rebalance {
            let mut assigned = self.assigned.lock().expect("assigned lock");
            for e in tpl.elements() {
                assigned.push((e.topic().to_owned(), e.partition()));
            }
            tracing::info!(partitions = tpl.count(), "index partitions assigned");
        }
    }
}

/// How the processor runs.
#[derive(Debug, Clone)]
pub enum Mode {
    /// Follow the topics until shutdown; restore from and write checkpoints.
    Live,
    /// Recompute from offset 0 of every partition up to the given end offsets, then stop.
    /// Ignores checkpoints.
    Rebuild {
        end_offsets: HashMap<(String, i32), i64>,
    },
}

struct Slot {
    state: PartitionState,
    /// The first message after (re)assignment must be the state's `next_offset`.
    verify_position: bool,
    seeked: bool,
    daily_satisfaction: Vec<SatisfactionRow>,
    daily_hotline: Vec<HotlineKpiRow>,
}

pub struct IndexProcessor {
    consumer: StreamConsumer<IndexContext>,
    revoked: Arc<Mutex<Vec<(String, i32)>>>,
    assigned: Arc<Mutex<Vec<(String, i32)>>>,
    decoder: Arc<Decoder>,
    frameworks: FrameworkCatalog,
    client: clickhouse::Client,
    writer: RawEventWriter,
    metrics: Metrics,
    shutdown: Shutdown,
    mode: Mode,
    group_id: String,
    surveys_topic: String,
    hotline_topic: String,
    lateness: i64,
    flush_interval: Duration,
    checkpoint_interval: Duration,
    slots: HashMap<(String, i32), Slot>,
    /// Produce timestamps (ms) of the messages folded since the last flush.
    unflushed_timestamps: Vec<i64>,
    pub progress: Option<indicatif::ProgressBar>,
    /// Receives every freshness sample (seconds) as well as the histogram; for benchmarks.
    pub freshness_probe: Option<Arc<Mutex<Vec<f64>>>>,
}

impl IndexProcessor {
    pub fn new(
        config: &Config,
        decoder: Arc<Decoder>,
        metrics: Metrics,
        shutdown: Shutdown,
        mode: Mode,
    ) -> Result<Self, IndexError> {
        let revoked = Arc::new(Mutex::new(Vec::new()));
        let assigned = Arc::new(Mutex::new(Vec::new()));
        let group_id = match &mode {
            Mode::Live => config.index.group_id.clone(),
            Mode::Rebuild { .. } => format!(
                "{}-rebuild-{}",
                config.index.group_id,
                crate::pipeline::ingest::unix_now()
            ),
        };
        let consumer: StreamConsumer<IndexContext> = crate::kafka::client_config(&config.kafka)
            .set("group.id", &group_id)
            .set("enable.auto.commit", "false")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("queued.max.messages.kbytes", "32768")
            // Latest values are refreshed within a flush interval of new events; a fetch must
            // not sit on the broker for half a second first (librdkafka defaults to 500 ms).
            .set("fetch.wait.max.ms", "100")
            .set("max.poll.interval.ms", "600000")
            .create_with_context(IndexContext {
                revoked: Arc::clone(&revoked),
                assigned: Arc::clone(&assigned),
            })?;
        let p = &config.pipeline;
        let writer = RawEventWriter::new(
            crate::sink::connect(&config.clickhouse),
            metrics.clone(),
            Duration::from_millis(p.retry_initial_ms),
            Duration::from_millis(p.retry_max_ms),
            shutdown.clone(),
        );
        Ok(Self {
            consumer,
            revoked,
            assigned,
            frameworks: decoder.validator.frameworks.clone(),
            decoder,
            client: crate::sink::connect(&config.clickhouse),
            writer,
            metrics,
            shutdown,
            mode,
            group_id,
            surveys_topic: config.kafka.surveys_topic.clone(),
            hotline_topic: config.kafka.hotline_topic.clone(),
            lateness: config.index.lateness_seconds(),
            flush_interval: Duration::from_millis(config.index.flush_interval_ms),
            checkpoint_interval: Duration::from_millis(config.index.checkpoint_interval_ms),
            slots: HashMap::new(),
            unflushed_timestamps: Vec::new(),
            progress: None,
            freshness_probe: None,
        })
    }

    pub async fn run(mut self) -> Result<(), IndexError> {
        self.consumer
            .subscribe(&[&self.surveys_topic, &self.hotline_topic])?;
        tracing::info!(group = %self.group_id, mode = ?std::mem::discriminant(&self.mode), "index processor consuming");
        let mut flush = tokio::time::interval(self.flush_interval);
        flush.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_checkpoint = Instant::now();
        let mut shutdown = self.shutdown.clone();
        loop {
            self.drop_revoked();
            self.restore_assigned().await;
            if self.rebuild_done() {
                break;
            }
            tokio::select! {
                biased;
                _ = shutdown.wait() => break,
                _ = flush.tick() => {
                    let checkpoint = matches!(self.mode, Mode::Live) && last_checkpoint.elapsed() >= self.checkpoint_interval;
                    if self.flush(checkpoint).await.is_err() {
                        return Ok(());
                    }
                    if checkpoint {
                        last_checkpoint = Instant::now();
                    }
                }
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        let (topic, partition, offset) = (message.topic().to_owned(), message.partition(), message.offset());
                        let payload = message.payload().map(<[u8]>::to_vec);
                        let produced_ms = message.timestamp().to_millis();
                        drop(message);
                        self.handle(topic, partition, offset, payload, produced_ms).await?;
                        // Catching up on history closes many days per second, each with a
                        // row per unit and window: write them before they pile up in memory.
                        if self.pending_daily_rows() >= MAX_PENDING_DAILY_ROWS && self.flush(false).await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(error) => tracing::warn!(%error, "index consumer error"),
                },
            }
        }
        // Final flush and checkpoint; abandoned if ClickHouse is down at shutdown.
        let checkpoint = matches!(self.mode, Mode::Live);
        if self.flush(checkpoint).await.is_ok() {
            tracing::info!(
                partitions = self.slots.len(),
                "index processor stopped after a final flush"
            );
        }
        if let Some(bar) = &self.progress {
            bar.finish();
        }
        Ok(())
    }

    fn rebuild_done(&self) -> bool {
        let Mode::Rebuild { end_offsets } = &self.mode else {
            return false;
        };
        end_offsets.iter().all(|(key, end)| {
            *end <= 0
                || self
                    .slots
                    .get(key)
                    .is_some_and(|s| s.state.next_offset >= *end)
        })
    }

    fn drop_revoked(&mut self) {
        let revoked: Vec<(String, i32)> =
            std::mem::take(&mut *self.revoked.lock().expect("revoked lock"));
        for key in revoked {
            if self.slots.remove(&key).is_some() {
                tracing::info!(topic = %key.0, partition = key.1, "index state dropped for a revoked partition");
            }
        }
    }

    /// Restores the state of newly assigned partitions (checkpoint or empty).
    async fn restore_assigned(&mut self) {
        let assigned: Vec<(String, i32)> =
            std::mem::take(&mut *self.assigned.lock().expect("assigned lock"));
        for (topic, partition) in assigned {
            self.ensure_slot(&topic, partition).await;
        }
    }

    async fn ensure_slot(&mut self, topic: &str, partition: i32) {
        let key = (topic.to_owned(), partition);
        if self.slots.contains_key(&key) {
            return;
        }
        let state = match self.mode {
            Mode::Live => self.restore(topic, partition).await,
            Mode::Rebuild { .. } => PartitionState::new(0),
        };
        self.metrics
            .index_position
            .with_label_values(&[topic, &partition.to_string()])
            .set(state.next_offset);
        self.slots.insert(
            key,
            Slot {
                state,
                verify_position: true,
                seeked: false,
                daily_satisfaction: Vec::new(),
                daily_hotline: Vec::new(),
            },
        );
    }

    async fn handle(
        &mut self,
        topic: String,
        partition: i32,
        offset: i64,
        payload: Option<Vec<u8>>,
        produced_ms: Option<i64>,
    ) -> Result<(), IndexError> {
        let key = (topic.clone(), partition);
        self.ensure_slot(&topic, partition).await;
        let slot = self.slots.get_mut(&key).expect("inserted above");
        if slot.verify_position && offset != slot.state.next_offset {
            if offset < slot.state.next_offset {
                return Ok(()); // already folded into the restored state
            }
            if !slot.seeked {
                slot.seeked = true;
                let target = Offset::Offset(slot.state.next_offset);
                tracing::info!(%topic, partition, from = offset, to = slot.state.next_offset, "index partition positioned at its state");
                if let Err(error) =
                    self.consumer
                        .seek(&topic, partition, target, Duration::from_secs(10))
                {
                    tracing::warn!(%error, %topic, partition, "seek failed; dropping the partition state to retry");
                    self.slots.remove(&key);
                }
                return Ok(());
            }
            // Messages fetched before the seek may still arrive: drop them, unless the log
            // no longer has `next_offset` (retention), in which case the gap is accepted.
            let next = slot.state.next_offset;
            tracing::debug!(%topic, partition, offset, next_offset = next, "dropping a message fetched before the seek");
            let low = tokio::task::block_in_place(|| {
                self.consumer
                    .fetch_watermarks(&topic, partition, Duration::from_secs(10))
            })
            .map(|(low, _)| low);
            match low {
                Ok(low) if low > next => {
                    tracing::warn!(%topic, partition, next_offset = next, log_start = low, "the log no longer holds the state's next offset; continuing from the log start");
                }
                _ => return Ok(()),
            }
        }
        let slot = self.slots.get_mut(&key).expect("present");
        slot.verify_position = false;
        if offset < slot.state.next_offset {
            return Ok(());
        }
        let _span = tracing::debug_span!("index_partition", %topic, partition).entered();
        self.unflushed_timestamps.extend(produced_ms);
        let kind = if topic == self.surveys_topic {
            EventKind::Survey
        } else {
            EventKind::Hotline
        };
        let emitted = match payload.as_deref().map(|p| self.decoder.decode(kind, p)) {
            Some(Ok((Decoded::Survey(survey), _))) => {
                slot.state
                    .apply_survey(&survey, offset, &self.frameworks, self.lateness)
            }
            Some(Ok((Decoded::Hotline(event), _))) => {
                slot.state
                    .apply_hotline(&event, offset, &self.frameworks, self.lateness)
            }
            // Invalid input is the ingest pipeline's to dead-letter; here it is skipped.
            _ => {
                slot.state.skip(offset);
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
        if let Some(bar) = &self.progress {
            bar.inc(1);
        }
        Ok(())
    }

    /// Latest checkpoint of a partition, or an empty state at offset 0.
    async fn restore(&self, topic: &str, partition: i32) -> PartitionState {
        let row = self
            .client
            .query("SELECT ?fields FROM index_checkpoints FINAL WHERE consumer_group = ? AND topic = ? AND partition = ? ORDER BY next_offset DESC LIMIT 1")
            .bind(&self.group_id)
            .bind(topic)
            .bind(partition as u32)
            .fetch_optional::<CheckpointRow>()
            .await;
        let restored = match row {
            Ok(Some(row)) => match row.state.split_first() {
                Some((&STATE_FORMAT, bytes)) => bincode::deserialize::<PartitionState>(bytes).ok(),
                _ => None,
            },
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(%error, topic, partition, "cannot read the checkpoint; rebuilding the partition from the log");
                None
            }
        };
        match restored {
            Some(state) => {
                tracing::info!(
                    topic,
                    partition,
                    next_offset = state.next_offset,
                    "index state restored from checkpoint"
                );
                state
            }
            None => {
                tracing::info!(
                    topic,
                    partition,
                    "no usable checkpoint; folding the partition from the beginning"
                );
                PartitionState::new(0)
            }
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
        for failures in [a?, b?, c?, d?] {
            for failure in failures {
                tracing::error!(message = %failure.message, "ClickHouse refused an index row");
            }
        }
        for ((topic, partition), slot) in &self.slots {
            self.metrics
                .index_position
                .with_label_values(&[topic, &partition.to_string()])
                .set(slot.state.next_offset);
        }
        self.record_freshness();
        if checkpoint && !self.slots.is_empty() {
            let now = crate::pipeline::ingest::unix_now() as u32;
            let rows: Vec<CheckpointRow> = self
                .slots
                .iter()
                .map(|((topic, partition), slot)| {
                    let mut state = vec![STATE_FORMAT];
                    state.extend(bincode::serialize(&slot.state).expect("state serialises"));
                    CheckpointRow {
                        consumer_group: self.group_id.clone(),
                        topic: topic.clone(),
                        partition: *partition as u32,
                        next_offset: slot.state.next_offset,
                        state,
                        written_at: now,
                    }
                })
                .collect();
            self.writer.insert("index_checkpoints", &rows).await?;
            self.commit_positions();
        }
        Ok(())
    }

    fn pending_daily_rows(&self) -> usize {
        self.slots
            .values()
            .map(|s| s.daily_satisfaction.len() + s.daily_hotline.len())
            .sum()
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

    /// Commits each partition's `next_offset`: for lag visibility only (state positions
    /// come from checkpoints).
    fn commit_positions(&self) {
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), slot) in &self.slots {
            tracing::debug!(%topic, partition, next_offset = slot.state.next_offset, "committing index position");
            let _ =
                tpl.add_partition_offset(topic, *partition, Offset::Offset(slot.state.next_offset));
        }
        if let Err(error) = self.consumer.commit(&tpl, CommitMode::Async) {
            tracing::debug!(%error, "index offset commit failed");
        }
    }
}
