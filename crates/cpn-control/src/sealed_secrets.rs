//! Secrets the server must read back (TOTP secrets) kept encrypted in the store: AES-256-GCM
//! (`ring`, already in the tree through rustls) under a key in the data dir,
//! `DATA_DIR/secrets.key` (mode 0600, generated at first start like the marketplace's
//! identifier key). A copy of the database alone, a backup for instance, no longer logs
//! anyone in past their second factor.
//!
//! A sealed value is `v1:` and the hex of a random 96-bit nonce followed by the ciphertext
//! and its tag; the associated data names the account, so a value moved to another row does
//! not open. Values written before encryption (plain hex, no `:`) are sealed at start by
//! [`seal_clear_totp_secrets`].

use cpn_store::Store;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use std::path::Path;

/// The key's file in the data dir.
pub const KEY_FILE: &str = "secrets.key";
const PREFIX: &str = "v1:";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("a stored secret is not sealed (written before encryption and not migrated)")]
    NotSealed,
    #[error("a stored secret does not open with this data dir's {KEY_FILE}")]
    Corrupt,
    #[error("no randomness for a nonce")]
    Random,
}

pub struct SecretSealer {
    key: LessSafeKey,
    random: SystemRandom,
}

impl SecretSealer {
    /// Reads the key from the data dir, generating it on first start.
    pub fn open_in(data_dir: &Path) -> anyhow::Result<SecretSealer> {
        let path = data_dir.join(KEY_FILE);
        let key = crate::auth::data_dir_key(&path)?;
        SecretSealer::new(&key)
            .ok_or_else(|| anyhow::anyhow!("{}: not a 256-bit key", path.display()))
    }

    fn new(key: &[u8]) -> Option<SecretSealer> {
        let key = UnboundKey::new(&AES_256_GCM, key).ok()?;
        Some(SecretSealer {
            key: LessSafeKey::new(key),
            random: SystemRandom::new(),
        })
    }

    /// Encrypts `secret`, bound to `account`.
    pub fn seal(&self, account: &str, secret: &[u8]) -> Result<String, SealError> {
        let mut nonce = [0u8; NONCE_LEN];
        self.random
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let mut sealed = secret.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(account.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| SealError::Random)?;
        Ok(format!(
            "{PREFIX}{}{}",
            hex::encode(nonce),
            hex::encode(sealed)
        ))
    }

    /// Decrypts what [`Self::seal`] made for `account`.
    pub fn open(&self, account: &str, stored: &str) -> Result<Vec<u8>, SealError> {
        let Some(body) = stored.strip_prefix(PREFIX) else {
            return Err(SealError::NotSealed);
        };
        let bytes = hex::decode(body).map_err(|_| SealError::Corrupt)?;
        if bytes.len() < NONCE_LEN {
            return Err(SealError::Corrupt);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Corrupt)?;
        let mut sealed = sealed.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(account.as_bytes()), &mut sealed)
            .map_err(|_| SealError::Corrupt)?;
        Ok(plain.to_vec())
    }
}

/// Whether a stored value is sealed (else it is a clear value from before encryption).
fn is_sealed(stored: &str) -> bool {
    stored.starts_with(PREFIX)
}

/// Seals the TOTP secrets (confirmed and pending) still stored in clear; returns how many
/// accounts it changed. Run at start, before any login.
pub async fn seal_clear_totp_secrets(
    store: &dyn Store,
    sealer: &SecretSealer,
) -> anyhow::Result<usize> {
    let mut changed = 0;
    for user in store.list_users(None).await? {
        let clear = |v: &Option<String>| v.as_deref().is_some_and(|s| !is_sealed(s));
        if !clear(&user.totp_secret) && !clear(&user.totp_pending) {
            continue;
        }
        let seal = |v: Option<String>| -> anyhow::Result<Option<String>> {
            match v {
                Some(s) if !is_sealed(&s) => {
                    let secret = hex::decode(&s).map_err(|e| {
                        anyhow::anyhow!("the TOTP secret of {} is not hex: {e}", user.username)
                    })?;
                    Ok(Some(sealer.seal(&user.username, &secret)?))
                }
                other => Ok(other),
            }
        };
        let pending = seal(user.totp_pending.clone())?;
        let secret = seal(user.totp_secret.clone())?;
        store.set_totp(&user.username, pending, secret).await?;
        changed += 1;
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_store::{AccountStore, NewUser, SqliteStore};
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sealed_secrets_open_only_for_their_account_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let sealer = SecretSealer::open_in(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let secret = b"12345678901234567890";
        let sealed = sealer.seal("alice", secret).unwrap();
        assert!(!sealed.contains(&hex::encode(secret)));
        assert_ne!(sealed, sealer.seal("alice", secret).unwrap(), "fresh nonce");
        // The key is kept: a restarted server opens what it sealed.
        let again = SecretSealer::open_in(dir.path()).unwrap();
        assert_eq!(again.open("alice", &sealed).unwrap(), secret);
        assert!(matches!(
            again.open("bob", &sealed),
            Err(SealError::Corrupt)
        ));
        let other = SecretSealer::open_in(tempfile::tempdir().unwrap().path()).unwrap();
        assert!(matches!(
            other.open("alice", &sealed),
            Err(SealError::Corrupt)
        ));
        assert!(matches!(
            again.open("alice", &hex::encode(secret)),
            Err(SealError::NotSealed)
        ));
    }

    #[tokio::test]
    async fn clear_secrets_are_sealed_once_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        store.create_tenant("lab", "").await.unwrap();
        for username in ["alice", "bob"] {
            store
                .create_user(NewUser {
                    username: username.into(),
                    password_hash: "x".into(),
                    tenant: "lab".into(),
                    role: "user".into(),
                    display_name: String::new(),
                    now: chrono::Utc::now(),
                })
                .await
                .unwrap();
        }
        let (secret, pending) = (b"12345678901234567890", b"abcdefghijabcdefghij");
        store
            .set_totp(
                "alice",
                Some(hex::encode(pending)),
                Some(hex::encode(secret)),
            )
            .await
            .unwrap();
        let sealer = SecretSealer::open_in(dir.path()).unwrap();
        assert_eq!(seal_clear_totp_secrets(&store, &sealer).await.unwrap(), 1);
        let alice = store.find_user("alice").await.unwrap().unwrap();
        let stored = alice.totp_secret.unwrap();
        assert!(is_sealed(&stored), "{stored}");
        assert_eq!(sealer.open("alice", &stored).unwrap(), secret);
        let stored = alice.totp_pending.unwrap();
        assert_eq!(sealer.open("alice", &stored).unwrap(), pending);
        // Nothing is left to seal.
        assert_eq!(seal_clear_totp_secrets(&store, &sealer).await.unwrap(), 0);
    }
}
