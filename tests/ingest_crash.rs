//! SIGKILL in the middle of a 100,000-event stream, then restart: the dedup views hold
//! exactly the produced valid events, none lost, none twice.
mod support;

use sipas_stream::simulate::generator::SimSettings;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn sigkill_mid_stream_loses_nothing_and_counts_nothing_twice() {
    const EVENTS: u64 = 100_000;
    let env = TestEnv::new("crash").await;
    let mut feed = SimFeed::new(
        &env,
        SimSettings {
            seed: 11,
            start_unix: 1_790_000_000,
            step_seconds: 5.0,
            invalid_share: 0.01,
            duplicate_share: 0.02,
            ..Default::default()
        },
    );
    let mut pipeline = Pipeline::start(&env);
    let mut killed = false;
    let mut deliveries = Vec::with_capacity(EVENTS as usize);
    for i in 0..EVENTS {
        deliveries.push(feed.send(&env));
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
    feed.flush();
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
        mid < feed.surveys.len() as u64,
        "the kill happened before the end of the stream ({mid} of {})",
        feed.surveys.len()
    );

    wait_for("every valid event after the restart", || {
        feed.raw_complete(&env)
    })
    .await;
    assert!(pipeline.terminate().success());
    // Dead letters are at-least-once across a crash: one per source message once
    // deduplicated by source offset.
    feed.assert_stored_exactly(&env).await;
}
