//! TOTP (RFC 6238): HMAC-SHA1, 30-second steps, 6 digits — what authenticator apps use.

use hmac::{Hmac, Mac};
use sha1::Sha1;

pub const STEP_SECONDS: i64 = 30;
pub const DIGITS: u32 = 6;
/// Steps before and after now that are still accepted, for clock drift.
pub const SKEW_STEPS: i64 = 1;

/// 160 random bits, the size RFC 4226 recommends.
pub fn new_secret() -> Vec<u8> {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut secret = vec![0u8; 20];
    OsRng.fill_bytes(&mut secret);
    secret
}

/// HOTP (RFC 4226) of one counter value.
pub fn hotp(secret: &[u8], counter: u64) -> u32 {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret) else {
        // HMAC takes keys of any length; this branch is unreachable in practice.
        return u32::MAX;
    };
    mac.update(&counter.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = (digest[19] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 10u32.pow(DIGITS)
}

/// The code shown at `unix_time`, zero-padded.
pub fn code_at(secret: &[u8], unix_time: i64) -> String {
    format!(
        "{:0width$}",
        hotp(secret, (unix_time / STEP_SECONDS) as u64),
        width = DIGITS as usize
    )
}

/// Whether `code` is the code of `unix_time`'s step or one step either side.
pub fn verify(secret: &[u8], code: &str, unix_time: i64) -> bool {
    matching_step(secret, code, unix_time).is_some()
}

/// The time step whose code `code` is (now or one step either side), if any. Callers that
/// remember the last step used per account refuse a code seen before (RFC 6238 §5.2).
pub fn matching_step(secret: &[u8], code: &str, unix_time: i64) -> Option<i64> {
    let code = code.trim();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    (-SKEW_STEPS..=SKEW_STEPS)
        .map(|d| unix_time + d * STEP_SECONDS)
        .find(|t| *t >= 0 && constant_time_eq(code_at(secret, *t).as_bytes(), code.as_bytes()))
        .map(|t| t / STEP_SECONDS)
}

/// The last TOTP step each account logged in with, so a code works once. In memory: after a
/// restart a code seen in the last minute could be replayed once more, which needs the
/// password as well.
#[derive(Default)]
pub struct UsedSteps(std::sync::Mutex<std::collections::HashMap<String, i64>>);

impl UsedSteps {
    /// Records `step` for `account`; false when it or a later step was used already.
    pub fn claim(&self, account: &str, step: i64) -> bool {
        let Ok(mut used) = self.0.lock() else {
            return false;
        };
        match used.get(account) {
            Some(last) if *last >= step => false,
            _ => {
                used.insert(account.to_string(), step);
                true
            }
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// RFC 4648 base32 without padding, as authenticator apps expect the secret.
pub fn base32(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// `otpauth://` URI for a QR code.
pub fn otpauth_uri(issuer: &str, account: &str, secret: &[u8]) -> String {
    format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={STEP_SECONDS}",
        base32(secret)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SHA-1 vectors of RFC 6238 appendix B (8 digits there; the last 6 digits here).
    #[test]
    fn rfc6238_vectors() {
        let secret = b"12345678901234567890";
        for (t, code8) in [
            (59, "94287082"),
            (1111111109, "07081804"),
            (1111111111, "14050471"),
            (1234567890, "89005924"),
            (2000000000, "69279037"),
        ] {
            assert_eq!(code_at(secret, t), code8[2..], "t={t}");
        }
    }

    #[test]
    fn verify_accepts_one_step_of_drift_only() {
        let secret = b"12345678901234567890";
        let code = code_at(secret, 1_000_000);
        assert!(verify(secret, &code, 1_000_000));
        assert!(verify(secret, &code, 1_000_000 + STEP_SECONDS));
        assert!(!verify(secret, &code, 1_000_000 + 3 * STEP_SECONDS));
        assert!(!verify(secret, "12345", 1_000_000));
        assert!(!verify(secret, "abcdef", 1_000_000));
    }

    #[test]
    fn a_code_works_once() {
        let used = UsedSteps::default();
        assert!(used.claim("alice", 100));
        assert!(!used.claim("alice", 100));
        assert!(!used.claim("alice", 99));
        assert!(used.claim("bob", 100));
        assert!(used.claim("alice", 101));
    }

    #[test]
    fn base32_matches_rfc4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(base32(b"f"), "MY");
    }
}
