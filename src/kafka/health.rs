//! Whether the ingest consumer reaches its brokers, and when to say so. Pure (the clock is
//! passed in): librdkafka reconnects by itself, so an unreachable broker is a state to
//! report, once when it begins, again while it lasts, and once when it ends, rather than
//! an error per reconnection attempt.
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
}

impl BrokerHealth {
    /// A connection attempt failed, or librdkafka reports every broker down.
    pub fn connection_failed(&mut self, now: Instant) -> Option<Change> {
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

    /// A broker answered (a message, a rebalance, or statistics showing one up).
    pub fn answered(&mut self, now: Instant) -> Option<Change> {
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
