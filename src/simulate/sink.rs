//! Writes simulated traffic to the input topics or to NDJSON files.
use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::stream::{FuturesUnordered, StreamExt};
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::contract::decode::EventKind;
use crate::simulate::generator::{Expected, SimEvent, Simulator};

/// What was written, by expected outcome (for the operator and for tests).
#[derive(Debug, Default, Clone)]
pub struct SimTally {
    pub surveys: u64,
    pub hotline: u64,
    pub valid: u64,
    pub duplicates: u64,
    pub invalid: BTreeMap<String, u64>,
}

impl SimTally {
    pub fn add(&mut self, event: &SimEvent) {
        match event.kind {
            EventKind::Survey => self.surveys += 1,
            EventKind::Hotline => self.hotline += 1,
        }
        match &event.expected {
            Expected::Valid(_) => self.valid += 1,
            Expected::Duplicate(_) => self.duplicates += 1,
            Expected::Invalid(reason) => {
                *self.invalid.entry(reason.code().to_owned()).or_default() += 1
            }
        }
    }

    pub fn total(&self) -> u64 {
        self.surveys + self.hotline
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
/// (0 = as fast as the broker takes them). Waits for every acknowledgement.
pub async fn to_kafka(
    simulator: &mut Simulator,
    producer: &FutureProducer,
    surveys_topic: &str,
    hotline_topic: &str,
    count: u64,
    rate: f64,
    mut progress: impl FnMut(&SimTally),
    stop: impl Fn() -> bool,
) -> Result<SimTally, SimSinkError> {
    let mut tally = SimTally::default();
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    const MAX_IN_FLIGHT: usize = 20_000;
    while tally.total() < count && !stop() {
        let event = simulator.next_event();
        tally.add(&event);
        let topic = match event.kind {
            EventKind::Survey => surveys_topic,
            EventKind::Hotline => hotline_topic,
        };
        let SimEvent { key, payload, .. } = event;
        let delivery = producer
            .send_result(FutureRecord::to(topic).key(&key).payload(&payload))
            .map_err(|(e, _)| e)?;
        in_flight.push(delivery);
        while in_flight.len() >= MAX_IN_FLIGHT {
            acknowledge(in_flight.next().await)?;
        }
        if rate > 0.0 {
            let due = Duration::from_secs_f64(tally.total() as f64 / rate);
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                tokio::time::sleep(wait).await;
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

type Delivery = Result<
    rdkafka::producer::future_producer::OwnedDeliveryResult,
    futures::channel::oneshot::Canceled,
>;

fn acknowledge(result: Option<Delivery>) -> Result<(), SimSinkError> {
    match result {
        Some(Ok(Ok(_))) | None => Ok(()),
        Some(Ok(Err((error, _)))) => Err(SimSinkError::Kafka(error)),
        Some(Err(_)) => Err(SimSinkError::Kafka(rdkafka::error::KafkaError::Canceled)),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SimSinkError {
    let path = path.display().to_string();
    move |source| SimSinkError::Io { path, source }
}

/// Writes `count` events as NDJSON: `surveys.ndjson` and `hotline.ndjson` in `dir`.
/// Avro-encoded events are written in their JSON form.
pub fn to_files(
    simulator: &mut Simulator,
    dir: &Path,
    count: u64,
    mut progress: impl FnMut(&SimTally),
) -> Result<SimTally, SimSinkError> {
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let surveys_path = dir.join("surveys.ndjson");
    let hotline_path = dir.join("hotline.ndjson");
    let mut surveys =
        std::io::BufWriter::new(std::fs::File::create(&surveys_path).map_err(io(&surveys_path))?);
    let mut hotline =
        std::io::BufWriter::new(std::fs::File::create(&hotline_path).map_err(io(&hotline_path))?);
    let mut tally = SimTally::default();
    while tally.total() < count {
        let event = simulator.next_event();
        tally.add(&event);
        let line = crate::simulate::generator::as_json_line(&event);
        let (file, path) = match event.kind {
            EventKind::Survey => (&mut surveys, &surveys_path),
            EventKind::Hotline => (&mut hotline, &hotline_path),
        };
        file.write_all(&line)
            .and_then(|_| file.write_all(b"\n"))
            .map_err(io(path))?;
        if tally.total() % 10_000 == 0 {
            progress(&tally);
        }
    }
    surveys.flush().map_err(io(&surveys_path))?;
    hotline.flush().map_err(io(&hotline_path))?;
    progress(&tally);
    Ok(tally)
}
