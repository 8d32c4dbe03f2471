//! Personal data (a reporter's phone number or email) is replaced by a keyed hash before
//! anything is stored or logged. The same person hashes to the same value under the same
//! secret, so repeat reporters can still be counted without knowing who they are.
use hmac::{Hmac, Mac};
use sha2::Sha256;

#[derive(Clone)]
pub struct PiiHasher {
    /// HMAC state with the key already absorbed: cloning it per value saves the two
    /// SHA-256 blocks of key padding that `new_from_slice` hashes each time.
    keyed: Hmac<Sha256>,
}

impl std::fmt::Debug for PiiHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PiiHasher(<secret>)")
    }
}

impl PiiHasher {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            keyed: Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length"),
        }
    }

    /// HMAC-SHA256 of the normalised phone number, hex.
    pub fn phone(&self, phone: &str) -> String {
        self.hash("phone", &normalize_phone(phone))
    }

    /// HMAC-SHA256 of the normalised (trimmed, lower-case) email, hex.
    pub fn email(&self, email: &str) -> String {
        self.hash("email", &email.trim().to_lowercase())
    }

    fn hash(&self, domain: &str, value: &str) -> String {
        let mut mac = self.keyed.clone();
        mac.update(domain.as_bytes());
        mac.update(b":");
        mac.update(value.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// Keeps digits only and writes Vietnam's +84 prefix as the domestic 0, so that
/// "+84 90-123 4567" and "0901234567" are the same reporter.
pub fn normalize_phone(phone: &str) -> String {
    let trimmed = phone.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if trimmed.starts_with('+') {
        if let Some(rest) = digits.strip_prefix("84") {
            return format!("0{rest}");
        }
    }
    digits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_person_same_hash_different_secret_different_hash() {
        let a = PiiHasher::new(b"secret-a");
        let b = PiiHasher::new(b"secret-b");
        assert_eq!(a.phone("+84 90-123 4567"), a.phone("0901234567"));
        assert_ne!(a.phone("0901234567"), b.phone("0901234567"));
        assert_eq!(a.email(" Lan@Example.VN "), a.email("lan@example.vn"));
        assert_ne!(
            a.phone("0901234567"),
            a.email("0901234567"),
            "phone and email hashes are domain-separated"
        );
        assert_eq!(a.phone("0901234567").len(), 64);
        assert!(!a.phone("0901234567").contains("0901234567"));
    }
}
