//! The `sipas` commands: one file per subcommand with its arguments and body. Errors
//! become `anyhow` here and nowhere else.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use sipas_stream::config::LogFormat;

pub mod gateway;
pub mod gateway_token;
pub mod import;
pub mod migrate;
pub mod rebuild;
pub mod run;
pub mod serve;
pub mod simulate;
pub mod status;
pub mod topics;

#[derive(Parser)]
#[command(
    name = "sipas",
    version,
    about = "Event-sourced pipeline for SIPAS satisfaction surveys and 1022 hotline events"
)]
pub struct Cli {
    /// Configuration file (TOML). Every key can also be set as SIPAS__SECTION__KEY.
    #[arg(long, short, env = "SIPAS_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// Log line format on standard error; default `log.format` (`text`). `json`: one object
    /// per line with the fields of the event and of its spans.
    #[arg(long, value_enum, global = true)]
    pub log_format: Option<LogFormatArg>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

#[derive(Subcommand)]
pub enum Command {
    /// Consume the survey and hotline topics into ClickHouse until SIGTERM/SIGINT.
    Run(run::RunArgs),
    /// Apply ClickHouse migrations (idempotent).
    Migrate,
    /// Create the input and dead-letter topics if they do not exist.
    Topics,
    /// Generate realistic survey and hotline traffic.
    Simulate(simulate::SimulateArgs),
    /// Print row counts of the ClickHouse tables.
    Status,
    /// Recompute every index output from the beginning of the topics (e.g. after a weight change).
    Rebuild,
    /// Measure the ingest path (events/s, CPU) on this machine.
    Bench(crate::bench::BenchArgs),
    /// Serve the read API (/api/v1/…), the web dashboard (/) and /metrics until SIGTERM/SIGINT.
    Serve,
    /// Validate a survey or hotline export (CSV or NDJSON) and produce its valid records.
    Import(import::ImportArgs),
    /// Serve the ingest gateway (POST /api/v1/surveys, /api/v1/hotline) and /metrics.
    Gateway,
    /// Make a new gateway bearer token (or hash a given one) and print its config entry.
    GatewayToken(gateway_token::GatewayTokenArgs),
}

/// The log format: the flag, else the configuration's, else text (a configuration that
/// does not load is reported as text: its log format is unknown).
pub fn log_format<E>(
    flag: Option<LogFormatArg>,
    config: &Result<sipas_stream::config::Config, E>,
) -> LogFormat {
    match (flag, config) {
        (Some(LogFormatArg::Json), _) => LogFormat::Json,
        (Some(LogFormatArg::Text), _) => LogFormat::Text,
        (None, Ok(config)) => config.log.format,
        (None, Err(_)) => LogFormat::Text,
    }
}

/// Levels from RUST_LOG (default `info,rdkafka=warn`), lines to standard error.
pub fn init_logging(format: LogFormat) {
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
