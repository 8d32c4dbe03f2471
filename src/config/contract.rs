//! `[contract]`: where frameworks and schemas are read from; the future-time bound.
use std::path::PathBuf;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContractConfig {
    /// Directory of framework files (`*.toml`). Default `config/frameworks`.
    pub frameworks_dir: PathBuf,
    /// Directory with `catalog.toml` and the Avro schemas. Default `schemas`.
    pub schemas_dir: PathBuf,
    /// An event time (`submitted_at`, `occurred_at`) more than this many seconds after the
    /// message was received (its Kafka timestamp; for the gateway and `sipas import` the
    /// moment the record was read) is refused as `future_timestamp`. Default 86400 (1 day).
    pub max_future_skew_seconds: u32,
}

impl Default for ContractConfig {
    fn default() -> Self {
        Self {
            frameworks_dir: "config/frameworks".into(),
            schemas_dir: "schemas".into(),
            max_future_skew_seconds: crate::contract::decode::DEFAULT_MAX_FUTURE_SKEW_SECONDS,
        }
    }
}
