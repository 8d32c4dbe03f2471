//! Bearer tokens: stored as SHA-256 hashes with the provinces each may submit for.
//! The token itself is never stored or logged; a grant is known by its configured name.
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::GatewayToken;
use crate::domain::ProvinceRegistry;

/// Hex SHA-256 of a token, as written in `[[gateway.tokens]] sha256`.
pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// What a token may do.
#[derive(Debug, Clone, PartialEq)]
pub struct Grant {
    pub name: String,
    /// `None`: every province.
    provinces: Option<HashSet<String>>,
    /// Own (burst, requests per second), overriding the gateway's.
    pub rate: (Option<u32>, Option<f64>),
}

impl Grant {
    pub fn allows(&self, province_code_2025: &str) -> bool {
        self.provinces
            .as_ref()
            .is_none_or(|p| p.contains(province_code_2025))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    Missing,
    Unknown,
}

impl AuthError {
    pub fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "missing bearer token: send `Authorization: Bearer <token>`",
            AuthError::Unknown => "unknown bearer token",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("gateway token {name:?}: {message}")]
pub struct TokenConfigError {
    name: String,
    message: String,
}

#[derive(Debug, Clone, Default)]
pub struct TokenTable {
    by_hash: HashMap<String, Arc<Grant>>,
}

impl TokenTable {
    /// Province codes must be 2025-system codes of `provinces` (or `*`).
    pub fn new(
        tokens: &[GatewayToken],
        provinces: &ProvinceRegistry,
    ) -> Result<Self, TokenConfigError> {
        let mut by_hash = HashMap::new();
        for token in tokens {
            let error = |message: String| TokenConfigError {
                name: token.name.clone(),
                message,
            };
            let allowed = if token.provinces.iter().any(|p| p == "*") {
                None
            } else {
                for code in &token.provinces {
                    if provinces.name_2025(code).is_none() {
                        return Err(error(format!("{code:?} is not a 2025 province code")));
                    }
                }
                Some(token.provinces.iter().cloned().collect())
            };
            let grant = Arc::new(Grant {
                name: token.name.clone(),
                provinces: allowed,
                rate: (token.burst, token.requests_per_second),
            });
            if by_hash
                .insert(token.sha256.to_ascii_lowercase(), grant)
                .is_some()
            {
                return Err(error("the same token hash is configured twice".into()));
            }
        }
        Ok(Self { by_hash })
    }

    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The grant of the `Authorization` header's bearer token.
    pub fn authenticate(&self, authorization: Option<&str>) -> Result<Arc<Grant>, AuthError> {
        let header = authorization.ok_or(AuthError::Missing)?.trim();
        let (scheme, token) = header.split_once(' ').ok_or(AuthError::Missing)?;
        let token = token.trim();
        if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
            return Err(AuthError::Missing);
        }
        self.by_hash
            .get(&hash_token(token))
            .cloned()
            .ok_or(AuthError::Unknown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table() -> TokenTable {
        let tokens = vec![
            GatewayToken {
                name: "hcm".into(),
                sha256: hash_token("secret-79"),
                provinces: vec!["79".into()],
                requests_per_second: None,
                burst: None,
            },
            GatewayToken {
                name: "national".into(),
                sha256: hash_token("secret-all").to_uppercase(),
                provinces: vec!["*".into()],
                requests_per_second: None,
                burst: None,
            },
        ];
        TokenTable::new(&tokens, &ProvinceRegistry::builtin()).unwrap()
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn bearer_tokens_map_to_their_grants() {
        let table = table();
        let hcm = table.authenticate(Some("Bearer secret-79")).unwrap();
        assert_eq!(hcm.name, "hcm");
        assert!(hcm.allows("79") && !hcm.allows("01"));
        let national = table.authenticate(Some("bearer  secret-all ")).unwrap();
        assert!(national.allows("01") && national.allows("79"));
        assert_eq!(table.authenticate(None), Err(AuthError::Missing));
        assert_eq!(
            table.authenticate(Some("Basic abc")),
            Err(AuthError::Missing)
        );
        assert_eq!(table.authenticate(Some("Bearer ")), Err(AuthError::Missing));
        assert_eq!(
            table.authenticate(Some("Bearer secret-80")),
            Err(AuthError::Unknown)
        );
    }

    #[test]
    fn configuration_errors_are_reported() {
        let registry = ProvinceRegistry::builtin();
        let bad_code = [GatewayToken {
            name: "x".into(),
            sha256: hash_token("a"),
            provinces: vec!["64".into()],
            requests_per_second: None,
            burst: None,
        }];
        assert!(TokenTable::new(&bad_code, &registry)
            .unwrap_err()
            .to_string()
            .contains("64"));
        let twice = [
            GatewayToken {
                name: "a".into(),
                sha256: hash_token("a"),
                provinces: vec!["79".into()],
                requests_per_second: None,
                burst: None,
            },
            GatewayToken {
                name: "b".into(),
                sha256: hash_token("a"),
                provinces: vec!["01".into()],
                requests_per_second: None,
                burst: None,
            },
        ];
        assert!(TokenTable::new(&twice, &registry).is_err());
    }
}
