//! `sipas bench --restart N`: the index processor's restart to caught-up, then `rebuild`
//! over the same log and the read queries.
use anyhow::Result;

use sipas_stream::assemble::end_offsets;
use sipas_stream::config::Config;
use sipas_stream::kafka::producer;

use super::fixtures::{
    drop_bench_database, fresh_stack, index_until_caught_up, produce, rebuild_to, year_simulator,
};
use super::measure::{
    checkpoint_bytes, peak_rss_mib, print_table_head, print_table_rows, reset_peak_rss, scale,
};
use super::queries::query_figures;
use super::BenchArgs;

/// Restart to caught-up: folds `events` of history (one year of event time) through the
/// broker into ClickHouse, stops with a checkpoint, produces `--tail` more events (what a
/// crash just before the next checkpoint leaves to replay), and times a fresh processor
/// from start until its outputs cover the whole log. Then `rebuild` over the same log, and
/// the read queries on what it wrote.
pub(super) async fn restart(base: &Config, args: &BenchArgs, events: u64) -> Result<()> {
    let (config, decoder, framework_list) = fresh_stack(base, args).await?;
    let k = &config.kafka;
    let mut sim = year_simulator(args, framework_list, 9, events);
    let producer = producer::idempotent_producer(k)?;
    let bar = crate::progress::events("produce", events + args.tail);
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
    let broker = super::broker::snapshot(&k.brokers);
    print_table_head(&format!(
        "sipas bench --restart: {events} events of history (one year of event time) + {} after the last checkpoint, {} partitions, {}; broker: {broker}",
        args.tail,
        ends.len(),
        scale(args)
    ));
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
    println!(
        "| broker storage, its log when history, restart and rebuild were measured | {broker} |"
    );
    if !args.keep {
        drop_bench_database(&config).await?;
    }
    Ok(())
}
