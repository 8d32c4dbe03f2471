//! `sipas`: the command-line edge. Errors become `anyhow` here and nowhere else.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};

use sipas_stream::config::{Config, LogFormat};
use sipas_stream::contract::avro::SchemaCatalog;
use sipas_stream::contract::pii::PiiHasher;
use sipas_stream::contract::validate::Validator;
use sipas_stream::contract::{Decoder, EventKind};
use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
use sipas_stream::gateway::{self as gw, tokens::TokenTable};
use sipas_stream::import;
use sipas_stream::kafka::{admin, producer};
use sipas_stream::metrics::{self, Metrics};
use sipas_stream::publish::Publisher;
use sipas_stream::shutdown;
use sipas_stream::simulate::{sink as sim_sink, SimSettings, Simulator};
use sipas_stream::sink::{self, migrations};

mod bench;

#[derive(Parser)]
#[command(
    name = "sipas",
    version,
    about = "Event-sourced pipeline for SIPAS satisfaction surveys and 1022 hotline events"
)]
struct Cli {
    /// Configuration file (TOML). Every key can also be set as SIPAS__SECTION__KEY.
    #[arg(long, short, env = "SIPAS_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Log line format on standard error; default `log.format` (`text`). `json`: one object
    /// per line with the fields of the event and of its spans.
    #[arg(long, value_enum, global = true)]
    log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Consume the survey and hotline topics into ClickHouse until SIGTERM/SIGINT.
    Run {
        /// Apply ClickHouse migrations and create missing topics before consuming.
        #[arg(long)]
        setup: bool,
    },
    /// Apply ClickHouse migrations (idempotent).
    Migrate,
    /// Create the input and dead-letter topics if they do not exist.
    Topics,
    /// Generate realistic survey and hotline traffic.
    Simulate(SimulateArgs),
    /// Print row counts of the ClickHouse tables.
    Status,
    /// Recompute every index output from the beginning of the topics (e.g. after a weight change).
    Rebuild,
    /// Measure the ingest path (events/s, CPU) on this machine.
    Bench(bench::BenchArgs),
    /// Serve the read API (/api/v1/…), the web dashboard (/) and /metrics until SIGTERM/SIGINT.
    Serve,
    /// Validate a survey or hotline export (CSV or NDJSON) and produce its valid records.
    Import(ImportArgs),
    /// Serve the ingest gateway (POST /api/v1/surveys, /api/v1/hotline) and /metrics.
    Gateway,
    /// Make a new gateway bearer token (or hash a given one) and print its config entry.
    GatewayToken(GatewayTokenArgs),
}

#[derive(clap::Args)]
struct ImportArgs {
    /// What the file holds.
    #[arg(long, value_enum)]
    kind: ImportKind,
    /// File format; by default from the extension (.csv, .ndjson/.jsonl/.json).
    #[arg(long, value_enum)]
    format: Option<import::Format>,
    /// CSV header mapping (TOML with the keys of the [import] config section).
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Validate and report only; produce nothing.
    #[arg(long)]
    dry_run: bool,
    /// The export file.
    file: PathBuf,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ImportKind {
    Surveys,
    Hotline,
}

#[derive(clap::Args)]
struct GatewayTokenArgs {
    /// Who gets the token (logged instead of the token).
    #[arg(long, default_value = "province")]
    name: String,
    /// 2025 province codes the token may submit for (repeatable; `*` = all).
    #[arg(long = "province", default_value = "*")]
    provinces: Vec<String>,
    /// Hash this token (read from standard input: `-`) instead of making a new one.
    #[arg(long)]
    token: Option<String>,
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Number of messages to write (including duplicates and invalid ones).
    #[arg(long, default_value_t = 10_000)]
    count: u64,
    /// Messages per second (0 = as fast as possible).
    #[arg(long, default_value_t = 0.0)]
    rate: f64,
    /// Spread event times over this many days ending now (default: events are "now").
    #[arg(long)]
    days: Option<f64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share of Avro-encoded messages (the rest is JSON).
    #[arg(long, default_value_t = 0.3)]
    avro_share: f64,
    #[arg(long, default_value_t = 0.01)]
    invalid_share: f64,
    #[arg(long, default_value_t = 0.01)]
    duplicate_share: f64,
    #[arg(long, default_value_t = 0.005)]
    late_share: f64,
    #[arg(long, default_value_t = 0.02)]
    out_of_order_share: f64,
    /// Share of events carrying a 2004-system province code.
    #[arg(long, default_value_t = 0.05)]
    old_code_share: f64,
    #[arg(long, default_value_t = 0.35)]
    hotline_share: f64,
    /// Write NDJSON files into this directory instead of producing to Kafka.
    #[arg(long)]
    to_dir: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    sipas_stream::release_freed_memory_promptly();
    let cli = Cli::parse();
    let config = Config::load(cli.config.as_deref());
    // A configuration that does not load is reported as text: its log format is unknown.
    let format = match (cli.log_format, &config) {
        (Some(LogFormatArg::Json), _) => LogFormat::Json,
        (Some(LogFormatArg::Text), _) => LogFormat::Text,
        (None, Ok(config)) => config.log.format,
        (None, Err(_)) => LogFormat::Text,
    };
    init_logging(format);
    let config = config.context("loading configuration")?;
    match cli.command {
        Command::Run { setup } => run(config, setup).await,
        Command::Migrate => migrate(&config).await,
        Command::Topics => create_topics(&config).await,
        Command::Simulate(args) => simulate(&config, args).await,
        Command::Status => status(&config).await,
        Command::Rebuild => rebuild(&config).await,
        Command::Bench(args) => bench::run(&config, args).await,
        Command::Import(args) => import_file(&config, args).await,
        Command::Gateway => gateway(&config).await,
        Command::GatewayToken(args) => gateway_token(args),
        Command::Serve => serve(&config).await,
    }
}

/// Levels from RUST_LOG (default `info,rdkafka=warn`), lines to standard error.
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| "info,rdkafka=warn".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The event's fields at the top level; `span` is the innermost span, `spans` all of
        // them from the outermost, each with its fields (README, Logs).
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(true)
            .init(),
    }
}

async fn serve(config: &Config) -> Result<()> {
    let metrics = Metrics::new();
    let state = sipas_stream::serve::ServeState::new(config, metrics.clone())?;
    let gateway = build_gateway(config, &metrics)?;
    let listener = tokio::net::TcpListener::bind(&config.serve.listen)
        .await
        .with_context(|| format!("binding sipas serve to {}", config.serve.listen))?;
    let address = listener.local_addr()?;
    println!("dashboard:  http://{address}/");
    println!("API:        http://{address}/api/v1/rankings?window=30d  (OpenAPI: http://{address}/api/v1/openapi.json)");
    println!("metrics:    http://{address}/metrics");
    println!("ingest:     POST http://{address}/api/v1/surveys and /api/v1/hotline (bearer tokens, [gateway])");
    let (trigger, mut stop) = shutdown::channel();
    shutdown::on_signals(trigger);
    let app = sipas_stream::serve::router(state).merge(gw::router(gateway));
    sipas_stream::http::serve(
        listener,
        app,
        &config.http,
        async move { stop.wait().await },
    )
    .await
    .context("serving HTTP")?;
    Ok(())
}

async fn migrate(config: &Config) -> Result<()> {
    let applied = migrations::migrate(&config.clickhouse)
        .await
        .with_context(|| {
            format!(
                "migrating ClickHouse at {} (database {})",
                config.clickhouse.url, config.clickhouse.database
            )
        })?;
    if applied.is_empty() {
        println!(
            "ClickHouse database {} is up to date",
            config.clickhouse.database
        );
    } else {
        println!(
            "applied migrations {applied:?} to database {}",
            config.clickhouse.database
        );
    }
    Ok(())
}

async fn create_topics(config: &Config) -> Result<()> {
    let k = &config.kafka;
    let created = admin::ensure_topics(k, &[&k.surveys_topic, &k.hotline_topic, &k.dlq_topic])
        .await
        .with_context(|| format!("creating topics on {}", k.brokers))?;
    println!(
        "topics ready ({} created): {}, {}, {}",
        created.len(),
        k.surveys_topic,
        k.hotline_topic,
        k.dlq_topic
    );
    Ok(())
}

/// Everything needed to validate messages, from configuration.
pub fn build_decoder(config: &Config) -> Result<Decoder> {
    let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)
        .context("loading frameworks")?;
    let catalog = SchemaCatalog::load_dir(&config.contract.schemas_dir)
        .context("loading the Avro schema catalog")?;
    let secret = config.pii.secret()?;
    let validator = Validator {
        provinces: ProvinceRegistry::builtin(),
        frameworks,
        pii: PiiHasher::new(&secret),
    };
    Ok(Decoder::new(
        validator,
        Arc::new(catalog),
        config.pipeline.max_message_bytes,
    )
    .with_max_future_skew(config.contract.max_future_skew_seconds))
}

async fn run(config: Config, setup: bool) -> Result<()> {
    if setup {
        migrate(&config).await?;
        create_topics(&config).await?;
    }
    let decoder = Arc::new(build_decoder(&config)?);
    let metrics = Metrics::new();
    let (trigger, stop) = shutdown::channel();
    let trigger_local = shutdown::on_signals_keep(trigger);

    let listener = tokio::net::TcpListener::bind(&config.metrics.listen)
        .await
        .with_context(|| format!("binding the metrics endpoint to {}", config.metrics.listen))?;
    tracing::info!("metrics on http://{}/metrics", config.metrics.listen);
    let mut metrics_stop = stop.clone();
    let limits = config.http.clone();
    let metrics_server = tokio::spawn({
        let metrics = metrics.clone();
        async move {
            metrics::serve(metrics, listener, &limits, async move {
                metrics_stop.wait().await
            })
            .await
        }
    });

    let (pipeline, index) =
        sipas_stream::pipeline::service::live(&config, decoder, metrics, stop.clone())
            .context("creating the Kafka clients")?;
    let mut ingest = tokio::spawn(pipeline.run());
    let summary = match index {
        None => ingest.await.context("ingest task")??,
        Some(index) => {
            let mut index = tokio::spawn(index.run());
            tokio::select! {
                summary = &mut ingest => {
                    let summary = summary.context("ingest task");
                    if !matches!(summary, Ok(Ok(_))) {
                        // Stop the processor too; a supervisor restarts the process and the
                        // state resumes from checkpoints.
                        trigger_local.trigger();
                    }
                    index.await.context("index processor task")?;
                    summary??
                }
                finished = &mut index => {
                    finished.context("index processor task")?;
                    if !stop.is_triggered() {
                        // It only ends early when its writes were abandoned.
                        trigger_local.trigger();
                        let _ = ingest.await;
                        anyhow::bail!("index processor stopped unexpectedly");
                    }
                    ingest.await.context("ingest task")??
                }
            }
        }
    };
    let _ = metrics_server.await;
    if summary.abandoned_batches > 0 {
        tracing::warn!(
            abandoned = summary.abandoned_batches,
            "stopped with unacknowledged batches; they will be re-consumed on restart"
        );
    }
    Ok(())
}

/// End offsets of every partition of the input topics, for `rebuild`.
fn end_offsets(config: &Config) -> Result<std::collections::HashMap<(String, i32), i64>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let consumer: BaseConsumer = sipas_stream::kafka::client_config(&config.kafka)
        .set("group.id", "sipas-rebuild-probe")
        .create()?;
    let mut ends = std::collections::HashMap::new();
    for topic in [&config.kafka.surveys_topic, &config.kafka.hotline_topic] {
        let metadata = consumer
            .fetch_metadata(Some(topic), Duration::from_secs(30))
            .with_context(|| format!("metadata of {topic}"))?;
        for t in metadata.topics() {
            for p in t.partitions() {
                let (_, high) =
                    consumer.fetch_watermarks(topic, p.id(), Duration::from_secs(30))?;
                ends.insert((topic.clone(), p.id()), high);
            }
        }
    }
    Ok(ends)
}

async fn rebuild(config: &Config) -> Result<()> {
    let config_for_probe = config.clone();
    let ends = tokio::task::spawn_blocking(move || end_offsets(&config_for_probe)).await??;
    let total: i64 = ends.values().sum();
    println!(
        "rebuilding indices from {} partitions, {} messages",
        ends.len(),
        total
    );
    let decoder = Arc::new(build_decoder(config)?);
    let (trigger, stop) = shutdown::channel();
    let finished = shutdown::on_signals_keep(trigger);
    let (reader, mut processor) =
        sipas_stream::pipeline::service::rebuild(config, decoder, Metrics::new(), stop, ends)?;
    let bar = indicatif::ProgressBar::new(total.max(0) as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .expect("valid template"),
    );
    processor.progress = Some(bar.clone());
    let started = std::time::Instant::now();
    let reader = tokio::spawn(reader.run());
    processor.run().await;
    // The processor stops at the end offsets; the reader may be waiting for more.
    finished.trigger();
    reader.await.context("rebuild reader task")??;
    let elapsed = started.elapsed().as_secs_f64();
    println!(
        "rebuilt in {elapsed:.1} s ({:.0} events/s)",
        bar.position() as f64 / elapsed.max(1e-9)
    );
    Ok(())
}

async fn simulate(config: &Config, args: SimulateArgs) -> Result<()> {
    let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)?;
    let framework = frameworks
        .get("BNV-2640-2017")
        .or_else(|| frameworks.ids().first().and_then(|id| frameworks.get(id)))
        .context("no framework configured")?
        .clone();
    let now = sipas_stream::pipeline::ingest::unix_now();
    let (start_unix, step_seconds) = match args.days {
        Some(days) => (
            now - (days * 86_400.0) as i64,
            days * 86_400.0 / args.count.max(1) as f64,
        ),
        None => (
            now,
            if args.rate > 0.0 {
                1.0 / args.rate
            } else {
                0.0
            },
        ),
    };
    for (name, share) in [
        ("avro", args.avro_share),
        ("invalid", args.invalid_share),
        ("duplicate", args.duplicate_share),
        ("late", args.late_share),
        ("out-of-order", args.out_of_order_share),
        ("old-code", args.old_code_share),
        ("hotline", args.hotline_share),
    ] {
        if !(0.0..=1.0).contains(&share) {
            bail!("--{name}-share must be between 0 and 1");
        }
    }
    let settings = SimSettings {
        seed: args.seed,
        start_unix,
        step_seconds,
        hotline_share: args.hotline_share,
        avro_share: args.avro_share,
        invalid_share: args.invalid_share,
        duplicate_share: args.duplicate_share,
        late_share: args.late_share,
        out_of_order_share: args.out_of_order_share,
        old_code_share: args.old_code_share,
        ..Default::default()
    };
    let mut simulator = Simulator::new(settings, &ProvinceRegistry::builtin(), framework);
    let bar = indicatif::ProgressBar::new(args.count);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} events {per_sec} eta {eta}")
            .expect("valid template"),
    );
    let tally = match &args.to_dir {
        Some(dir) => sim_sink::to_files(&mut simulator, dir, args.count, |t| {
            bar.set_position(t.total())
        })?,
        None => {
            let producer = producer::idempotent_producer(&config.kafka)?;
            let k = &config.kafka;
            sim_sink::to_kafka(
                &mut simulator,
                &producer,
                &k.surveys_topic,
                &k.hotline_topic,
                args.count,
                args.rate,
                |t| bar.set_position(t.total()),
                || false,
            )
            .await?
        }
    };
    bar.finish();
    println!(
        "wrote {} messages ({} surveys, {} hotline): {} valid, {} duplicates, {} invalid {:?}",
        tally.total(),
        tally.surveys,
        tally.hotline,
        tally.valid,
        tally.duplicates,
        tally.invalid.values().sum::<u64>(),
        tally.invalid
    );
    Ok(())
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Count {
    n: u64,
}

async fn status(config: &Config) -> Result<()> {
    let client = sink::connect(&config.clickhouse);
    println!(
        "ClickHouse {} database {}:",
        config.clickhouse.url, config.clickhouse.database
    );
    let raw = [
        "survey_submissions",
        "survey_submissions_dedup",
        "survey_answers",
        "hotline_events",
        "hotline_events_dedup",
    ];
    for table in raw
        .into_iter()
        .chain(sipas_stream::index::rows::tables::ALL.iter().copied())
    {
        let count = client
            .query(&format!("SELECT count() AS n FROM {table}"))
            .fetch_one::<Count>()
            .await
            .with_context(|| format!("counting {table}"))?;
        println!("  {table:<26} {:>10} rows", count.n);
    }
    Ok(())
}

async fn import_file(config: &Config, args: ImportArgs) -> Result<()> {
    let kind = match args.kind {
        ImportKind::Surveys => EventKind::Survey,
        ImportKind::Hotline => EventKind::Hotline,
    };
    let format = match args
        .format
        .or_else(|| import::Format::from_path(&args.file))
    {
        Some(format) => format,
        None => bail!(
            "cannot tell the format of {} from its name: pass --format csv or --format ndjson",
            args.file.display()
        ),
    };
    let mapping = match &args.mapping {
        Some(path) => sipas_stream::config::ImportConfig::load(path)?,
        None => config.import.clone(),
    };
    let decoder = build_decoder(config)?;
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    let records = import::Records::open(kind, format, Box::new(file), &mapping)
        .with_context(|| format!("reading {}", args.file.display()))?
        .with_max_record_bytes(config.pipeline.max_message_bytes);
    let publisher = match args.dry_run {
        true => None,
        false => Some(Publisher::new(&config.kafka).context("creating the Kafka producer")?),
    };
    let bar = indicatif::ProgressBar::new(size);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} eta {eta}")
            .expect("valid template"),
    );
    let report = import::run(
        &decoder,
        publisher.as_ref(),
        kind,
        records,
        |position, report| {
            bar.set_position(position);
            bar.set_message(format!(
                "{} accepted, {} rejected",
                report.accepted,
                report.rejected.len()
            ));
        },
    )
    .await
    .with_context(|| format!("importing {}", args.file.display()))?;
    bar.finish_and_clear();
    for row in &report.rejected {
        println!(
            "line {}: {}: {}",
            row.line, row.reject.reason, row.reject.detail
        );
    }
    let reasons: Vec<String> = report
        .by_reason()
        .iter()
        .map(|(reason, n)| format!("{reason} {n}"))
        .collect();
    let destination = match &publisher {
        Some(p) => format!("produced to {}", p.topic(kind)),
        None => "dry run, nothing produced".to_string(),
    };
    println!(
        "{}: {} rows, {} accepted ({destination}), {} rejected{}",
        args.file.display(),
        report.rows,
        report.accepted,
        report.rejected.len(),
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({})", reasons.join(", "))
        }
    );
    Ok(())
}

/// The gateway's state from configuration.
pub fn build_gateway(config: &Config, metrics: &Metrics) -> Result<Arc<gw::Gateway>> {
    let tokens = TokenTable::new(&config.gateway.all_tokens()?, &ProvinceRegistry::builtin())?;
    if tokens.is_empty() {
        tracing::warn!("gateway: no tokens configured ([[gateway.tokens]] or gateway.tokens_file); every request will get 401");
    }
    let decoder = Arc::new(build_decoder(config)?);
    let publisher = Publisher::new(&config.kafka).context("creating the Kafka producer")?;
    Ok(Arc::new(gw::Gateway::new(
        &config.gateway,
        tokens,
        decoder,
        publisher,
        metrics,
    )))
}

async fn gateway(config: &Config) -> Result<()> {
    let metrics = Metrics::new();
    let gateway = build_gateway(config, &metrics)?;
    let (trigger, mut stop) = shutdown::channel();
    shutdown::on_signals(trigger);
    let listener = tokio::net::TcpListener::bind(&config.gateway.listen)
        .await
        .with_context(|| format!("binding the gateway to {}", config.gateway.listen))?;
    let app = gw::standalone_router(gateway, metrics);
    println!(
        "gateway on http://{0}/api/v1/surveys and /api/v1/hotline (OpenAPI: http://{0}/openapi.json)",
        config.gateway.listen
    );
    sipas_stream::http::serve(
        listener,
        app,
        &config.http,
        async move { stop.wait().await },
    )
    .await?;
    Ok(())
}

fn gateway_token(args: GatewayTokenArgs) -> Result<()> {
    let token = match args.token.as_deref() {
        Some("-") => {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)?;
            line.trim().to_owned()
        }
        Some(token) => token.to_owned(),
        None => {
            use std::io::Read;
            let mut bytes = [0u8; 32];
            std::fs::File::open("/dev/urandom")
                .and_then(|mut f| f.read_exact(&mut bytes))
                .context("reading /dev/urandom")?;
            hex::encode(bytes)
        }
    };
    if token.is_empty() {
        bail!("the token is empty");
    }
    if args.token.is_none() {
        println!("# token (give it to the province; it is not stored anywhere): {token}");
    }
    let provinces: Vec<String> = args.provinces.iter().map(|p| format!("{p:?}")).collect();
    println!(
        "[[gateway.tokens]]\nname = {:?}\nsha256 = \"{}\"\nprovinces = [{}]",
        args.name,
        gw::tokens::hash_token(&token),
        provinces.join(", ")
    );
    Ok(())
}
