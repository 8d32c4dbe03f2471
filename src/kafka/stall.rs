//! Whether assigned partitions advance, and whether this instance holds any (pure; the
//! clock is passed in). Fed from librdkafka's statistics by `kafka::consumer`, which turns
//! the answers into metrics and log lines.
//!
//! A partition is *stalled* when none of its consumed, stored and committed offsets has
//! moved for `stall_after` while the log had messages ahead of its position (what is
//! consumed and acknowledged). A partition that is caught up is never stalled, however
//! quiet its topic. A partition of which no statistics arrived since it was assigned counts
//! as not advancing from its assignment on: the consumer loop polls no more (statistics
//! come with its polls), so nothing shows whether it is behind, and a loop blocked right
//! after a rebalance is otherwise never reported.
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// An instance holding no partitions is warned about at most this often.
pub const UNASSIGNED_WARNING_EVERY: Duration = Duration::from_secs(60);

/// One partition as librdkafka's statistics describe it. Offsets librdkafka does not know
/// yet (its -1001) are `None`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Observation {
    /// The lower of the next offset handed to the application and the stored one (a
    /// batch consumed but not yet acknowledged is not progress), else the committed one.
    /// Behind a committed offset while the index re-reads.
    pub position: Option<i64>,
    /// The consumed, stored and committed offsets: the partition advances when any moves.
    pub marks: [Option<i64>; 3],
    /// The log start offset.
    pub low_watermark: Option<i64>,
    /// The offset the next produced message gets.
    pub high_watermark: Option<i64>,
}

impl Observation {
    /// From librdkafka's partition statistics.
    pub fn from_offsets(app: i64, stored: i64, committed: i64, low: i64, high: i64) -> Self {
        let known = |o: i64| (o >= 0).then_some(o);
        Self {
            position: match (known(app), known(stored)) {
                (Some(app), Some(stored)) => Some(app.min(stored)),
                (app, stored) => app.or(stored).or(known(committed)),
            },
            marks: [known(app), known(stored), known(committed)],
            low_watermark: known(low),
            high_watermark: known(high),
        }
    }

    /// Whether the log holds messages the partition has not reached. Unknown when the high
    /// watermark is (no fetch answered yet): not counted as behind.
    fn behind(&self) -> bool {
        match (self.high_watermark, self.position) {
            (Some(high), Some(position)) => high > position,
            (Some(high), None) => high > self.low_watermark.unwrap_or(0),
            (None, _) => false,
        }
    }
}

/// A partition's stall state changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Not advancing for `idle` with messages ahead.
    Stalled {
        idle: Duration,
        position: Option<i64>,
        high_watermark: Option<i64>,
    },
    /// Advancing again (or caught up) after having been stalled.
    Recovered,
}

#[derive(Debug, Clone)]
struct Partition {
    marks: [Option<i64>; 3],
    /// The latest observation, for the log when judged between observations.
    seen: Observation,
    /// Since when the position has not moved while behind the high watermark.
    behind_since: Option<Instant>,
    stalled: bool,
}

/// The partitions this instance holds and how each progresses.
#[derive(Debug, Clone)]
pub struct ProgressWatch {
    stall_after: Duration,
    partitions: BTreeMap<(String, i32), Partition>,
    last_rebalance: Instant,
    last_unassigned_warning: Option<Instant>,
}

impl ProgressWatch {
    /// `now` counts as the last rebalance: an instance that never got an assignment is
    /// warned about `stall_after` after it started.
    pub fn new(stall_after: Duration, now: Instant) -> Self {
        Self {
            stall_after,
            partitions: BTreeMap::new(),
            last_rebalance: now,
            last_unassigned_warning: None,
        }
    }

    pub fn assigned_count(&self) -> usize {
        self.partitions.len()
    }

    pub fn is_assigned(&self, topic: &str, partition: i32) -> bool {
        self.partitions.contains_key(&(topic.to_owned(), partition))
    }

    /// Partitions given to this instance; each is not stalled, and not known to advance
    /// until its first statistics.
    pub fn assign(&mut self, partitions: &[(String, i32)], now: Instant) {
        self.last_rebalance = now;
        self.last_unassigned_warning = None;
        for key in partitions {
            self.partitions.insert(
                key.clone(),
                Partition {
                    marks: [None; 3],
                    seen: Observation::default(),
                    behind_since: Some(now),
                    stalled: false,
                },
            );
        }
    }

    /// Partitions taken away; returns those that were held.
    pub fn revoke(&mut self, partitions: &[(String, i32)], now: Instant) -> Vec<(String, i32)> {
        self.last_rebalance = now;
        partitions
            .iter()
            .filter(|key| self.partitions.remove(*key).is_some())
            .cloned()
            .collect()
    }

    /// Every partition taken away (an eager unassign); returns those that were held.
    pub fn revoke_all(&mut self, now: Instant) -> Vec<(String, i32)> {
        self.last_rebalance = now;
        std::mem::take(&mut self.partitions).into_keys().collect()
    }

    /// Notes one partition's statistics. `None` for a partition not held, or when its
    /// stall state did not change.
    pub fn observe(
        &mut self,
        topic: &str,
        partition: i32,
        seen: Observation,
        now: Instant,
    ) -> Option<Change> {
        let stall_after = self.stall_after;
        let p = self.partitions.get_mut(&(topic.to_owned(), partition))?;
        let behind = seen.behind();
        if seen.marks != p.marks || !behind {
            p.marks = seen.marks;
            p.behind_since = behind.then_some(now);
        } else if p.behind_since.is_none() {
            p.behind_since = Some(now);
        }
        p.seen = seen;
        judge(p, stall_after, now)
    }

    /// Judges every held partition at `now` from its latest observation: statistics arrive
    /// only while the consumer polls, and a consumer loop blocked downstream polls no more.
    pub fn check(&mut self, now: Instant) -> Vec<((String, i32), Change)> {
        let stall_after = self.stall_after;
        self.partitions
            .iter_mut()
            .filter_map(|(key, p)| Some((key.clone(), judge(p, stall_after, now)?)))
            .collect()
    }

    /// Every held partition with its (stalled, time not advancing while behind) at `now`.
    pub fn statuses(&self, now: Instant) -> Vec<(&(String, i32), bool, Duration)> {
        self.partitions
            .iter()
            .map(|(key, p)| (key, p.stalled, idle(p, now)))
            .collect()
    }

    /// A held partition's (stalled, time not advancing while behind) as of `now`.
    pub fn status(&self, topic: &str, partition: i32, now: Instant) -> Option<(bool, Duration)> {
        let p = self.partitions.get(&(topic.to_owned(), partition))?;
        Some((p.stalled, idle(p, now)))
    }

    /// Whether a warning that this instance holds no partitions may be due: none held for
    /// `stall_after` since the last rebalance, and not warned within
    /// `UNASSIGNED_WARNING_EVERY`. The caller then learns how many partitions the topics
    /// have and asks `unassigned_warning`.
    pub fn unassigned_due(&self, now: Instant) -> bool {
        let since = now.saturating_duration_since(self.last_rebalance);
        let quiet = self
            .last_unassigned_warning
            .is_none_or(|last| now.saturating_duration_since(last) >= UNASSIGNED_WARNING_EVERY);
        self.partitions.is_empty() && since >= self.stall_after && quiet
    }

    /// Whether to warn now that this instance holds no partitions while the topics have
    /// `topic_partitions`; if so, noted as warned, and the time since the last rebalance.
    pub fn unassigned_warning(
        &mut self,
        topic_partitions: usize,
        now: Instant,
    ) -> Option<Duration> {
        if !self.unassigned_due(now) || topic_partitions == 0 {
            return None;
        }
        self.last_unassigned_warning = Some(now);
        Some(now.saturating_duration_since(self.last_rebalance))
    }
}

/// Updates the partition's stall flag at `now`; the change, if any.
fn judge(p: &mut Partition, stall_after: Duration, now: Instant) -> Option<Change> {
    let idle = idle(p, now);
    let stalled = p.behind_since.is_some() && idle >= stall_after;
    let change = match (p.stalled, stalled) {
        (false, true) => Some(Change::Stalled {
            idle,
            position: p.seen.position,
            high_watermark: p.seen.high_watermark,
        }),
        (true, false) => Some(Change::Recovered),
        _ => None,
    };
    p.stalled = stalled;
    change
}

fn idle(p: &Partition, now: Instant) -> Duration {
    p.behind_since
        .map(|since| now.saturating_duration_since(since))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(60);

    fn at(start: Instant, secs: u64) -> Instant {
        start + Duration::from_secs(secs)
    }

    /// Consumed and stored up to `position`.
    fn seen(position: i64, high: i64) -> Observation {
        Observation::from_offsets(position, position, -1001, 0, high)
    }

    fn watch_with(start: Instant, partitions: &[(&str, i32)]) -> ProgressWatch {
        let mut watch = ProgressWatch::new(AFTER, start);
        let owned: Vec<_> = partitions
            .iter()
            .map(|(t, p)| (t.to_string(), *p))
            .collect();
        watch.assign(&owned, start);
        watch
    }

    #[test]
    fn unknown_offsets_are_none_and_the_position_is_the_consumed_one_if_known() {
        // The index re-reads from 3 below a committed 500.
        assert_eq!(
            Observation::from_offsets(3, -1001, 500, 0, 400).position,
            Some(3)
        );
        // Consumed to 100, acknowledged to 90: 10 messages still to be delivered.
        assert_eq!(
            Observation::from_offsets(100, 90, 80, 0, 100).position,
            Some(90)
        );
        let o = Observation::from_offsets(-1001, 7, 5, -1001, 9);
        assert_eq!(o.position, Some(7));
        assert_eq!(o.low_watermark, None);
        assert_eq!(o.high_watermark, Some(9));
        assert_eq!(
            Observation::from_offsets(-1001, -1001, -1001, 0, 0).position,
            None
        );
    }

    #[test]
    fn stalls_once_after_the_threshold_while_behind_and_recovers_when_it_moves() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("s", 0)]);
        assert_eq!(w.observe("s", 0, seen(10, 20), at(t, 0)), None);
        assert_eq!(w.observe("s", 0, seen(10, 20), at(t, 59)), None);
        assert_eq!(
            w.status("s", 0, at(t, 59)),
            Some((false, Duration::from_secs(59)))
        );
        assert_eq!(
            w.observe("s", 0, seen(10, 25), at(t, 60)),
            Some(Change::Stalled {
                idle: AFTER,
                position: Some(10),
                high_watermark: Some(25)
            })
        );
        // Reported once, not at every observation.
        assert_eq!(w.observe("s", 0, seen(10, 25), at(t, 65)), None);
        assert_eq!(
            w.status("s", 0, at(t, 65)),
            Some((true, Duration::from_secs(65)))
        );
        assert_eq!(
            w.observe("s", 0, seen(11, 25), at(t, 70)),
            Some(Change::Recovered)
        );
        assert_eq!(w.status("s", 0, at(t, 70)), Some((false, Duration::ZERO)));
    }

    #[test]
    fn stalls_between_observations_when_statistics_stop() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("s", 0), ("s", 1)]);
        w.observe("s", 0, seen(10, 20), at(t, 0));
        w.observe("s", 1, seen(20, 20), at(t, 0));
        assert!(w.check(at(t, 59)).is_empty());
        let changes = w.check(at(t, 60));
        assert_eq!(
            changes,
            vec![(
                ("s".to_string(), 0),
                Change::Stalled {
                    idle: AFTER,
                    position: Some(10),
                    high_watermark: Some(20)
                }
            )]
        );
        assert!(w.check(at(t, 90)).is_empty());
        let statuses = w.statuses(at(t, 90));
        assert!(statuses[0].1);
        assert_eq!(statuses[0].2, Duration::from_secs(90));
        assert_eq!((statuses[1].1, statuses[1].2), (false, Duration::ZERO));
        // The next observation that moves recovers it.
        assert_eq!(
            w.observe("s", 0, seen(12, 20), at(t, 95)),
            Some(Change::Recovered)
        );
    }

    #[test]
    fn a_caught_up_partition_never_stalls_however_quiet() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("s", 0)]);
        for secs in [0, 100, 1000] {
            assert_eq!(w.observe("s", 0, seen(20, 20), at(t, secs)), None);
            assert_eq!(w.status("s", 0, at(t, secs)), Some((false, Duration::ZERO)));
        }
        // New messages: the clock starts when they are first seen, not when it last moved.
        assert_eq!(w.observe("s", 0, seen(20, 21), at(t, 1005)), None);
        assert_eq!(w.observe("s", 0, seen(20, 21), at(t, 1064)), None);
        assert!(matches!(
            w.observe("s", 0, seen(20, 21), at(t, 1065)),
            Some(Change::Stalled { .. })
        ));
        // Reading the new message catches up and recovers.
        assert_eq!(
            w.observe("s", 0, seen(21, 21), at(t, 1070)),
            Some(Change::Recovered)
        );
    }

    #[test]
    fn reading_behind_the_committed_offset_is_advancing() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("s", 0)]);
        for secs in 0..10u64 {
            let read = Observation::from_offsets(secs as i64 * 10, -1001, 500, 0, 500);
            assert_eq!(w.observe("s", 0, read, at(t, secs * 30)), None);
        }
        // Stuck there with the log ahead: stalled.
        let stuck = Observation::from_offsets(90, -1001, 500, 0, 500);
        assert!(matches!(
            w.observe("s", 0, stuck, at(t, 330)),
            Some(Change::Stalled { .. })
        ));
    }

    #[test]
    fn consumed_to_the_end_but_never_acknowledged_stalls() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("s", 0)]);
        let waiting = Observation::from_offsets(50, 40, 40, 0, 50);
        assert_eq!(w.observe("s", 0, waiting, at(t, 0)), None);
        assert!(matches!(
            w.check(at(t, 60)).as_slice(),
            [(
                _,
                Change::Stalled {
                    position: Some(40),
                    ..
                }
            )]
        ));
    }

    #[test]
    fn a_partition_that_keeps_moving_while_behind_is_not_stalled() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("s", 0)]);
        for (i, secs) in (0..20u64).map(|i| (i, i * 30)) {
            let position = i as i64 * 100;
            assert_eq!(
                w.observe("s", 0, seen(position, 1_000_000), at(t, secs)),
                None
            );
        }
    }

    #[test]
    fn a_partition_without_statistics_since_its_assignment_stalls() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("h", 0), ("h", 1)]);
        // Statistics of one partition came; then none (the loop stopped polling).
        w.observe("h", 1, seen(7, 7), at(t, 1));
        assert!(w.check(at(t, 59)).is_empty());
        assert_eq!(
            w.check(at(t, 60)),
            vec![(
                ("h".to_string(), 0),
                Change::Stalled {
                    idle: AFTER,
                    position: None,
                    high_watermark: None
                }
            )]
        );
        // Its first statistics show it caught up: not stalled.
        assert_eq!(
            w.observe("h", 0, seen(40, 40), at(t, 61)),
            Some(Change::Recovered)
        );
        assert!(w.check(at(t, 500)).is_empty());
    }

    #[test]
    fn a_partition_never_read_with_messages_in_the_log_stalls() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("h", 3)]);
        let never_read = Observation::from_offsets(-1001, -1001, -1001, 0, 40);
        assert_eq!(w.observe("h", 3, never_read, at(t, 5)), None);
        assert!(matches!(
            w.observe("h", 3, never_read, at(t, 65)),
            Some(Change::Stalled { position: None, .. })
        ));
        // Without a known high watermark nothing is known to be ahead.
        let mut w = watch_with(t, &[("h", 3)]);
        let unknown = Observation::from_offsets(-1001, -1001, -1001, -1001, -1001);
        for secs in [5, 65, 500] {
            assert_eq!(w.observe("h", 3, unknown, at(t, secs)), None);
        }
    }

    #[test]
    fn partitions_not_held_are_ignored_and_revocation_forgets_them() {
        let t = Instant::now();
        let mut w = watch_with(t, &[("s", 0), ("s", 1)]);
        assert_eq!(w.observe("s", 9, seen(0, 10), at(t, 100)), None);
        assert_eq!(w.status("s", 9, at(t, 100)), None);
        w.observe("s", 1, seen(0, 10), at(t, 0));
        assert!(w.observe("s", 1, seen(0, 10), at(t, 60)).is_some());
        assert_eq!(
            w.revoke(&[("s".into(), 1), ("s".into(), 7)], at(t, 61)),
            vec![("s".to_string(), 1)]
        );
        assert_eq!(w.assigned_count(), 1);
        // Assigned again: a fresh start, not the old stall.
        w.assign(&[("s".into(), 1)], at(t, 62));
        assert_eq!(w.status("s", 1, at(t, 62)), Some((false, Duration::ZERO)));
        assert_eq!(w.revoke_all(at(t, 63)).len(), 2);
        assert_eq!(w.assigned_count(), 0);
    }

    #[test]
    fn no_partitions_is_warned_after_the_grace_period_and_then_once_a_minute() {
        let t = Instant::now();
        let mut w = ProgressWatch::new(AFTER, t);
        assert!(!w.unassigned_due(at(t, 59)));
        assert_eq!(w.unassigned_warning(8, at(t, 59)), None);
        assert!(w.unassigned_due(at(t, 60)));
        assert_eq!(w.unassigned_warning(8, at(t, 60)), Some(AFTER));
        assert!(!w.unassigned_due(at(t, 61)));
        assert_eq!(w.unassigned_warning(8, at(t, 61)), None);
        assert_eq!(w.unassigned_warning(8, at(t, 119)), None);
        assert_eq!(
            w.unassigned_warning(8, at(t, 120)),
            Some(Duration::from_secs(120))
        );
        // A rebalance restarts the grace period.
        w.revoke_all(at(t, 130));
        assert_eq!(w.unassigned_warning(8, at(t, 189)), None);
        assert_eq!(w.unassigned_warning(8, at(t, 190)), Some(AFTER));
    }

    #[test]
    fn no_warning_while_holding_partitions_or_when_the_topics_have_none() {
        let t = Instant::now();
        let mut w = ProgressWatch::new(AFTER, t);
        assert_eq!(w.unassigned_warning(0, at(t, 600)), None);
        // Not noted as warned: the topics may gain partitions.
        assert_eq!(
            w.unassigned_warning(2, at(t, 601)),
            Some(Duration::from_secs(601))
        );
        w.assign(&[("s".into(), 0)], at(t, 600));
        assert!(!w.unassigned_due(at(t, 6000)));
        assert_eq!(w.unassigned_warning(8, at(t, 6000)), None);
        w.revoke(&[("s".into(), 0)], at(t, 6000));
        assert_eq!(w.unassigned_warning(8, at(t, 6060)), Some(AFTER));
    }
}
