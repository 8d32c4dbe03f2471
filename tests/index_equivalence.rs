//! Event sourcing end to end: the same log processed (a) without interruption, (b) with
//! two SIGKILLs during processing, and (c) by `sipas rebuild`, gives byte-identical day-count
//! fact rows, and the window values computed from them are identical.
mod support;

use sipas_stream::simulate::generator::SimSettings;
use support::index::{assert_equivalent, assert_windows_add_up, facts, windows};
use support::*;

use std::collections::BTreeMap;

const EVENTS: u64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn crash_and_rebuild_give_the_same_rows_as_an_uninterrupted_run() {
    let live = TestEnv::new("equiv").await;
    // 30,000 events over ~14 days of event time, with late, out-of-order, duplicate and invalid ones.
    let settings = SimSettings {
        seed: 21,
        start_unix: 1_790_000_000,
        step_seconds: 40.0,
        late_share: 0.01,
        ..Default::default()
    };
    let events = simulated_events(settings, EVENTS);

    // (a) uninterrupted, the log arriving in ten parts: each part is folded and its windows
    // recomputed incrementally (from the materialiser's cached day sums) before the next.
    let mut a = Pipeline::start(&live);
    let part = events.len() / 10;
    for (i, chunk) in events.chunks(part).enumerate() {
        live.produce_events(chunk);
        let produced = ((i + 1) * part).min(events.len()) as f64;
        wait_for("the uninterrupted run", || async {
            a.index_position().await == produced
        })
        .await;
    }
    assert!(a.terminate().success());
    let reference = facts(&live).await;
    let reference_windows = windows(&live).await;
    assert_windows_add_up(&live).await;
    assert!(
        reference.0.len() > 5_000 && reference.1.len() > 1_000,
        "{} / {} fact rows",
        reference.0.len(),
        reference.1.len()
    );
    assert!(
        reference_windows.0.len() > 1_000 && reference_windows.1.len() > 1_000,
        "{} / {} window rows",
        reference_windows.0.len(),
        reference_windows.1.len()
    );

    // (b) killed twice while processing
    let crashed = live.sibling("crash").await;
    let mut b = Pipeline::start(&crashed);
    for fraction in [0.3, 0.6] {
        wait_for("progress before a kill", || async {
            b.index_position().await >= fraction * EVENTS as f64
        })
        .await;
        b.kill9();
        b = Pipeline::start(&crashed);
    }
    wait_for("the crashed run to catch up", || async {
        b.index_position().await == EVENTS as f64
    })
    .await;
    assert!(b.terminate().success());
    // The restarted processes resumed from a checkpoint at a non-zero offset, not from the log start.
    let crash_logs: Vec<String> = std::fs::read_dir(root().join("target/test-logs"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(&format!("{}-", crashed.name))
        })
        .filter_map(|e| std::fs::read_to_string(e.path()).ok())
        .collect();
    let resumed = crash_logs.iter().flat_map(|log| log.lines()).any(|line| {
        line.contains("index state restored from checkpoint")
            && line.contains(&crashed.config.kafka.surveys_topic)
            && !line.ends_with("next_offset=0")
    });
    assert!(
        resumed,
        "a restarted process resumed a survey partition from a checkpoint"
    );
    assert_equivalent("after SIGKILLs", &crashed, &live).await;

    // (c) sipas rebuild from the beginning of the topics
    let rebuilt = live.sibling("rebuild").await;
    let mut c = Pipeline::start_command(&rebuilt, &["rebuild"]);
    let status = c.child.wait().expect("rebuild exits");
    assert!(status.success(), "sipas rebuild succeeded");
    assert_equivalent("after rebuild", &rebuilt, &live).await;
}

/// Two instances in one group take the partitions over from each other, one takeover after
/// another: each round stops one instance (alternately), waits for the other to hold every
/// partition with its index at the log end, gives it new events to fold, and starts the
/// stopped one again. Some rounds stop an instance while the log is still being read,
/// others once both are caught up (the new owner then restores checkpoints at the log end
/// and has nothing to read). The index equals a single instance's over the same log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn two_instances_taking_over_from_each_other_equal_a_single_instance() {
    /// (events produced before the stop, whether the stop waits until both are caught up)
    const ROUNDS: [(usize, bool); 6] = [
        (6_000, false),
        (2_000, true),
        (4_000, false),
        (1_000, true),
        (4_000, false),
        (1_000, true),
    ];
    /// Events produced after each takeover, for the remaining instance to fold.
    const AFTER: usize = 500;
    let single = TestEnv::new("scale").await;
    let settings = SimSettings {
        seed: 34,
        start_unix: 1_790_000_000,
        step_seconds: 60.0,
        ..Default::default()
    };
    let mut sim = simulator(settings);
    let pair = single.sibling("pair").await;
    let mut instances = [Pipeline::start(&pair), Pipeline::start(&pair)];
    let mut produced = 0usize;
    for (round, (events, caught_up)) in ROUNDS.into_iter().enumerate() {
        let batch: Vec<_> = (0..events).map(|_| sim.next_event()).collect();
        pair.produce_events(&batch);
        produced += events;
        let ends = partition_ends(&pair).await;
        let (stopping, remaining) = (round % 2, 1 - round % 2);
        wait_for_within(
            &format!(
                "round {round}: both instances to hold partitions and fold some of the new events"
            ),
            PATIENCE,
            || async {
                let (a, b) = (
                    held_partitions(&instances[0]).await,
                    held_partitions(&instances[1]).await,
                );
                let mut positions = index_positions(&instances[0]).await;
                for (key, position) in index_positions(&instances[1]).await {
                    let best = positions.entry(key).or_insert(position);
                    *best = (*best).max(position);
                }
                let folded: i64 = positions.values().sum();
                a > 0.0 && b > 0.0 && a + b == 8.0 && folded > (produced - events) as i64
            },
        )
        .await;
        if caught_up {
            wait_at_log_end(
                &format!("round {round}: both instances to catch up before the stop"),
                &instances,
                &ends,
            )
            .await;
        }
        assert!(
            instances[stopping].terminate().success(),
            "round {round}: the stopped instance exits cleanly"
        );
        wait_at_log_end(
            &format!("round {round}: the remaining instance to take over every partition"),
            std::slice::from_ref(&instances[remaining]),
            &ends,
        )
        .await;
        let batch: Vec<_> = (0..AFTER).map(|_| sim.next_event()).collect();
        pair.produce_events(&batch);
        produced += AFTER;
        let ends = partition_ends(&pair).await;
        wait_at_log_end(
            &format!("round {round}: the remaining instance to fold the events produced after the takeover"),
            std::slice::from_ref(&instances[remaining]),
            &ends,
        )
        .await;
        instances[stopping] = Pipeline::start(&pair);
    }
    for instance in &mut instances {
        assert!(instance.terminate().success());
    }

    let mut reference_run = Pipeline::start(&single);
    wait_for("the single instance", || async {
        reference_run.index_position().await == produced as f64
    })
    .await;
    assert!(reference_run.terminate().success());
    assert_equivalent("with two instances", &pair, &single).await;
}

/// Partitions an instance holds (`sipas_assigned_partitions`).
async fn held_partitions(instance: &Pipeline) -> f64 {
    metric_sum(&instance.metrics().await, "sipas_assigned_partitions")
}

/// `sipas_index_position` of every partition the instance reports.
async fn index_positions(instance: &Pipeline) -> BTreeMap<(String, i32), i64> {
    labelled(&instance.metrics().await, "sipas_index_position")
}

/// A gauge's samples by (topic, partition).
fn labelled(metrics: &str, name: &str) -> BTreeMap<(String, i32), i64> {
    metrics
        .lines()
        .filter_map(|line| {
            let labels = line.strip_prefix(name)?.strip_prefix('{')?;
            let (labels, value) = labels.split_once("} ")?;
            let label = |key: &str| {
                labels.split(',').find_map(|pair| {
                    let (k, v) = pair.split_once('=')?;
                    (k == key).then(|| v.trim_matches('"').to_owned())
                })
            };
            Some((
                (label("topic")?, label("partition")?.parse().ok()?),
                value.parse::<f64>().ok()? as i64,
            ))
        })
        .collect()
}

/// Waits until, together, the instances report every partition's index position at its
/// log end; on giving up, names the partitions behind with their positions, whether
/// each instance reports them stalled, and the instances' logs.
async fn wait_at_log_end(what: &str, instances: &[Pipeline], ends: &BTreeMap<(String, i32), i64>) {
    let started = std::time::Instant::now();
    loop {
        let mut positions = BTreeMap::new();
        let mut stalled = BTreeMap::new();
        let mut held = Vec::new();
        for instance in instances {
            let metrics = instance.metrics().await;
            for (key, position) in labelled(&metrics, "sipas_index_position") {
                let best = positions.entry(key).or_insert(position);
                *best = (*best).max(position);
            }
            stalled.extend(labelled(&metrics, "sipas_partition_stalled"));
            held.push(metric_sum(&metrics, "sipas_assigned_partitions"));
        }
        let behind: Vec<String> = ends
            .iter()
            .filter(|(key, end)| positions.get(*key) != Some(end))
            .map(|((topic, partition), end)| {
                format!(
                    "{topic}/{partition} at {:?} of {end} (stalled gauge {:?})",
                    positions.get(&(topic.clone(), *partition)),
                    stalled.get(&(topic.clone(), *partition)),
                )
            })
            .collect();
        if behind.is_empty() {
            return;
        }
        assert!(
            started.elapsed() < PATIENCE,
            "gave up waiting for: {what} (after {} s): partitions not at their log end: {}; partitions held: {held:?}; logs: {:?}",
            PATIENCE.as_secs(),
            behind.join(", "),
            instances.iter().map(|i| i.log.display().to_string()).collect::<Vec<_>>(),
        );
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}
