//! In-process response cache with single flight: per normalised request, the first caller
//! computes the body and every concurrent caller waits for that same computation, so any
//! number of pollers cause at most one computation (ClickHouse query) per refresh interval.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// A computed response body with its strong validator.
#[derive(Debug)]
pub struct Cached {
    pub body: Vec<u8>,
    /// Quoted strong ETag: a hash of the body, so equal bodies have equal tags.
    pub etag: String,
    pub computed_at: Instant,
}

impl Cached {
    pub fn new(body: Vec<u8>) -> Self {
        let etag = format!("\"{}\"", &hex::encode(Sha256::digest(&body))[..32]);
        Self { body, etag, computed_at: Instant::now() }
    }
}

type Outcome<E> = Result<Arc<Cached>, E>;

struct Slot<E> {
    /// Held across the computation: concurrent callers queue here and then find it fresh.
    value: tokio::sync::Mutex<Option<(Instant, Outcome<E>)>>,
}

pub struct Cache<E> {
    slots: Mutex<HashMap<String, Arc<Slot<E>>>>,
    ttl: Duration,
    max_entries: usize,
}

impl<E: Clone> Cache<E> {
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self { slots: Mutex::new(HashMap::new()), ttl, max_entries }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The cached outcome for `key` if computed less than `ttl` ago, else `compute()`'s,
    /// which is then cached (failures too: a failing ClickHouse is not asked more often).
    pub async fn get_or_compute<F, Fut>(&self, key: &str, compute: F) -> Outcome<E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>>,
    {
        let slot = self.slot(key);
        let mut value = slot.value.lock().await;
        if let Some((at, outcome)) = value.as_ref() {
            if at.elapsed() < self.ttl {
                return outcome.clone();
            }
        }
        let outcome = compute().await.map(|body| Arc::new(Cached::new(body)));
        *value = Some((Instant::now(), outcome.clone()));
        outcome
    }

    fn slot(&self, key: &str) -> Arc<Slot<E>> {
        let mut slots = self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(slot) = slots.get(key) {
            return Arc::clone(slot);
        }
        if slots.len() >= self.max_entries {
            // Keep entries that are fresh or being computed; drop the rest.
            let ttl = self.ttl;
            slots.retain(|_, slot| match slot.value.try_lock() {
                Ok(value) => value.as_ref().is_some_and(|(at, _)| at.elapsed() < ttl),
                Err(_) => true,
            });
        }
        let slot = Arc::new(Slot { value: tokio::sync::Mutex::new(None) });
        if slots.len() < self.max_entries {
            slots.insert(key.to_owned(), Arc::clone(&slot));
        }
        slot
    }

    pub fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_computation() {
        let cache: Arc<Cache<String>> = Arc::new(Cache::new(Duration::from_secs(3600), 100));
        let computations = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, computations) = (Arc::clone(&cache), Arc::clone(&computations));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute("k", || async move {
                        computations.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        Ok(b"body".to_vec())
                    })
                    .await
                    .unwrap()
                    .etag
                    .clone()
            }));
        }
        let mut tags = Vec::new();
        for task in tasks {
            tags.push(task.await.unwrap());
        }
        assert_eq!(computations.load(Ordering::SeqCst), 1);
        assert!(tags.iter().all(|t| t == &tags[0]));
        // Another key is computed on its own.
        cache.get_or_compute("other", || async { Ok(b"x".to_vec()) }).await.unwrap();
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn expired_entries_are_recomputed_and_failures_cached() {
        let cache: Cache<String> = Cache::new(Duration::ZERO, 100);
        let first = cache.get_or_compute("k", || async { Ok(b"a".to_vec()) }).await.unwrap();
        let second = cache.get_or_compute("k", || async { Ok(b"b".to_vec()) }).await.unwrap();
        assert_ne!(first.etag, second.etag, "a zero ttl recomputes");
        let cache: Cache<String> = Cache::new(Duration::from_secs(3600), 100);
        assert!(cache.get_or_compute("k", || async { Err("down".to_string()) }).await.is_err());
        let again = cache.get_or_compute("k", || async { Ok(b"a".to_vec()) }).await;
        assert_eq!(again.unwrap_err(), "down", "the failure is kept for the interval");
    }

    #[test]
    fn etag_is_a_quoted_hash_of_the_body() {
        let a = Cached::new(b"{}".to_vec());
        assert_eq!(a.etag, Cached::new(b"{}".to_vec()).etag);
        assert_ne!(a.etag, Cached::new(b"[]".to_vec()).etag);
        assert!(a.etag.starts_with('"') && a.etag.ends_with('"') && a.etag.len() == 34);
    }

    #[tokio::test]
    async fn the_number_of_entries_is_bounded() {
        let cache: Cache<String> = Cache::new(Duration::ZERO, 3);
        for i in 0..10 {
            cache.get_or_compute(&i.to_string(), || async { Ok(Vec::new()) }).await.unwrap();
        }
        assert!(cache.len() <= 3);
    }
}
