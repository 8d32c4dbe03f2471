//! `sipas migrate`: apply the ClickHouse migrations (idempotent).
use anyhow::{Context, Result};

use sipas_stream::config::Config;
use sipas_stream::sink::migrations;

pub async fn run(config: &Config) -> Result<()> {
    let applied = migrations::migrate(&config.clickhouse)
        .await
        .with_context(|| {
            format!(
                "migrating ClickHouse at {} (database {})",
                config.clickhouse.url, config.clickhouse.database
            )
        })?;
    if applied.is_empty() {
        println!(
            "ClickHouse database {} is up to date",
            config.clickhouse.database
        );
    } else {
        println!(
            "applied migrations {applied:?} to database {}",
            config.clickhouse.database
        );
    }
    Ok(())
}
