//! Survey frameworks (factors, criteria, weights, expectation items), one TOML file each.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum FrameworkError {
    #[error("cannot read framework directory {path}: {source}")]
    ReadDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot read framework file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("framework file {path} is invalid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("no framework files (*.toml) in {0}")]
    Empty(PathBuf),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Framework {
    pub id: String,
    pub name: String,
    /// Units with fewer respondents are reported but not ranked.
    #[serde(default = "default_min_sample")]
    pub min_sample: u32,
    pub factors: Vec<Factor>,
    #[serde(default)]
    pub expectations: Vec<ExpectationItem>,
    /// Built on first use; see `columns`.
    #[serde(skip)]
    pub(crate) columns: std::sync::OnceLock<FrameworkColumns>,
}

/// The id lists every index row of a framework repeats, built once and shared by the rows.
#[derive(Debug, Clone, Default)]
pub struct FrameworkColumns {
    pub factor_ids: std::sync::Arc<[String]>,
    pub criterion_ids: std::sync::Arc<[String]>,
    pub expectation_ids: std::sync::Arc<[String]>,
}

impl Framework {
    pub fn columns(&self) -> &FrameworkColumns {
        self.columns.get_or_init(|| FrameworkColumns {
            factor_ids: self.factors.iter().map(|f| f.id.clone()).collect(),
            criterion_ids: self.criterion_ids().map(str::to_owned).collect(),
            expectation_ids: self.expectations.iter().map(|e| e.id.clone()).collect(),
        })
    }
}

fn default_min_sample() -> u32 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Factor {
    pub id: String,
    pub name: String,
    #[serde(default = "default_weight")]
    pub weight: f64,
    pub criteria: Vec<Criterion>,
}

fn default_weight() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Criterion {
    pub id: String,
    pub text: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectationItem {
    pub id: String,
    pub text: String,
}

impl Framework {
    pub fn parse(text: &str, path: &Path) -> Result<Self, FrameworkError> {
        let framework: Framework = toml::from_str(text).map_err(|e| FrameworkError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        framework
            .check()
            .map_err(|message| FrameworkError::Invalid {
                path: path.to_owned(),
                message,
            })?;
        Ok(framework)
    }

    fn check(&self) -> Result<(), String> {
        if self.factors.is_empty() {
            return Err("a framework needs at least one factor".into());
        }
        let mut seen = std::collections::HashSet::new();
        for factor in &self.factors {
            if !(factor.weight.is_finite() && factor.weight > 0.0) {
                return Err(format!(
                    "factor {} has weight {}, expected a positive number",
                    factor.id, factor.weight
                ));
            }
            if factor.criteria.is_empty() {
                return Err(format!("factor {} has no criteria", factor.id));
            }
            for criterion in &factor.criteria {
                if !seen.insert(criterion.id.as_str()) {
                    return Err(format!("criterion {} is listed twice", criterion.id));
                }
            }
        }
        Ok(())
    }

    /// All criterion ids in framework order.
    pub fn criterion_ids(&self) -> impl Iterator<Item = &str> {
        self.factors
            .iter()
            .flat_map(|f| f.criteria.iter().map(|c| c.id.as_str()))
    }
}

/// Configured ids only, looked up for every message: foldhash is several times faster than
/// SipHash on short keys, and these maps never take keys from input.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Frameworks by id, with a fast criterion lookup for validation.
#[derive(Debug, Clone, Default)]
pub struct FrameworkCatalog {
    frameworks: FastMap<String, IndexedFramework>,
}

/// A framework with its lookups for validation.
#[derive(Debug, Clone)]
pub struct IndexedFramework {
    pub framework: Framework,
    /// criterion id -> position in framework order.
    criterion_position: FastMap<String, usize>,
    expectation_ids: std::collections::HashSet<String, foldhash::fast::RandomState>,
}

impl IndexedFramework {
    /// Position of a criterion in framework order, if the framework has it.
    pub fn criterion_position(&self, criterion: &str) -> Option<usize> {
        self.criterion_position.get(criterion).copied()
    }

    pub fn has_expectation(&self, item: &str) -> bool {
        self.expectation_ids.contains(item)
    }
}

impl FrameworkCatalog {
    /// Loads every `*.toml` file in `dir`.
    pub fn load_dir(dir: &Path) -> Result<Self, FrameworkError> {
        let entries = std::fs::read_dir(dir).map_err(|source| FrameworkError::ReadDir {
            path: dir.to_owned(),
            source,
        })?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|ext| ext == "toml"))
            .collect();
        paths.sort();
        if paths.is_empty() {
            return Err(FrameworkError::Empty(dir.to_owned()));
        }
        let mut catalog = Self::default();
        for path in paths {
            let text =
                std::fs::read_to_string(&path).map_err(|source| FrameworkError::ReadFile {
                    path: path.clone(),
                    source,
                })?;
            catalog.add(Framework::parse(&text, &path)?);
        }
        Ok(catalog)
    }

    pub fn add(&mut self, framework: Framework) {
        let criterion_position = framework
            .criterion_ids()
            .enumerate()
            .map(|(i, id)| (id.to_owned(), i))
            .collect();
        let expectation_ids = framework
            .expectations
            .iter()
            .map(|e| e.id.clone())
            .collect();
        self.frameworks.insert(
            framework.id.clone(),
            IndexedFramework {
                framework,
                criterion_position,
                expectation_ids,
            },
        );
    }

    pub fn get(&self, id: &str) -> Option<&Framework> {
        self.frameworks.get(id).map(|f| &f.framework)
    }

    /// A framework with its lookups (one map lookup for all of a submission's answers).
    pub fn indexed(&self, id: &str) -> Option<&IndexedFramework> {
        self.frameworks.get(id)
    }

    /// Position of a criterion in its framework's order, if the framework has it.
    pub fn criterion_position(&self, framework: &str, criterion: &str) -> Option<usize> {
        self.frameworks
            .get(framework)?
            .criterion_position(criterion)
    }

    pub fn has_expectation(&self, framework: &str, item: &str) -> bool {
        self.frameworks
            .get(framework)
            .is_some_and(|f| f.has_expectation(item))
    }

    pub fn ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.frameworks.keys().map(String::as_str).collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped() -> FrameworkCatalog {
        FrameworkCatalog::load_dir(&Path::new(env!("CARGO_MANIFEST_DIR")).join("config/frameworks"))
            .unwrap()
    }

    #[test]
    fn shipped_framework_has_5_factors_and_22_criteria() {
        let catalog = shipped();
        let framework = catalog.get("BNV-2640-2017").unwrap();
        assert_eq!(framework.factors.len(), 5);
        assert_eq!(framework.criterion_ids().count(), 22);
        assert_eq!(framework.min_sample, 30);
        assert!(framework.factors.iter().all(|f| f.weight == 1.0));
        assert_eq!(
            catalog.criterion_position("BNV-2640-2017", "access.1"),
            Some(0)
        );
        assert_eq!(
            catalog.criterion_position("BNV-2640-2017", "feedback.4"),
            Some(21)
        );
        assert_eq!(
            catalog.criterion_position("BNV-2640-2017", "feedback.5"),
            None
        );
        assert!(catalog.has_expectation("BNV-2640-2017", "expect.shorter_time"));
    }

    #[test]
    fn rejects_duplicate_criteria_and_bad_weights() {
        let dup = r#"id = "x"
name = "x"
[[factors]]
id = "a"
name = "a"
criteria = [{ id = "a.1", text = "" }, { id = "a.1", text = "" }]
"#;
        assert!(Framework::parse(dup, Path::new("x.toml")).is_err());
        let bad_weight = dup
            .replace("name = \"a\"", "name = \"a\"\nweight = -1.0")
            .replace(
                r#"{ id = "a.1", text = "" }]"#,
                r#"{ id = "a.2", text = "" }]"#,
            );
        assert!(Framework::parse(&bad_weight, Path::new("x.toml")).is_err());
        let unknown_key = "id = \"x\"\nname = \"x\"\ncolour = 1\n";
        assert!(Framework::parse(unknown_key, Path::new("x.toml")).is_err());
    }
}
