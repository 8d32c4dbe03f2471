//! The decoder (contract, frameworks, schemas, personal-data key) from configuration.
use std::sync::Arc;

use crate::config::{Config, ConfigError};
use crate::contract::avro::{CatalogError, SchemaCatalog};
use crate::contract::pii::PiiHasher;
use crate::contract::validate::Validator;
use crate::contract::Decoder;
use crate::domain::framework::FrameworkError;
use crate::domain::{FrameworkCatalog, ProvinceRegistry};

#[derive(Debug, thiserror::Error)]
pub enum DecoderError {
    #[error("loading frameworks")]
    Frameworks(#[source] FrameworkError),
    #[error("loading the Avro schema catalog")]
    Schemas(#[source] CatalogError),
    #[error(transparent)]
    Config(#[from] ConfigError),
}

/// Everything needed to validate messages, from configuration.
pub fn decoder(config: &Config) -> Result<Decoder, DecoderError> {
    let frameworks = FrameworkCatalog::load_dir(&config.contract.frameworks_dir)
        .map_err(DecoderError::Frameworks)?;
    let catalog =
        SchemaCatalog::load_dir(&config.contract.schemas_dir).map_err(DecoderError::Schemas)?;
    let secret = config.pii.secret()?;
    let validator = Validator {
        provinces: ProvinceRegistry::builtin(),
        frameworks,
        pii: PiiHasher::new(&secret),
    };
    Ok(Decoder::new(
        validator,
        Arc::new(catalog),
        config.pipeline.max_message_bytes,
    )
    .with_max_future_skew(config.contract.max_future_skew_seconds))
}
