//! `sipas bench` without a scenario flag: the ingest path, from a pre-filled log.
use anyhow::{Context, Result};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::Message;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sipas_stream::assemble::end_offsets;
use sipas_stream::config::Config;
use sipas_stream::kafka::{admin, producer};
use sipas_stream::metrics::Metrics;
use sipas_stream::pipeline::service as pipeline_service;
use sipas_stream::shutdown;
use sipas_stream::simulate::sink as sim_sink;
use sipas_stream::sink::migrations;
use sipas_stream::tables;

use super::fixtures::{bench_config, drop_bench_database, simulator};
use super::measure::{cpu_seconds, index_rows, indexed_up_to, peak_rss_mib, reset_peak_rss};
use super::processing::processing;
use super::BenchArgs;

/// The default run: pre-fill the topics, the bare-consumer ceiling, the pipeline, then
/// the processing cost.
pub(super) async fn ingest(base: &Config, args: BenchArgs) -> Result<()> {
    let config = bench_config(base);
    let decoder = Arc::new(sipas_stream::assemble::decoder(&config)?);

    // 1. Pre-fill the topics with the log (generated as it is produced, not held).
    migrations::migrate(&config.clickhouse).await?;
    let k = &config.kafka;
    admin::ensure_topics(k, &k.all_topics()).await?;
    let mut sim = simulator(&config, args.events)?;
    let producer = producer::idempotent_producer(k)?;
    let produce_started = Instant::now();
    let tally = sim_sink::to_kafka(
        &mut sim,
        &producer,
        k.input_topics(),
        args.events,
        0.0,
        |_| {},
        || false,
    )
    .await?;
    let produce_elapsed = produce_started.elapsed();
    // The log the ceiling and the pipeline read (nothing is produced after this).
    let broker = super::broker::snapshot(&k.brokers);

    // 2. Ceiling: a bare consumer that only counts.
    let ceiling_consumer: StreamConsumer = sipas_stream::kafka::client_config(k)
        .set("group.id", format!("{}-ceiling", k.group_id))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()?;
    let topics: Vec<&str> = k.input_topics().values().copied().collect();
    ceiling_consumer.subscribe(&topics)?;
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
        let rows: u64 = [tables::SURVEY_SUBMISSIONS, tables::HOTLINE_EVENTS]
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
        "sipas bench: {} events ({}; {} invalid, {} duplicates), batch {} msgs; broker: {broker}",
        tally.total(),
        tally.by_kind_text(),
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
    println!(
        "| broker storage, its log when produce, ceiling and pipeline were measured | {broker} |"
    );
    Ok(())
}
