//! `sipas bench`: measures the ingest path on this machine and prints the figures.
//! Three numbers from one run over the same generated log:
//! - processing cost: decode + validate + row building from memory, events/s on one core;
//! - ceiling: a bare consumer reading the pre-filled topics and doing nothing;
//! - ingest: the full pipeline (Kafka -> ClickHouse + DLQ, offsets stored), events/s and
//!   CPU seconds per million events.
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;

use sipas_stream::config::Config;
use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
use sipas_stream::kafka::{admin, consumer, dlq::DeadLetterProducer, producer};
use sipas_stream::metrics::Metrics;
use sipas_stream::pipeline::{BatchOutput, IngestPipeline, InputMessage};
use sipas_stream::simulate::{sink as sim_sink, SimSettings, Simulator};
use sipas_stream::sink::{self, migrations, RawEventWriter};
use sipas_stream::shutdown;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Events in the generated log.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Only measure the index fold and checkpoint restore in memory, over this many events
    /// of history in one partition (no broker, no ClickHouse).
    #[arg(long)]
    index_only: Option<u64>,
    /// Keep the bench database afterwards (it is dropped by default).
    #[arg(long)]
    keep: bool,
}

fn cpu_seconds() -> f64 {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage struct into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn simulator(config: &Config, events: u64) -> Result<Simulator> {
    let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)?;
    let framework = frameworks.get("BNV-2640-2017").context("framework BNV-2640-2017 missing")?.clone();
    let now = sipas_stream::pipeline::ingest::unix_now();
    let settings = SimSettings { seed: 7, start_unix: now - 30 * 86_400, step_seconds: 30.0 * 86_400.0 / events as f64, ..Default::default() };
    Ok(Simulator::new(settings, &ProvinceRegistry::builtin(), framework))
}

/// Folds `events` simulated events (one year of history) into one partition state, then
/// checkpoints and restores it: the in-memory part of a restart.
fn index_fold(config: &Config, events: u64) -> Result<()> {
    use sipas_stream::contract::Decoded;
    use sipas_stream::index::state::PartitionState;
    let decoder = crate::build_decoder(config)?;
    let frameworks = decoder.validator.frameworks.clone();
    let framework = frameworks.get("BNV-2640-2017").context("framework BNV-2640-2017 missing")?.clone();
    let settings = SimSettings { seed: 8, start_unix: 1_760_000_000, step_seconds: 365.0 * 86_400.0 / events as f64, ..Default::default() };
    let mut sim = Simulator::new(settings, &ProvinceRegistry::builtin(), framework);
    let decoded: Vec<_> = (0..events).map(|_| sim.next_event()).map(|e| decoder.decode(e.kind, &e.payload).ok().map(|d| d.0)).collect();
    let lateness = config.index.lateness_seconds();
    let mut state = PartitionState::new(0);
    let (mut daily, started, cpu) = (0usize, Instant::now(), cpu_seconds());
    for (offset, event) in decoded.iter().enumerate() {
        let emitted = match event {
            Some(Decoded::Survey(s)) => state.apply_survey(s, offset as i64, &frameworks, lateness),
            Some(Decoded::Hotline(h)) => state.apply_hotline(h, offset as i64, &frameworks, lateness),
            None => {
                state.skip(offset as i64);
                Default::default()
            }
        };
        daily += emitted.satisfaction_daily.len() + emitted.hotline_daily.len();
    }
    let (fold_wall, fold_cpu) = (started.elapsed(), cpu_seconds() - cpu);
    let started = Instant::now();
    let bytes = bincode::serialize(&state)?;
    let serialise = started.elapsed();
    let started = Instant::now();
    let restored: PartitionState = bincode::deserialize(&bytes)?;
    let restore = started.elapsed();
    assert_eq!(restored.next_offset, state.next_offset);
    println!("sipas bench --index-only: {events} events, one year of event time, one partition");
    println!("| figure | value |");
    println!("|---|---|");
    println!("| index fold (decoded events -> state + daily rows), 1 core | {:.0} events/s ({:.2} s CPU, {daily} daily rows) |", events as f64 / fold_cpu.max(1e-9), fold_cpu);
    println!("| fold wall time | {:.2} s |", fold_wall.as_secs_f64());
    println!("| checkpoint size | {:.1} MiB |", bytes.len() as f64 / 1_048_576.0);
    println!("| checkpoint serialise / restore | {:.3} s / {:.3} s |", serialise.as_secs_f64(), restore.as_secs_f64());
    println!("| peak RSS of this process | {:.0} MiB |", peak_rss_mib());
    Ok(())
}

pub async fn run(base: &Config, args: BenchArgs) -> Result<()> {
    if let Some(events) = args.index_only {
        return index_fold(base, events);
    }
    let stamp = sipas_stream::pipeline::ingest::unix_now();
    let mut config = base.clone();
    config.kafka.surveys_topic = format!("sipas.bench.{stamp}.surveys");
    config.kafka.hotline_topic = format!("sipas.bench.{stamp}.hotline");
    config.kafka.dlq_topic = format!("sipas.bench.{stamp}.dlq");
    config.kafka.group_id = format!("sipas-bench-{stamp}");
    config.clickhouse.database = format!("sipas_bench_{stamp}");
    let decoder = Arc::new(crate::build_decoder(&config)?);

    // 1. Processing cost, no broker: the same generator, decoded in memory on this thread.
    let mut sim = simulator(&config, args.events)?;
    let messages: Vec<InputMessage> = (0..args.events)
        .map(|i| {
            let e = sim.next_event();
            InputMessage { kind: e.kind, topic: "mem".into(), partition: 0, offset: i as i64, key: Some(e.key.into_bytes()), payload: Some(e.payload) }
        })
        .collect();
    let started = Instant::now();
    let cpu_before = cpu_seconds();
    let mut rows = 0;
    for chunk in messages.chunks(config.pipeline.batch_max_messages) {
        rows += BatchOutput::build(&decoder, chunk, stamp).message_count();
    }
    let processing_cpu = cpu_seconds() - cpu_before;
    let processing_rate = rows as f64 / processing_cpu.max(1e-9);
    let processing_wall = started.elapsed();
    drop(messages);

    // 2. Pre-fill the topics with the same log.
    migrations::migrate(&config.clickhouse).await?;
    let k = &config.kafka;
    admin::ensure_topics(k, &[&k.surveys_topic, &k.hotline_topic, &k.dlq_topic]).await?;
    let mut sim = simulator(&config, args.events)?;
    let producer = producer::idempotent_producer(k)?;
    let produce_started = Instant::now();
    let tally = sim_sink::to_kafka(&mut sim, &producer, &k.surveys_topic, &k.hotline_topic, args.events, 0.0, |_| {}, || false).await?;
    let produce_elapsed = produce_started.elapsed();

    // 3. Ceiling: a bare consumer that only counts.
    let ceiling_consumer: StreamConsumer = sipas_stream::kafka::client_config(k)
        .set("group.id", format!("{}-ceiling", k.group_id))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    ceiling_consumer.subscribe(&[&k.surveys_topic, &k.hotline_topic])?;
    let mut seen = 0u64;
    let mut first: Option<Instant> = None;
    while seen < tally.total() {
        let message = tokio::time::timeout(Duration::from_secs(60), ceiling_consumer.recv()).await.context("ceiling consumer stalled")??;
        first.get_or_insert_with(Instant::now);
        seen += u64::from(message.payload().is_some());
    }
    let ceiling_elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    drop(ceiling_consumer);

    // 4. The pipeline, until every message is acknowledged (row or dead letter).
    let metrics = Metrics::new();
    let (trigger, stop) = shutdown::channel();
    let retry = (Duration::from_millis(200), Duration::from_millis(5_000));
    let ingest_consumer = consumer::ingest_consumer(k, &config.pipeline, metrics.clone())?;
    let dlq = DeadLetterProducer::new(producer::idempotent_producer(k)?, k.dlq_topic.clone(), metrics.clone(), retry.0, retry.1, stop.clone());
    let writer = RawEventWriter::new(sink::connect(&config.clickhouse), metrics.clone(), retry.0, retry.1, stop.clone());
    let pipeline = IngestPipeline::new(&config, ingest_consumer, decoder, writer, dlq, metrics.clone(), None, stop);
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let task = tokio::spawn(pipeline.run());
    let acknowledged = || {
        let rows: u64 = ["survey_submissions", "hotline_events"].iter().map(|t| metrics.inserted_rows.with_label_values(&[t]).get()).sum();
        let letters: u64 = sipas_stream::contract::RejectReason::ALL.iter().map(|r| metrics.dlq.with_label_values(&[r.code()]).get()).sum();
        rows + letters
    };
    while acknowledged() < tally.total() {
        tokio::time::sleep(Duration::from_millis(20)).await;
        if started.elapsed() > Duration::from_secs(1800) {
            anyhow::bail!("pipeline did not finish within 30 minutes ({} of {} acknowledged)", acknowledged(), tally.total());
        }
    }
    let ingest_elapsed = started.elapsed();
    let ingest_cpu = cpu_seconds() - cpu_before;
    trigger.trigger();
    task.await??;

    if !args.keep {
        let client = sink::client::client_without_database(&config.clickhouse);
        client.query(&format!("DROP DATABASE IF EXISTS {}", config.clickhouse.database)).execute().await?;
    }

    let n = tally.total() as f64;
    let ceiling_rate = n / ceiling_elapsed.as_secs_f64().max(1e-9);
    let ingest_rate = n / ingest_elapsed.as_secs_f64().max(1e-9);
    println!("sipas bench: {} events ({} surveys, {} hotline; {} invalid, {} duplicates), batch {} msgs", tally.total(), tally.surveys, tally.hotline, tally.invalid.values().sum::<u64>(), tally.duplicates, config.pipeline.batch_max_messages);
    println!("| figure | value |");
    println!("|---|---|");
    println!("| processing cost, no broker (decode+validate+rows, 1 core) | {processing_rate:.0} events/s ({:.2} s wall) |", processing_wall.as_secs_f64());
    println!("| produce (idempotent, acks=all) | {:.0} events/s |", n / produce_elapsed.as_secs_f64().max(1e-9));
    println!("| ceiling: bare consumer, no work | {ceiling_rate:.0} events/s |");
    println!("| ingest: Kafka -> ClickHouse + DLQ, offsets stored | {ingest_rate:.0} events/s ({:.2} s) |", ingest_elapsed.as_secs_f64());
    println!("| ingest / ceiling | {:.2} |", ingest_rate / ceiling_rate);
    println!("| ingest CPU of this process | {:.2} s per million events |", ingest_cpu / n * 1e6);
    println!("| peak RSS of this process (includes the in-memory log of step 1) | {:.0} MiB |", peak_rss_mib());
    Ok(())
}
