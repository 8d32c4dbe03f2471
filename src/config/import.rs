//! `[import]`: how `sipas import` reads CSV files (also a `--mapping` file).
use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;

/// How `sipas import` reads CSV files. A `--mapping FILE` holds the same keys and replaces
/// this section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ImportConfig {
    /// CSV field separator (one character). Default `,`.
    pub delimiter: String,
    /// Separator of the ids inside an `expectations` cell. Default `;`.
    pub list_separator: String,
    pub surveys: CsvMapping,
    pub hotline: CsvMapping,
}

impl Default for ImportConfig {
    fn default() -> Self {
        Self {
            delimiter: ",".into(),
            list_separator: ";".into(),
            surveys: CsvMapping::default(),
            hotline: CsvMapping::default(),
        }
    }
}

/// Header mapping of one kind of CSV file.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct CsvMapping {
    /// Column header in the file -> contract field, criterion id, `expectation:<item id>`,
    /// or `-` (ignore the column). Headers not listed are read as they are named.
    pub columns: BTreeMap<String, String>,
    /// Contract field -> value, for fields the file has no column for (e.g. `framework`).
    pub defaults: BTreeMap<String, String>,
}

impl ImportConfig {
    /// The `--mapping` file: the keys of the `[import]` section.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config: ImportConfig = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.check()?;
        Ok(config)
    }

    pub(super) fn check(&self) -> Result<(), ConfigError> {
        if self.delimiter.len() != 1 {
            return Err(ConfigError::Invalid(
                "import.delimiter must be one ASCII character".into(),
            ));
        }
        if self.list_separator.is_empty() {
            return Err(ConfigError::Invalid(
                "import.list_separator must not be empty".into(),
            ));
        }
        Ok(())
    }
}
