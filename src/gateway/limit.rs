//! Requests per second per token: a token bucket (sustained rate, burst capacity).
//! The clock is passed in, so the arithmetic is tested without sleeping.
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_second: f64,
    available: f64,
    updated: Instant,
}

impl TokenBucket {
    pub fn full(capacity: u32, per_second: f64, now: Instant) -> Self {
        Self {
            capacity: f64::from(capacity),
            per_second,
            available: f64::from(capacity),
            updated: now,
        }
    }

    /// Takes one request's worth, or says how long until one is available.
    pub fn take(&mut self, now: Instant) -> Result<(), Duration> {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.available = (self.available + elapsed * self.per_second).min(self.capacity);
        self.updated = now;
        if self.available >= 1.0 {
            self.available -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - self.available) / self.per_second,
            ))
        }
    }
}

/// One bucket per grant name; a grant may bring its own capacity and rate.
#[derive(Debug)]
pub struct RateLimiter {
    capacity: u32,
    per_second: f64,
    buckets: Mutex<HashMap<String, TokenBucket>>,
}

impl RateLimiter {
    pub fn new(capacity: u32, per_second: f64) -> Self {
        Self {
            capacity,
            per_second,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    pub fn check(
        &self,
        key: &str,
        own: (Option<u32>, Option<f64>),
        now: Instant,
    ) -> Result<(), Duration> {
        let (capacity, per_second) = (
            own.0.unwrap_or(self.capacity),
            own.1.unwrap_or(self.per_second),
        );
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        buckets
            .entry(key.to_owned())
            .or_insert_with(|| TokenBucket::full(capacity, per_second, now))
            .take(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_sustained_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::full(3, 2.0, start);
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        assert!(bucket.take(start).is_ok());
        let wait = bucket.take(start).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert!(bucket.take(start + Duration::from_millis(499)).is_err());
        assert!(bucket.take(start + Duration::from_millis(1000)).is_ok());
        // Idle time refills at most to the capacity.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert!(bucket.take(later).is_ok());
        }
        assert!(bucket.take(later).is_err());
    }

    #[test]
    fn tokens_have_separate_buckets() {
        let now = Instant::now();
        let limiter = RateLimiter::new(1, 1.0);
        assert!(limiter.check("a", (None, None), now).is_ok());
        assert!(limiter.check("a", (None, None), now).is_err());
        assert!(limiter.check("b", (None, None), now).is_ok());
        assert!(limiter.check("c", (Some(2), None), now).is_ok());
        assert!(limiter.check("c", (Some(2), None), now).is_ok());
        assert!(limiter.check("c", (Some(2), None), now).is_err());
    }
}
