//! `sipas simulate`: seeded realistic traffic, to Kafka or NDJSON files.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use sipas_stream::config::Config;
use sipas_stream::domain::{FrameworkCatalog, ProvinceRegistry};
use sipas_stream::kafka::producer;
use sipas_stream::simulate::{sink as sim_sink, SimSettings, Simulator};

#[derive(clap::Args)]
pub struct SimulateArgs {
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

pub async fn run(config: &Config, args: SimulateArgs) -> Result<()> {
    let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)?;
    let framework = frameworks
        .get("BNV-2640-2017")
        .or_else(|| frameworks.ids().first().and_then(|id| frameworks.get(id)))
        .context("no framework configured")?
        .clone();
    let now = sipas_stream::domain::time::unix_now();
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
    let bar = crate::progress::events("", args.count);
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
                k.input_topics(),
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
        "wrote {} messages ({}): {} valid, {} duplicates, {} invalid {:?}",
        tally.total(),
        tally.by_kind_text(),
        tally.valid,
        tally.duplicates,
        tally.invalid.values().sum::<u64>(),
        tally.invalid
    );
    Ok(())
}
