//! The broker fails under a running `sipas run`: it restarts mid-stream (on durable sqlite
//! storage, so topics and committed offsets survive), or it is not there yet when
//! `sipas run` starts. Each test runs its own tansu broker through scripts/services.sh
//! (own data directory and port), so stopping it disturbs no other test.
mod support;

use sipas_stream::simulate::generator::SimSettings;
use support::services::PrivateBroker;
use support::*;

fn settings(seed: u64) -> SimSettings {
    SimSettings {
        seed,
        start_unix: 1_790_000_000,
        step_seconds: 20.0,
        ..Default::default()
    }
}

/// The broker stops and restarts while `sipas run` catches up: the consumer, the DLQ
/// producer and the group carry on, `sipas_kafka_broker_up` is 0 meanwhile and 1 after,
/// and the raw views, the DLQ and the index (equal to a `sipas rebuild`) hold each event
/// once. Small batches keep the log many batches ahead of the pipeline, so the outage
/// finds the delivery stage waiting on a dead letter and the consumer loop held behind it,
/// polling nothing: the dead-letter producer is then the client that notices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn broker_restart_mid_stream_loses_and_doubles_nothing() {
    const EVENTS: u64 = 20_000;
    let broker = PrivateBroker::start();
    let mut env = TestEnv::with_broker("broker_restart", &broker.address()).await;
    env.config.pipeline.batch_max_messages = 250;
    let mut feed = SimFeed::new(&env, settings(7));
    feed.produce(&env, EVENTS / 2);
    let mut pipeline = Pipeline::start(&env);
    wait_for("the pipeline to be catching up", || async {
        env.try_count("SELECT count() AS n FROM survey_submissions")
            .await
            .unwrap_or(0)
            > 0
    })
    .await;

    broker.down();
    // Whichever client notices first, the consumer loop or, while the delivery stage waits
    // on a dead letter (and the loop with it), the dead-letter producer.
    wait_for(
        "sipas_kafka_broker_up to be 0 without the broker",
        || async { metric_sum(&pipeline.metrics().await, "sipas_kafka_broker_up ") == 0.0 },
    )
    .await;
    let unreachable = format!("Kafka broker {} unreachable", broker.address());
    assert!(
        pipeline.log_text().contains(&unreachable),
        "the pipeline says the broker is unreachable (see {})",
        pipeline.log.display()
    );
    assert!(
        pipeline.child.try_wait().unwrap().is_none(),
        "sipas run keeps running without a broker"
    );
    broker.up();
    feed.produce(&env, EVENTS - EVENTS / 2);

    let total = feed.produced as f64;
    wait_for("every event after the broker came back", || async {
        feed.raw_complete(&env).await && pipeline.index_position().await == total
    })
    .await;
    assert!(
        !broker.log().contains("panicked"),
        "the broker panicked:\n{}",
        broker.log()
    );
    assert_eq!(
        metric_sum(&pipeline.metrics().await, "sipas_kafka_broker_up "),
        1.0
    );
    // What the consumer read after its loop waited (messages fetched before the outage,
    // errors queued during it) does not report the outage again: the last word is that
    // the broker answers.
    let log = pipeline.log_text();
    let (last_unreachable, last_reachable) =
        (log.rfind(&unreachable), log.rfind("reachable again"));
    assert!(
        last_reachable.is_some() && last_reachable > last_unreachable,
        "the pipeline says the broker is back after it said it was unreachable (see {})",
        pipeline.log.display()
    );
    assert_eq!(
        (
            log.matches(&unreachable).count(),
            log.matches("reachable again").count()
        ),
        (1, 1),
        "one outage, reported once when it began and once when it ended (see {})",
        pipeline.log.display()
    );
    feed.assert_stored_and_index_equals_rebuild("after a broker restart", &env, &mut pipeline)
        .await;
    // The restart revokes every partition while batches read before it wait in the delivery
    // stage; their offsets are not stored, which is expected and no warning.
    assert!(
        !pipeline.log_text().contains("could not store offsets"),
        "no offset store fails but for revoked partitions (see {})",
        pipeline.log.display()
    );
}

/// `sipas run` started with no broker listening says so, naming the broker, keeps
/// retrying (the error counter grows, the process lives) with `sipas_kafka_broker_up` 0,
/// and consumes once the broker appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn broker_unreachable_at_start_up_is_reported_and_retried_until_it_appears() {
    const EVENTS: u64 = 3_000;
    let broker = PrivateBroker::start();
    // Topics and migrations first; then the broker goes away before `sipas run` starts.
    let env = TestEnv::with_broker("broker_late", &broker.address()).await;
    broker.down();
    let mut pipeline = Pipeline::start(&env);

    let unreachable = format!("Kafka broker {} unreachable", broker.address());
    wait_for("the pipeline to say the broker is unreachable", || async {
        pipeline.log_text().contains(&unreachable)
    })
    .await;
    let errors = || async {
        metric_sum(
            &pipeline.metrics().await,
            "sipas_kafka_errors_total{client=\"consumer\"",
        )
    };
    let first = errors().await;
    assert!(first > 0.0, "connection errors are counted");
    // The fault lasts a while: the pipeline neither exits nor stops trying meanwhile.
    tokio::time::sleep(std::time::Duration::from_secs(5)).await;
    assert!(errors().await > first, "the pipeline keeps retrying");
    assert_eq!(
        metric_sum(&pipeline.metrics().await, "sipas_kafka_broker_up "),
        0.0
    );
    assert!(
        pipeline.child.try_wait().unwrap().is_none(),
        "sipas run keeps running without a broker"
    );
    assert_eq!(
        pipeline.log_text().matches(&unreachable).count(),
        1,
        "reported once, not per reconnection attempt"
    );

    broker.up();
    let mut feed = SimFeed::new(&env, settings(8));
    feed.produce(&env, EVENTS);
    wait_for("every event once the broker is there", || async {
        feed.raw_complete(&env).await
    })
    .await;
    assert_eq!(
        metric_sum(&pipeline.metrics().await, "sipas_kafka_broker_up "),
        1.0
    );
    assert!(
        pipeline.log_text().contains("reachable again"),
        "the pipeline says the broker answers (see {})",
        pipeline.log.display()
    );
    assert!(pipeline.terminate().success());
    feed.assert_stored_exactly(&env).await;
}
