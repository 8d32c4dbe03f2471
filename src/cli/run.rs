//! `sipas run`: consume the input topics into ClickHouse until SIGTERM/SIGINT.
use std::sync::Arc;

use anyhow::{Context, Result};

use sipas_stream::config::Config;
use sipas_stream::metrics::{self, Metrics};
use sipas_stream::{assemble, shutdown};

#[derive(clap::Args)]
pub struct RunArgs {
    /// Apply ClickHouse migrations and create missing topics before consuming.
    #[arg(long)]
    setup: bool,
}

pub async fn run(config: Config, args: RunArgs) -> Result<()> {
    if args.setup {
        super::migrate::run(&config).await?;
        super::topics::run(&config).await?;
    }
    let decoder = Arc::new(assemble::decoder(&config)?);
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
    let summary = assemble::supervise(pipeline, index, &stop, &trigger_local).await?;
    let _ = metrics_server.await;
    if summary.abandoned_batches > 0 {
        tracing::warn!(
            abandoned = summary.abandoned_batches,
            "stopped with unacknowledged batches; they will be re-consumed on restart"
        );
    }
    Ok(())
}
