//! GSO province codes and the 2025 merger (63 provinces became 34 on 2025-07-01).
//!
//! The table is `config/provinces.csv`, compiled into the binary so that validation never
//! depends on a file being present at run time.
use std::collections::HashMap;

use crate::domain::event::CodeSystem;

const PROVINCES_CSV: &str = include_str!("../../config/provinces.csv");

/// A province of the 2025 system (the unit every index is keyed by).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Province {
    pub code: String,
    pub name: String,
}

/// Looked up for every message with codes from input, but never filled from input:
/// foldhash is several times faster than SipHash on two-character keys.
type FastMap = HashMap<String, String, foldhash::fast::RandomState>;

#[derive(Debug, Clone)]
pub struct ProvinceRegistry {
    /// 2004 code -> 2025 code.
    from_2004: FastMap,
    /// 2004 code -> 2004 name.
    names_2004: FastMap,
    /// 2025 code -> 2025 name.
    names_2025: FastMap,
}

impl ProvinceRegistry {
    /// The registry compiled into the binary.
    pub fn builtin() -> Self {
        Self::parse(PROVINCES_CSV).expect("config/provinces.csv is valid")
    }

    /// Parses `code_2004,name_2004,code_2025,name_2025` lines (with a header line).
    pub fn parse(csv: &str) -> Result<Self, String> {
        let mut registry = Self {
            from_2004: FastMap::default(),
            names_2004: FastMap::default(),
            names_2025: FastMap::default(),
        };
        for (line_no, line) in csv.lines().enumerate().skip(1) {
            let line = line.trim();
            if line.is_empty() {
                continue;
            }
            let fields: Vec<&str> = line.split(',').map(str::trim).collect();
            let [code_2004, name_2004, code_2025, name_2025] = fields[..] else {
                return Err(format!(
                    "line {}: expected 4 fields, got {}",
                    line_no + 1,
                    fields.len()
                ));
            };
            registry
                .from_2004
                .insert(code_2004.to_owned(), code_2025.to_owned());
            registry
                .names_2004
                .insert(code_2004.to_owned(), name_2004.to_owned());
            registry
                .names_2025
                .insert(code_2025.to_owned(), name_2025.to_owned());
        }
        Ok(registry)
    }

    /// Re-keys a code given in `system` to the 2025 province, or `None` if the code does not
    /// exist in that system.
    pub fn to_2025(&self, code: &str, system: CodeSystem) -> Option<&str> {
        let code_2025 = match system {
            CodeSystem::Y2004 => self.from_2004.get(code)?,
            CodeSystem::Y2025 => self.names_2025.get_key_value(code)?.0,
        };
        Some(code_2025.as_str())
    }

    pub fn name_2025(&self, code_2025: &str) -> Option<&str> {
        self.names_2025.get(code_2025).map(String::as_str)
    }

    pub fn name_2004(&self, code_2004: &str) -> Option<&str> {
        self.names_2004.get(code_2004).map(String::as_str)
    }

    /// All 2025 provinces, sorted by code.
    pub fn provinces_2025(&self) -> Vec<Province> {
        let mut all: Vec<Province> = self
            .names_2025
            .iter()
            .map(|(code, name)| Province {
                code: code.clone(),
                name: name.clone(),
            })
            .collect();
        all.sort_by(|a, b| a.code.cmp(&b.code));
        all
    }

    /// All 2004 codes, sorted.
    pub fn codes_2004(&self) -> Vec<String> {
        let mut all: Vec<String> = self.from_2004.keys().cloned().collect();
        all.sort();
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_has_63_old_and_34_new_provinces() {
        let registry = ProvinceRegistry::builtin();
        assert_eq!(registry.codes_2004().len(), 63);
        assert_eq!(registry.provinces_2025().len(), 34);
    }

    #[test]
    fn codes_that_changed_meaning_are_resolved_by_system() {
        let registry = ProvinceRegistry::builtin();
        // 52 was Bình Định (2004) and is Gia Lai (2025); Bình Định merged into Gia Lai.
        assert_eq!(registry.to_2025("52", CodeSystem::Y2004), Some("52"));
        assert_eq!(registry.name_2004("52"), Some("Bình Định"));
        assert_eq!(registry.name_2025("52"), Some("Gia Lai"));
        // 64 was Gia Lai (2004); it does not exist in 2025.
        assert_eq!(registry.to_2025("64", CodeSystem::Y2004), Some("52"));
        assert_eq!(registry.to_2025("64", CodeSystem::Y2025), None);
        // Bắc Giang (24, 2004) merged into Bắc Ninh, which took code 24.
        assert_eq!(registry.to_2025("24", CodeSystem::Y2004), Some("24"));
        assert_eq!(registry.to_2025("27", CodeSystem::Y2004), Some("24"));
        assert_eq!(registry.to_2025("27", CodeSystem::Y2025), None);
        assert_eq!(registry.to_2025("99", CodeSystem::Y2004), None);
    }

    #[test]
    fn every_2004_code_maps_to_a_2025_province() {
        let registry = ProvinceRegistry::builtin();
        for code in registry.codes_2004() {
            let new = registry.to_2025(&code, CodeSystem::Y2004).unwrap();
            assert!(registry.name_2025(new).is_some(), "{code} -> {new}");
        }
    }

    #[test]
    fn malformed_table_is_an_error() {
        assert!(ProvinceRegistry::parse("h\n01,Hà Nội,01\n").is_err());
    }
}
