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
use sipas_stream::index::rows::tables;
use sipas_stream::kafka::{admin, producer};
use sipas_stream::metrics::Metrics;
use sipas_stream::pipeline::service as pipeline_service;
use sipas_stream::pipeline::{BatchOutput, InputMessage};
use sipas_stream::shutdown;
use sipas_stream::simulate::{sink as sim_sink, SimSettings, Simulator};
use sipas_stream::sink::{self, migrations};

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Events in the generated log.
    #[arg(long, default_value_t = 200_000)]
    events: u64,
    /// Only measure the processing cost from memory over `--events` messages (decode +
    /// validate + raw rows, then the same plus the index fold); no broker, no ClickHouse.
    #[arg(long)]
    processing_only: bool,
    /// Only measure the index fold and checkpoint restore in memory, over this many events
    /// of history in one partition (no broker, no ClickHouse).
    #[arg(long)]
    index_only: Option<u64>,
    /// Internal: restore a checkpoint file in this fresh process and print the memory it
    /// takes (used by --index-only, so that no transient of the fold is counted).
    #[arg(long, hide = true)]
    measure_restore: Option<std::path::PathBuf>,
    /// Measure the index processor's restart to caught-up over this many events of history
    /// (through the broker and ClickHouse), then `rebuild` over the same log and the read
    /// queries (as --queries) on what it wrote.
    #[arg(long)]
    restart: Option<u64>,
    /// Measure read latency over a year of day counts: fold this many events (one year of
    /// event time) with `rebuild`'s index processor into a fresh database, then time the
    /// province rankings and one province's agency ranking.
    #[arg(long)]
    queries: Option<u64>,
    /// Measure freshness: produce at this steady rate (events/s) and time each event from
    /// produce to its latest values being stored.
    #[arg(long)]
    freshness: Option<f64>,
    /// How long the --freshness measurement produces (after a 10 s warm-up).
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Events produced after the last checkpoint, before the restart (--restart).
    #[arg(long, default_value_t = 30_000)]
    tail: u64,
    /// Agencies per province in the generated log.
    #[arg(long, default_value_t = 500)]
    agencies: usize,
    /// Frameworks the generated surveys are spread over (copies of BNV-2640-2017).
    #[arg(long, default_value_t = 3)]
    frameworks: usize,
    /// Days of event time the --index-only log spans.
    #[arg(long, default_value_t = 365)]
    days: u32,
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

/// A memory figure of this process from /proc/self/status (`VmHWM`, `VmRSS`), in MiB.
fn status_mib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| {
                    l.strip_prefix(field)
                        .is_some_and(|rest| rest.starts_with(':'))
                })
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

/// Resets VmHWM (Linux ≥ 4.0), so that a step's peak excludes earlier steps.
fn reset_peak_rss() {
    if let Err(error) = std::fs::write("/proc/self/clear_refs", "5") {
        tracing::warn!(%error, "cannot reset the peak RSS; later peaks include earlier steps");
    }
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

fn current_rss_mib() -> f64 {
    status_mib("VmRSS")
}

fn simulator(config: &Config, events: u64) -> Result<Simulator> {
    let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)?;
    let framework = frameworks
        .get("BNV-2640-2017")
        .context("framework BNV-2640-2017 missing")?
        .clone();
    let now = sipas_stream::pipeline::ingest::unix_now();
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
fn bench_frameworks(
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

/// Folds `events` simulated events spread over `days` of event time into one partition
/// state, then checkpoints and restores it: the in-memory part of a restart, and the
/// memory the state of `agencies` × 34 provinces × `frameworks` takes. Events are
/// generated and decoded in chunks so that the process holds little besides the state.
fn index_fold(config: &Config, args: &BenchArgs, events: u64) -> Result<()> {
    use sipas_stream::contract::Decoded;
    use sipas_stream::index::state::PartitionState;
    let mut decoder = sipas_stream::assemble::decoder(config)?;
    let framework_list = bench_frameworks(&mut decoder, args.frameworks)?;
    let frameworks = decoder.validator.frameworks.clone();
    let settings = SimSettings {
        seed: 8,
        start_unix: 1_760_000_000,
        step_seconds: f64::from(args.days) * 86_400.0 / events as f64,
        agencies_per_province: args.agencies,
        ..Default::default()
    };
    let mut sim = Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        framework_list[0].clone(),
    )
    .with_frameworks(framework_list);
    let lateness = config.index.lateness_seconds();
    let mut state = PartitionState::new(0, 0);
    let rss_before = current_rss_mib();
    let (mut rows, mut fold_cpu, mut decode_cpu, started) = (0usize, 0.0, 0.0, Instant::now());
    let (mut checkpoint_bytes, mut checkpoints) = (0usize, 0usize);
    let bar = indicatif::ProgressBar::new(events);
    let mut offset = 0i64;
    while (offset as u64) < events {
        let chunk = (events - offset as u64).min(20_000);
        let cpu = cpu_seconds();
        let decoded: Vec<_> = (0..chunk)
            .map(|_| sim.next_event())
            // Synthetic history, decoded in memory: no receive time.
            .map(|e| decoder.decode(e.kind, &e.payload, None).ok().map(|d| d.0))
            .collect();
        decode_cpu += cpu_seconds() - cpu;
        let cpu = cpu_seconds();
        for event in &decoded {
            match event {
                Some(Decoded::Survey(s)) => {
                    state.apply_survey(s, offset, &frameworks, lateness);
                }
                Some(Decoded::Hotline(h)) => {
                    state.apply_hotline(h, offset, lateness);
                }
                None => state.skip(offset),
            }
            offset += 1;
        }
        // One flush per chunk: the rows it would write, built as the processor builds them.
        let taken = state.take_rows(&frameworks);
        rows += taken.surveys.len() + taken.hotline.len();
        fold_cpu += cpu_seconds() - cpu;
        // A checkpoint per chunk: the state row and the chunk of ids folded since the last.
        let (row, ids) = sipas_stream::index::checkpoint::rows("bench", "t", 0, &mut state, 0);
        checkpoint_bytes += row.state.len() + ids.map_or(0, |c| c.chunk.len());
        checkpoints += 1;
        bar.inc(chunk);
    }
    bar.finish_and_clear();
    let fold_wall = started.elapsed();
    let rss_state = current_rss_mib() - rss_before;
    let started = Instant::now();
    let bytes = sipas_stream::index::checkpoint::encode(&state);
    let serialise = started.elapsed();
    let started = Instant::now();
    let restored =
        sipas_stream::index::checkpoint::decode(&bytes).context("checkpoint does not decode")?;
    let restore = started.elapsed();
    anyhow::ensure!(
        restored.next_offset == state.next_offset,
        "restored state is at a different offset"
    );
    drop(restored);
    // The state's own footprint: restored in a fresh process, without the fold's transients
    // (a closing day's rows are allocated and freed at once, and the allocator keeps them).
    let file = std::env::temp_dir().join(format!("sipas-bench-state-{}.bin", std::process::id()));
    std::fs::write(&file, &bytes)?;
    let output = std::process::Command::new(std::env::current_exe()?)
        .args(["bench", "--measure-restore"])
        .arg(&file)
        .output();
    let _ = std::fs::remove_file(&file);
    let restored_mib = output
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.split_whitespace().next()?.parse::<f64>().ok());
    let stats = state.stats();
    println!(
        "sipas bench --index-only: {events} events over {} days of event time, one partition, 34 provinces × {} agencies × {} frameworks",
        args.days, args.agencies, args.frameworks
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!("| index fold (decoded events -> day-count rows), 1 core | {:.0} events/s ({fold_cpu:.2} s CPU) |", events as f64 / fold_cpu.max(1e-9));
    println!(
        "| fact rows written per event (one flush per 20,000 events) | {:.3} ({rows} rows) |",
        rows as f64 / events.max(1) as f64
    );
    println!(
        "| checkpoint bytes written (state + new ids), per checkpoint every 20,000 events | {:.2} MiB |",
        checkpoint_bytes as f64 / checkpoints.max(1) as f64 / 1_048_576.0
    );
    println!(
        "| decode + validate (not part of the fold), 1 core | {:.0} events/s |",
        events as f64 / decode_cpu.max(1e-9)
    );
    println!(
        "| generate + decode + fold wall time | {:.2} s |",
        fold_wall.as_secs_f64()
    );
    println!(
        "| state: open-block cells / tickets / ids | {} / {} / {} |",
        stats.open_cells, stats.tickets, stats.ids
    );
    match restored_mib {
        Some(mib) => println!("| state in memory (restored in a fresh process) | {mib:.0} MiB |"),
        None => println!("| state in memory (restored in a fresh process) | not measured |"),
    }
    println!("| resident memory grown during the fold (state + allocator-retained transients) | {rss_state:.0} MiB |");
    println!(
        "| checkpoint size | {:.1} MiB |",
        bytes.len() as f64 / 1_048_576.0
    );
    // Steady traffic on a partition holding this history: every checkpoint rewrites the
    // state (open block + tickets); the ids go in chunks of what is new (12 bytes each).
    let (rate, interval_s) = (1000.0, config.index.checkpoint_interval_ms as f64 / 1000.0);
    println!(
        "| checkpoint bytes per minute at {rate:.0} events/s on this state (one per {interval_s:.0} s + 12 B per new id) | {:.1} MiB |",
        (bytes.len() as f64 * 60.0 / interval_s.max(1e-9) + 12.0 * rate * 60.0) / 1_048_576.0
    );
    println!(
        "| checkpoint serialise / restore | {:.3} s / {:.3} s |",
        serialise.as_secs_f64(),
        restore.as_secs_f64()
    );
    println!(
        "| peak RSS of this process (includes one serialised and one restored copy) | {:.0} MiB |",
        peak_rss_mib()
    );
    Ok(())
}

/// Step 1 of the bench, on this thread: CPU time of processing the same in-memory log
/// twice, (a) into raw rows and dead letters, (b) the same plus the index fold.
struct Processing {
    messages: usize,
    surveys: usize,
    hotline: usize,
    dead_letters: usize,
    raw_cpu: f64,
    raw_wall: Duration,
    fold_cpu: f64,
    fold_wall: Duration,
    fact_rows: usize,
}

impl Processing {
    fn raw_rate(&self) -> f64 {
        self.messages as f64 / self.raw_cpu.max(1e-9)
    }

    fn fold_rate(&self) -> f64 {
        self.messages as f64 / self.fold_cpu.max(1e-9)
    }
}

/// Generates `events` messages (the bench's simulator: default settings, 30 days of
/// event time) into memory, then measures both passes over them.
fn processing(
    config: &Config,
    decoder: &sipas_stream::contract::Decoder,
    events: u64,
) -> Result<Processing> {
    let mut sim = simulator(config, events)?;
    let topic: Arc<str> = "mem".into();
    // Received now, as if consumed live: the event-time guard runs as in `sipas run` (the
    // simulated log ends at the simulator's start, before this).
    let received_ms = sipas_stream::pipeline::ingest::unix_now() * 1000;
    let messages: Vec<InputMessage> = (0..events)
        .map(|i| {
            let e = sim.next_event();
            InputMessage {
                kind: e.kind,
                topic: Arc::clone(&topic),
                partition: 0,
                offset: i as i64,
                produced_ms: Some(received_ms),
                index_only: false,
                key: Some(e.key.into_bytes()),
                payload: Some(e.payload),
            }
        })
        .collect();
    let stamp = sipas_stream::pipeline::ingest::unix_now();
    let batch = config.pipeline.batch_max_messages;

    let (started, cpu) = (Instant::now(), cpu_seconds());
    let (surveys, hotline, dead_letters) = raw_rows_pass(decoder, &messages, batch, stamp);
    let (raw_cpu, raw_wall) = (cpu_seconds() - cpu, started.elapsed());
    anyhow::ensure!(
        surveys + hotline + dead_letters == messages.len(),
        "every message is a row or a dead letter"
    );

    let lateness = config.index.lateness_seconds();
    let (started, cpu) = (Instant::now(), cpu_seconds());
    let fact_rows = fold_pass(decoder, &messages, batch, stamp, lateness);
    let (fold_cpu, fold_wall) = (cpu_seconds() - cpu, started.elapsed());
    Ok(Processing {
        messages: messages.len(),
        surveys,
        hotline,
        dead_letters,
        raw_cpu,
        raw_wall,
        fold_cpu,
        fold_wall,
        fact_rows,
    })
}

/// (a) decode + validate + raw rows, batch by batch as the ingest pipeline does. Not
/// inlined, so that a profiler can collect this pass alone.
#[inline(never)]
fn raw_rows_pass(
    decoder: &sipas_stream::contract::Decoder,
    messages: &[InputMessage],
    batch: usize,
    stamp: i64,
) -> (usize, usize, usize) {
    let (mut surveys, mut hotline, mut dead_letters) = (0, 0, 0);
    for chunk in messages.chunks(batch) {
        let out = BatchOutput::build(decoder, chunk, stamp, false);
        surveys += out.surveys.len();
        hotline += out.hotline.len();
        dead_letters += out.dead_letters.len();
    }
    (surveys, hotline, dead_letters)
}

/// (b) the same with `folds`, each folded into its partition's state, and the fact rows
/// it emits taken as the index processor takes them. Returns the number of fact rows.
#[inline(never)]
fn fold_pass(
    decoder: &sipas_stream::contract::Decoder,
    messages: &[InputMessage],
    batch: usize,
    stamp: i64,
    lateness: i64,
) -> usize {
    use sipas_stream::contract::Decoded;
    use sipas_stream::index::state::PartitionState;
    let frameworks = decoder.validator.frameworks.clone();
    let mut states: std::collections::HashMap<(Arc<str>, i32), PartitionState> = Default::default();
    let mut rows = 0;
    for chunk in messages.chunks(batch) {
        let out = BatchOutput::build(decoder, chunk, stamp, true);
        for fold in out.folds {
            let state = states
                .entry((Arc::clone(&fold.topic), fold.partition))
                .or_insert_with(|| PartitionState::new(fold.partition as u32, 0));
            match &fold.event {
                Some(Decoded::Survey(s)) => {
                    state.apply_survey(s, fold.offset, &frameworks, lateness);
                }
                Some(Decoded::Hotline(h)) => {
                    state.apply_hotline(h, fold.offset, lateness);
                }
                None => state.skip(fold.offset),
            }
        }
        // Written (here: dropped) once per batch, as a flush would.
        for state in states.values_mut() {
            let taken = state.take_rows(&frameworks);
            rows += taken.surveys.len() + taken.hotline.len();
        }
    }
    rows
}

fn processing_only(config: &Config, events: u64) -> Result<()> {
    let decoder = sipas_stream::assemble::decoder(config)?;
    let p = processing(config, &decoder, events)?;
    println!(
        "sipas bench --processing-only: {} messages ({} surveys, {} hotline, {} dead letters), 30 days of event time, batch {} msgs, one thread",
        p.messages, p.surveys, p.hotline, p.dead_letters, config.pipeline.batch_max_messages
    );
    println!("| figure | events/s per core | CPU s | wall s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| (a) decode + validate + raw rows | {:.0} | {:.2} | {:.2} |",
        p.raw_rate(),
        p.raw_cpu,
        p.raw_wall.as_secs_f64()
    );
    println!(
        "| (b) (a) + index fold + day-count rows ({} rows) | {:.0} | {:.2} | {:.2} |",
        p.fact_rows,
        p.fold_rate(),
        p.fold_cpu,
        p.fold_wall.as_secs_f64()
    );
    println!("RowBinary encoding is not included: clickhouse 0.15 serialises rows only inside Insert::write, which needs a server.");
    Ok(())
}

/// A copy of the configuration on fresh topics, groups and database.
fn bench_config(base: &Config) -> Config {
    let stamp = sipas_stream::pipeline::ingest::unix_now();
    let mut config = base.clone();
    config.kafka.surveys_topic = format!("sipas.bench.{stamp}.surveys");
    config.kafka.hotline_topic = format!("sipas.bench.{stamp}.hotline");
    config.kafka.dlq_topic = format!("sipas.bench.{stamp}.dlq");
    config.kafka.group_id = format!("sipas-bench-{stamp}");
    config.index.group_id = format!("sipas-bench-index-{stamp}");
    config.clickhouse.database = format!("sipas_bench_{stamp}");
    config
}

async fn drop_bench_database(config: &Config) -> Result<()> {
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

/// Messages whose index rows are written, summed over partitions, counting each partition
/// at most up to its end offset.
fn indexed_up_to(metrics: &Metrics, ends: &std::collections::HashMap<(String, i32), i64>) -> i64 {
    ends.iter()
        .map(|((topic, partition), end)| {
            metrics
                .index_position
                .with_label_values(&[topic, &partition.to_string()])
                .get()
                .min(*end)
        })
        .sum()
}

/// Runs `sipas run`'s consumer loop and index processor until every partition's index
/// rows are written up to `ends`; returns the time that took. Both are then stopped
/// (final checkpoint).
async fn index_until_caught_up(
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
    let bar = events_bar(label, total.max(0) as u64);
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

/// The decoder with `--frameworks` frameworks (copies of BNV-2640-2017), and their list.
fn scaled_decoder(
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
fn year_simulator(
    args: &BenchArgs,
    frameworks: Vec<sipas_stream::domain::Framework>,
    seed: u64,
    events: u64,
) -> Simulator {
    let now = sipas_stream::pipeline::ingest::unix_now();
    let year = 365.0 * 86_400.0;
    let settings = SimSettings {
        seed,
        start_unix: now - year as i64,
        step_seconds: year / events.max(1) as f64,
        agencies_per_province: args.agencies,
        ..Default::default()
    };
    Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        frameworks[0].clone(),
    )
    .with_frameworks(frameworks)
}

/// A progress bar over `total` events, labelled.
fn events_bar(label: &str, total: u64) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(&format!(
            "{label} {{bar:30}} {{pos}}/{{len}} events {{per_sec}}"
        ))
        .expect("valid template"),
    );
    bar
}

/// Produces `count` events of `sim` into the bench topics as fast as the broker takes
/// them; the bar advances from `start`.
async fn produce(
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
        &k.surveys_topic,
        &k.hotline_topic,
        count,
        0.0,
        |t| bar.set_position(start + t.total()),
        || false,
    )
    .await?;
    Ok(())
}

async fn end_offsets(config: &Config) -> Result<std::collections::HashMap<(String, i32), i64>> {
    let probe = config.clone();
    Ok(sipas_stream::assemble::end_offsets(&probe).await?)
}

/// A rebuild's figures: until the facts cover `ends`, then until the processor stopped
/// (the windows of every unit and day materialised once, at the end), and its CPU.
struct Rebuilt {
    facts: Duration,
    total: Duration,
    cpu: f64,
}

/// Runs `sipas rebuild`'s reader and index processor (index only, from offset 0) up to
/// `ends`.
async fn rebuild_to(
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
    let bar = events_bar("rebuild", total.max(0) as u64);
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

/// Bytes of the latest checkpoint per partition and of every id chunk stored.
async fn checkpoint_bytes(config: &Config) -> Result<(u64, u64)> {
    let client = sink::connect(&config.clickhouse);
    let state: u64 = client
        .query("SELECT toUInt64(sum(length(state))) FROM (SELECT topic, partition, argMax(state, next_offset) AS state FROM index_checkpoints GROUP BY topic, partition)")
        .fetch_one()
        .await?;
    let ids: u64 = client
        .query("SELECT toUInt64(sum(length(chunk))) FROM index_state_chunks")
        .fetch_one()
        .await?;
    Ok((state, ids))
}

/// Rows of the index tables in the bench database (facts, and daily windows), as table rows.
async fn print_table_rows(config: &Config) -> Result<()> {
    let client = sink::connect(&config.clickhouse);
    for table in [
        tables::SATISFACTION_DAY_COUNTS,
        tables::HOTLINE_DAY_COUNTS,
        tables::SATISFACTION_DAILY,
        tables::HOTLINE_KPI_DAILY,
    ] {
        let rows: u64 = client
            .query(&format!("SELECT count() FROM {table} FINAL"))
            .fetch_one()
            .await?;
        println!("| rows in {table} | {rows} |");
    }
    Ok(())
}

/// Restart to caught-up: folds `events` of history (one year of event time) through the
/// broker into ClickHouse, stops with a checkpoint, produces `--tail` more events (what a
/// crash just before the next checkpoint leaves to replay), and times a fresh processor
/// from start until its outputs cover the whole log. Then `rebuild` over the same log, and
/// the read queries on what it wrote.
async fn restart(base: &Config, args: &BenchArgs, events: u64) -> Result<()> {
    let config = bench_config(base);
    let (decoder, framework_list) = scaled_decoder(&config, args)?;
    migrations::migrate(&config.clickhouse).await?;
    let k = &config.kafka;
    admin::ensure_topics(k, &[&k.surveys_topic, &k.hotline_topic, &k.dlq_topic]).await?;
    let mut sim = year_simulator(args, framework_list, 9, events);
    let producer = producer::idempotent_producer(k)?;
    let bar = events_bar("produce", events + args.tail);
    produce(&config, &mut sim, &producer, events, &bar, 0).await?;
    let history_ends = end_offsets(&config).await?;
    let history = index_until_caught_up(&config, &decoder, &history_ends, "history").await?;
    let (history_state, history_ids) = checkpoint_bytes(&config).await?;

    produce(&config, &mut sim, &producer, args.tail, &bar, events).await?;
    bar.finish_and_clear();
    let ends = end_offsets(&config).await?;
    // The peak from here on is the restarted processor's (with the consumer loop's batches).
    reset_peak_rss();
    let restart = index_until_caught_up(&config, &decoder, &ends, "restart").await?;
    let restart_rss = peak_rss_mib();
    let (state_bytes, ids_bytes) = checkpoint_bytes(&config).await?;

    let total: i64 = ends.values().sum();
    let rebuild = rebuild_to(&config, &decoder, &ends).await?;
    println!(
        "sipas bench --restart: {events} events of history (one year of event time) + {} after the last checkpoint, {} partitions, 34 provinces × {} agencies × {} frameworks",
        args.tail,
        ends.len(),
        args.agencies,
        args.frameworks
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| history folded through the broker into ClickHouse (`sipas run`'s pipeline) | {:.1} s ({:.0} events/s) |",
        history.as_secs_f64(),
        events as f64 / history.as_secs_f64().max(1e-9)
    );
    println!(
        "| checkpoints after the history (all partitions): state / ids | {:.1} / {:.1} MiB |",
        history_state as f64 / 1_048_576.0,
        history_ids as f64 / 1_048_576.0
    );
    println!(
        "| restart to caught-up (restore checkpoints and ids, replay the tail, write its rows) | {:.2} s |",
        restart.as_secs_f64()
    );
    println!(
        "| peak RSS during the restart (processor + consumer loop + raw ingest) | {restart_rss:.0} MiB |"
    );
    println!(
        "| checkpoints after the restart: state / ids | {:.1} / {:.1} MiB |",
        state_bytes as f64 / 1_048_576.0,
        ids_bytes as f64 / 1_048_576.0
    );
    println!(
        "| rebuild from offset 0: facts written / windows materialised | {:.1} s ({:.0} events/s) / {:.1} s; {:.1} s CPU |",
        rebuild.facts.as_secs_f64(),
        total as f64 / rebuild.facts.as_secs_f64().max(1e-9),
        rebuild.total.as_secs_f64(),
        rebuild.cpu
    );
    print_table_rows(&config).await?;
    query_figures(&config, &decoder).await?;
    println!("| peak RSS of this process | {:.0} MiB |", peak_rss_mib());
    if !args.keep {
        drop_bench_database(&config).await?;
    }
    Ok(())
}

/// Read latency over a year of day counts: `events` of history (one year of event time,
/// 34 provinces × `--agencies` × `--frameworks`) folded by `sipas rebuild`'s index
/// processor into a fresh database, then the ranking queries timed.
async fn queries(base: &Config, args: &BenchArgs, events: u64) -> Result<()> {
    let config = bench_config(base);
    let (decoder, framework_list) = scaled_decoder(&config, args)?;
    migrations::migrate(&config.clickhouse).await?;
    let k = &config.kafka;
    admin::ensure_topics(k, &[&k.surveys_topic, &k.hotline_topic, &k.dlq_topic]).await?;
    let mut sim = year_simulator(args, framework_list, 11, events);
    let producer = producer::idempotent_producer(k)?;
    let bar = events_bar("produce", events);
    produce(&config, &mut sim, &producer, events, &bar, 0).await?;
    bar.finish_and_clear();
    let ends = end_offsets(&config).await?;
    let total: i64 = ends.values().sum();
    let rebuild = rebuild_to(&config, &decoder, &ends).await?;
    println!(
        "sipas bench --queries: {events} events (one year of event time), {} partitions, 34 provinces × {} agencies × {} frameworks, folded by `sipas rebuild`'s index processor",
        ends.len(),
        args.agencies,
        args.frameworks
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!(
        "| rebuild: facts written / windows materialised | {:.1} s ({:.0} events/s) / {:.1} s |",
        rebuild.facts.as_secs_f64(),
        total as f64 / rebuild.facts.as_secs_f64().max(1e-9),
        rebuild.total.as_secs_f64()
    );
    print_table_rows(&config).await?;
    query_figures(&config, &decoder).await?;
    if !args.keep {
        drop_bench_database(&config).await?;
    }
    Ok(())
}

/// Latencies in ms, sorted, of `count` sequential runs of `query`, and its last answer.
async fn latencies<T, F, Fut>(count: usize, mut query: F) -> Result<(Vec<f64>, T)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let mut ms = Vec::with_capacity(count);
    let mut last = None;
    for _ in 0..count {
        let started = Instant::now();
        last = Some(query().await?);
        ms.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms, last.context("no query ran")?))
}

/// The agencies of one province over one window, ranked: the read API's statement (the
/// newest version of each fact row, summed per agency), then the index and the ranks
/// computed here, as the API does.
async fn agency_ranking(
    client: &clickhouse::Client,
    framework: &sipas_stream::domain::Framework,
    province: &str,
    period: (i64, i64),
) -> Result<usize> {
    use sipas_stream::index::survey::{competition_rank, compute, SurveyCounts};
    use sipas_stream::serve::sums::{survey_query, SurveyGroup, SurveyScope};
    let scope = SurveyScope {
        framework,
        province: Some(province),
        agency: None,
    };
    let query = survey_query(client, scope, SurveyGroup::Agency, &[period])
        .context("the period holds no storable day")?;
    let rows: Vec<sipas_stream::serve::rows::SurveySumRow> = query.fetch_all().await?;
    let narrow = |v: &[u64]| -> Vec<u32> {
        v.iter()
            .map(|x| (*x).min(u64::from(u32::MAX)) as u32)
            .collect()
    };
    let scores: Vec<(Option<f64>, bool)> = rows
        .iter()
        .map(|r| {
            let counts = SurveyCounts::from_distribution(
                r.respondents.min(u64::from(u32::MAX)) as u32,
                [
                    &narrow(&r.n1),
                    &narrow(&r.n2),
                    &narrow(&r.n3),
                    &narrow(&r.n4),
                    &narrow(&r.n5),
                ],
                &narrow(&r.missing),
                &narrow(&r.ticks),
            );
            let index = compute(&counts, framework);
            (index.sipas, index.ranked)
        })
        .collect();
    let ranks = competition_rank(&scores);
    anyhow::ensure!(
        rows.iter().all(|r| !r.key.is_empty()) && ranks.len() == rows.len(),
        "agency ranking lost rows"
    );
    Ok(rows.len())
}

/// 200 sequential queries of each read: `province_ranking_latest` (30d, 365d) and the
/// agencies of the province with the most respondents over the 365 days up to the newest
/// day (SQL + the index and ranks computed here); printed as table rows.
async fn query_figures(config: &Config, decoder: &sipas_stream::contract::Decoder) -> Result<()> {
    const QUERIES: usize = 200;
    let client = &sink::connect(&config.clickhouse);
    for window in ["30d", "365d"] {
        let (ms, provinces) = latencies(QUERIES, move || async move {
            let rows: Vec<(String, u32)> = client
                .query("SELECT province_code, toUInt32(ifNull(rank, 0)) FROM province_ranking_latest WHERE window = ?")
                .bind(window)
                .fetch_all()
                .await?;
            anyhow::ensure!(!rows.is_empty(), "province_ranking_latest is empty");
            Ok(rows.len())
        })
        .await?;
        println!(
            "| province_ranking_latest, {window}, {QUERIES} sequential queries ({provinces} rows): p50 / p99 | {:.1} / {:.1} ms |",
            quantile(&ms, 0.5),
            quantile(&ms, 0.99)
        );
    }
    let framework = decoder
        .validator
        .frameworks
        .get("BNV-2640-2017")
        .context("framework BNV-2640-2017 missing")?;
    let (province, newest): (String, u16) = client
        .query("SELECT province_code, toUInt16(max(day)) FROM satisfaction_day_counts WHERE framework = ? GROUP BY province_code ORDER BY sum(respondents) DESC LIMIT 1")
        .bind(&framework.id)
        .fetch_one()
        .await?;
    let newest = i64::from(newest);
    let province = &province;
    let (ms, agencies) = latencies(QUERIES, move || {
        agency_ranking(client, framework, province, (newest - 364, newest))
    })
    .await?;
    println!(
        "| agencies of {province} ranked over 365 days ({agencies} agencies; SQL on satisfaction_day_counts + index and ranks in Rust), {QUERIES} sequential: p50 / p99 | {:.1} / {:.1} ms |",
        quantile(&ms, 0.5),
        quantile(&ms, 0.99)
    );
    Ok(())
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

/// Every index table's inserted rows and the window rows the materialiser wrote, from the
/// process's counters: (fact rows, window rows).
fn index_rows(metrics: &Metrics) -> (u64, u64) {
    let inserted = |t: &str| metrics.inserted_rows.with_label_values(&[t]).get();
    let windows = ["satisfaction", "hotline"]
        .iter()
        .map(|k| metrics.index_window_rows.with_label_values(&[k]).get())
        .sum();
    (
        inserted(tables::SATISFACTION_DAY_COUNTS) + inserted(tables::HOTLINE_DAY_COUNTS),
        windows,
    )
}

/// Each index flush stage's (observations, total seconds) so far.
fn stage_times(metrics: &Metrics) -> Vec<(&'static str, u64, f64)> {
    ["facts", "windows", "checkpoint"]
        .into_iter()
        .map(|stage| {
            let h = metrics.index_stage_seconds.with_label_values(&[stage]);
            (stage, h.get_sample_count(), h.get_sample_sum())
        })
        .collect()
}

/// Each of the process's own ClickHouse queries: "label mean ms × count".
fn query_times(metrics: &Metrics) -> Vec<String> {
    metrics
        .registry
        .gather()
        .iter()
        .filter(|family| family.name().ends_with("query_duration_seconds"))
        .flat_map(|family| family.get_metric().to_vec())
        .map(|m| {
            let label = m
                .get_label()
                .first()
                .map(|l| l.value().to_owned())
                .unwrap_or_default();
            let h = m.get_histogram();
            let n = h.get_sample_count();
            format!(
                "{label} {:.1} ms × {n}",
                h.get_sample_sum() / n.max(1) as f64 * 1e3
            )
        })
        .collect()
}

/// Checkpoint bytes written while `until` runs: the state of every checkpoint row that
/// appears meanwhile (polled each second; one is written every `checkpoint_interval_ms`)
/// plus the id chunks appended meanwhile.
async fn checkpoint_bytes_during<T>(
    config: &Config,
    until: impl std::future::Future<Output = Result<T>>,
) -> Result<(T, u64)> {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Written {
        topic: String,
        partition: u32,
        next_offset: i64,
        bytes: u64,
    }
    let client = sink::connect(&config.clickhouse);
    let poll = || async {
        let rows: Vec<Written> = client
            .query("SELECT topic, partition, next_offset, toUInt64(length(state)) FROM index_checkpoints")
            .fetch_all()
            .await?;
        let ids: u64 = client
            .query("SELECT toUInt64(sum(length(chunk))) FROM index_state_chunks")
            .fetch_one()
            .await?;
        anyhow::Ok((rows, ids))
    };
    let (before, ids_before) = poll().await?;
    let mut seen: std::collections::HashMap<(String, u32, i64), u64> = before
        .into_iter()
        .map(|w| ((w.topic, w.partition, w.next_offset), 0))
        .collect();
    tokio::pin!(until);
    let output = loop {
        tokio::select! {
            output = &mut until => break output?,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {
                for w in poll().await?.0 {
                    seen.entry((w.topic, w.partition, w.next_offset)).or_insert(w.bytes);
                }
            }
        }
    };
    let (last, ids_after) = poll().await?;
    for w in last {
        seen.entry((w.topic, w.partition, w.next_offset))
            .or_insert(w.bytes);
    }
    Ok((
        output,
        seen.values().sum::<u64>() + ids_after.saturating_sub(ids_before),
    ))
}

/// Freshness at a steady rate: a live index processor follows fresh topics while events
/// are produced at `rate` (34 provinces × `--agencies` × `--frameworks`); each event is
/// timed from its produce timestamp until the latest values that include it are
/// acknowledged by ClickHouse (the processor records it after the materialiser's pass).
/// Meanwhile: the checkpoint bytes written, the fact and window rows written per event.
async fn freshness(base: &Config, args: &BenchArgs, rate: f64) -> Result<()> {
    let config = bench_config(base);
    let (decoder, framework_list) = scaled_decoder(&config, args)?;
    migrations::migrate(&config.clickhouse).await?;
    let k = &config.kafka;
    admin::ensure_topics(k, &[&k.surveys_topic, &k.hotline_topic, &k.dlq_topic]).await?;
    let metrics = Metrics::new();
    let (trigger, stop) = shutdown::channel();
    let (pipeline, processor) =
        pipeline_service::live(&config, Arc::clone(&decoder), metrics.clone(), stop)?;
    let mut processor = processor.context("the index is disabled in this configuration")?;
    let probe = Arc::new(std::sync::Mutex::new(Vec::new()));
    processor.freshness_probe = Some(Arc::clone(&probe));
    let ingest = tokio::spawn(pipeline.run());
    let task = tokio::spawn(processor.run());
    let settings = SimSettings {
        seed: 10,
        start_unix: sipas_stream::pipeline::ingest::unix_now(),
        step_seconds: 1.0 / rate,
        late_share: 0.0,
        agencies_per_province: args.agencies,
        ..Default::default()
    };
    let mut sim = Simulator::new(
        settings,
        &ProvinceRegistry::builtin(),
        framework_list[0].clone(),
    )
    .with_frameworks(framework_list);
    let producer = producer::idempotent_producer(k)?;
    let warm_up = (rate * 10.0) as u64;
    sim_sink::to_kafka(
        &mut sim,
        &producer,
        &k.surveys_topic,
        &k.hotline_topic,
        warm_up,
        rate,
        |_| {},
        || false,
    )
    .await?;
    probe.lock().expect("probe lock").clear();
    reset_peak_rss();
    let (cpu, rows_before) = (cpu_seconds(), index_rows(&metrics));
    let stages_before = stage_times(&metrics);
    let measured = (rate * args.seconds as f64) as u64;
    let bar = indicatif::ProgressBar::new(measured);
    let produced_at = Instant::now();
    let (achieved, checkpointed) = checkpoint_bytes_during(&config, async {
        sim_sink::to_kafka(
            &mut sim,
            &producer,
            &k.surveys_topic,
            &k.hotline_topic,
            measured,
            rate,
            |t| bar.set_position(t.total()),
            || false,
        )
        .await?;
        let achieved = measured as f64 / produced_at.elapsed().as_secs_f64().max(1e-9);
        bar.finish_and_clear();
        tokio::time::sleep(Duration::from_secs(3)).await;
        Ok(achieved)
    })
    .await?;
    let span = produced_at.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu;
    let rss = peak_rss_mib();
    let rows_after = index_rows(&metrics);
    let stages_after = stage_times(&metrics);
    let mut samples = std::mem::take(&mut *probe.lock().expect("probe lock"));
    trigger.trigger();
    ingest.await??;
    task.await?;
    samples.sort_by(f64::total_cmp);
    let per_event = |after: u64, before: u64| (after - before) as f64 / measured.max(1) as f64;
    println!("sipas bench --freshness: {measured} events at {rate:.0} events/s requested ({achieved:.0} achieved) after a 10 s warm-up, 34 provinces × {} agencies × {} frameworks; flush_interval {} ms, checkpoint_interval {} ms", args.agencies, args.frameworks, config.index.flush_interval_ms, config.index.checkpoint_interval_ms);
    println!("| figure | value |");
    println!("|---|---|");
    println!("| samples | {} |", samples.len());
    println!("| freshness p50 / p90 / p99 / max (produce -> latest stored) | {:.3} / {:.3} / {:.3} / {:.3} s |", quantile(&samples, 0.5), quantile(&samples, 0.9), quantile(&samples, 0.99), samples.last().copied().unwrap_or(f64::NAN));
    println!(
        "| fact rows written per event (day counts) | {:.3} |",
        per_event(rows_after.0, rows_before.0)
    );
    println!(
        "| window rows written per event (materialiser: daily + latest, provinces and categories) | {:.2} |",
        per_event(rows_after.1, rows_before.1)
    );
    println!(
        "| checkpoint bytes written (state rows + id chunks) per minute | {:.2} MiB ({:.2} MiB over {span:.0} s) |",
        checkpointed as f64 / 1_048_576.0 / span.max(1e-9) * 60.0,
        checkpointed as f64 / 1_048_576.0
    );
    println!(
        "| CPU of this process (producer + pipeline + processor) | {:.2} s per million events |",
        cpu / measured.max(1) as f64 * 1e6
    );
    println!("| peak RSS of this process over the measured span | {rss:.0} MiB |");
    let stages: Vec<String> = stages_after
        .iter()
        .zip(&stages_before)
        .map(|((stage, n, sum), (_, n0, sum0))| {
            let n = n - n0;
            format!(
                "{stage} {:.1} ms × {n}",
                (sum - sum0) / n.max(1) as f64 * 1e3
            )
        })
        .collect();
    println!(
        "| index flush stages, mean time × count (facts, windows, checkpoint) | {} |",
        stages.join(", ")
    );
    println!(
        "| ClickHouse reads of the process, mean time × count (warm-up included) | {} |",
        query_times(&metrics).join(", ")
    );
    query_figures(&config, &decoder).await?;
    if !args.keep {
        drop_bench_database(&config).await?;
    }
    Ok(())
}

pub async fn run(base: &Config, args: BenchArgs) -> Result<()> {
    if let Some(path) = &args.measure_restore {
        let bytes = std::fs::read(path)?;
        let before = current_rss_mib();
        let state = sipas_stream::index::checkpoint::decode(&bytes)
            .context("checkpoint does not decode")?;
        let after = current_rss_mib();
        println!("{:.1} {}", after - before, state.next_offset);
        return Ok(());
    }
    if let Some(events) = args.index_only {
        return index_fold(base, &args, events);
    }
    if args.processing_only {
        return processing_only(base, args.events);
    }
    if let Some(rate) = args.freshness {
        return freshness(base, &args, rate).await;
    }
    if let Some(events) = args.restart {
        return restart(base, &args, events).await;
    }
    if let Some(events) = args.queries {
        return queries(base, &args, events).await;
    }
    let config = bench_config(base);
    let decoder = Arc::new(sipas_stream::assemble::decoder(&config)?);

    // 1. Pre-fill the topics with the log (generated as it is produced, not held).
    migrations::migrate(&config.clickhouse).await?;
    let k = &config.kafka;
    admin::ensure_topics(k, &[&k.surveys_topic, &k.hotline_topic, &k.dlq_topic]).await?;
    let mut sim = simulator(&config, args.events)?;
    let producer = producer::idempotent_producer(k)?;
    let produce_started = Instant::now();
    let tally = sim_sink::to_kafka(
        &mut sim,
        &producer,
        &k.surveys_topic,
        &k.hotline_topic,
        args.events,
        0.0,
        |_| {},
        || false,
    )
    .await?;
    let produce_elapsed = produce_started.elapsed();

    // 2. Ceiling: a bare consumer that only counts.
    let ceiling_consumer: StreamConsumer = sipas_stream::kafka::client_config(k)
        .set("group.id", format!("{}-ceiling", k.group_id))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    ceiling_consumer.subscribe(&[&k.surveys_topic, &k.hotline_topic])?;
    let mut seen = 0u64;
    let mut first: Option<Instant> = None;
    while seen < tally.total() {
        let message = tokio::time::timeout(Duration::from_secs(60), ceiling_consumer.recv())
            .await
            .context("ceiling consumer stalled")??;
        first.get_or_insert_with(Instant::now);
        seen += u64::from(message.payload().is_some());
    }
    let ceiling_elapsed = first.map(|f| f.elapsed()).unwrap_or_default();
    drop(ceiling_consumer);

    // 3. The pipeline (`sipas run`: one consumer, raw rows, dead letters and the index),
    //    until every message is acknowledged (row or dead letter) and the index rows cover
    //    the whole log.
    let ends = end_offsets(&config).await?;
    // Nothing big was held yet; the peak from here on is the pipeline's.
    reset_peak_rss();
    let metrics = Metrics::new();
    let (trigger, stop) = shutdown::channel();
    let (pipeline, processor) =
        pipeline_service::live(&config, Arc::clone(&decoder), metrics.clone(), stop)?;
    let cpu_before = cpu_seconds();
    let started = Instant::now();
    let task = tokio::spawn(pipeline.run());
    let index_task = processor.map(|p| tokio::spawn(p.run()));
    let acknowledged = || {
        let rows: u64 = ["survey_submissions", "hotline_events"]
            .iter()
            .map(|t| metrics.inserted_rows.with_label_values(&[t]).get())
            .sum();
        let letters: u64 = sipas_stream::contract::RejectReason::ALL
            .iter()
            .map(|r| metrics.dlq.with_label_values(&[r.code()]).get())
            .sum();
        rows + letters
    };
    let indexed = || indexed_up_to(&metrics, &ends);
    let index_total: i64 = if index_task.is_some() {
        ends.values().sum()
    } else {
        0
    };
    let mut raw_elapsed = None;
    while acknowledged() < tally.total() || indexed() < index_total {
        if raw_elapsed.is_none() && acknowledged() >= tally.total() {
            raw_elapsed = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        if started.elapsed() > Duration::from_secs(3600) {
            anyhow::bail!(
                "pipeline did not finish within an hour ({} of {} acknowledged, index at {} of {})",
                acknowledged(),
                tally.total(),
                indexed(),
                index_total
            );
        }
    }
    let ingest_elapsed = started.elapsed();
    let ingest_cpu = cpu_seconds() - cpu_before;
    let pipeline_rss = peak_rss_mib();
    let (fact_rows, window_rows) = index_rows(&metrics);
    let raw_elapsed = raw_elapsed.unwrap_or(ingest_elapsed);
    trigger.trigger();
    task.await??;
    if let Some(index_task) = index_task {
        index_task.await?;
    }

    if !args.keep {
        drop_bench_database(&config).await?;
    }

    // 4. Processing cost, no broker: the same generator, decoded in memory on this thread
    //    (last, as it holds the whole log in memory).
    let processing = processing(&config, &decoder, args.events)?;

    let n = tally.total() as f64;
    let ceiling_rate = n / ceiling_elapsed.as_secs_f64().max(1e-9);
    let ingest_rate = n / ingest_elapsed.as_secs_f64().max(1e-9);
    println!(
        "sipas bench: {} events ({} surveys, {} hotline; {} invalid, {} duplicates), batch {} msgs",
        tally.total(),
        tally.surveys,
        tally.hotline,
        tally.invalid.values().sum::<u64>(),
        tally.duplicates,
        config.pipeline.batch_max_messages
    );
    println!("| figure | value |");
    println!("|---|---|");
    println!("| processing cost, no broker (decode+validate+rows, 1 core) | {:.0} events/s ({:.2} s wall) |", processing.raw_rate(), processing.raw_wall.as_secs_f64());
    println!(
        "| processing cost + index fold, no broker (1 core) | {:.0} events/s ({:.2} s wall) |",
        processing.fold_rate(),
        processing.fold_wall.as_secs_f64()
    );
    println!(
        "| produce (idempotent, acks=all) | {:.0} events/s |",
        n / produce_elapsed.as_secs_f64().max(1e-9)
    );
    println!("| ceiling: bare consumer, no work | {ceiling_rate:.0} events/s |");
    println!("| pipeline: Kafka -> raw rows + DLQ + index rows in ClickHouse, offsets stored | {ingest_rate:.0} events/s ({:.2} s; raw rows and letters complete after {:.2} s) |", ingest_elapsed.as_secs_f64(), raw_elapsed.as_secs_f64());
    println!("| pipeline / ceiling | {:.2} |", ingest_rate / ceiling_rate);
    println!(
        "| pipeline CPU of this process | {:.2} s per million events |",
        ingest_cpu / n * 1e6
    );
    println!(
        "| index rows written per event: facts (day counts) / windows (materialiser) | {:.3} / {:.2} |",
        fact_rows as f64 / n,
        window_rows as f64 / n
    );
    println!("| peak RSS during the pipeline step | {pipeline_rss:.0} MiB |");
    Ok(())
}
