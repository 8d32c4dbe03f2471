//! The ingest consumer. Offsets are stored by the pipeline only after ClickHouse (and the
//! DLQ) acknowledged everything derived from them; librdkafka commits stored offsets
//! every `pipeline.commit_interval_ms` and once more on shutdown.
//!
//! With the index attached, the rebalance callback restores each assigned partition's
//! index state from its checkpoint and starts the partition where both the raw tables and
//! the index are served (`index::position`). Revocations (always) and assignments (with
//! the index) are queued, in order, for the consumer loop, which hands them to the
//! delivery stage and the index processor between the messages consumed before and after
//! them. A batch read before a revocation may be delivered after it: its offsets are then
//! not stored (`pipeline::offsets`).
use std::sync::Mutex;
use std::time::{Duration, Instant};

use rdkafka::consumer::{
    BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol, StreamConsumer,
};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::{KafkaConfig, PipelineConfig};
use crate::index::checkpoint;
use crate::index::position::{self, Start};
use crate::index::state::PartitionState;
use crate::instant::AtomicInstant;
use crate::kafka::health;
use crate::kafka::reach::BrokerReach;
use crate::kafka::stall::{self, Observation, ProgressWatch};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;

/// A partition given to this consumer, with the index state it starts from.
#[derive(Debug)]
pub struct AssignedPartition {
    pub topic: String,
    pub partition: i32,
    pub state: PartitionState,
    pub start: Start,
}

#[derive(Debug)]
pub enum RebalanceEvent {
    Revoked(Vec<(String, i32)>),
    Assigned(Vec<AssignedPartition>),
}

/// Where the rebalance callback finds index state for the partitions it is given.
pub struct IndexStates {
    /// `None` for a rebuild: every partition starts empty at its beginning.
    checkpoints: Option<(clickhouse::Client, String)>,
    runtime: tokio::runtime::Handle,
    shutdown: Shutdown,
}

impl IndexStates {
    /// Live: states come from the checkpoints written under `checkpoint_key`.
    /// Must be created inside the tokio runtime the consumer is polled from.
    pub fn live(client: clickhouse::Client, checkpoint_key: String, shutdown: Shutdown) -> Self {
        Self {
            checkpoints: Some((client, checkpoint_key)),
            runtime: tokio::runtime::Handle::current(),
            shutdown,
        }
    }

    pub fn rebuild(shutdown: Shutdown) -> Self {
        Self {
            checkpoints: None,
            runtime: tokio::runtime::Handle::current(),
            shutdown,
        }
    }

    /// The partitions' latest checkpointed states, read concurrently: the rebalance
    /// callback waits for them and the group's rebalance for the callback (read one after
    /// the other, a member's 4 partitions took 4 s on a loaded machine).
    fn load_all(&self, partitions: &[(String, i32)]) -> Vec<PartitionState> {
        let Some((client, key)) = &self.checkpoints else {
            return partitions
                .iter()
                .map(|(_, partition)| PartitionState::new(*partition as u32, 0))
                .collect();
        };
        let loads = partitions
            .iter()
            .map(|(topic, partition)| self.load(client, key, topic, *partition));
        // The callback runs inside the consumer's poll, on a runtime worker.
        tokio::task::block_in_place(|| self.runtime.block_on(futures::future::join_all(loads)))
    }

    /// The partition's latest checkpointed state; ClickHouse errors are retried. If
    /// shutdown comes first, an empty state (folding from offset 0 is always correct).
    async fn load(
        &self,
        client: &clickhouse::Client,
        key: &str,
        topic: &str,
        partition: i32,
    ) -> PartitionState {
        let mut delay = Duration::from_millis(200);
        loop {
            let read = tokio::time::timeout(
                crate::sink::writer::READ_TIMEOUT,
                checkpoint::load(client, key, topic, partition),
            );
            match read
                .await
                .unwrap_or(Err(clickhouse::error::Error::TimedOut))
            {
                Ok(state) => return state,
                Err(error) if !self.shutdown.is_triggered() => {
                    tracing::warn!(%error, topic, partition, "cannot read the index checkpoint; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                Err(_) => return PartitionState::new(partition as u32, 0),
            }
        }
    }
}

/// Feeds librdkafka's statistics (consumer lag per partition, whether held partitions
/// advance) into our metrics, logs rebalances and, with the index attached, positions
/// assigned partitions.
pub struct IngestContext {
    metrics: Metrics,
    /// The partitions held and their progress, told by the rebalance callback and judged
    /// at each statistics interval.
    watch: Mutex<ProgressWatch>,
    index: Option<IndexStates>,
    events: Mutex<Vec<RebalanceEvent>>,
    /// Rebalances seen by this process, numbering their log span.
    rebalances: std::sync::atomic::AtomicU64,
    /// Woken when a rebalance is recorded: the consumer loop must hand it on even when no
    /// message follows (a partition taken over with nothing left to read would otherwise
    /// wait, unassigned in the index, until the next message).
    rebalanced: tokio::sync::Notify,
    /// The configured `pipeline.max_poll_interval_ms`, named when it was exceeded.
    max_poll_interval_ms: u64,
    /// The process's view of the brokers, shared with the dead-letter producer.
    reach: BrokerReach,
    /// When the newest statistics read were made; its base is when the consumer was
    /// created.
    statistics_made: AtomicInstant,
}

/// The `client` label of the consumer's metrics and log lines.
const CLIENT: &str = "consumer";

impl IngestContext {
    /// An error the consumer reported. Unreachable brokers are a state (`kafka::reach`),
    /// reported when it begins, every `health::REPEAT_EVERY` while it lasts and when it
    /// ends, not once per reconnection attempt.
    pub fn consumer_error(&self, error: &KafkaError) {
        self.metrics
            .kafka_errors
            .with_label_values(&[CLIENT, &super::producer::error_label(error)])
            .inc();
        if super::reach::means_unreachable(error) {
            self.reach.failed(self.queued_after(), CLIENT, error);
            return;
        }
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::PollExceeded) => tracing::warn!(
                max_poll_interval_ms = self.max_poll_interval_ms,
                "the consumer loop was held longer than pipeline.max_poll_interval_ms (a ClickHouse or dead-letter outage) and left its group; it rejoins now, and its partitions restart from the committed offsets and index checkpoints"
            ),
            _ => tracing::warn!(%error, "Kafka consumer error"),
        }
    }

    /// A broker answered: a message arrived or a rebalance happened.
    pub fn broker_answered(&self) {
        self.reach.answered(self.queued_after(), CLIENT);
    }

    /// When what the consumer reads now was observed, at the earliest. Messages, errors and
    /// statistics arrive in one queue, in order, behind what librdkafka prefetched: all
    /// that is read after a statistics report was queued after it was made (and anything
    /// after the consumer was created), however long the loop waited meanwhile.
    fn queued_after(&self) -> Instant {
        self.statistics_made.load()
    }

    /// Resolves once a rebalance was recorded since the last wait.
    pub async fn rebalanced(&self) {
        self.rebalanced.notified().await
    }

    fn record(&self, event: RebalanceEvent) {
        self.events.lock().expect("events lock").push(event);
        self.rebalanced.notify_one();
    }

    /// Whether a rebalance waits to be handed on.
    pub fn has_rebalance_events(&self) -> bool {
        !self.events.lock().expect("events lock").is_empty()
    }

    /// Rebalances since the last call, oldest first.
    pub fn take_rebalance_events(&self) -> Vec<RebalanceEvent> {
        std::mem::take(&mut *self.events.lock().expect("events lock"))
    }

    /// Restores the assigned partitions' index states and sets where each starts.
    fn prepare(&self, consumer: &BaseConsumer<Self>, tpl: &mut TopicPartitionList) {
        let Some(index) = &self.index else {
            return;
        };
        let rebuild = index.checkpoints.is_none();
        let committed = match rebuild {
            true => None,
            false => match consumer.committed_offsets(tpl.clone(), Duration::from_secs(30)) {
                Ok(committed) => Some(committed),
                Err(error) => {
                    // Starting at the index's offset and writing everything again is safe:
                    // raw rows collapse by key, dead letters are at-least-once.
                    tracing::warn!(%error, "cannot read committed offsets; raw rows from the index position on are written again");
                    None
                }
            },
        };
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let states = index.load_all(&partitions);
        let mut assigned = Vec::new();
        for ((topic, partition), state) in partitions.into_iter().zip(states) {
            let start = match &committed {
                _ if rebuild => position::rebuild_start(),
                Some(committed) => {
                    let offset = committed
                        .find_partition(&topic, partition)
                        .and_then(|e| match e.offset() {
                            Offset::Offset(offset) => Some(offset),
                            _ => None,
                        });
                    position::start(state.next_offset, offset)
                }
                None => Start {
                    seek_to: Some(state.next_offset),
                    raw_from: None,
                },
            };
            if let Some(seek_to) = start.seek_to {
                if let Err(error) =
                    tpl.set_partition_offset(&topic, partition, Offset::Offset(seek_to))
                {
                    tracing::warn!(%error, %topic, partition, "cannot set the start offset");
                }
            }
            tracing::info!(%topic, partition, index_next_offset = state.next_offset, seek_to = ?start.seek_to, raw_from = ?start.raw_from, "partition positioned");
            assigned.push(AssignedPartition {
                topic,
                partition,
                state,
                start,
            });
        }
        self.record(RebalanceEvent::Assigned(assigned));
    }
}

impl ClientContext for IngestContext {
    fn stats(&self, statistics: Statistics) {
        // Made up to the statistics interval before they are read while the loop keeps up,
        // much longer when it waited on the delivery stage.
        let age = health::statistics_age(statistics.time, crate::domain::time::unix_now_micros());
        let made = self.reach.ago(age).max(self.statistics_made.base());
        self.statistics_made.fetch_max(made);
        if !statistics.brokers.is_empty() {
            // "UPDATE" is an up broker whose address is being changed.
            match statistics
                .brokers
                .values()
                .any(|b| b.state == "UP" || b.state == "UPDATE")
            {
                true => self.reach.answered(made, CLIENT),
                false => self.reach.failed(
                    made,
                    CLIENT,
                    &"no broker connected in the consumer's statistics",
                ),
            }
        }
        let now = Instant::now();
        let mut watch = self.watch.lock().expect("watch lock");
        for (topic, stats) in &statistics.topics {
            for (partition, p) in &stats.partitions {
                // Partition -1 is librdkafka's internal "unassigned" queue.
                if *partition < 0 {
                    continue;
                }
                let label = partition.to_string();
                // Lag -1 means unknown. Statistics also list partitions of the topics this
                // instance does not hold (or no longer holds): not ours to report.
                if p.consumer_lag >= 0 && watch.is_assigned(topic, *partition) {
                    self.metrics
                        .consumer_lag
                        .with_label_values(&[topic, &label])
                        .set(p.consumer_lag);
                }
                let seen = Observation::from_offsets(
                    p.app_offset,
                    p.stored_offset,
                    p.committed_offset,
                    p.lo_offset,
                    p.hi_offset,
                );
                if let Some(change) = watch.observe(topic, *partition, seen, now) {
                    log_change(topic, *partition, &change, Some(&p.fetch_state));
                }
            }
        }
        self.publish(&watch, now);
    }
}

impl IngestContext {
    /// Judges held partitions between statistics, which stop while the consumer loop waits
    /// on the delivery stage; call it periodically.
    pub fn check_progress(&self) {
        let now = Instant::now();
        let mut watch = self.watch.lock().expect("watch lock");
        for ((topic, partition), change) in watch.check(now) {
            log_change(&topic, partition, &change, None);
        }
        self.publish(&watch, now);
    }

    /// Whether this instance has held no partitions long enough to be warned about, once
    /// the topics are known to have some (`warn_if_unassigned`).
    pub fn unassigned_due(&self) -> bool {
        let watch = self.watch.lock().expect("watch lock");
        watch.unassigned_due(Instant::now())
    }

    /// Warns (at most once a minute) that this instance holds no partitions although the
    /// topics have `topic_partitions`.
    pub fn warn_if_unassigned(&self, topic_partitions: usize) {
        let mut watch = self.watch.lock().expect("watch lock");
        if let Some(since) = watch.unassigned_warning(topic_partitions, Instant::now()) {
            tracing::warn!(
                topic_partitions,
                since_rebalance_s = since.as_secs(),
                "this instance holds no partitions although its topics have some; if no other member of the group consumes them, restart it"
            );
        }
    }

    /// The watch's view as metrics.
    fn publish(&self, watch: &ProgressWatch, now: Instant) {
        for ((topic, partition), stalled, idle) in watch.statuses(now) {
            let labels = [topic.as_str(), &partition.to_string()];
            self.metrics
                .partition_stalled
                .with_label_values(&labels)
                .set(i64::from(stalled));
            self.metrics
                .partition_idle_seconds
                .with_label_values(&labels)
                .set(idle.as_secs() as i64);
        }
        self.metrics
            .assigned_partitions
            .set(watch.assigned_count() as i64);
    }

    /// Notes partitions now held: counted, and neither stalled nor idle.
    fn held(&self, tpl: &TopicPartitionList) {
        let partitions = partitions(tpl);
        let mut watch = self.watch.lock().expect("watch lock");
        let now = Instant::now();
        watch.assign(&partitions, now);
        self.publish(&watch, now);
    }

    /// Forgets partitions no longer held (all of them for `None`) and their series.
    fn released(&self, tpl: Option<&TopicPartitionList>) {
        let mut watch = self.watch.lock().expect("watch lock");
        let now = Instant::now();
        let released = match tpl {
            Some(tpl) => watch.revoke(&partitions(tpl), now),
            None => watch.revoke_all(now),
        };
        for (topic, partition) in &released {
            let labels = [topic.as_str(), &partition.to_string()];
            let _ = self.metrics.partition_stalled.remove_label_values(&labels);
            let _ = self
                .metrics
                .partition_idle_seconds
                .remove_label_values(&labels);
        }
        self.metrics
            .assigned_partitions
            .set(watch.assigned_count() as i64);
    }
}

impl ConsumerContext for IngestContext {
    /// librdkafka commits the stored offsets in the background; this is where a batch's
    /// `offsets stored` becomes durable (`offsets` are the next offsets to read).
    fn commit_callback(
        &self,
        result: rdkafka::error::KafkaResult<()>,
        offsets: &TopicPartitionList,
    ) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe_offsets(offsets), "offsets committed"),
            // Nothing new to commit since the last interval.
            Err(rdkafka::error::KafkaError::ConsumerCommit(
                rdkafka::types::RDKafkaErrorCode::NoOffset,
            )) => {}
            Err(error) => {
                tracing::warn!(%error, offsets = %describe_offsets(offsets), "offset commit failed; it is retried at the next interval")
            }
        }
    }

    /// Replaces librdkafka's default so that start offsets can be set before assigning.
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        tpl: &mut TopicPartitionList,
    ) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let kind = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => "assign",
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => "revoke",
            _ => "error",
        };
        let number = 1 + self
            .rebalances
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let _span = tracing::info_span!("rebalance", rebalance = number, kind).entered();
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.prepare(consumer, tpl);
                let assigned = match cooperative {
                    true => consumer.incremental_assign(tpl),
                    false => consumer.assign(tpl),
                };
                self.broker_answered();
                match assigned {
                    Ok(()) => {
                        self.held(tpl);
                        tracing::info!(partitions = ?describe(tpl), "partitions assigned")
                    }
                    Err(error) => tracing::error!(%error, "assigning partitions failed"),
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // A partition given up is another member's to report: its last lag would
                // otherwise stay exported by this instance.
                for e in tpl.elements() {
                    let labels = [e.topic(), &e.partition().to_string()];
                    let _ = self.metrics.consumer_lag.remove_label_values(&labels);
                    let _ = self.metrics.committed_offset.remove_label_values(&labels);
                }
                // For the delivery stage (which forgets the partitions' stored offsets once
                // the batches read before the revocation are delivered) and the index.
                self.record(RebalanceEvent::Revoked(partitions(tpl)));
                let unassigned = match cooperative {
                    true => consumer.incremental_unassign(tpl),
                    false => consumer.unassign(),
                };
                self.released(match cooperative {
                    true => Some(tpl),
                    false => None,
                });
                match unassigned {
                    Ok(()) => tracing::info!(partitions = ?describe(tpl), "partitions revoked"),
                    Err(error) => tracing::error!(%error, "unassigning partitions failed"),
                }
            }
            other => {
                tracing::warn!(error = ?other, "rebalance error");
                let _ = consumer.unassign();
                self.released(None);
            }
        }
    }
}

/// `fetch_state` is librdkafka's, when judged at its statistics.
fn log_change(topic: &str, partition: i32, change: &stall::Change, fetch_state: Option<&str>) {
    match change {
        stall::Change::Stalled {
            idle,
            position: None,
            high_watermark: None,
        } => tracing::warn!(
            %topic,
            partition,
            idle_s = idle.as_secs(),
            ?fetch_state,
            "partition stalled: assigned {} s ago and no statistics of it since (the consumer loop does not poll: see what the delivery stage and the index processor wait on)",
            idle.as_secs()
        ),
        stall::Change::Stalled {
            idle,
            position,
            high_watermark,
        } => tracing::warn!(
            %topic,
            partition,
            idle_s = idle.as_secs(),
            ?position,
            ?high_watermark,
            ?fetch_state,
            "partition stalled: assigned but not advancing while its log has messages ahead"
        ),
        stall::Change::Recovered => tracing::info!(%topic, partition, "partition advancing again"),
    }
}

/// `topic/partition:offset` of each element, for the log.
fn describe_offsets(tpl: &rdkafka::TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(offset) => format!("{}/{}:{offset}", e.topic(), e.partition()),
            other => format!("{}/{}:{other:?}", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn partitions(tpl: &TopicPartitionList) -> Vec<(String, i32)> {
    tpl.elements()
        .iter()
        .map(|e| (e.topic().to_owned(), e.partition()))
        .collect()
}

fn describe(tpl: &rdkafka::TopicPartitionList) -> Vec<String> {
    tpl.elements()
        .iter()
        .map(|e| format!("{}/{}", e.topic(), e.partition()))
        .collect()
}

pub type IngestConsumer = StreamConsumer<IngestContext>;

pub fn ingest_consumer(
    kafka: &KafkaConfig,
    pipeline: &PipelineConfig,
    metrics: Metrics,
    reach: BrokerReach,
    index: Option<IndexStates>,
) -> Result<IngestConsumer, rdkafka::error::KafkaError> {
    super::client_config(kafka)
        .set("group.id", &kafka.group_id)
        .set("enable.auto.commit", "true")
        .set(
            "auto.commit.interval.ms",
            pipeline.commit_interval_ms.to_string(),
        )
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set(
            "statistics.interval.ms",
            crate::config::STATISTICS_INTERVAL_MS.to_string(),
        )
        // Bounds what librdkafka prefetches (per partition) while the pipeline is paused on
        // a failing sink or behind in a catch-up: 6 MiB is seconds of a partition's
        // traffic, and 8 partitions of it stay well inside the process's memory budget
        // (4 MiB halved a full-scale catch-up's speed; BENCHMARKS.md).
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES)
        // Headroom for a ClickHouse outage before the group considers us dead; if exceeded,
        // the partitions are re-consumed from the last commit and duplicates collapse.
        .set(
            "max.poll.interval.ms",
            pipeline.max_poll_interval_ms.to_string(),
        )
        // Index values are written within a flush interval of their events being read; a
        // fetch must not wait on the broker for half a second first (librdkafka's default).
        .set("fetch.wait.max.ms", "100")
        .create_with_context(context(metrics, reach, index, pipeline))
}

/// librdkafka's prefetch per partition (`queued.max.messages.kbytes`), in KiB.
const PREFETCH_KBYTES: &str = "6144";

/// A consumer for `sipas rebuild`: a fresh group reading every partition from its start,
/// committing nothing.
pub fn rebuild_consumer(
    kafka: &KafkaConfig,
    group_id: &str,
    metrics: Metrics,
    reach: BrokerReach,
    index: IndexStates,
) -> Result<IngestConsumer, rdkafka::error::KafkaError> {
    super::client_config(kafka)
        .set("group.id", group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("queued.max.messages.kbytes", PREFETCH_KBYTES)
        .set("max.poll.interval.ms", "600000")
        .create_with_context(context(
            metrics,
            reach,
            Some(index),
            &PipelineConfig::default(),
        ))
}

fn context(
    metrics: Metrics,
    reach: BrokerReach,
    index: Option<IndexStates>,
    pipeline: &PipelineConfig,
) -> IngestContext {
    let stall_after = Duration::from_millis(pipeline.stall_after_ms);
    IngestContext {
        metrics,
        watch: Mutex::new(ProgressWatch::new(stall_after, Instant::now())),
        index,
        events: Mutex::new(Vec::new()),
        rebalances: Default::default(),
        rebalanced: tokio::sync::Notify::new(),
        max_poll_interval_ms: pipeline.max_poll_interval_ms,
        reach,
        statistics_made: AtomicInstant::new(Instant::now()),
    }
}
