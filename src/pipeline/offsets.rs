//! The delivery stage's offset store: a batch's offsets, once everything derived from it
//! was acknowledged, are stored for librdkafka's next commit, per partition.
//!
//! A partition can be revoked between the consumer loop reading a batch and the delivery
//! stage storing its offsets: the loop reads ahead (one batch queued, one in hand) and the
//! revocation happens inside its poll, while the stage still writes what came before it.
//! librdkafka (since 1.9) refuses to store an offset for a partition not assigned to the
//! consumer (`__STATE`, "Erroneous state", per partition; the whole call fails with it
//! when no partition could be stored), so that an old offset cannot later be committed
//! over what a new owner committed. That is the expected case, not an error: the batch's
//! rows are in ClickHouse already, and whoever holds the partition next resumes from its
//! last committed offset; what it reads again collapses in the raw tables (invariant 4),
//! is dead-lettered again (at least once) and is skipped or re-folded by the index as its
//! checkpoint says (invariant 9). Storing fewer offsets only ever moves a commit back.
//!
//! So each partition's outcome is read from the list librdkafka returns: the stored
//! offsets are exported (`sipas_stored_offset`) and kept for the final commit, a revoked
//! partition's are skipped and counted (`sipas_offsets_store_skipped_total{reason}`), and a
//! revocation handed on by the consumer loop forgets the partitions it names, so neither
//! the gauge nor the final commit speaks of a partition this instance gave up.
use std::collections::BTreeMap;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::metrics::Metrics;

/// What became of one partition's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    Stored,
    /// The partition is not assigned to this consumer any more: revoked after the batch
    /// was consumed.
    Revoked,
    /// Any other refusal.
    Failed(RDKafkaErrorCode),
}

impl Stored {
    /// The `reason` label of `sipas_offsets_store_skipped_total`, for an offset not stored.
    pub fn skipped_reason(self) -> Option<&'static str> {
        match self {
            Stored::Stored => None,
            Stored::Revoked => Some("revoked"),
            Stored::Failed(_) => Some("error"),
        }
    }
}

/// One partition's outcome of `rd_kafka_offsets_store`: `call` is what the call returned,
/// `partition` the error librdkafka set on the partition's element. librdkafka sets every
/// element's error unless it refuses the whole call (`__INVALID_ARG`: the automatic offset
/// store is enabled), and returns `__STATE` or `__UNKNOWN_PARTITION` only when no element
/// could be stored (each then carries its own error).
pub fn outcome(call: Option<RDKafkaErrorCode>, partition: Option<RDKafkaErrorCode>) -> Stored {
    match call {
        Some(call)
            if !matches!(
                call,
                RDKafkaErrorCode::State | RDKafkaErrorCode::UnknownPartition
            ) =>
        {
            Stored::Failed(call)
        }
        _ => match partition.or(call) {
            None => Stored::Stored,
            Some(RDKafkaErrorCode::State) => Stored::Revoked,
            Some(code) => Stored::Failed(code),
        },
    }
}

/// The offsets stored by this process, for the gauge and the final commit.
pub struct OffsetStore {
    metrics: Metrics,
    /// Per held partition, the offset last stored; committed synchronously at shutdown.
    stored: BTreeMap<(String, i32), i64>,
}

impl OffsetStore {
    pub fn new(metrics: Metrics) -> Self {
        Self {
            metrics,
            stored: BTreeMap::new(),
        }
    }

    /// Stores `next_offsets` (per partition, the next offset to read) for commit; returns
    /// each partition's outcome. Only stored offsets are exported and kept.
    pub fn store<C: ConsumerContext, K: Consumer<C>>(
        &mut self,
        consumer: &K,
        next_offsets: &BTreeMap<(String, i32), i64>,
    ) -> BTreeMap<(String, i32), Stored> {
        let mut tpl = TopicPartitionList::new();
        let mut outcomes = BTreeMap::new();
        for ((topic, partition), offset) in next_offsets {
            if let Err(error) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*offset))
            {
                outcomes.insert(
                    (topic.clone(), *partition),
                    Stored::Failed(error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail)),
                );
            }
        }
        let call = consumer
            .store_offsets(&tpl)
            .err()
            .map(|error| error.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail));
        // librdkafka wrote each partition's error into the list.
        for element in tpl.elements() {
            let partition = element.error().err().and_then(|e| e.rdkafka_error_code());
            outcomes.insert(
                (element.topic().to_owned(), element.partition()),
                outcome(call, partition),
            );
        }
        for ((topic, partition), stored) in &outcomes {
            match stored.skipped_reason() {
                None => {
                    let offset = next_offsets[&(topic.clone(), *partition)];
                    self.metrics
                        .committed_offset
                        .with_label_values(&[topic, &partition.to_string()])
                        .set(offset);
                    self.stored.insert((topic.clone(), *partition), offset);
                }
                Some(reason) => self
                    .metrics
                    .offsets_store_skipped
                    .with_label_values(&[reason])
                    .inc(),
            }
        }
        outcomes
    }

    /// Forgets partitions handed on as revoked: what was stored for them is librdkafka's
    /// to commit at the revocation (it clears its own store when a partition is assigned
    /// again), not this process's at shutdown.
    pub fn revoked(&mut self, partitions: &[(String, i32)]) {
        for (topic, partition) in partitions {
            self.stored.remove(&(topic.clone(), *partition));
            let _ = self
                .metrics
                .committed_offset
                .remove_label_values(&[topic, &partition.to_string()]);
        }
    }

    /// The offsets stored and not revoked since, per partition.
    pub fn stored(&self) -> &BTreeMap<(String, i32), i64> {
        &self.stored
    }

    /// Synchronously commits everything stored for partitions still held.
    pub fn commit<C: ConsumerContext, K: Consumer<C>>(&self, consumer: &K) {
        let assignment = match consumer.assignment() {
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
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => tracing::info!(partitions = tpl.count(), "offsets committed at shutdown"),
            Err(error) => {
                tracing::warn!(%error, "final offset commit failed; the last acknowledged batch may be re-consumed")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rdkafka::consumer::BaseConsumer;
    use rdkafka::mocking::MockCluster;
    use rdkafka::ClientConfig;

    use super::*;
    use RDKafkaErrorCode::{InvalidArgument, State, UnknownPartition};

    #[test]
    fn a_partition_not_assigned_is_revoked_and_any_other_refusal_an_error() {
        assert_eq!(outcome(None, None), Stored::Stored);
        // Some partitions stored: the call succeeds, the others carry their error.
        assert_eq!(outcome(None, Some(State)), Stored::Revoked);
        assert_eq!(
            outcome(None, Some(UnknownPartition)),
            Stored::Failed(UnknownPartition)
        );
        // None stored: the call fails with the last partition's error.
        assert_eq!(outcome(Some(State), Some(State)), Stored::Revoked);
        assert_eq!(
            outcome(Some(State), Some(UnknownPartition)),
            Stored::Failed(UnknownPartition)
        );
        assert_eq!(outcome(Some(State), None), Stored::Revoked);
        // The whole call refused: no partition's error was set, none was stored.
        assert_eq!(
            outcome(Some(InvalidArgument), None),
            Stored::Failed(InvalidArgument)
        );
        assert_eq!(Stored::Revoked.skipped_reason(), Some("revoked"));
        assert_eq!(Stored::Failed(State).skipped_reason(), Some("error"));
        assert_eq!(Stored::Stored.skipped_reason(), None);
    }

    const TOPIC: &str = "surveys";

    fn series(metrics: &Metrics, name: &str) -> Vec<String> {
        metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_owned)
            .collect()
    }

    fn assign(consumer: &BaseConsumer, partitions: &[i32]) {
        let mut tpl = TopicPartitionList::new();
        for partition in partitions {
            tpl.add_partition_offset(TOPIC, *partition, Offset::Beginning)
                .unwrap();
        }
        consumer.assign(&tpl).unwrap();
    }

    /// A partition revoked after its batch was consumed (held, then given up in an
    /// assignment without it): its offset is not stored, exported or committed, and is
    /// counted as skipped; the partition still held is stored.
    #[test]
    fn offsets_of_a_revoked_partition_are_skipped_and_never_exported_or_committed() {
        let cluster = MockCluster::new(1).unwrap();
        cluster.create_topic(TOPIC, 2, 1).unwrap();
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", cluster.bootstrap_servers())
            .set("group.id", "offsets-test")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .create()
            .unwrap();
        let metrics = Metrics::new();
        let mut store = OffsetStore::new(metrics.clone());
        let key = |partition: i32| (TOPIC.to_string(), partition);
        let skipped = |reason: &str| {
            metrics
                .offsets_store_skipped
                .with_label_values(&[reason])
                .get()
        };

        assign(&consumer, &[0, 1]);
        let outcomes = store.store(&consumer, &BTreeMap::from([(key(0), 10), (key(1), 20)]));
        assert!(
            outcomes.values().all(|o| *o == Stored::Stored),
            "{outcomes:?}"
        );
        assert_eq!(series(&metrics, "sipas_stored_offset").len(), 2);

        // Partition 1 revoked; the consumer loop has not handed the revocation on yet.
        assign(&consumer, &[0]);
        let outcomes = store.store(&consumer, &BTreeMap::from([(key(0), 30), (key(1), 40)]));
        assert_eq!(
            outcomes,
            BTreeMap::from([(key(0), Stored::Stored), (key(1), Stored::Revoked)])
        );
        // Only the revoked partition in the batch: librdkafka fails the whole call.
        let outcomes = store.store(&consumer, &BTreeMap::from([(key(1), 50)]));
        assert_eq!(outcomes, BTreeMap::from([(key(1), Stored::Revoked)]));
        assert_eq!(skipped("revoked"), 2);
        assert_eq!(skipped("error"), 0);
        assert_eq!(store.stored()[&key(0)], 30);
        assert_eq!(
            store.stored()[&key(1)],
            20,
            "its last stored offset, not 40 or 50"
        );

        // The revocation handed on: partition 1 is neither exported nor committed.
        store.revoked(&[key(1)]);
        assert_eq!(store.stored(), &BTreeMap::from([(key(0), 30)]));
        let exported = series(&metrics, "sipas_stored_offset");
        assert_eq!(exported.len(), 1, "{exported:?}");
        assert!(exported[0].contains("partition=\"0\""), "{exported:?}");
        assert!(exported[0].ends_with(" 30"), "{exported:?}");

        store.commit(&consumer);
        let mut both = TopicPartitionList::new();
        both.add_partition(TOPIC, 0);
        both.add_partition(TOPIC, 1);
        let committed = consumer
            .committed_offsets(both, Duration::from_secs(10))
            .expect("committed offsets");
        let offset = |partition: i32| {
            committed
                .find_partition(TOPIC, partition)
                .map(|e| e.offset())
        };
        assert_eq!(offset(0), Some(Offset::Offset(30)));
        assert_eq!(
            offset(1),
            Some(Offset::Invalid),
            "a partition not held is not committed"
        );
    }
}
