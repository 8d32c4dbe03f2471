//! `sipas bench`: measures the ingest path on this machine and prints the figures.
//! Three numbers from one run over the same generated log:
//! - processing cost: decode + validate + row building from memory, events/s on one core;
//! - ceiling: a bare consumer reading the pre-filled topics and doing nothing;
//! - ingest: the full pipeline (Kafka -> ClickHouse + DLQ, offsets stored), events/s and
//!   CPU seconds per million events.
use anyhow::Result;

use sipas_stream::config::Config;

mod broker;
mod catch_up;
mod fixtures;
mod freshness;
mod index_fold;
mod ingest;
mod measure;
mod processing;
mod queries;
mod restart;

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
    /// Measure a fresh `sipas run` process (a child of this one) catching up on a log of
    /// this many events (one year of event time): its peak RSS, time and CPU.
    #[arg(long)]
    catch_up: Option<u64>,
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

/// Runs the scenario `args` selects; `config_path` is the configuration file this process
/// read, for the scenarios that start `sipas` child processes.
pub async fn run(
    base: &Config,
    config_path: Option<&std::path::Path>,
    args: BenchArgs,
) -> Result<()> {
    if let Some(path) = &args.measure_restore {
        return index_fold::measure_restore(path);
    }
    if let Some(events) = args.index_only {
        return index_fold::index_fold(base, &args, events);
    }
    if args.processing_only {
        return processing::processing_only(base, args.events);
    }
    if let Some(rate) = args.freshness {
        return freshness::freshness(base, &args, rate).await;
    }
    if let Some(events) = args.restart {
        return restart::restart(base, &args, events).await;
    }
    if let Some(events) = args.catch_up {
        return catch_up::catch_up(base, config_path, &args, events).await;
    }
    if let Some(events) = args.queries {
        return queries::queries(base, &args, events).await;
    }
    ingest::ingest(base, args).await
}
