//! `[serve]`: the read API and dashboard (`sipas serve`).
use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServeConfig {
    /// Address of `sipas serve` (API, dashboard, `/metrics`). Default `127.0.0.1:8080`.
    pub listen: String,
    /// A response is recomputed from ClickHouse at most this often per distinct request;
    /// also the `Cache-Control` max-age and the SSE polling period. Default 5000 ms.
    pub refresh_interval_ms: u64,
    /// A ClickHouse query slower than this fails the request (503). Default 10000 ms.
    pub query_timeout_ms: u64,
    /// Distinct cached requests kept; stale ones are dropped beyond this. Default 10000.
    pub cache_max_entries: usize,
    /// Framework of requests that name none. Default `BNV-2640-2017`.
    pub default_framework: String,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            refresh_interval_ms: 5_000,
            query_timeout_ms: 10_000,
            cache_max_entries: 10_000,
            default_framework: "BNV-2640-2017".into(),
        }
    }
}

impl ServeConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.refresh_interval_ms == 0
            || self.query_timeout_ms == 0
            || self.cache_max_entries == 0
        {
            return Err(ConfigError::Invalid("serve.refresh_interval_ms, query_timeout_ms and cache_max_entries must be positive".into()));
        }
        Ok(())
    }
}
