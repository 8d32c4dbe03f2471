//! `sipas rebuild`: recompute every index output from the beginning of the topics.
use std::sync::Arc;

use anyhow::{Context, Result};

use sipas_stream::config::Config;
use sipas_stream::metrics::Metrics;
use sipas_stream::{assemble, shutdown};

pub async fn run(config: &Config) -> Result<()> {
    let ends = assemble::end_offsets(config).await?;
    let total: i64 = ends.values().sum();
    println!(
        "rebuilding indices from {} partitions, {} messages",
        ends.len(),
        total
    );
    let decoder = Arc::new(assemble::decoder(config)?);
    let (trigger, stop) = shutdown::channel();
    let finished = shutdown::on_signals_keep(trigger);
    let (reader, mut processor) =
        sipas_stream::pipeline::service::rebuild(config, decoder, Metrics::new(), stop, ends)?;
    let bar = crate::progress::events("", total.max(0) as u64);
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
