//! Writes simulated traffic to the input topics or to NDJSON files.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::contract::decode::EventKind;
use crate::contract::kind::PerKind;
use crate::kafka::producer;
use crate::simulate::generator::{Expected, SimEvent, Simulator};

/// What was written, by kind and by expected outcome (for the operator and for tests).
#[derive(Debug, Default, Clone)]
pub struct SimTally {
    pub by_kind: PerKind<u64>,
    pub valid: u64,
    pub duplicates: u64,
    pub invalid: BTreeMap<String, u64>,
}

impl SimTally {
    pub fn add(&mut self, event: &SimEvent) {
        self.by_kind[event.kind] += 1;
        match &event.expected {
            Expected::Valid(_) => self.valid += 1,
            Expected::Duplicate(_) => self.duplicates += 1,
            Expected::Invalid(reason) => {
                *self.invalid.entry(reason.code().to_owned()).or_default() += 1
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.by_kind.values().sum()
    }

    /// The counts per kind, for the operator: `3 surveys, 1 hotline`.
    pub fn by_kind_text(&self) -> String {
        let counts: Vec<String> = self
            .by_kind
            .iter()
            .map(|(kind, count)| format!("{count} {}", kind.stream_name()))
            .collect();
        counts.join(", ")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SimSinkError {
    #[error("Kafka produce failed: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("writing {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// Produces `count` events (or until `stop` returns true), at most `rate` per second
/// (0 = as fast as the broker takes them). Waits for every acknowledgement. A record whose
/// delivery fails for a reason that may pass (a broker restarting or answering with errors
/// for a while, a timeout, an unknown error) is sent again with capped backoff, so it may
/// arrive after later records of its key; only a permanent failure
/// (`kafka::producer::is_permanent`) ends the run.
#[allow(clippy::too_many_arguments)]
pub async fn to_kafka(
    simulator: &mut Simulator,
    producer: &FutureProducer,
    topics: PerKind<&str>,
    count: u64,
    rate: f64,
    mut progress: impl FnMut(&SimTally),
    stop: impl Fn() -> bool,
) -> Result<SimTally, SimSinkError> {
    let mut tally = SimTally::default();
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    let retries = Arc::new(RetryLog::default());
    const MAX_IN_FLIGHT: usize = 20_000;
    while tally.total() < count && !stop() {
        let event = simulator.next_event();
        tally.add(&event);
        let topic = topics[event.kind];
        let SimEvent { key, payload, .. } = event;
        // Handed to the producer now, at its paced moment; only a retry waits for the
        // future to be polled.
        let first = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&payload))
            .map_err(|(error, _)| error);
        in_flight.push(deliver(
            first,
            producer.clone(),
            topic.to_owned(),
            key.into_bytes(),
            payload,
            Arc::clone(&retries),
        ));
        while in_flight.len() >= MAX_IN_FLIGHT {
            acknowledge(in_flight.next().await)?;
        }
        if rate > 0.0 {
            let due = Duration::from_secs_f64(tally.total() as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                // Acknowledgements (and retries) go on while the pace waits.
                let pause = tokio::time::sleep(wait);
                tokio::pin!(pause);
                loop {
                    tokio::select! {
                        _ = &mut pause => break,
                        Some(result) = in_flight.next() => acknowledge(Some(result))?,
                    }
                }
            }
        }
        if tally.total() % 1000 == 0 {
            progress(&tally);
        }
    }
    while let Some(result) = in_flight.next().await {
        acknowledge(Some(result))?;
    }
    progress(&tally);
    Ok(tally)
}

/// Failed sends, logged at most every few seconds however many records fail at once.
#[derive(Default)]
struct RetryLog {
    failures: AtomicU64,
    last_logged: Mutex<Option<Instant>>,
}

impl RetryLog {
    fn note(&self, error: &KafkaError) {
        let failures = 1 + self.failures.fetch_add(1, Ordering::Relaxed);
        let mut last = self.last_logged.lock().expect("retry log lock");
        if last.is_none_or(|at| at.elapsed() >= Duration::from_secs(5)) {
            *last = Some(Instant::now());
            tracing::warn!(%error, failures, "producing failed; the records are sent again with backoff");
        }
    }
}

/// Waits for a record's first send (`first`) and sends it again until it is acknowledged
/// or fails permanently.
async fn deliver(
    first: Result<DeliveryFuture, KafkaError>,
    producer: FutureProducer,
    topic: String,
    key: Vec<u8>,
    payload: Vec<u8>,
    retries: Arc<RetryLog>,
) -> Result<(), KafkaError> {
    let mut failures = 0;
    let mut first = Some(first);
    loop {
        let sent = match first.take() {
            Some(sent) => sent,
            None => producer
                .send_result(FutureRecord::to(&topic).key(&key).payload(&payload))
                .map_err(|(error, _)| error),
        };
        let error = match sent {
            Ok(delivery) => match delivery.await {
                Ok(Ok(_)) => return Ok(()),
                Ok(Err((error, _))) => error,
                Err(_) => KafkaError::Canceled,
            },
            // Typically a full local queue.
            Err(error) => error,
        };
        if producer::is_permanent(&error) {
            return Err(error);
        }
        failures += 1;
        retries.note(&error);
        tokio::time::sleep(producer::backoff(RETRY_INITIAL, RETRY_MAX, failures)).await;
    }
}

const RETRY_INITIAL: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

fn acknowledge(result: Option<Result<(), KafkaError>>) -> Result<(), SimSinkError> {
    match result {
        Some(Ok(())) | None => Ok(()),
        Some(Err(error)) => Err(SimSinkError::Kafka(error)),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimSinkError {
    let path = path.display().to_string();
    move |source| SimSinkError::Io { path, source }
}

/// Writes `count` events as NDJSON, one file per kind in `dir`: `surveys.ndjson` and
/// `hotline.ndjson` (`EventKind::stream_name`). Avro-encoded events are written in their
/// JSON form.
pub fn to_files(
    simulator: &mut Simulator,
    dir: &Path,
    count: u64,
    mut progress: impl FnMut(&SimTally),
) -> Result<SimTally, SimSinkError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let paths = PerKind::from_fn(|kind| dir.join(format!("{}.ndjson", kind.stream_name())));
    let mut files = PerKind::try_from_fn(|kind| {
        let path = &paths[kind];
        let file = std::fs::File::create(path).map_err(io(path))?;
        Ok::<_, SimSinkError>(std::io::BufWriter::new(file))
    })?;
    let mut tally = SimTally::default();
    while tally.total() < count {
        let event = simulator.next_event();
        tally.add(&event);
        let line = crate::simulate::generator::as_json_line(&event);
        let (file, path) = (&mut files[event.kind], &paths[event.kind]);
        file.write_all(&line)
            .and_then(|_| file.write_all(b"\n"))
            .map_err(io(path))?;
        if tally.total() % 10_000 == 0 {
            progress(&tally);
        }
    }
    for kind in EventKind::ALL {
        files[kind].flush().map_err(io(&paths[kind]))?;
    }
    progress(&tally);
    Ok(tally)
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};

    use super::*;
    use crate::config::KafkaConfig;
    use crate::domain::{FrameworkCatalog, ProvinceRegistry};
    use crate::simulate::generator::SimSettings;

    fn simulator() -> Simulator {
        let frameworks = FrameworkCatalog::load_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"),
        )
        .unwrap();
        Simulator::new(
            SimSettings::default(),
            &ProvinceRegistry::builtin(),
            frameworks.get("BNV-2640-2017").unwrap().clone(),
        )
    }

    #[test]
    fn files_hold_each_kind_s_events_in_order_one_per_line() {
        const COUNT: u64 = 2_000;
        let dir = std::env::temp_dir().join(format!("sipas-sim-files-{}", std::process::id()));
        let tally = to_files(&mut simulator(), &dir, COUNT, |_| {}).unwrap();
        // The same seed again, in memory.
        let mut expected: PerKind<Vec<u8>> = PerKind::default();
        let mut again = simulator();
        for _ in 0..COUNT {
            let event = again.next_event();
            let line = crate::simulate::generator::as_json_line(&event);
            expected[event.kind].extend(line);
            expected[event.kind].push(b'\n');
        }
        for kind in EventKind::ALL {
            let path = dir.join(format!("{}.ndjson", kind.stream_name()));
            let written = std::fs::read(&path).unwrap();
            assert!(tally.by_kind[kind] > 0, "{kind:?}: no events generated");
            let lines = written.iter().filter(|b| **b == b'\n').count() as u64;
            assert_eq!(lines, tally.by_kind[kind], "{}", path.display());
            assert!(
                written == expected[kind],
                "{}: not its kind's events",
                path.display()
            );
        }
        assert_eq!(tally.total(), COUNT);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A broker that answers produce requests with unknown errors for a while: the
    /// simulator retries and every record arrives, instead of aborting on the first error.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn unknown_broker_errors_are_retried_until_every_record_is_acknowledged() {
        const COUNT: u64 = 300;
        let cluster = MockCluster::new(1).unwrap();
        for topic in EventKind::ALL.map(EventKind::stream_name) {
            cluster.create_topic(topic, 2, 1).unwrap();
        }
        let mut kafka = KafkaConfig {
            brokers: cluster.bootstrap_servers(),
            ..Default::default()
        };
        kafka
            .producer_properties
            .insert("message.timeout.ms".into(), "1000".into());
        let producer = producer::idempotent_producer(&kafka).unwrap();
        cluster.request_errors(
            RDKafkaApiKey::Produce,
            &[RDKafkaRespErr::RD_KAFKA_RESP_ERR_UNKNOWN; 40],
        );
        let mut simulator = simulator();
        let tally = tokio::time::timeout(
            Duration::from_secs(120),
            to_kafka(
                &mut simulator,
                &producer,
                PerKind::from_fn(EventKind::stream_name),
                COUNT,
                0.0,
                |_| {},
                || false,
            ),
        )
        .await
        .expect("every record acknowledged within 120 s")
        .expect("broker errors are retried, not returned");
        assert_eq!(tally.total(), COUNT);

        let consumer: BaseConsumer = crate::kafka::client_config(&kafka)
            .set("group.id", "watermarks")
            .create()
            .unwrap();
        let stored: i64 = tokio::task::spawn_blocking(move || {
            ["surveys", "hotline"]
                .iter()
                .flat_map(|topic| (0..2).map(move |p| (*topic, p)))
                .map(|(topic, p)| {
                    consumer
                        .fetch_watermarks(topic, p, Duration::from_secs(10))
                        .unwrap()
                        .1
                })
                .sum()
        })
        .await
        .unwrap();
        // Retried records whose first attempt was stored after all may be there twice.
        assert!(stored >= COUNT as i64, "{stored} of {COUNT} records stored");
    }
}
