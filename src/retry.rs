//! Capped exponential backoff that gives way to shutdown: the wait between attempts of a
//! write that is retried for as long as it takes.
use std::time::Duration;

use crate::shutdown::Shutdown;

/// Shutdown was requested while ClickHouse was failing; the batch was not (fully) written.
#[derive(Debug, thiserror::Error)]
#[error("shutdown requested while a ClickHouse write was being retried")]
pub struct Abandoned;

/// The delay before the next attempt: `initial`, doubled after every wait up to `max`.
pub struct Backoff {
    delay: Duration,
    max: Duration,
    shutdown: Shutdown,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration, shutdown: &Shutdown) -> Self {
        Self {
            delay: initial,
            max,
            shutdown: shutdown.clone(),
        }
    }

    /// How long the next [`wait`](Self::wait) sleeps.
    pub fn delay(&self) -> Duration {
        self.delay
    }

    /// Sleeps the current delay, then doubles it (capped). `Err(Abandoned)` as soon as
    /// shutdown is requested, before or during the sleep.
    pub async fn wait(&mut self) -> Result<(), Abandoned> {
        let mut shutdown = self.shutdown.clone();
        tokio::select! {
            _ = tokio::time::sleep(self.delay) => {}
            _ = shutdown.wait() => return Err(Abandoned),
        }
        self.delay = (self.delay * 2).min(self.max);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn doubles_up_to_the_cap() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let ms = Duration::from_millis;
        let mut backoff = Backoff::new(ms(1), ms(5), &shutdown);
        let mut delays = vec![backoff.delay()];
        for _ in 0..4 {
            backoff.wait().await.expect("no shutdown");
            delays.push(backoff.delay());
        }
        assert_eq!(delays, [ms(1), ms(2), ms(4), ms(5), ms(5)]);
    }

    #[tokio::test]
    async fn shutdown_ends_the_wait() {
        let (trigger, shutdown) = crate::shutdown::channel();
        // A day's sleep: only shutdown can end the wait within the bound.
        let mut backoff = Backoff::new(Duration::from_secs(86_400), Duration::MAX, &shutdown);
        trigger.trigger();
        let waited = tokio::time::timeout(Duration::from_secs(30), backoff.wait())
            .await
            .expect("the wait did not give way to shutdown within 30 s");
        assert!(waited.is_err(), "a wait cut short by shutdown is Abandoned");
    }
}
