//! Sensitive identifiers (SH-USR-04): national ID numbers, unified social credit codes, bank
//! account numbers. They are turned into an HMAC-SHA256 digest under a platform key the
//! caller passes in, plus a masked form for display, and the clear value is dropped: the
//! platform can still tell whether the same number registers twice (equal digests), but a
//! leaked database does not reveal the numbers, and without the key they cannot be brute
//! forced from the small space of valid ID numbers.
//!
//! The same keyed hash protects verification codes and authorization codes, which are only
//! ever compared, never shown again after issue.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

type HmacSha256 = Hmac<Sha256>;

/// What an identifier is: part of the hashed input, so equal numbers of different kinds
/// never share a digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdentifierKind {
    /// 居民身份证号码, 18 characters (GB 11643).
    NationalId,
    /// 统一社会信用代码, 18 characters (GB 32100).
    CreditCode,
    /// 对公账户 or a personal account number.
    BankAccount,
    /// A one-time verification code or activation token.
    VerificationCode,
    /// A lease's authorization code (授权码).
    AuthorizationCode,
}

impl IdentifierKind {
    fn domain(self) -> &'static [u8] {
        match self {
            IdentifierKind::NationalId => b"cpn-market/national-id\0",
            IdentifierKind::CreditCode => b"cpn-market/credit-code\0",
            IdentifierKind::BankAccount => b"cpn-market/bank-account\0",
            IdentifierKind::VerificationCode => b"cpn-market/verification-code\0",
            IdentifierKind::AuthorizationCode => b"cpn-market/authorization-code\0",
        }
    }
}

/// Holds the platform's identifier key (from the server's configuration, never from code).
/// `Debug` does not print it.
#[derive(Clone)]
pub struct KeyedHasher {
    key: Vec<u8>,
}

impl fmt::Debug for KeyedHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KeyedHasher { key: <redacted> }")
    }
}

/// A key shorter than this is refused: HMAC-SHA256 wants at least its output size.
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the identifier key has {0} bytes; generate at least {MIN_KEY_BYTES} random bytes for it")]
pub struct KeyTooShort(pub usize);

impl KeyedHasher {
    pub fn new(key: &[u8]) -> Result<KeyedHasher, KeyTooShort> {
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort(key.len()));
        }
        Ok(KeyedHasher { key: key.to_vec() })
    }

    fn mac(&self, kind: IdentifierKind, normalized: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes keys of any length");
        mac.update(kind.domain());
        mac.update(normalized.as_bytes());
        mac
    }

    /// The digest and masked form of `clear`, normalized first (spaces dropped, letters upper
    /// case) so that `440301 19900101 123x` and `44030119900101123X` are the same number.
    pub fn hash(&self, kind: IdentifierKind, clear: &str) -> HashedIdentifier {
        let normalized = normalize(clear);
        let digest = self.mac(kind, &normalized).finalize().into_bytes().into();
        HashedIdentifier {
            kind,
            digest,
            masked: mask(&normalized),
        }
    }

    /// Whether `candidate` is the identifier behind `stored`, compared in constant time
    /// (`Mac::verify_slice`), so the time taken says nothing about how much of it matched.
    pub fn matches(&self, stored: &HashedIdentifier, candidate: &str) -> bool {
        self.mac(stored.kind, &normalize(candidate))
            .verify_slice(&stored.digest)
            .is_ok()
    }
}

/// A keyed digest with its display form; the clear value is gone.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HashedIdentifier {
    kind: IdentifierKind,
    digest: [u8; 32],
    masked: String,
}

impl HashedIdentifier {
    pub fn kind(&self) -> IdentifierKind {
        self.kind
    }

    /// Hex of the digest: what the store keeps and indexes for uniqueness.
    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest)
    }

    /// For display: `440***********123X`. See [`mask`].
    pub fn masked(&self) -> &str {
        &self.masked
    }
}

/// Only the masked form, so a digest never lands in a log by accident.
impl fmt::Debug for HashedIdentifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HashedIdentifier({:?}, {})", self.kind, self.masked)
    }
}

fn normalize(clear: &str) -> String {
    clear
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

/// The masking rule: a value of 14 characters or more keeps its first 3 and last 4 (an
/// 18-character ID shows `440***********123X`); a shorter one keeps only its last quarter
/// (rounded down, so values under 4 characters are fully masked); the rest becomes `*`.
pub fn mask(normalized: &str) -> String {
    let chars: Vec<char> = normalized.chars().collect();
    let n = chars.len();
    let (head, tail) = if n >= 14 { (3, 4) } else { (0, n / 4) };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < head || i >= n - tail { *c } else { '*' })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> KeyedHasher {
        KeyedHasher::new(&[7; 32]).unwrap()
    }

    #[test]
    fn same_number_same_digest_whatever_the_spelling() {
        let a = hasher().hash(IdentifierKind::NationalId, "440301 19900101 123x");
        let b = hasher().hash(IdentifierKind::NationalId, "44030119900101123X");
        assert_eq!(a, b);
        assert_eq!(a.masked(), "440***********123X");
        assert!(hasher().matches(&a, "44030119900101123X"));
        assert!(!hasher().matches(&a, "440301199001011230"));
    }

    #[test]
    fn kind_and_key_separate_digests() {
        let id = hasher().hash(IdentifierKind::NationalId, "123456789012345678");
        let code = hasher().hash(IdentifierKind::CreditCode, "123456789012345678");
        assert_ne!(id.digest_hex(), code.digest_hex());
        let other = KeyedHasher::new(&[8; 32]).unwrap();
        assert_ne!(
            id.digest_hex(),
            other
                .hash(IdentifierKind::NationalId, "123456789012345678")
                .digest_hex()
        );
    }

    #[test]
    fn debug_shows_neither_key_nor_digest() {
        let id = hasher().hash(IdentifierKind::NationalId, "44030119900101123X");
        assert!(!format!("{id:?}").contains(&id.digest_hex()));
        assert!(!format!("{:?}", hasher()).contains('7'));
        assert!(KeyedHasher::new(&[1; 8]).is_err());
    }
}
