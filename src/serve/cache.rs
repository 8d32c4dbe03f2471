//! In-process response cache with single flight: per normalised request, the first caller
//! computes the body and every concurrent caller waits for that same computation, so any
//! number of pollers cause at most one computation (ClickHouse query) per refresh interval.
//! The entry's age counts from when its computation completed.
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::{BoxFuture, FutureExt, Shared};
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
        Self {
            body,
            etag,
            computed_at: Instant::now(),
        }
    }
}

type Outcome<E> = Result<Arc<Cached>, E>;

/// A computation in flight or done: its outcome and when it completed. The computation
/// runs in its own task, so a client that disconnects does not cancel it and the callers
/// waiting with it (or after it) still get its outcome.
type Computation<E> = Shared<BoxFuture<'static, (Instant, Outcome<E>)>>;

pub struct Cache<E> {
    slots: Mutex<HashMap<String, Computation<E>>>,
    ttl: Duration,
    max_entries: usize,
}

impl<E> Cache<E>
where
    E: Clone + Send + Sync + From<tokio::task::JoinError> + 'static,
{
    pub fn new(ttl: Duration, max_entries: usize) -> Self {
        Self {
            slots: Mutex::new(HashMap::new()),
            ttl,
            max_entries,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The outcome for `key` if it is being computed or was computed less than `ttl` ago,
    /// else `compute()`'s, which is then kept (failures too: a failing ClickHouse is not
    /// asked more often).
    pub async fn get_or_compute<F, Fut>(&self, key: &str, compute: F) -> Outcome<E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Vec<u8>, E>> + Send + 'static,
    {
        let computation = {
            let mut slots = self
                .slots
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            match slots.get(key).filter(|c| usable(c, self.ttl)) {
                Some(c) => c.clone(),
                None => {
                    let task = tokio::spawn(compute());
                    let computation: Computation<E> = async move {
                        let outcome = match task.await {
                            Ok(result) => result.map(|body| Arc::new(Cached::new(body))),
                            Err(error) => Err(E::from(error)),
                        };
                        (Instant::now(), outcome)
                    }
                    .boxed()
                    .shared();
                    if slots.len() >= self.max_entries {
                        let ttl = self.ttl;
                        slots.retain(|_, c| usable(c, ttl));
                    }
                    if slots.len() < self.max_entries || slots.contains_key(key) {
                        slots.insert(key.to_owned(), computation.clone());
                    }
                    computation
                }
            }
        };
        computation.await.1
    }

    pub fn len(&self) -> usize {
        self.slots.lock().map(|s| s.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// In flight, or completed less than `ttl` ago.
fn usable<E: Clone>(computation: &Computation<E>, ttl: Duration) -> bool {
    match computation.peek() {
        None => true,
        Some((done, _)) => done.elapsed() < ttl,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Clone, PartialEq)]
    struct Failed(String);

    impl From<tokio::task::JoinError> for Failed {
        fn from(e: tokio::task::JoinError) -> Self {
            Failed(e.to_string())
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_share_one_computation() {
        let cache: Arc<Cache<Failed>> = Arc::new(Cache::new(Duration::from_secs(3600), 100));
        let computations = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let (cache, computations) = (Arc::clone(&cache), Arc::clone(&computations));
            tasks.push(tokio::spawn(async move {
                cache
                    .get_or_compute("k", move || async move {
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
        cache
            .get_or_compute("other", || async { Ok(b"x".to_vec()) })
            .await
            .unwrap();
        assert_eq!(cache.len(), 2);
    }

    #[tokio::test]
    async fn expired_entries_are_recomputed_and_failures_cached() {
        let cache: Cache<Failed> = Cache::new(Duration::ZERO, 100);
        let first = cache
            .get_or_compute("k", || async { Ok(b"a".to_vec()) })
            .await
            .unwrap();
        let second = cache
            .get_or_compute("k", || async { Ok(b"b".to_vec()) })
            .await
            .unwrap();
        assert_ne!(first.etag, second.etag, "a zero ttl recomputes");
        let cache: Cache<Failed> = Cache::new(Duration::from_secs(3600), 100);
        assert!(cache
            .get_or_compute("k", || async { Err(Failed("down".into())) })
            .await
            .is_err());
        let again = cache
            .get_or_compute("k", || async { Ok(b"a".to_vec()) })
            .await;
        assert_eq!(
            again.unwrap_err(),
            Failed("down".into()),
            "the failure is kept for the interval"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_caller_that_goes_away_does_not_cancel_the_computation() {
        let cache: Arc<Cache<Failed>> = Arc::new(Cache::new(Duration::from_secs(3600), 100));
        let computations = Arc::new(AtomicUsize::new(0));
        let (release, released) = tokio::sync::oneshot::channel::<()>();
        let first = {
            let (cache, computations) = (Arc::clone(&cache), Arc::clone(&computations));
            tokio::spawn(async move {
                cache
                    .get_or_compute("k", move || async move {
                        computations.fetch_add(1, Ordering::SeqCst);
                        let _ = released.await;
                        Ok(b"body".to_vec())
                    })
                    .await
            })
        };
        while computations.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        first.abort();
        let _ = first.await;
        let counter = Arc::clone(&computations);
        let second = tokio::spawn({
            let cache = Arc::clone(&cache);
            async move {
                cache
                    .get_or_compute("k", move || async move {
                        counter.fetch_add(1, Ordering::SeqCst);
                        Ok(b"other".to_vec())
                    })
                    .await
            }
        });
        release.send(()).unwrap();
        assert_eq!(second.await.unwrap().unwrap().body, b"body");
        assert_eq!(computations.load(Ordering::SeqCst), 1);
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
        let cache: Cache<Failed> = Cache::new(Duration::ZERO, 3);
        for i in 0..10 {
            cache
                .get_or_compute(&i.to_string(), || async { Ok(Vec::new()) })
                .await
                .unwrap();
        }
        assert!(cache.len() <= 3);
    }
}
