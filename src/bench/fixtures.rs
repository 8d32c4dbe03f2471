//! What the scenarios run on: the bench configuration on fresh topics and database,
//! generated logs (frameworks copied, agencies scaled), producing them, and running the
//! live or the rebuild index processor up to the end offsets.
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipas_stream::config::Config;
use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
use sipas_stream::kafka::admin;
use sipas_stream::metrics::Metrics;
use sipas_stream::pipeline::service as pipeline_service;
use sipas_stream::shutdown;
use sipas_stream::simulate::{sink as sim_sink, SimSettings, Simulator};
use sipas_stream::sink::{self, migrations};

use super::measure::{cpu_seconds, indexed_up_to};
use super::BenchArgs;

pub(super) fn simulator(config: &Config, events: u64) -> Result<Simulator> {
    let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)?;
    let framework = frameworks
        .get("BNV-2640-2017")
        .context("framework BNV-2640-2017 missing")?
        .clone();
    let now = sipas_stream::domain::time::unix_now();
    let settings = SimSettings {
        seed: 7,
        start_unix: now - 30 * 86_400,
        step_seconds: 30.0 * 86_400.0 / events as f64,
        ..Default::default()
    };
    Ok(Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        framework,
    ))
}

/// Frameworks for state-size benchmarks: the configured BNV-2640-2017 plus copies under
/// other ids, so that each unit carries one series per framework.
pub(super) fn bench_frameworks(
    decoder: &mut sipas_stream::contract::Decoder,
    count: usize,
) -> Result<Vec<sipas_stream::domain::Framework>> {
    let base = decoder
        .validator
        .frameworks
        .get("BNV-2640-2017")
        .context("framework BNV-2640-2017 missing")?
        .clone();
    let mut frameworks = vec![base.clone()];
    for i in 2..=count {
        let mut copy = base.clone();
        copy.id = format!("BENCH-COPY-{i}");
        decoder.validator.frameworks.add(copy.clone());
        frameworks.push(copy);
    }
    Ok(frameworks)
}

/// A copy of the configuration on fresh topics, groups and database.
pub(super) fn bench_config(base: &Config) -> Config {
    let stamp = sipas_stream::domain::time::unix_now();
    let mut config = base.clone();
    config.kafka.surveys_topic = format!("sipas.bench.{stamp}.surveys");
    config.kafka.hotline_topic = format!("sipas.bench.{stamp}.hotline");
    config.kafka.dlq_topic = format!("sipas.bench.{stamp}.dlq");
    config.kafka.group_id = format!("sipas-bench-{stamp}");
    config.index.group_id = format!("sipas-bench-index-{stamp}");
    config.clickhouse.database = format!("sipas_bench_{stamp}");
    config
}

/// What [`bench_config`] changes, as `SIPAS__…` overrides: a `sipas` child process given
/// these (and the parent's configuration file) works on the same bench topics and database.
pub(super) fn bench_env(config: &Config) -> Vec<(&'static str, String)> {
    let k = &config.kafka;
    vec![
        ("SIPAS__KAFKA__SURVEYS_TOPIC", k.surveys_topic.clone()),
        ("SIPAS__KAFKA__HOTLINE_TOPIC", k.hotline_topic.clone()),
        ("SIPAS__KAFKA__DLQ_TOPIC", k.dlq_topic.clone()),
        ("SIPAS__KAFKA__GROUP_ID", k.group_id.clone()),
        ("SIPAS__INDEX__GROUP_ID", config.index.group_id.clone()),
        (
            "SIPAS__CLICKHOUSE__DATABASE",
            config.clickhouse.database.clone(),
        ),
    ]
}

pub(super) async fn drop_bench_database(config: &Config) -> Result<()> {
    let client = sink::client::client_without_database(&config.clickhouse);
    client
        .query(&format!(
            "DROP DATABASE IF EXISTS {}",
            config.clickhouse.database
        ))
        .execute()
        .await?;
    Ok(())
}

/// Runs `sipas run`'s consumer loop and index processor until every partition's index
/// rows are written up to `ends`; returns the time that took. Both are then stopped
/// (final checkpoint).
pub(super) async fn index_until_caught_up(
    config: &Config,
    decoder: &Arc<sipas_stream::contract::Decoder>,
    ends: &std::collections::HashMap<(String, i32), i64>,
    label: &str,
) -> Result<Duration> {
    let metrics = Metrics::new();
    let (trigger, stop) = shutdown::channel();
    let (pipeline, processor) =
        pipeline_service::live(config, Arc::clone(decoder), metrics.clone(), stop)?;
    let processor = processor.context("the index is disabled in this configuration")?;
    let total: i64 = ends.values().sum();
    let bar = crate::progress::events(label, total.max(0) as u64);
    let started = Instant::now();
    let ingest = tokio::spawn(pipeline.run());
    let task = tokio::spawn(processor.run());
    loop {
        let done = indexed_up_to(&metrics, ends);
        bar.set_position(done.max(0) as u64);
        if done >= total {
            break;
        }
        anyhow::ensure!(
            !task.is_finished(),
            "the index processor stopped before catching up"
        );
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(3600),
            "the index processor did not catch up within an hour"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    bar.finish_and_clear();
    trigger.trigger();
    ingest.await??;
    task.await?;
    Ok(elapsed)
}

/// A fresh bench stack: the configuration on fresh topics and database
/// ([`bench_config`]), migrated, with its topics created; the decoder with `--frameworks`
/// frameworks and their list ([`scaled_decoder`]).
pub(super) async fn fresh_stack(
    base: &Config,
    args: &BenchArgs,
) -> Result<(
    Config,
    Arc<sipas_stream::contract::Decoder>,
    Vec<sipas_stream::domain::Framework>,
)> {
    let config = bench_config(base);
    let (decoder, frameworks) = scaled_decoder(&config, args)?;
    migrations::migrate(&config.clickhouse).await?;
    let k = &config.kafka;
    admin::ensure_topics(k, &k.all_topics()).await?;
    Ok((config, decoder, frameworks))
}

/// The decoder with `--frameworks` frameworks (copies of BNV-2640-2017), and their list.
pub(super) fn scaled_decoder(
    config: &Config,
    args: &BenchArgs,
) -> Result<(
    Arc<sipas_stream::contract::Decoder>,
    Vec<sipas_stream::domain::Framework>,
)> {
    let mut decoder = sipas_stream::assemble::decoder(config)?;
    let frameworks = bench_frameworks(&mut decoder, args.frameworks)?;
    Ok((Arc::new(decoder), frameworks))
}

/// The simulator of a year of event time ending now, spread over `events` events, for 34
/// provinces × `--agencies` × the given frameworks.
pub(super) fn year_simulator(
    args: &BenchArgs,
    frameworks: Vec<sipas_stream::domain::Framework>,
    seed: u64,
    events: u64,
) -> Simulator {
    let now = sipas_stream::domain::time::unix_now();
    let year = 365.0 * 86_400.0;
    let settings = SimSettings {
        seed,
        start_unix: now - year as i64,
        step_seconds: year / events.max(1) as f64,
        agencies_per_province: args.agencies,
        ..Default::default()
    };
    scaled_simulator(settings, frameworks)
}

/// The simulator of `settings` over every one of `frameworks` (the first is the default).
pub(super) fn scaled_simulator(
    settings: SimSettings,
    frameworks: Vec<sipas_stream::domain::Framework>,
) -> Simulator {
    Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        frameworks[0].clone(),
    )
    .with_frameworks(frameworks)
}

/// Produces `count` events of `sim` into the bench topics as fast as the broker takes
/// them; the bar advances from `start`.
pub(super) async fn produce(
    config: &Config,
    sim: &mut Simulator,
    producer: &rdkafka::producer::FutureProducer,
    count: u64,
    bar: &indicatif::ProgressBar,
    start: u64,
) -> Result<()> {
    let k = &config.kafka;
    sim_sink::to_kafka(
        sim,
        producer,
        k.input_topics(),
        count,
        0.0,
        |t| bar.set_position(start + t.total()),
        || false,
    )
    .await?;
    Ok(())
}

/// A rebuild's figures: until the facts cover `ends`, then until the processor stopped
/// (the windows of every unit and day materialised once, at the end), and its CPU.
pub(super) struct Rebuilt {
    pub(super) facts: Duration,
    pub(super) total: Duration,
    pub(super) cpu: f64,
}

/// Runs `sipas rebuild`'s reader and index processor (index only, from offset 0) up to
/// `ends`.
pub(super) async fn rebuild_to(
    config: &Config,
    decoder: &Arc<sipas_stream::contract::Decoder>,
    ends: &std::collections::HashMap<(String, i32), i64>,
) -> Result<Rebuilt> {
    let total: i64 = ends.values().sum();
    let metrics = Metrics::new();
    // Rebuild mode stops by itself at the end offsets; the trigger only has to outlive it.
    let (finished, stop) = shutdown::channel();
    let (reader, processor) = pipeline_service::rebuild(
        config,
        Arc::clone(decoder),
        metrics.clone(),
        stop,
        ends.clone(),
    )?;
    let bar = crate::progress::events("rebuild", total.max(0) as u64);
    let (cpu, started) = (cpu_seconds(), Instant::now());
    let reader = tokio::spawn(reader.run());
    let task = tokio::spawn(processor.run());
    let mut facts = None;
    while !task.is_finished() {
        let done = indexed_up_to(&metrics, ends);
        bar.set_position(done.max(0) as u64);
        if done >= total && facts.is_none() {
            facts = Some(started.elapsed());
            bar.set_message("materialising");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.await?;
    let total = started.elapsed();
    bar.finish_and_clear();
    finished.trigger();
    reader.await??;
    Ok(Rebuilt {
        facts: facts.unwrap_or(total),
        total,
        cpu: cpu_seconds() - cpu,
    })
}
