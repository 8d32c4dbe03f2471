//! Event sourcing end to end: the same log processed (a) without interruption, (b) with
//! two SIGKILLs during processing, and (c) by `sipas rebuild`, gives byte-identical day-count
//! fact rows, and the window values computed from them are identical.
mod support;

use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
use sipas_stream::simulate::generator::{SimSettings, Simulator};
use support::index::{assert_equivalent, assert_windows_add_up, facts, windows};
use support::*;

const EVENTS: u64 = 30_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn crash_and_rebuild_give_the_same_rows_as_an_uninterrupted_run() {
    let live = TestEnv::new("equiv").await;
    let frameworks = FrameworkCatalog::load_dir(&root().join("config/frameworks")).unwrap();
    // 30,000 events over ~14 days of event time, with late, out-of-order, duplicate and invalid ones.
    let settings = SimSettings {
        seed: 21,
        start_unix: 1_790_000_000,
        step_seconds: 40.0,
        late_share: 0.01,
        ..Default::default()
    };
    let mut sim = Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        frameworks.get("BNV-2640-2017").unwrap().clone(),
    );
    let events: Vec<_> = (0..EVENTS).map(|_| sim.next_event()).collect();

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn two_instances_with_one_stopped_midway_equal_a_single_instance() {
    const EVENTS: u64 = 20_000;
    let single = TestEnv::new("scale").await;
    let frameworks = FrameworkCatalog::load_dir(&root().join("config/frameworks")).unwrap();
    let settings = SimSettings {
        seed: 34,
        start_unix: 1_790_000_000,
        step_seconds: 60.0,
        ..Default::default()
    };
    let mut sim = Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        frameworks.get("BNV-2640-2017").unwrap().clone(),
    );
    let events: Vec<_> = (0..EVENTS).map(|_| sim.next_event()).collect();
    single.produce_events(&events);

    let mut reference_run = Pipeline::start(&single);
    wait_for("the single instance", || async {
        reference_run.index_position().await == EVENTS as f64
    })
    .await;
    assert!(reference_run.terminate().success());

    // Two instances in one group share the partitions; the first stops midway.
    let pair = single.sibling("pair").await;
    let mut first = Pipeline::start(&pair);
    let mut second = Pipeline::start(&pair);
    wait_for("both instances to make progress", || async {
        let (a, b) = (first.index_position().await, second.index_position().await);
        a > 0.0 && b > 0.0 && a + b >= 0.4 * EVENTS as f64
    })
    .await;
    assert!(
        first.terminate().success(),
        "the first instance stops cleanly"
    );
    wait_for(
        "the remaining instance to take over every partition",
        || async { second.index_position().await == EVENTS as f64 },
    )
    .await;
    assert!(second.terminate().success());
    assert_equivalent("with two instances", &pair, &single).await;
}
