//! `sipas bench --freshness RATE`: freshness at a steady produce rate.
use anyhow::{Context, Result};
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipas_stream::config::Config;
use sipas_stream::kafka::producer;
use sipas_stream::metrics::Metrics;
use sipas_stream::pipeline::service as pipeline_service;
use sipas_stream::shutdown;
use sipas_stream::simulate::{sink as sim_sink, SimSettings};

use super::fixtures::{drop_bench_database, fresh_stack, scaled_simulator};
use super::measure::{
    checkpoint_bytes_during, cpu_seconds, index_rows, peak_rss_mib, print_table_head, quantile,
    query_times, reset_peak_rss, scale, server_writes, stage_times,
};
use super::queries::query_figures;
use super::BenchArgs;

/// The share of the requested rate the producer must achieve for freshness to be reported.
/// A producer that falls behind queues events before they reach the broker (or the broker
/// queues them), so the times measured would be that queue's length, not the pipeline's.
pub(super) const MIN_ACHIEVED_SHARE: f64 = 0.95;

/// Why freshness cannot be reported from a run whose producer achieved `achieved` of the
/// `requested` events/s, or `None` when it can.
pub(super) fn refusal(requested: f64, achieved: f64) -> Option<String> {
    if achieved.is_finite() && achieved >= requested * MIN_ACHIEVED_SHARE {
        return None;
    }
    Some(format!(
        "freshness not reported: the producer achieved {achieved:.0} events/s, less than {:.0} % of the {requested:.0} events/s requested, so the times measured would be the producer's and the broker's queue, not the pipeline's (a slow local broker: see BENCHMARKS.md, \"Broker storage\")",
        MIN_ACHIEVED_SHARE * 100.0
    ))
}

/// Freshness at a steady rate: a live index processor follows fresh topics while events
/// are produced at `rate` (34 provinces × `--agencies` × `--frameworks`); each event is
/// timed from its produce timestamp until the latest values that include it are
/// acknowledged by ClickHouse (the processor records it after the materialiser's pass).
/// Meanwhile: the checkpoint bytes written, the fact and window rows written per event.
pub(super) async fn freshness(base: &Config, args: &BenchArgs, rate: f64) -> Result<()> {
    let (config, decoder, framework_list) = fresh_stack(base, args).await?;
    let k = &config.kafka;
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
        start_unix: sipas_stream::domain::time::unix_now(),
        step_seconds: 1.0 / rate,
        late_share: 0.0,
        agencies_per_province: args.agencies,
        ..Default::default()
    };
    let mut sim = scaled_simulator(settings, framework_list);
    let producer = producer::idempotent_producer(k)?;
    let warm_up = (rate * 10.0) as u64;
    sim_sink::to_kafka(
        &mut sim,
        &producer,
        k.input_topics(),
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
    let server_before = server_writes(&config).await?;
    let measured = (rate * args.seconds as f64) as u64;
    let bar = crate::progress::events("", measured);
    let produced_at = Instant::now();
    let (achieved, checkpointed) = checkpoint_bytes_during(&config, async {
        sim_sink::to_kafka(
            &mut sim,
            &producer,
            k.input_topics(),
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
    let server_after = server_writes(&config).await?;
    let cpu = cpu_seconds() - cpu;
    let rss = peak_rss_mib();
    let rows_after = index_rows(&metrics);
    let stages_after = stage_times(&metrics);
    let mut samples = std::mem::take(&mut *probe.lock().expect("probe lock"));
    trigger.trigger();
    ingest.await??;
    task.await?;
    let broker = super::broker::snapshot(&k.brokers);
    let header = format!("sipas bench --freshness: {measured} events at {rate:.0} events/s requested ({achieved:.0} achieved) after a 10 s warm-up, {}; flush_interval {} ms, checkpoint_interval {} ms; broker: {broker}", scale(args), config.index.flush_interval_ms, config.index.checkpoint_interval_ms);
    if let Some(why) = refusal(rate, achieved) {
        println!("{header}");
        if !args.keep {
            drop_bench_database(&config).await?;
        }
        anyhow::bail!(why);
    }
    samples.sort_by(f64::total_cmp);
    let per_event = |after: u64, before: u64| (after - before) as f64 / measured.max(1) as f64;
    print_table_head(&header);
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
    println!("| broker storage, its log at the end of the measured span | {broker} |");
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
        "| ClickHouse writes per second over the measured span (server-wide, system.events) | {} |",
        server_before.rates_since(&server_after, span)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_is_reported_only_when_the_producer_kept_the_rate() {
        assert_eq!(refusal(1000.0, 1000.0), None);
        assert_eq!(refusal(1000.0, 1012.0), None);
        assert_eq!(refusal(1000.0, 950.0), None);
        let why = refusal(1000.0, 949.0).expect("949 of 1000 events/s is refused");
        assert!(
            why.contains("949 events/s") && why.contains("95 %"),
            "{why}"
        );
        assert!(refusal(1000.0, 237.0).is_some());
        assert!(refusal(1000.0, 0.0).is_some());
        assert!(refusal(1000.0, f64::NAN).is_some());
    }
}
