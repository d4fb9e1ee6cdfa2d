//! One-time codes (SH-USR-03 验证码, SH-USR-09 activation link): issued from randomness the
//! caller passes in, kept only as a keyed hash, valid until a deadline, usable once, and
//! refused after a bounded number of wrong tries, so a six-digit code cannot be guessed
//! (5 tries of 10^6 is a 1 in 200,000 chance per code).

use crate::keyed::{HashedIdentifier, IdentifierKind, KeyedHasher};
use crate::time::Timestamp;

/// What a code proves; a code issued for one purpose does not verify another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// The contact at registration belongs to the registrant.
    Registration,
    /// The activation link of a new account.
    Activation,
    /// A second factor at login (SH-USR-12).
    Login,
}

/// The shape of a code: six digits to type from an SMS or e-mail, or a 32-byte token to put
/// in an activation link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeFormat {
    SixDigits,
    LinkToken,
}

/// The lifetime and attempt bound of one purpose: the rule in one place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodePolicy {
    pub format: CodeFormat,
    pub lifetime_s: i64,
    pub max_attempts: u32,
}

impl Purpose {
    pub fn policy(self) -> CodePolicy {
        match self {
            Purpose::Registration | Purpose::Login => CodePolicy {
                format: CodeFormat::SixDigits,
                lifetime_s: 10 * 60,
                max_attempts: 5,
            },
            // A link is a 256-bit token: guessing is hopeless, and a mail may sit unread.
            Purpose::Activation => CodePolicy {
                format: CodeFormat::LinkToken,
                lifetime_s: 24 * 3600,
                max_attempts: 5,
            },
        }
    }
}

/// Randomness for one code, drawn by the caller from a CSPRNG (the server's `getrandom`).
pub struct Entropy(pub [u8; 32]);

/// A code as stored: no clear text.
#[derive(Debug, Clone)]
pub struct PendingCode {
    purpose: Purpose,
    digest: HashedIdentifier,
    expires_at: Timestamp,
    attempts_left: u32,
    used: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CodeError {
    #[error("the code has expired; ask for a new one")]
    Expired,
    #[error("the code has been used already; ask for a new one")]
    AlreadyUsed,
    #[error("too many wrong codes; ask for a new one")]
    AttemptsExhausted,
    #[error("wrong code; {attempts_left} attempt(s) left")]
    Mismatch { attempts_left: u32 },
    #[error("this code was issued for another purpose")]
    WrongPurpose,
}

/// Issues a code: the clear code goes to the mail or SMS once; the [`PendingCode`] is kept.
pub fn issue(
    purpose: Purpose,
    entropy: Entropy,
    hasher: &KeyedHasher,
    now: Timestamp,
) -> (String, PendingCode) {
    let policy = purpose.policy();
    let clear = match policy.format {
        // 2^64 mod 10^6 makes the lowest codes more likely by 1 in 1.8e13: negligible.
        CodeFormat::SixDigits => {
            let n = u64::from_le_bytes(entropy.0[..8].try_into().expect("8 bytes"));
            format!("{:06}", n % 1_000_000)
        }
        CodeFormat::LinkToken => hex::encode(entropy.0),
    };
    let pending = PendingCode {
        purpose,
        digest: hasher.hash(IdentifierKind::VerificationCode, &clear),
        expires_at: now.plus_seconds(policy.lifetime_s),
        attempts_left: policy.max_attempts,
        used: false,
    };
    (clear, pending)
}

impl Purpose {
    /// The name the store keeps a pending code under.
    pub fn name(self) -> &'static str {
        match self {
            Purpose::Registration => "registration",
            Purpose::Activation => "activation",
            Purpose::Login => "login",
        }
    }
}

impl PendingCode {
    /// The keyed digest of the code, as the store keeps it.
    pub fn digest_hex(&self) -> String {
        self.digest.digest_hex()
    }

    /// A pending code read back from the store (what [`PendingCode::digest_hex`],
    /// [`PendingCode::expires_at`] and [`PendingCode::attempts_left`] gave); `None` when the
    /// digest is not 32 bytes of hex. A stored code is unused: using it removes it.
    pub fn from_stored(
        purpose: Purpose,
        digest_hex: &str,
        expires_at: Timestamp,
        attempts_left: u32,
    ) -> Option<PendingCode> {
        Some(PendingCode {
            purpose,
            digest: HashedIdentifier::from_stored(
                IdentifierKind::VerificationCode,
                digest_hex,
                "",
            )?,
            expires_at,
            attempts_left,
            used: false,
        })
    }

    pub fn expires_at(&self) -> Timestamp {
        self.expires_at
    }

    pub fn attempts_left(&self) -> u32 {
        self.attempts_left
    }

    /// Checks `entered` for `purpose` at `now`. A wrong code uses one attempt; a right one
    /// uses the code. The store persists `self` after every call, whatever the result.
    pub fn verify(
        &mut self,
        purpose: Purpose,
        entered: &str,
        hasher: &KeyedHasher,
        now: Timestamp,
    ) -> Result<(), CodeError> {
        if purpose != self.purpose {
            return Err(CodeError::WrongPurpose);
        }
        if self.used {
            return Err(CodeError::AlreadyUsed);
        }
        if now >= self.expires_at {
            return Err(CodeError::Expired);
        }
        if self.attempts_left == 0 {
            return Err(CodeError::AttemptsExhausted);
        }
        if hasher.matches(&self.digest, entered) {
            self.used = true;
            Ok(())
        } else {
            self.attempts_left -= 1;
            Err(CodeError::Mismatch {
                attempts_left: self.attempts_left,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hasher() -> KeyedHasher {
        KeyedHasher::new(&[3; 32]).unwrap()
    }

    #[test]
    fn six_digits_single_use() {
        let t0 = Timestamp::from_unix(1_000);
        let (code, mut pending) = issue(Purpose::Registration, Entropy([9; 32]), &hasher(), t0);
        assert_eq!(code.len(), 6);
        assert!(code.chars().all(|c| c.is_ascii_digit()));
        assert_eq!(
            pending.verify(Purpose::Login, &code, &hasher(), t0),
            Err(CodeError::WrongPurpose)
        );
        assert_eq!(
            pending.verify(Purpose::Registration, &code, &hasher(), t0),
            Ok(())
        );
        assert_eq!(
            pending.verify(Purpose::Registration, &code, &hasher(), t0),
            Err(CodeError::AlreadyUsed)
        );
    }

    #[test]
    fn expires_and_bounds_attempts() {
        let t0 = Timestamp::from_unix(1_000);
        let (code, pending) = issue(Purpose::Registration, Entropy([1; 32]), &hasher(), t0);
        let mut late = pending.clone();
        assert_eq!(
            late.verify(
                Purpose::Registration,
                &code,
                &hasher(),
                t0.plus_seconds(600)
            ),
            Err(CodeError::Expired)
        );
        let mut guessed = pending;
        let wrong = if code == "000000" { "000001" } else { "000000" };
        for left in (0..5).rev() {
            assert_eq!(
                guessed.verify(Purpose::Registration, wrong, &hasher(), t0),
                Err(CodeError::Mismatch {
                    attempts_left: left
                })
            );
        }
        assert_eq!(
            guessed.verify(Purpose::Registration, &code, &hasher(), t0),
            Err(CodeError::AttemptsExhausted),
            "the right code after five wrong ones is refused"
        );
    }

    #[test]
    fn a_stored_code_verifies_like_the_issued_one() {
        let t0 = Timestamp::from_unix(1_000);
        let (code, pending) = issue(Purpose::Registration, Entropy([4; 32]), &hasher(), t0);
        let mut back = PendingCode::from_stored(
            Purpose::Registration,
            &pending.digest_hex(),
            pending.expires_at(),
            1,
        )
        .unwrap();
        let wrong = if code == "000000" { "000001" } else { "000000" };
        assert_eq!(
            back.clone()
                .verify(Purpose::Registration, wrong, &hasher(), t0),
            Err(CodeError::Mismatch { attempts_left: 0 })
        );
        assert_eq!(
            back.verify(Purpose::Registration, &code, &hasher(), t0),
            Ok(())
        );
        assert!(PendingCode::from_stored(Purpose::Registration, "zz", t0, 5).is_none());
    }

    #[test]
    fn activation_links_are_long_tokens() {
        let (token, _) = issue(
            Purpose::Activation,
            Entropy([0xab; 32]),
            &hasher(),
            Timestamp::from_unix(0),
        );
        assert_eq!(token.len(), 64);
    }
}
