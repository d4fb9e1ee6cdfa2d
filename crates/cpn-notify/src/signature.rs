//! Webhook signatures: how cpn signs a webhook body and how a receiver checks it.
//!
//! Every webhook request carries
//!
//! - `X-Cpn-Timestamp`: the Unix time in seconds when the request was signed;
//! - `X-Cpn-Signature`: `v1=` and the lowercase hex HMAC-SHA256, keyed with the
//!   subscription's secret, of the bytes `{timestamp}.{body}` (the header's decimal digits,
//!   one `.`, then the raw request body exactly as received).
//!
//! A receiver recomputes the HMAC over the raw body (before any JSON parsing), compares it
//! in constant time, and refuses a timestamp more than a few minutes away from its own clock,
//! so a captured request cannot be replayed later. [`verify_signature`] does all three.
//! Signing the timestamp with the body is what makes the age check trustworthy: an attacker
//! cannot move an old request's timestamp without breaking its signature.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Header with the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Cpn-Timestamp";
/// Header with `v1=<hex HMAC-SHA256(secret, "{timestamp}.{body}")>`.
pub const SIGNATURE_HEADER: &str = "X-Cpn-Signature";
/// Header with the notification's idempotency key, for receivers that deduplicate.
pub const IDEMPOTENCY_HEADER: &str = "X-Cpn-Idempotency-Key";
/// Header with the event kind (`alarm`, `account`, `lease`, `billing`).
pub const EVENT_HEADER: &str = "X-Cpn-Event";
/// How far a timestamp may be from the receiver's clock, either way, by default.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

const SCHEME: &str = "v1=";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8], timestamp: u64, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `X-Cpn-Signature` value for `body` signed at `timestamp` (Unix seconds).
pub fn sign(secret: &[u8], timestamp: u64, body: &[u8]) -> String {
    format!(
        "{SCHEME}{}",
        hex::encode(mac(secret, timestamp, body).finalize().into_bytes())
    )
}

/// Why a webhook request was refused by [`verify_signature`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {TIMESTAMP_HEADER} header is missing or not a Unix time in seconds")]
    BadTimestamp,
    #[error(
        "the request was signed {age_s} s from now, more than the {tolerance_s} s allowed: a \
         replay, or the sender's or receiver's clock is wrong (check NTP)"
    )]
    Stale { age_s: u64, tolerance_s: u64 },
    #[error("the {SIGNATURE_HEADER} header is missing or not \"v1=\" and 64 hex digits")]
    Malformed,
    #[error(
        "the signature does not match the body: the secret differs from the subscription's, \
         or the body was changed (verify the raw bytes, before parsing the JSON)"
    )]
    Mismatch,
}

/// Checks a webhook request as a receiver must: `timestamp` and `signature` are the values
/// of the `X-Cpn-Timestamp` and `X-Cpn-Signature` headers, `body` the raw body, `now` the
/// receiver's clock, `tolerance` the largest accepted clock difference (see
/// [`DEFAULT_TOLERANCE`]). The comparison is constant-time.
pub fn verify_signature(
    secret: &[u8],
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: SystemTime,
    tolerance: Duration,
) -> Result<(), SignatureError> {
    let ts: u64 = timestamp
        .trim()
        .parse()
        .map_err(|_| SignatureError::BadTimestamp)?;
    let now_s = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let age_s = now_s.abs_diff(ts);
    if age_s > tolerance.as_secs() {
        return Err(SignatureError::Stale {
            age_s,
            tolerance_s: tolerance.as_secs(),
        });
    }
    let hex_sig = signature
        .trim()
        .strip_prefix(SCHEME)
        .ok_or(SignatureError::Malformed)?;
    let bytes = hex::decode(hex_sig).map_err(|_| SignatureError::Malformed)?;
    if bytes.len() != 32 {
        return Err(SignatureError::Malformed);
    }
    mac(secret, ts, body)
        .verify_slice(&bytes)
        .map_err(|_| SignatureError::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    #[test]
    fn a_fresh_signature_verifies_and_anything_changed_does_not() {
        let body = br#"{"kind":"alarm"}"#;
        let sig = sign(SECRET, 1_700_000_000, body);
        let ok = |ts: &str, sig: &str, body: &[u8], secret: &[u8], now| {
            verify_signature(secret, ts, sig, body, at(now), DEFAULT_TOLERANCE)
        };
        assert_eq!(ok("1700000000", &sig, body, SECRET, 1_700_000_100), Ok(()));
        assert_eq!(
            ok(
                "1700000000",
                &sig,
                b"{\"kind\":\"lease\"}",
                SECRET,
                1_700_000_000
            ),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok(
                "1700000000",
                &sig,
                body,
                b"another-secret-another-secret!!",
                1_700_000_000
            ),
            Err(SignatureError::Mismatch)
        );
        // Moving the timestamp to make an old request look fresh breaks the signature.
        assert_eq!(
            ok("1700000500", &sig, body, SECRET, 1_700_000_500),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            ok("1700000000", &sig, body, SECRET, 1_700_000_301),
            Err(SignatureError::Stale {
                age_s: 301,
                tolerance_s: 300
            })
        );
        assert!(matches!(
            ok("1700000000", &sig, body, SECRET, 1_699_999_000),
            Err(SignatureError::Stale { .. })
        ));
        assert_eq!(
            ok("yesterday", &sig, body, SECRET, 1_700_000_000),
            Err(SignatureError::BadTimestamp)
        );
        assert_eq!(
            ok("1700000000", &sig[3..], body, SECRET, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            ok("1700000000", "v1=abcd", body, SECRET, 1_700_000_000),
            Err(SignatureError::Malformed)
        );
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Independent check of the documented construction, so receivers in other
        // languages can rely on it: HMAC-SHA256("key", "1.{}"), computed with Python's
        // hmac module: hmac.new(b"key", b"1.{}", "sha256").hexdigest().
        assert_eq!(
            sign(b"key", 1, b"{}"),
            "v1=1ba6b8171186efc613e8bcc0cbdab2748f24984d7c5a84faa2637afa0e40d224"
        );
    }
}
