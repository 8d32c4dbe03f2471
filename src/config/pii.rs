//! `[pii]`: the HMAC secret that replaces reporters' contact data.
use std::path::PathBuf;

use serde::Deserialize;

use super::{read_secret_file, ConfigError};

/// Shortest accepted HMAC secret, in bytes.
pub const MIN_HMAC_SECRET_LEN: usize = 16;

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PiiConfig {
    /// Secret key of the HMAC that replaces reporters' phone numbers and emails, at least
    /// 16 bytes. Required by every command that validates events; no default. Prefer
    /// `SIPAS__PII__HMAC_SECRET` or `hmac_secret_file`. Exclusive with `hmac_secret_file`.
    pub hmac_secret: Option<String>,
    /// A file holding the secret (its contents, trimmed), e.g. a mounted Docker/Kubernetes
    /// secret. Exclusive with `hmac_secret`.
    pub hmac_secret_file: Option<PathBuf>,
}

impl PiiConfig {
    /// The secret from exactly one of `hmac_secret` and `hmac_secret_file`.
    pub fn secret(&self) -> Result<Vec<u8>, ConfigError> {
        let (secret, source) = match (&self.hmac_secret, &self.hmac_secret_file) {
            (Some(_), Some(_)) => {
                return Err(ConfigError::Invalid(
                    "set either pii.hmac_secret or pii.hmac_secret_file, not both".into(),
                ))
            }
            (Some(secret), None) => (secret.clone(), "pii.hmac_secret".to_owned()),
            (None, Some(path)) => (
                read_secret_file("pii.hmac_secret_file", path)?,
                format!("pii.hmac_secret_file {}", path.display()),
            ),
            (None, None) => {
                return Err(ConfigError::Invalid(format!(
                    "pii.hmac_secret or pii.hmac_secret_file must be set (a secret of at least {MIN_HMAC_SECRET_LEN} bytes)"
                )))
            }
        };
        if secret.len() < MIN_HMAC_SECRET_LEN {
            return Err(ConfigError::Invalid(format!(
                "{source}: the secret is {} bytes long, at least {MIN_HMAC_SECRET_LEN} are required",
                secret.len()
            )));
        }
        Ok(secret.into_bytes())
    }
}
