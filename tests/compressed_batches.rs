//! Producers set `compression.type`: batches compressed with each codec Kafka knows (gzip,
//! snappy, lz4, zstd) are stored by the broker and every message in them is consumed by
//! `sipas run` into the raw tables, with nothing dead-lettered.
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use sipas_stream::contract::kind::{EventKind, PerKind};
use sipas_stream::simulate::generator::{Expected, SimSettings};
use support::*;

const CODECS: [&str; 4] = ["gzip", "snappy", "lz4", "zstd"];
const EVENTS_PER_CODEC: usize = 300;

/// A producer that compresses batches of many records with `codec`. Not the tests' usual
/// one record per batch (see README, tansu): a batch of one would not show that every
/// record inside a compressed batch is read, and nothing here resumes mid-batch.
fn producer(env: &TestEnv, codec: &str) -> FutureProducer {
    sipas_stream::kafka::client_config(&env.config.kafka)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("compression.type", codec)
        .set("linger.ms", "50")
        .set("batch.num.messages", "100")
        .set("message.timeout.ms", "120000")
        .create()
        .unwrap_or_else(|e| panic!("a producer with compression.type={codec}: {e}"))
}

/// `'a', 'b'` for an `IN (…)` list (simulator ids are plain ASCII without quotes).
fn sql_list(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn every_codec_is_consumed() {
    let env = TestEnv::new("compressed").await;
    let events = simulated_events(
        SimSettings {
            seed: 5,
            start_unix: 1_790_000_000,
            step_seconds: 30.0,
            invalid_share: 0.0,
            duplicate_share: 0.0,
            ..Default::default()
        },
        (CODECS.len() * EVENTS_PER_CODEC) as u64,
    );
    // codec -> the ids of each kind
    let mut expected: BTreeMap<&str, PerKind<Vec<String>>> = BTreeMap::new();
    for (codec, events) in CODECS.into_iter().zip(events.chunks(EVENTS_PER_CODEC)) {
        let producer = producer(&env, codec);
        let ids = expected.entry(codec).or_default();
        let mut deliveries = Vec::new();
        for event in events {
            let Expected::Valid(id) = &event.expected else {
                panic!("the simulator made an invalid event with invalid_share 0");
            };
            ids[event.kind].push(id.clone());
            let record = FutureRecord::to(env.config.kafka.topic(event.kind))
                .key(&event.key)
                .payload(&event.payload);
            deliveries.push(
                producer
                    .send_result(record)
                    .map_err(|(e, _)| e)
                    .unwrap_or_else(|e| panic!("{codec}: queueing failed: {e}")),
            );
        }
        producer.flush(Duration::from_secs(120)).expect("flushed");
        // Each acknowledgement, not only the flush: a broker that refuses a codec answers
        // the produce request with an error.
        for delivery in deliveries {
            delivery
                .await
                .expect("delivery reported")
                .unwrap_or_else(|(e, _)| panic!("{codec}: the broker refused a batch: {e}"));
        }
    }

    let mut pipeline = Pipeline::start(&env);
    // codec -> the ids of each kind stored
    let per_codec = || async {
        let mut found = BTreeMap::new();
        for (codec, ids) in &expected {
            let mut stored = PerKind::<usize>::default();
            for kind in EventKind::ALL {
                let (view, column) = dedup_view(kind);
                let sql = format!(
                    "SELECT count() AS n FROM {view} WHERE {column} IN ({})",
                    sql_list(&ids[kind])
                );
                stored[kind] = env.count(&sql).await as usize;
            }
            found.insert(*codec, stored);
        }
        found
    };
    let wanted: BTreeMap<&str, PerKind<usize>> = expected
        .iter()
        .map(|(codec, ids)| (*codec, PerKind::from_fn(|kind| ids[kind].len())))
        .collect();
    let started = std::time::Instant::now();
    loop {
        let found = per_codec().await;
        if found == wanted {
            break;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "gave up waiting for every message of every codec: (surveys, hotline) found {found:?}, produced {wanted:?}; see target/test-logs/compressed-*.log"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let metrics = pipeline.metrics().await;
    assert!(pipeline.terminate().success(), "clean exit on SIGTERM");
    // A codec librdkafka was built without reaches the loop as a consumer error per batch.
    let log_file = log_path(&format!("{}-{}.log", env.name, pipeline.metrics_port));
    let log = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        !log.contains("Kafka consumer error"),
        "consumer errors in {}",
        log_file.display()
    );
    assert_eq!(
        metric_sum(&metrics, "sipas_dlq_messages_total"),
        0.0,
        "nothing dead-lettered"
    );
    let total: usize = wanted.values().flat_map(PerKind::values).sum();
    assert_eq!(total, CODECS.len() * EVENTS_PER_CODEC);
    assert!(
        wanted.values().flat_map(PerKind::values).all(|n| *n > 0),
        "both topics carry each codec: {wanted:?}"
    );
}
