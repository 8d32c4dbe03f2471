//! `[clickhouse]`: the server, database and account (the password possibly from a file).
use std::path::PathBuf;

use serde::Deserialize;

use super::{read_secret_file, ConfigError};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClickHouseConfig {
    /// HTTP interface. Default `http://127.0.0.1:8123`.
    pub url: String,
    /// Default `sipas`.
    pub database: String,
    /// Default `default`.
    pub user: String,
    /// Default empty.
    pub password: String,
    /// A file holding the password (contents trimmed), e.g. a mounted secret; read when the
    /// configuration is loaded. Exclusive with `password`. Default none.
    pub password_file: Option<PathBuf>,
}

impl Default for ClickHouseConfig {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "sipas".into(),
            user: "default".into(),
            password: String::new(),
            password_file: None,
        }
    }
}

impl ClickHouseConfig {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if !self
            .database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || self.database.is_empty()
        {
            return Err(ConfigError::Invalid(
                "clickhouse.database must be a plain identifier ([A-Za-z0-9_]+)".into(),
            ));
        }
        Ok(())
    }

    /// Fills `password` from `password_file`, so that every client built from this
    /// configuration logs in with it.
    pub(super) fn resolve_password_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = &self.password_file else {
            return Ok(());
        };
        if !self.password.is_empty() {
            return Err(ConfigError::Invalid(
                "set either clickhouse.password or clickhouse.password_file, not both".into(),
            ));
        }
        self.password = read_secret_file("clickhouse.password_file", path)?;
        Ok(())
    }
}
