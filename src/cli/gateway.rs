//! `sipas gateway`: only the ingest gateway and /metrics.
use anyhow::{Context, Result};

use sipas_stream::config::Config;
use sipas_stream::gateway as gw;
use sipas_stream::metrics::Metrics;
use sipas_stream::{assemble, shutdown};

pub async fn run(config: &Config) -> Result<()> {
    let metrics = Metrics::new();
    let gateway = assemble::gateway(config, &metrics)?;
    let watched = std::sync::Arc::clone(&gateway);
    tokio::spawn(async move { watched.watch_broker().await });
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
