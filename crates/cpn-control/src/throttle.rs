//! Login throttling: failures counted per account and per source address, with a lockout
//! that doubles with every failure past a threshold.
//!
//! Kept in memory, not in the store: every login consults it, and a failed one updates it,
//! so a store copy would give an attacker a write (and an fsync) per guess. Losing it on a
//! restart is acceptable: only the operator restarts the server, and every attempt is in the
//! audit log anyway. Unknown usernames are counted like real ones, so the lockout does not
//! tell which accounts exist.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Failures of one account before it locks.
pub(crate) const ACCOUNT_THRESHOLD: u32 = 5;
/// Failures from one address before it locks (higher: many users may share a NAT).
pub(crate) const ADDRESS_THRESHOLD: u32 = 50;
/// First lockout; each further failure doubles it.
pub(crate) const BASE_LOCKOUT: Duration = Duration::from_secs(1);
pub(crate) const MAX_LOCKOUT: Duration = Duration::from_secs(15 * 60);
/// Failures older than this are forgotten.
pub(crate) const FORGET_AFTER: Duration = Duration::from_secs(60 * 60);
/// Entries kept at most; past it, forgotten entries are swept.
const MAX_ENTRIES: usize = 100_000;

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    locked_until: Option<Instant>,
}

#[derive(Default)]
pub struct LoginThrottle {
    entries: Mutex<HashMap<String, Entry>>,
}

fn account_key(username: &str) -> String {
    format!("user:{username}")
}

fn address_key(address: &str) -> String {
    format!("addr:{address}")
}

impl LoginThrottle {
    /// How long the account or the address is still locked, if either is.
    pub fn locked(&self, username: &str, address: &str) -> Option<Duration> {
        let now = Instant::now();
        let entries = self.entries.lock().ok()?;
        [account_key(username), address_key(address)]
            .iter()
            .filter_map(|k| entries.get(k)?.locked_until)
            .filter(|until| *until > now)
            .map(|until| until - now)
            .max()
    }

    /// Counts a failed login; returns the lockout it started, if any.
    pub fn failure(&self, username: &str, address: &str) -> Option<Duration> {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return None;
        };
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now.duration_since(e.last_failure) < FORGET_AFTER);
        }
        let mut longest = None;
        for (key, threshold) in [
            (account_key(username), ACCOUNT_THRESHOLD),
            (address_key(address), ADDRESS_THRESHOLD),
        ] {
            let e = entries.entry(key).or_insert(Entry {
                failures: 0,
                last_failure: now,
                locked_until: None,
            });
            if now.duration_since(e.last_failure) >= FORGET_AFTER {
                e.failures = 0;
            }
            e.failures += 1;
            e.last_failure = now;
            if e.failures >= threshold {
                let lockout = lockout_after(e.failures - threshold);
                e.locked_until = Some(now + lockout);
                longest = longest.max(Some(lockout));
            }
        }
        longest
    }

    /// A successful login clears the account's failures. The address keeps its count, so
    /// one valid account cannot be used to reset the guessing budget of an address.
    pub fn success(&self, username: &str) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(&account_key(username));
        }
    }
}

/// 1 s at the threshold, doubling with each further failure, at most `MAX_LOCKOUT`.
fn lockout_after(past_threshold: u32) -> Duration {
    BASE_LOCKOUT
        .checked_mul(1u32 << past_threshold.min(20))
        .unwrap_or(MAX_LOCKOUT)
        .min(MAX_LOCKOUT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_grows_from_the_threshold_and_is_capped() {
        assert_eq!(lockout_after(0), Duration::from_secs(1));
        assert_eq!(lockout_after(3), Duration::from_secs(8));
        assert_eq!(lockout_after(40), MAX_LOCKOUT);
    }

    #[test]
    fn an_account_locks_after_its_threshold_even_when_unknown() {
        let t = LoginThrottle::default();
        for _ in 0..ACCOUNT_THRESHOLD - 1 {
            assert_eq!(t.failure("nobody", "10.0.0.1"), None);
        }
        assert!(t.locked("nobody", "10.0.0.2").is_none());
        assert_eq!(
            t.failure("nobody", "10.0.0.1"),
            Some(Duration::from_secs(1))
        );
        assert!(t.locked("nobody", "10.0.0.2").is_some());
        // Another account from the same address is not locked yet.
        assert!(t.locked("alice", "10.0.0.1").is_none());
        t.success("nobody");
        assert!(t.locked("nobody", "10.0.0.2").is_none());
    }

    #[test]
    fn an_address_locks_every_account_it_tries() {
        let t = LoginThrottle::default();
        for i in 0..ADDRESS_THRESHOLD {
            t.failure(&format!("user{i}"), "10.0.0.9");
        }
        assert!(t.locked("someone-else", "10.0.0.9").is_some());
        assert!(t.locked("someone-else", "10.0.0.8").is_none());
    }
}
