//! `sipas status`: row counts of the ClickHouse tables.
use anyhow::{Context, Result};

use sipas_stream::config::Config;
use sipas_stream::sink;
use sipas_stream::tables;

#[derive(clickhouse::Row, serde::Deserialize)]
struct Count {
    n: u64,
}

pub async fn run(config: &Config) -> Result<()> {
    let client = sink::connect(&config.clickhouse);
    println!(
        "ClickHouse {} database {}:",
        config.clickhouse.url, config.clickhouse.database
    );
    for table in tables::RAW.iter().chain(tables::INDEX) {
        let count = client
            .query(&format!("SELECT count() AS n FROM {table}"))
            .fetch_one::<Count>()
            .await
            .with_context(|| format!("counting {table}"))?;
        println!("  {table:<26} {:>10} rows", count.n);
    }
    Ok(())
}
