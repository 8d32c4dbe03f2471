//! `[gateway]`: the ingest gateway, its limits and bearer tokens.
use std::path::PathBuf;

use serde::Deserialize;

use super::ConfigError;

/// The ingest gateway (`POST /api/v1/surveys`, `POST /api/v1/hotline`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Address of `sipas gateway`. Default `127.0.0.1:8090`.
    pub listen: String,
    /// Largest accepted request body. Default 1048576 (1 MiB).
    pub max_body_bytes: usize,
    /// Most records in one request. Default 1000.
    pub max_records: usize,
    /// Sustained requests per second per token. Default 5.
    pub requests_per_second: f64,
    /// Requests a token may send at once above the sustained rate. Default 10.
    pub burst: u32,
    /// Bearer tokens, stored as SHA-256 hashes (`sipas gateway-token`).
    pub tokens: Vec<GatewayToken>,
    /// A TOML file with more `[[tokens]]` entries (e.g. a mounted secret).
    pub tokens_file: Option<PathBuf>,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8090".into(),
            max_body_bytes: 1024 * 1024,
            max_records: 1000,
            requests_per_second: 5.0,
            burst: 10,
            tokens: Vec::new(),
            tokens_file: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayToken {
    /// Who holds the token; the only thing about a token that is ever logged.
    pub name: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// 2025-system province codes the token may submit for; `*` = every province.
    pub provinces: Vec<String>,
    /// This token's own rate, instead of `gateway.requests_per_second`.
    #[serde(default)]
    pub requests_per_second: Option<f64>,
    /// This token's own burst, instead of `gateway.burst`.
    #[serde(default)]
    pub burst: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokensFile {
    #[serde(default)]
    tokens: Vec<GatewayToken>,
}

impl GatewayConfig {
    /// Tokens from the configuration and from `tokens_file`.
    pub fn all_tokens(&self) -> Result<Vec<GatewayToken>, ConfigError> {
        let mut tokens = self.tokens.clone();
        if let Some(path) = &self.tokens_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            let file: TokensFile = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                path: path.clone(),
                message: e.to_string(),
            })?;
            tokens.extend(file.tokens);
        }
        for token in &tokens {
            if token.sha256.len() != 64 || !token.sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(ConfigError::Invalid(format!(
                    "gateway token {:?}: sha256 must be 64 hex digits (see `sipas gateway-token`)",
                    token.name
                )));
            }
            if token.burst == Some(0)
                || token
                    .requests_per_second
                    .is_some_and(|r| !(r.is_finite() && r > 0.0))
            {
                return Err(ConfigError::Invalid(format!(
                    "gateway token {:?}: rate limits must be positive",
                    token.name
                )));
            }
            if token.provinces.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "gateway token {:?}: provinces must not be empty",
                    token.name
                )));
            }
        }
        Ok(tokens)
    }
}

impl GatewayConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.max_body_bytes == 0
            || self.max_records == 0
            || self.burst == 0
            || !(self.requests_per_second.is_finite() && self.requests_per_second > 0.0)
        {
            return Err(ConfigError::Invalid(
                "gateway limits must be positive".into(),
            ));
        }
        Ok(())
    }
}
