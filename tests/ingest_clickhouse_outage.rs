//! ClickHouse goes away mid-stream and comes back: the pipeline pauses, retries the same
//! batch and loses nothing; an outage longer than the consumer's max poll interval makes
//! it leave its group and rejoin, with nothing lost or doubled in the raw views or the
//! index. Runs against a private ClickHouse started through scripts/services.sh (own data
//! directory and ports) so other tests are not disturbed.
mod support;

use std::time::Duration;

use sipas_stream::simulate::generator::SimSettings;
use support::services::PrivateClickHouse;
use support::*;

/// Produces a third of `events`, waits for its first rows, stops ClickHouse, produces
/// another third and waits until the pipeline retries its write.
async fn produce_into_an_outage(
    env: &TestEnv,
    feed: &mut SimFeed,
    pipeline: &Pipeline,
    clickhouse: &PrivateClickHouse,
    events: u64,
) {
    feed.produce(env, events / 3);
    wait_for("first rows", || async {
        env.try_count("SELECT count() AS n FROM survey_submissions")
            .await
            .unwrap_or(0)
            > 0
    })
    .await;
    clickhouse.down();
    feed.produce(env, events / 3);
    wait_for("the pipeline to notice the outage and retry", || async {
        metric_sum(&pipeline.metrics().await, "sipas_insert_retries_total") >= 2.0
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn clickhouse_outage_mid_stream_loses_nothing() {
    const EVENTS: u64 = 30_000;
    let clickhouse = PrivateClickHouse::start();
    let env = TestEnv::with_clickhouse("outage", &clickhouse.url()).await;
    let mut feed = SimFeed::new(
        &env,
        SimSettings {
            seed: 5,
            start_unix: 1_790_000_000,
            invalid_share: 0.0,
            duplicate_share: 0.01,
            ..Default::default()
        },
    );
    let mut pipeline = Pipeline::start(&env);
    produce_into_an_outage(&env, &mut feed, &pipeline, &clickhouse, EVENTS).await;
    assert_eq!(
        metric_sum(&pipeline.metrics().await, "sipas_consumption_paused"),
        1.0,
        "paused while ClickHouse is down"
    );
    feed.produce(&env, EVENTS - 2 * (EVENTS / 3));
    clickhouse.up();

    wait_for("every valid event after ClickHouse came back", || {
        feed.raw_complete(&env)
    })
    .await;
    assert!(pipeline.terminate().success());
    feed.assert_stored_exactly(&env).await;
}

/// ClickHouse stays down for longer than `pipeline.max_poll_interval_ms`: the consumer loop,
/// held by the failing write, leaves the group; once ClickHouse is back it rejoins and
/// continues. The `*_dedup` views hold exactly the valid ids, the DLQ the invalid ones, and
/// the index tables equal a `sipas rebuild` of the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn clickhouse_outage_longer_than_max_poll_interval_rejoins_and_loses_nothing() {
    const EVENTS: u64 = 24_000;
    const MAX_POLL_INTERVAL_MS: u64 = 10_000;
    let clickhouse = PrivateClickHouse::start();
    let env = TestEnv::with_clickhouse("outage_long", &clickhouse.url()).await;
    let mut feed = SimFeed::new(
        &env,
        SimSettings {
            seed: 6,
            start_unix: 1_790_000_000,
            step_seconds: 20.0,
            ..Default::default()
        },
    );
    let mut pipeline = Pipeline::start_command_with(
        &env,
        &["run"],
        &[(
            "SIPAS__PIPELINE__MAX_POLL_INTERVAL_MS".into(),
            MAX_POLL_INTERVAL_MS.to_string(),
        )],
    );
    produce_into_an_outage(&env, &mut feed, &pipeline, &clickhouse, EVENTS).await;
    // The fault itself: held by the failing write, the loop does not poll for more than
    // twice the max poll interval, so the group gives up on this member.
    tokio::time::sleep(Duration::from_millis(2 * MAX_POLL_INTERVAL_MS + 5_000)).await;
    assert_eq!(
        metric_sum(&pipeline.metrics().await, "sipas_consumption_paused"),
        1.0,
        "paused while ClickHouse is down"
    );
    feed.produce(&env, EVENTS - 2 * (EVENTS / 3));
    clickhouse.up();

    let total = feed.produced as f64;
    wait_for(
        "every valid event and every index fold after ClickHouse came back",
        || async { feed.raw_complete(&env).await && pipeline.index_position().await == total },
    )
    .await;
    let text = pipeline.log_text();
    assert!(
        text.contains("partitions revoked") && text.matches("partitions assigned").count() >= 2,
        "the consumer left its group and rejoined (see {})",
        pipeline.log.display()
    );
    feed.assert_stored_and_index_equals_rebuild("after the long outage", &env, &mut pipeline)
        .await;
}
