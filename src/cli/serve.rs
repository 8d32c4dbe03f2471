//! `sipas serve`: the read API, the dashboard, the ingest gateway and /metrics.
use anyhow::{Context, Result};

use sipas_stream::config::Config;
use sipas_stream::gateway as gw;
use sipas_stream::metrics::Metrics;
use sipas_stream::{assemble, shutdown};

pub async fn run(config: &Config) -> Result<()> {
    let metrics = Metrics::new();
    let state = sipas_stream::serve::ServeState::new(config, metrics.clone())?;
    let gateway = assemble::gateway(config, &metrics)?;
    let watched = std::sync::Arc::clone(&gateway);
    tokio::spawn(async move { watched.watch_broker().await });
    let listener = tokio::net::TcpListener::bind(&config.serve.listen)
        .await
        .with_context(|| format!("binding sipas serve to {}", config.serve.listen))?;
    let address = listener.local_addr()?;
    println!("dashboard:  http://{address}/");
    println!("API:        http://{address}/api/v1/rankings?window=30d  (OpenAPI: http://{address}/api/v1/openapi.json)");
    println!("metrics:    http://{address}/metrics");
    println!("ingest:     POST http://{address}/api/v1/surveys and /api/v1/hotline (bearer tokens, [gateway])");
    let (trigger, mut stop) = shutdown::channel();
    shutdown::on_signals(trigger);
    let app = sipas_stream::serve::router(state).merge(gw::router(gateway));
    sipas_stream::http::serve(
        listener,
        app,
        &config.http,
        async move { stop.wait().await },
    )
    .await
    .context("serving HTTP")?;
    Ok(())
}
