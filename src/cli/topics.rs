//! `sipas topics`: create the input and dead-letter topics if missing.
use anyhow::{Context, Result};

use sipas_stream::config::Config;
use sipas_stream::kafka::admin;

pub async fn run(config: &Config) -> Result<()> {
    let k = &config.kafka;
    let created = admin::ensure_topics(k, &k.all_topics())
        .await
        .with_context(|| format!("creating topics on {}", k.brokers))?;
    println!(
        "topics ready ({} created): {}",
        created.len(),
        k.all_topics().join(", ")
    );
    Ok(())
}
