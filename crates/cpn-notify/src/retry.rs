//! Retries: a bounded number of attempts with exponential backoff and jitter, so a relay or
//! receiver that is down for a moment gets the event later, and many deliveries failing at
//! once do not retry in lockstep and hammer it again together.

use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a retry policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryPolicyError {
    #[error("max_attempts is {0}; it must be 1 (no retries) to 20")]
    Attempts(u32),
    #[error("initial_delay must be above zero and at most max_delay (got {initial:?} and {max:?})")]
    Delays { initial: Duration, max: Duration },
}

/// How often and how long to retry a failed delivery. A permanent failure (an HTTP 4xx, an
/// SMTP 5xx) is never retried, whatever the policy says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    // Invariant: 1..=MAX_ATTEMPTS; 0 < initial_delay <= max_delay (checked in `new`).
    max_attempts: u32,
    initial_delay: Duration,
    max_delay: Duration,
}

impl RetryPolicy {
    /// More attempts than this only delay the failure report; the delivery log keeps them.
    pub const MAX_ATTEMPTS: u32 = 20;

    /// `max_attempts` counts the first try; the delay before retry `n` (n = 1, 2, …) is
    /// `initial_delay * 2^(n-1)`, capped at `max_delay`, then jittered into its upper half.
    pub fn new(
        max_attempts: u32,
        initial_delay: Duration,
        max_delay: Duration,
    ) -> Result<Self, RetryPolicyError> {
        if !(1..=Self::MAX_ATTEMPTS).contains(&max_attempts) {
            return Err(RetryPolicyError::Attempts(max_attempts));
        }
        if initial_delay.is_zero() || initial_delay > max_delay {
            return Err(RetryPolicyError::Delays {
                initial: initial_delay,
                max: max_delay,
            });
        }
        Ok(Self {
            max_attempts,
            initial_delay,
            max_delay,
        })
    }

    /// The production default: 6 attempts, 2 s doubling to at most 5 min, which spans about
    /// 10 minutes: long enough for a relay restart, short enough that an alarm is not stale.
    pub fn standard() -> Self {
        Self::new(6, Duration::from_secs(2), Duration::from_secs(300))
            .expect("the standard policy is valid")
    }

    pub fn max_attempts(&self) -> u32 {
        self.max_attempts
    }

    /// The delay before retry number `retry` (1 = the second attempt) without jitter.
    pub fn base_delay(&self, retry: u32) -> Duration {
        let shift = retry.saturating_sub(1).min(31);
        self.initial_delay
            .checked_mul(1u32 << shift)
            .map_or(self.max_delay, |d| d.min(self.max_delay))
    }

    /// The delay before retry `retry` with "equal jitter": uniform in [base/2, base]. Half
    /// the delay stays fixed so backoff still grows; the random half spreads retries apart.
    pub(crate) fn delay(&self, retry: u32, rng: &Jitter) -> Duration {
        let base = self.base_delay(retry);
        let half = base / 2;
        let span = (base - half).as_nanos() as u64;
        half + Duration::from_nanos(if span == 0 {
            0
        } else {
            rng.next() % (span + 1)
        })
    }
}

/// A small seeded generator (splitmix64) for jitter. Jitter needs spread, not secrecy, and a
/// seed makes a test's delays reproducible; no crate is worth pulling in for this.
#[derive(Debug)]
pub(crate) struct Jitter(Mutex<u64>);

impl Jitter {
    pub(crate) fn new(seed: Option<u64>) -> Self {
        let seed = seed.unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
                ^ u64::from(std::process::id()).rotate_left(32)
        });
        Self(Mutex::new(seed))
    }

    pub(crate) fn next(&self) -> u64 {
        let mut state = self.0.lock().unwrap_or_else(|e| e.into_inner());
        *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = *state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_in_the_upper_half() {
        let p =
            RetryPolicy::new(10, Duration::from_millis(100), Duration::from_millis(1000)).unwrap();
        let base: Vec<u64> = (1..=6)
            .map(|n| p.base_delay(n).as_millis() as u64)
            .collect();
        assert_eq!(base, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(p.base_delay(u32::MAX), Duration::from_millis(1000));
        let rng = Jitter::new(Some(7));
        let mut seen = std::collections::BTreeSet::new();
        for n in 1..=6 {
            for _ in 0..200 {
                let d = p.delay(n, &rng);
                assert!(
                    d >= p.base_delay(n) / 2 && d <= p.base_delay(n),
                    "{d:?} for retry {n}"
                );
                seen.insert(d);
            }
        }
        assert!(
            seen.len() > 1000,
            "jitter does not spread: {} distinct delays",
            seen.len()
        );
    }

    #[test]
    fn bad_policies_are_refused() {
        let s = Duration::from_secs(1);
        assert_eq!(
            RetryPolicy::new(0, s, s),
            Err(RetryPolicyError::Attempts(0))
        );
        assert_eq!(
            RetryPolicy::new(21, s, s),
            Err(RetryPolicyError::Attempts(21))
        );
        assert!(RetryPolicy::new(3, Duration::ZERO, s).is_err());
        assert!(RetryPolicy::new(3, 2 * s, s).is_err());
        assert_eq!(RetryPolicy::standard().max_attempts(), 6);
    }
}
