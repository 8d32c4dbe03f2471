//! Whether the process reaches its brokers, and when to say so. Pure (the clock is passed
//! in): librdkafka reconnects by itself, so an unreachable broker is a state to report,
//! once when it begins, again while it lasts, and once when it ends, rather than an error
//! per reconnection attempt.
//!
//! Several clients observe the brokers (the consumer, the dead-letter producer), and some
//! observations arrive late: what the consumer reads was queued behind the messages it
//! prefetched, for as long as its loop waited. So each observation carries the instant it
//! was made, and one made before the newest taken is stale and ignored.
use std::time::{Duration, Instant};

/// How often a lasting outage is reported again.
pub const REPEAT_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// No broker answered yet since start-up, or none answers any more.
    Unreachable,
    /// Still none, for this long.
    StillUnreachable(Duration),
    /// A broker answers (again); `after` is how long none did, if one was missed.
    Reachable { after: Option<Duration> },
}

#[derive(Debug, Default)]
pub struct BrokerHealth {
    /// None until the first observation.
    reachable: Option<bool>,
    unreachable_since: Option<Instant>,
    last_reported: Option<Instant>,
    /// When the newest observation taken was made.
    newest: Option<Instant>,
}

impl BrokerHealth {
    /// Whether an observation made at `at` is older than the newest one taken; if not, it
    /// becomes the newest.
    fn stale(&mut self, at: Instant) -> bool {
        if self.newest.is_some_and(|newest| at < newest) {
            return true;
        }
        self.newest = Some(at);
        false
    }

    /// A connection attempt failed, or librdkafka reports every broker down, at `now`.
    pub fn connection_failed(&mut self, now: Instant) -> Option<Change> {
        if self.stale(now) {
            return None;
        }
        if self.reachable != Some(false) {
            self.reachable = Some(false);
            self.unreachable_since = Some(now);
            self.last_reported = Some(now);
            return Some(Change::Unreachable);
        }
        let since = self.unreachable_since.unwrap_or(now);
        if self
            .last_reported
            .is_none_or(|at| now.duration_since(at) >= REPEAT_EVERY)
        {
            self.last_reported = Some(now);
            return Some(Change::StillUnreachable(now.duration_since(since)));
        }
        None
    }

    /// A broker answered at `now` (a delivery, a message, a rebalance, or statistics
    /// showing one up).
    pub fn answered(&mut self, now: Instant) -> Option<Change> {
        if self.stale(now) {
            return None;
        }
        let before = self.reachable.replace(true);
        let since = self.unreachable_since.take();
        match before {
            Some(true) => None,
            _ => Some(Change::Reachable {
                after: since.map(|since| now.duration_since(since)),
            }),
        }
    }

    pub fn is_reachable(&self) -> bool {
        self.reachable == Some(true)
    }

    /// When the newest observation taken was made.
    pub fn newest(&self) -> Option<Instant> {
        self.newest
    }
}

/// How old librdkafka's statistics are, given their `time` (Unix seconds, when they were
/// made) and the wall clock now in Unix microseconds: at least 0, and up to a second more
/// than their true age (`time` is whole seconds).
pub fn statistics_age(time_s: i64, now_micros: u64) -> Duration {
    let made_micros = u64::try_from(time_s).unwrap_or(0).saturating_mul(1_000_000);
    Duration::from_micros(now_micros.saturating_sub(made_micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_outage_is_reported_when_it_begins_while_it_lasts_and_when_it_ends() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut health = BrokerHealth::default();
        assert!(!health.is_reachable());
        assert_eq!(health.connection_failed(at(0)), Some(Change::Unreachable));
        // librdkafka retries many times a second: no report per attempt.
        for s in 1..30 {
            assert_eq!(health.connection_failed(at(s)), None);
        }
        assert_eq!(
            health.connection_failed(at(30)),
            Some(Change::StillUnreachable(Duration::from_secs(30)))
        );
        assert_eq!(health.connection_failed(at(31)), None);
        assert_eq!(
            health.answered(at(42)),
            Some(Change::Reachable {
                after: Some(Duration::from_secs(42))
            })
        );
        assert!(health.is_reachable());
        assert_eq!(health.answered(at(43)), None);
        // A new outage is a new report at once.
        assert_eq!(health.connection_failed(at(44)), Some(Change::Unreachable));
    }

    /// The dead-letter producer says the broker is gone; then the consumer loop, which
    /// waited meanwhile, reads messages fetched before, and, once the producer delivers
    /// again, the connection errors queued during the outage: neither changes the state.
    #[test]
    fn observations_made_before_the_newest_one_are_ignored() {
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        let mut health = BrokerHealth::default();
        assert_eq!(
            health.answered(at(0)),
            Some(Change::Reachable { after: None })
        );
        assert_eq!(health.connection_failed(at(10)), Some(Change::Unreachable));
        assert_eq!(health.answered(at(5)), None, "a message fetched before");
        assert!(!health.is_reachable());
        assert_eq!(
            health.answered(at(20)),
            Some(Change::Reachable {
                after: Some(Duration::from_secs(10))
            })
        );
        assert_eq!(
            health.connection_failed(at(15)),
            None,
            "an error queued before"
        );
        assert!(health.is_reachable());
        assert_eq!(health.newest(), Some(at(20)));
        // Observations made at the same instant are all taken.
        assert_eq!(health.connection_failed(at(20)), Some(Change::Unreachable));
        assert_eq!(
            health.answered(at(20)),
            Some(Change::Reachable {
                after: Some(Duration::ZERO)
            })
        );
    }

    #[test]
    fn statistics_age_is_counted_from_their_whole_second() {
        let now = 1_790_000_010_400_000;
        assert_eq!(
            statistics_age(1_790_000_000, now),
            Duration::from_millis(10_400)
        );
        // A clock that went back, or a negative time, is no age at all or the whole clock.
        assert_eq!(statistics_age(1_790_000_011, now), Duration::ZERO);
        assert_eq!(statistics_age(-1, 5), Duration::from_micros(5));
    }

    #[test]
    fn the_first_answer_is_reported_once() {
        let now = Instant::now();
        let mut health = BrokerHealth::default();
        assert_eq!(
            health.answered(now),
            Some(Change::Reachable { after: None })
        );
        assert_eq!(health.answered(now), None);
    }
}
