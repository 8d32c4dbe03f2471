//! A bounded chaos soak: mixed traffic into two `sipas run` instances of one group while,
//! on a schedule drawn from a fixed seed, instances are SIGKILLed (and restarted), the
//! broker restarts (sqlite storage), ClickHouse stops for half a minute and one instance
//! is frozen (SIGSTOP) for longer than the session timeout. At the end the `*_dedup` views
//! hold exactly the valid ids, the DLQ one letter per invalid message, the index tables
//! equal a `sipas rebuild` of the same log, and no process panicked.
//!
//! Private broker and ClickHouse (scripts/services.sh), so no other test is disturbed.
//! Part of `./scripts/test.sh` (about 5 minutes on two cores); alone:
//! `./scripts/test.sh --test chaos_soak`. `SIPAS_SOAK_EVENTS` shortens it (default 300,000).
mod support;

use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use sipas_stream::simulate::generator::SimSettings;
use support::services::{PrivateBroker, PrivateClickHouse};
use support::*;

const SEED: u64 = 20_261_201;
/// The produced log arrives in this many parts; a fault follows some of them.
const STEPS: usize = 30;
const KILLS: usize = 10;
const BROKER_RESTARTS: usize = 2;
const CLICKHOUSE_OUTAGE: Duration = Duration::from_secs(30);
/// Longer than the tests' session timeout (6 s): the group gives the frozen member up.
const FROZEN: Duration = Duration::from_secs(10);
const CATCH_UP: Duration = Duration::from_secs(900);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Kill(usize),
    BrokerRestart,
    ClickHouseOutage,
    Freeze(usize),
}

/// Which step each fault follows: distinct steps, none before the first part.
fn schedule(rng: &mut SmallRng) -> Vec<Option<Fault>> {
    let frozen = rng.random_range(0..2);
    let mut faults: Vec<Fault> = (0..KILLS)
        .map(|_| Fault::Kill(rng.random_range(0..2)))
        .collect();
    faults.extend((0..BROKER_RESTARTS).map(|_| Fault::BrokerRestart));
    faults.extend([Fault::ClickHouseOutage, Fault::Freeze(frozen)]);
    faults.shuffle(rng);
    let mut steps: Vec<usize> = (1..STEPS).collect();
    steps.shuffle(rng);
    let mut plan = vec![None; STEPS];
    for (fault, step) in faults.into_iter().zip(steps) {
        plan[step] = Some(fault);
    }
    plan
}

fn signal(pipeline: &Pipeline, signal: i32) {
    // SAFETY: sending a signal to our own child process.
    let sent = unsafe { libc::kill(pipeline.child.id() as i32, signal) };
    assert_eq!(sent, 0, "signal {signal} sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the broker and ClickHouse: run ./scripts/test.sh"]
async fn chaos_soak_loses_and_doubles_nothing() {
    let events: u64 = std::env::var("SIPAS_SOAK_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300_000);
    let part = events / STEPS as u64;
    let mut rng = SmallRng::seed_from_u64(SEED);
    let plan = schedule(&mut rng);
    println!("fault schedule (seed {SEED}, {STEPS} parts of {part} events):");
    for (step, fault) in plan.iter().enumerate() {
        if let Some(fault) = fault {
            println!("  after part {step:2}: {fault:?}");
        }
    }

    let broker = PrivateBroker::start();
    let clickhouse = PrivateClickHouse::start();
    let env = TestEnv::with_services("soak", &clickhouse.url(), &broker.address()).await;
    // `TestEnv`'s one-record batches guard against a fetch that starts inside a batch
    // (config/local.toml). tansu's sqlite storage keeps and serves the log record by
    // record, from the record asked for, so the feed sends whole batches: one produce
    // transaction per batch instead of per message (a skipped record would fail the exact
    // counts below). The instances' own producers (the DLQ) keep one record per batch.
    let mut feed_env = TestEnv {
        name: env.name.clone(),
        config: env.config.clone(),
    };
    feed_env
        .config
        .kafka
        .producer_properties
        .remove("batch.num.messages");
    let mut feed = SimFeed::new(
        &feed_env,
        SimSettings {
            seed: SEED,
            start_unix: 1_790_000_000,
            step_seconds: 5.0,
            late_share: 0.01,
            ..Default::default()
        },
    );
    let mut instances = [Pipeline::start(&env), Pipeline::start(&env)];
    let mut logs: Vec<std::path::PathBuf> = instances.iter().map(|p| p.log.clone()).collect();
    let started = Instant::now();
    let mut done: Vec<Fault> = Vec::new();
    for (step, fault) in plan.iter().enumerate() {
        match fault {
            None => feed.produce(&env, part),
            Some(Fault::Kill(i)) => {
                feed.produce(&env, part);
                // Killed while it consumes, not while it is still joining the group.
                wait_for(&format!("instance {i} to hold partitions"), || async {
                    metric_sum(&instances[*i].metrics().await, "sipas_assigned_partitions") > 0.0
                })
                .await;
                instances[*i].kill9();
                instances[*i] = Pipeline::start(&env);
                logs.push(instances[*i].log.clone());
            }
            Some(Fault::BrokerRestart) => {
                feed.produce(&env, part);
                broker.down();
                tokio::time::sleep(Duration::from_secs(3)).await;
                broker.up();
            }
            Some(Fault::ClickHouseOutage) => {
                clickhouse.down();
                let down = Instant::now();
                feed.produce(&env, part);
                if let Some(rest) = CLICKHOUSE_OUTAGE.checked_sub(down.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
                clickhouse.up();
            }
            Some(Fault::Freeze(i)) => {
                signal(&instances[*i], libc::SIGSTOP);
                let frozen = Instant::now();
                feed.produce(&env, part);
                if let Some(rest) = FROZEN.checked_sub(frozen.elapsed()) {
                    tokio::time::sleep(rest).await;
                }
                signal(&instances[*i], libc::SIGCONT);
            }
        }
        if let Some(fault) = fault {
            println!(
                "{:6.1} s: part {step:2} produced, then {fault:?}",
                started.elapsed().as_secs_f64()
            );
            done.push(*fault);
        }
    }
    let rest = events - feed.produced;
    feed.produce(&env, rest);
    println!(
        "{:6.1} s: {} events produced ({} valid surveys, {} valid hotline events, {} invalid)",
        started.elapsed().as_secs_f64(),
        feed.produced,
        feed.surveys.len(),
        feed.hotline.len(),
        feed.invalid
    );

    // The rebuild reads the same log, complete now, into a database of its own while the
    // instances catch up. The default session timeout for its one-member group: with 6 s,
    // tansu took the member out of its group while it read the whole log and never
    // assigned it again.
    let rebuilt = env.sibling("rebuild").await;
    let mut rebuild = Pipeline::start_command_with(
        &rebuilt,
        &["rebuild"],
        &[(
            "SIPAS__KAFKA__PROPERTIES__session.timeout.ms".into(),
            "45000".into(),
        )],
    );
    logs.push(rebuild.log.clone());

    // Catching up after the last fault, on a broker whose sqlite log holds every message,
    // takes minutes: bounded, but not by the default patience.
    wait_for_within("every valid event in the raw views", CATCH_UP, || async {
        feed.raw_complete(&env).await
    })
    .await;
    // One instance leaves cleanly; the other takes every partition and folds to the end.
    let [mut first, mut second] = instances;
    assert!(
        first.terminate().success(),
        "the first instance stops cleanly"
    );
    let total = feed.produced as f64;
    wait_for_within(
        "the remaining instance to fold every partition to its end",
        CATCH_UP,
        || async { second.index_position().await == total },
    )
    .await;
    assert!(
        second.terminate().success(),
        "the second instance stops cleanly"
    );
    println!(
        "{:6.1} s: caught up; checking",
        started.elapsed().as_secs_f64()
    );
    feed.assert_stored_exactly(&env).await;
    println!(
        "{:6.1} s: dedup views and DLQ exact",
        started.elapsed().as_secs_f64()
    );
    assert!(
        rebuild.wait_exit(CATCH_UP).success(),
        "sipas rebuild succeeded"
    );
    println!(
        "{:6.1} s: rebuilt; comparing the index",
        started.elapsed().as_secs_f64()
    );
    for log in &logs {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        assert!(!text.contains("panicked"), "a panic in {}", log.display());
    }
    assert!(
        !broker.log().contains("panicked"),
        "the broker panicked:\n{}",
        broker.log()
    );
    support::index::assert_equivalent("after the chaos", &env, &rebuilt).await;
    let count = |f: fn(&Fault) -> bool| done.iter().filter(|x| f(x)).count();
    println!(
        "{:6.1} s: passed: {} SIGKILLs, {} broker restarts, {} ClickHouse outage of {} s, {} freeze of {} s",
        started.elapsed().as_secs_f64(),
        count(|f| matches!(f, Fault::Kill(_))),
        count(|f| *f == Fault::BrokerRestart),
        count(|f| *f == Fault::ClickHouseOutage),
        CLICKHOUSE_OUTAGE.as_secs(),
        count(|f| matches!(f, Fault::Freeze(_))),
        FROZEN.as_secs()
    );
}
