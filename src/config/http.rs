//! `[http]`: limits of every HTTP server `sipas` runs.
use serde::Deserialize;

use super::ConfigError;

/// Limits of every HTTP server `sipas` runs (`serve`, `gateway`, the `/metrics` of `run`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A connection must send a request's head within this, also when idle between
    /// keep-alive requests; it is closed otherwise. Default 10000 ms.
    pub header_read_timeout_ms: u64,
    /// A request body must have arrived this long after its head (the gateway answers
    /// 408 otherwise). Default 30000 ms.
    pub body_read_timeout_ms: u64,
    /// Open connections per server; further ones wait in the listen backlog. Default 1024.
    pub max_connections: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            header_read_timeout_ms: 10_000,
            body_read_timeout_ms: 30_000,
            max_connections: 1024,
        }
    }
}

impl HttpConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.header_read_timeout_ms == 0
            || self.body_read_timeout_ms == 0
            || self.max_connections == 0
            || self.max_connections > tokio::sync::Semaphore::MAX_PERMITS
            || u32::try_from(self.max_connections).is_err()
        {
            return Err(ConfigError::Invalid(
                "http.header_read_timeout_ms, body_read_timeout_ms and max_connections must be positive (max_connections at most 2^32 - 1)".into(),
            ));
        }
        Ok(())
    }
}
