//! SIGKILL in the middle of a 100,000-event stream, then restart: the dedup views hold
//! exactly the produced valid events, none lost, none twice.
mod support;

use std::collections::HashSet;

use sipas_stream::contract::decode::EventKind;
use sipas_stream::simulate::generator::{Expected, SimSettings};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn sigkill_mid_stream_loses_nothing_and_counts_nothing_twice() {
    const EVENTS: u64 = 100_000;
    let env = TestEnv::new("crash").await;
    let producer = env.producer();
    let mut sim = simulator(SimSettings {
        seed: 11,
        start_unix: 1_790_000_000,
        step_seconds: 5.0,
        invalid_share: 0.01,
        duplicate_share: 0.02,
        ..Default::default()
    });
    let (mut surveys, mut hotline, mut invalid) = (HashSet::new(), HashSet::new(), 0usize);
    let mut pipeline = Pipeline::start(&env);
    let mut killed = false;
    let mut deliveries = Vec::with_capacity(EVENTS as usize);
    for i in 0..EVENTS {
        let event = sim.next_event();
        match (&event.expected, event.kind) {
            (Expected::Valid(id), EventKind::Survey) => assert!(surveys.insert(id.clone())),
            (Expected::Valid(id), EventKind::Hotline) => assert!(hotline.insert(id.clone())),
            (Expected::Duplicate(_), _) => {}
            (Expected::Invalid(_), _) => invalid += 1,
        }
        let topic = env.config.kafka.topic(event.kind);
        deliveries.push(
            producer
                .send_result(
                    rdkafka::producer::FutureRecord::to(topic)
                        .key(&event.key)
                        .payload(&event.payload),
                )
                .map_err(|(e, _)| e)
                .expect("queued"),
        );
        // Kill once the pipeline is demonstrably mid-stream: rows written, more to come.
        if !killed
            && i % 5_000 == 0
            && i >= 40_000
            && env
                .count("SELECT count() AS n FROM survey_submissions")
                .await
                > 5_000
        {
            pipeline.kill9();
            killed = true;
            pipeline = Pipeline::start(&env);
        }
    }
    rdkafka::producer::Producer::flush(&producer, std::time::Duration::from_secs(120))
        .expect("all produced");
    // Every record is in the log, or the test stops here rather than waiting for it.
    assert_delivered(deliveries);
    if !killed {
        // The pipeline was slower than the producer: kill it now, while it catches up.
        wait_for("some rows before the kill", || async {
            env.count("SELECT count() AS n FROM survey_submissions")
                .await
                > 5_000
        })
        .await;
        pipeline.kill9();
        pipeline = Pipeline::start(&env);
    }
    let mid = env
        .count("SELECT count() AS n FROM survey_submissions_dedup")
        .await;
    assert!(
        mid < surveys.len() as u64,
        "the kill happened before the end of the stream ({mid} of {})",
        surveys.len()
    );

    wait_for("every valid event after the restart", || async {
        env.count("SELECT count() AS n FROM survey_submissions_dedup")
            .await
            == surveys.len() as u64
            && env
                .count("SELECT count() AS n FROM hotline_events_dedup")
                .await
                == hotline.len() as u64
    })
    .await;
    let letters = env.dead_letters(invalid).await;
    assert!(pipeline.terminate().success());

    assert_eq!(
        env.count("SELECT count() AS n FROM survey_submissions_dedup")
            .await,
        surveys.len() as u64
    );
    assert_eq!(
        env.count("SELECT uniqExact(submission_id) AS n FROM survey_submissions")
            .await,
        surveys.len() as u64
    );
    assert_eq!(
        env.count("SELECT count() AS n FROM hotline_events_dedup")
            .await,
        hotline.len() as u64
    );
    assert_eq!(
        env.count("SELECT uniqExact(event_id) AS n FROM hotline_events")
            .await,
        hotline.len() as u64
    );
    // Dead letters are at-least-once across a crash; one per source message once deduplicated by source offset.
    assert_eq!(letters.by_source.len(), invalid);
}
