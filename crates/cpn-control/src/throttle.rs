//! Login throttling: failures counted per account and per source address, with a lockout
//! that doubles with every failure past a threshold.
//!
//! Counted in memory: every login consults it, and a failed one updates it, so a store copy
//! of every count would give an attacker a write (and an fsync) per guess. What the store
//! keeps is an existing account's *lockout* (`login_lockouts`), written when it locks: a
//! failure past the threshold only counts once the previous lockout has ended, so that is
//! at most one write per lockout and account. A restart therefore keeps a locked account
//! locked (an attacker cannot have the lockout lifted by getting the server restarted);
//! the failures below the threshold and the per-address counters start again from zero,
//! which is acceptable (only the operator restarts the server, every attempt is in the
//! audit log). Unknown usernames are counted like real ones, so the lockout does not tell
//! which accounts exist; they are not written to the store (no row per guessed name).

use cpn_store::{LoginLockout, Store};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
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
    /// Where account lockouts are kept across restarts (unset in unit tests).
    store: OnceLock<Arc<dyn Store>>,
}

/// What a failure or a success changes of an account's kept lockout.
enum Keep {
    Save(LoginLockout),
    Clear(String),
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

    /// Keeps account lockouts in `store` from now on, and restores those it kept that have
    /// not ended.
    pub async fn persist_to(&self, store: Arc<dyn Store>) -> cpn_store::Result<()> {
        let kept = store.login_lockouts(chrono::Utc::now()).await?;
        let now = Instant::now();
        let wall = chrono::Utc::now();
        if let Ok(mut entries) = self.entries.lock() {
            for l in &kept {
                let left = (l.locked_until - wall).to_std().unwrap_or_default();
                entries.insert(
                    account_key(&l.username),
                    Entry {
                        failures: l.failures,
                        last_failure: now,
                        locked_until: Some(now + left),
                    },
                );
            }
        }
        if !kept.is_empty() {
            tracing::info!(accounts = kept.len(), "login lockouts restored");
        }
        let _ = self.store.set(store);
        Ok(())
    }

    /// Writes an account's lockout change in the background: the login answers at once, and
    /// a failed write costs only the lockout's survival of a restart.
    fn keep(&self, change: Keep) {
        let (Some(store), Ok(rt)) = (self.store.get(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        let store = store.clone();
        rt.spawn(async move {
            let written = match change {
                Keep::Save(l) => store.save_login_lockout(l).await,
                Keep::Clear(username) => store.clear_login_lockout(&username).await,
            };
            if let Err(e) = written {
                tracing::warn!(error = %e, "cannot keep a login lockout in the store");
            }
        });
    }

    /// Counts a failed login; returns the lockout it started, if any.
    pub fn failure(&self, username: &str, address: &str) -> Option<Duration> {
        let (longest, keep) = self.count_failure(username, address);
        if let Some(l) = keep {
            self.keep(Keep::Save(l));
        }
        longest
    }

    /// [`Self::failure`] in memory; also returns the account's lockout to keep, if it locked.
    fn count_failure(
        &self,
        username: &str,
        address: &str,
    ) -> (Option<Duration>, Option<LoginLockout>) {
        let now = Instant::now();
        let Ok(mut entries) = self.entries.lock() else {
            return (None, None);
        };
        let mut keep = None;
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| now.duration_since(e.last_failure) < FORGET_AFTER);
        }
        let mut longest = None;
        for (key, threshold, is_account) in [
            (account_key(username), ACCOUNT_THRESHOLD, true),
            (address_key(address), ADDRESS_THRESHOLD, false),
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
                if is_account {
                    keep = Some(LoginLockout {
                        username: username.to_string(),
                        failures: e.failures,
                        locked_until: chrono::Utc::now()
                            + chrono::Duration::from_std(lockout).unwrap_or_default(),
                    });
                }
            }
        }
        (longest, keep)
    }

    /// A successful login clears the account's failures. The address keeps its count, so
    /// one valid account cannot be used to reset the guessing budget of an address.
    pub fn success(&self, username: &str) {
        let removed = match self.entries.lock() {
            Ok(mut entries) => entries.remove(&account_key(username)),
            Err(_) => None,
        };
        // Only a lockout was kept: the common login costs no write.
        if removed.is_some_and(|e| e.locked_until.is_some()) {
            self.keep(Keep::Clear(username.to_string()));
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

    /// An existing account's lockout is kept in the store: a throttle made afresh on it (a
    /// restarted server) still refuses the account, from any address; a success clears it.
    #[tokio::test]
    async fn a_kept_lockout_outlives_the_throttle() {
        use cpn_store::{NewUser, SqliteStore};
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
        store.create_tenant("lab", "").await.unwrap();
        store
            .create_user(NewUser {
                username: "alice".into(),
                password_hash: "x".into(),
                tenant: "lab".into(),
                role: "user".into(),
                display_name: String::new(),
                now: chrono::Utc::now(),
            })
            .await
            .unwrap();
        let first = LoginThrottle::default();
        first.persist_to(store.clone()).await.unwrap();
        for _ in 0..ACCOUNT_THRESHOLD {
            first.failure("alice", "10.0.0.1");
            first.failure("nobody", "10.0.0.1");
        }
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while store
            .login_lockouts(chrono::Utc::now())
            .await
            .unwrap()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < until,
                "the lockout was never kept"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let second = LoginThrottle::default();
        second.persist_to(store.clone()).await.unwrap();
        assert!(second.locked("alice", "10.0.0.2").is_some());
        // Unknown names are locked in memory only.
        assert!(first.locked("nobody", "10.0.0.2").is_some());
        assert!(second.locked("nobody", "10.0.0.2").is_none());
        second.success("alice");
        while !store
            .login_lockouts(chrono::Utc::now())
            .await
            .unwrap()
            .is_empty()
        {
            assert!(
                std::time::Instant::now() < until,
                "the lockout was never cleared"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
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
