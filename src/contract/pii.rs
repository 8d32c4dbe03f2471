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

/// Masks anything that looks like an email address or a phone number in bytes that could
/// not be decoded, so that a dead letter from the hotline topic never carries them in clear.
pub fn scrub_unparsed(bytes: &[u8]) -> Vec<u8> {
    let mut out = bytes.to_vec();
    mask_emails(&mut out);
    mask_phone_numbers(&mut out);
    out
}

fn mask_emails(bytes: &mut [u8]) {
    let is_local = |b: u8| b.is_ascii_alphanumeric() || b"._%+-".contains(&b);
    let is_domain = |b: u8| b.is_ascii_alphanumeric() || b".-".contains(&b);
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'@' {
            let mut start = i;
            while start > 0 && is_local(bytes[start - 1]) {
                start -= 1;
            }
            let mut end = i + 1;
            while end < bytes.len() && is_domain(bytes[end]) {
                end += 1;
            }
            if start < i && end > i + 1 {
                bytes[start..end].fill(b'*');
            }
            i = end;
        } else {
            i += 1;
        }
    }
}

fn mask_phone_numbers(bytes: &mut [u8]) {
    let is_phone_char = |b: u8| b.is_ascii_digit() || b" +-.()".contains(&b);
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() && bytes[i] != b'+' {
            i += 1;
            continue;
        }
        let mut end = i;
        while end < bytes.len() && is_phone_char(bytes[end]) {
            end += 1;
        }
        let digits = bytes[i..end].iter().filter(|b| b.is_ascii_digit()).count();
        if digits >= 8 {
            for b in &mut bytes[i..end] {
                if b.is_ascii_digit() {
                    *b = b'*';
                }
            }
        }
        i = end.max(i + 1);
    }
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

    #[test]
    fn scrub_masks_emails_and_phone_numbers() {
        let scrubbed = scrub_unparsed(br#"{"reporter_phone":"+84 901 234 567","reporter_email":"lan.nguyen@example.vn", "ticket":"T-12"#);
        let text = String::from_utf8(scrubbed).unwrap();
        assert!(!text.contains("901 234 567"), "{text}");
        assert!(!text.contains("example.vn"), "{text}");
        assert!(!text.contains("lan.nguyen"), "{text}");
        assert!(text.contains("T-12"), "short numbers survive: {text}");
    }
}
