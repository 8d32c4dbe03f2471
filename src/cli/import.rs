//! `sipas import`: validate an export (CSV or NDJSON) and produce its valid records.
use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use sipas_stream::config::Config;
use sipas_stream::contract::EventKind;
use sipas_stream::publish::Publisher;
use sipas_stream::{assemble, import};

#[derive(clap::Args)]
pub struct ImportArgs {
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
pub enum ImportKind {
    Surveys,
    Hotline,
}

pub async fn run(config: &Config, args: ImportArgs) -> Result<()> {
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
    let decoder = assemble::decoder(config)?;
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
    let bar = crate::progress::bytes(size);
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
