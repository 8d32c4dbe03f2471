//! The stall and assignment metrics of a running `sipas run`: an instance holding every
//! partition reports them all, caught up and not stalled; in a group with more instances
//! than partitions, one holding none reports 0 and warns.
mod support;

use sipas_stream::simulate::generator::SimSettings;
use support::*;

/// The lowest allowed: the instance without partitions warns soon after the group settles.
fn stall_env() -> Vec<(String, String)> {
    vec![(
        "SIPAS__PIPELINE__STALL_AFTER_MS".to_string(),
        "10000".to_string(),
    )]
}

fn produce(env: &TestEnv, events: usize) {
    let events = simulated_events(
        SimSettings {
            seed: 11,
            start_unix: 1_790_000_000,
            ..Default::default()
        },
        events as u64,
    );
    env.produce_events(&events);
}

/// `name{topic="…",partition="…"} value` lines of one metric.
fn series<'a>(text: &'a str, name: &str) -> Vec<&'a str> {
    let prefix = format!("{name}{{");
    text.lines().filter(|l| l.starts_with(&prefix)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn one_instance_holds_every_partition_and_none_is_stalled_once_caught_up() {
    let env = TestEnv::new("stall_one").await;
    produce(&env, 2_000);
    let pipeline = Pipeline::start_command_with(&env, &["run"], &stall_env());
    wait_for(
        "sipas_assigned_partitions to count both topics' 8 partitions",
        || async { metric_sum(&pipeline.metrics().await, "sipas_assigned_partitions ") == 8.0 },
    )
    .await;
    let k = &env.config.kafka;
    let messages =
        topic_messages(&env, &k.surveys_topic).await + topic_messages(&env, &k.hotline_topic).await;
    wait_for("the index to fold every produced message", || async {
        pipeline.index_position().await == messages as f64
    })
    .await;
    wait_for(
        "8 partitions reported neither stalled nor idle once caught up",
        || async {
            let text = pipeline.metrics().await;
            let stalled = series(&text, "sipas_partition_stalled");
            let idle = series(&text, "sipas_partition_idle_seconds");
            stalled.len() == 8
                && idle.len() == 8
                && metric_sum(&text, "sipas_partition_stalled{") == 0.0
                && metric_sum(&text, "sipas_partition_idle_seconds{") == 0.0
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn an_instance_given_no_partitions_reports_zero_and_warns() {
    // 2 partitions in all, 3 instances: at least one holds none, whatever the assignor.
    let env = TestEnv::with_partitions("stall_none", 1).await;
    produce(&env, 200);
    let pipelines: Vec<Pipeline> = (0..3)
        .map(|_| Pipeline::start_command_with(&env, &["run"], &stall_env()))
        .collect();
    let log = |p: &Pipeline| {
        std::fs::read_to_string(log_path(&format!("{}-{}.log", env.name, p.metrics_port)))
            .unwrap_or_default()
    };
    wait_for(
        "the group to hold both partitions, and an instance holding none to warn",
        || async {
            let mut assigned = Vec::new();
            for p in &pipelines {
                assigned.push(metric_sum(&p.metrics().await, "sipas_assigned_partitions "));
            }
            assigned.iter().sum::<f64>() == 2.0
                && pipelines
                    .iter()
                    .zip(&assigned)
                    .any(|(p, n)| *n == 0.0 && log(p).contains("this instance holds no partitions"))
        },
    )
    .await;
    // The instances holding partitions have their series, the idle one none.
    for p in &pipelines {
        let text = p.metrics().await;
        let held = metric_sum(&text, "sipas_assigned_partitions ");
        assert_eq!(
            series(&text, "sipas_partition_stalled").len() as f64,
            held,
            "one stall series per held partition:\n{text}"
        );
        // Lag and stored offsets of a partition given up in a rebalance are not exported.
        for name in ["sipas_consumer_lag_messages", "sipas_stored_offset"] {
            assert!(
                series(&text, name).len() as f64 <= held,
                "{name}: no series for partitions not held:\n{text}"
            );
        }
    }
}
