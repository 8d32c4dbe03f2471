//! `AtomicInstant`: a monotonic instant that threads share without a lock, kept as
//! nanoseconds after a base instant in an `AtomicU64`. Instants before the base are held
//! as the base.
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct AtomicInstant {
    base: Instant,
    /// Nanoseconds after `base`.
    nanos: AtomicU64,
}

impl AtomicInstant {
    /// Holds `base`.
    pub fn new(base: Instant) -> Self {
        Self {
            base,
            nanos: AtomicU64::new(0),
        }
    }

    /// The earliest instant it holds: the one it was made with.
    pub fn base(&self) -> Instant {
        self.base
    }

    pub fn load(&self) -> Instant {
        self.base + Duration::from_nanos(self.nanos.load(Ordering::SeqCst))
    }

    /// Holds `at` (the base if `at` precedes it).
    pub fn store(&self, at: Instant) {
        self.nanos.store(self.nanos_of(at), Ordering::SeqCst);
    }

    /// Holds `at` if it is later than what it holds.
    pub fn fetch_max(&self, at: Instant) {
        self.nanos.fetch_max(self.nanos_of(at), Ordering::SeqCst);
    }

    fn nanos_of(&self, at: Instant) -> u64 {
        let since = at.saturating_duration_since(self.base);
        u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(base: Instant, ms: u64) -> Instant {
        base + Duration::from_millis(ms)
    }

    #[test]
    fn holds_its_base_until_told_otherwise() {
        let base = Instant::now();
        let instant = AtomicInstant::new(base);
        assert_eq!(instant.base(), base);
        assert_eq!(instant.load(), base);
    }

    #[test]
    fn store_holds_the_instant_and_clamps_to_the_base() {
        let base = Instant::now() + Duration::from_secs(60);
        let instant = AtomicInstant::new(base);
        instant.store(at(base, 20));
        assert_eq!(instant.load(), at(base, 20));
        instant.store(at(base, 5));
        assert_eq!(instant.load(), at(base, 5), "store may move back");
        instant.store(base - Duration::from_secs(30));
        assert_eq!(
            instant.load(),
            base,
            "an instant before the base is the base"
        );
    }

    #[test]
    fn fetch_max_keeps_the_latest() {
        let base = Instant::now() + Duration::from_secs(60);
        let instant = AtomicInstant::new(base);
        instant.fetch_max(at(base, 20));
        instant.fetch_max(at(base, 5));
        assert_eq!(instant.load(), at(base, 20));
        instant.fetch_max(base - Duration::from_secs(30));
        assert_eq!(instant.load(), at(base, 20));
        instant.fetch_max(at(base, 21));
        assert_eq!(instant.load(), at(base, 21));
    }

    #[test]
    fn fetch_max_from_many_threads_keeps_the_latest() {
        let base = Instant::now();
        let instant = AtomicInstant::new(base);
        std::thread::scope(|scope| {
            for thread in 0..4u64 {
                let instant = &instant;
                scope.spawn(move || {
                    for i in 0..1000u64 {
                        instant.fetch_max(at(base, (i * 4 + thread) % 3999));
                    }
                });
            }
        });
        assert_eq!(instant.load(), at(base, 3998));
    }
}
