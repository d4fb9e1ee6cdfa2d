//! Passwords, tokens and the first-start bootstrap of the operator account.

use crate::error::{ApiError, ApiResult};
use crate::extract::hash_token;
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use chrono::{DateTime, Duration, Utc};
use cpn_api_types::Code;
use cpn_store::{NewUser, SessionRecord, Store, UserRecord};
use std::path::Path;

/// Tokens from `POST /auth/login` live this long.
pub const LOGIN_TOKEN_TTL: Duration = Duration::hours(12);
/// The operator token written at first start is meant for the CLI on the same machine.
pub const ADMIN_TOKEN_TTL: Duration = Duration::days(365);

pub const SYSTEM_TENANT: &str = "system";
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_TOKEN_FILE: &str = "admin.token";
pub const ADMIN_PASSWORD_FILE: &str = "admin.password";

pub fn hash_password(password: &str) -> ApiResult<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::new(Code::Internal, format!("hash password: {e}")))
}

pub fn verify_password(password: &str, phc: &str) -> bool {
    PasswordHash::new(phc)
        .map(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        })
        .unwrap_or(false)
}

/// 256 random bits, hex: unguessable, and only its hash is stored.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    format!("cpn_{}", hex::encode(bytes))
}

pub async fn issue_session(
    store: &dyn Store,
    user: &UserRecord,
    ttl: Duration,
) -> ApiResult<(String, DateTime<Utc>)> {
    let token = new_token();
    let now = Utc::now();
    let expires_at = now + ttl;
    store
        .create_session(SessionRecord {
            token_hash: hash_token(&token),
            user_id: user.id.clone(),
            created_at: now,
            expires_at,
        })
        .await?;
    Ok((token, expires_at))
}

/// Writes a secret readable only by the owner (mode 0600).
fn write_secret(path: &Path, contents: &str) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()?;
    Ok(())
}

/// On a new data dir: creates the `system` tenant and the `admin` operator, and writes its
/// password and a long-lived token next to the store. Returns true when it did so.
pub async fn bootstrap(store: &dyn Store, data_dir: &Path) -> anyhow::Result<bool> {
    if store.find_user(ADMIN_USER).await?.is_some() {
        return Ok(false);
    }
    if store.find_tenant(SYSTEM_TENANT).await?.is_none() {
        store
            .create_tenant(SYSTEM_TENANT, "Platform operator")
            .await?;
    }
    let password = new_token();
    let user = store
        .create_user(NewUser {
            username: ADMIN_USER.into(),
            password_hash: hash_password(&password).map_err(|e| anyhow::anyhow!(e.to_string()))?,
            tenant: SYSTEM_TENANT.into(),
            role: "operator".into(),
            display_name: "Administrator".into(),
            now: Utc::now(),
        })
        .await?;
    let (token, _) = issue_session(store, &user, ADMIN_TOKEN_TTL)
        .await
        .map_err(|e| anyhow::anyhow!(e.to_string()))?;
    write_secret(&data_dir.join(ADMIN_PASSWORD_FILE), &password)?;
    write_secret(&data_dir.join(ADMIN_TOKEN_FILE), &token)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_round_trip() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("wrong", &h));
        assert!(!verify_password("x", "not a hash"));
    }

    #[test]
    fn tokens_are_distinct() {
        assert_ne!(new_token(), new_token());
        assert_eq!(new_token().len(), 4 + 64);
    }
}
