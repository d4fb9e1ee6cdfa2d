//! Accounts an operator controls: sessions and API keys with kinds, scopes, expiry and idle
//! expiry; disabling users; password and TOTP changes; and the append-only audit log.

use crate::{Result, UserRecord};
use async_trait::async_trait;
use chrono::{DateTime, Utc};

/// What a bearer token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionKind {
    /// From a login: expires when idle too long.
    Login,
    /// For automation: scoped, with its own expiry, never idle-expired.
    ApiKey,
    /// The operator token in `admin.token`.
    Admin,
}

impl SessionKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Login => "session",
            SessionKind::ApiKey => "api_key",
            SessionKind::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<SessionKind> {
        match s {
            "session" => Some(SessionKind::Login),
            "api_key" => Some(SessionKind::ApiKey),
            "admin" => Some(SessionKind::Admin),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct NewSession {
    /// SHA-256 of the token; the token itself is never stored.
    pub token_hash: String,
    pub user_id: String,
    pub kind: SessionKind,
    pub name: String,
    /// `None`: everything the user's role allows.
    pub scopes: Option<Vec<String>>,
    pub now: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub id: String,
    pub user_id: String,
    pub kind: SessionKind,
    pub name: String,
    pub scopes: Option<Vec<String>>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// One line of the audit log.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Position in the log; newer lines have larger numbers.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// Username, or what was typed as one for a failed login.
    pub actor: String,
    pub tenant: String,
    /// The client's address.
    pub source: String,
    /// `kind.verb`, e.g. `sites.update`, `auth.login`.
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    pub generation_before: Option<u64>,
    pub generation_after: Option<u64>,
    /// `success`, `denied`, `failure`, `locked`, `busy`, `error`.
    pub result: String,
    /// The HTTP status answered.
    pub status: u16,
    pub detail: String,
}

/// A locked account's login lockout, kept so that a restart does not lift it.
#[derive(Debug, Clone, PartialEq)]
pub struct LoginLockout {
    pub username: String,
    /// Failed logins counted when it locked (the next lockout doubles from it).
    pub failures: u32,
    pub locked_until: DateTime<Utc>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (`auth.`).
    pub action: Option<String>,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub result: Option<String>,
    pub tenant: Option<String>,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// Newest first, older than this `seq`.
    pub before: Option<u64>,
    pub limit: usize,
}

#[async_trait]
pub trait AccountStore: Send + Sync {
    async fn open_session(&self, new: NewSession) -> Result<SessionInfo>;

    /// A usable token's session and user: not revoked, not expired at `now`, user not
    /// disabled, and for login sessions used after `idle_cutoff`.
    async fn lookup_session(
        &self,
        token_hash: &str,
        now: DateTime<Utc>,
        idle_cutoff: DateTime<Utc>,
    ) -> Result<Option<(SessionInfo, UserRecord)>>;

    /// Records that a token was used (callers throttle this; it is a write).
    async fn touch_session(&self, token_hash: &str, now: DateTime<Utc>) -> Result<()>;

    /// A user's unrevoked, unexpired sessions of one kind, oldest first.
    async fn list_sessions(
        &self,
        user_id: &str,
        kind: SessionKind,
        now: DateTime<Utc>,
    ) -> Result<Vec<SessionInfo>>;

    /// Revokes one session by id, when it belongs to `user_id`; false when there is none.
    async fn revoke_session_id(&self, user_id: &str, id: &str) -> Result<bool>;

    /// Revokes every session of a user, or only those of one kind; returns how many.
    async fn revoke_user_sessions(&self, user_id: &str, kind: Option<SessionKind>) -> Result<u64>;

    async fn set_user_disabled(&self, username: &str, disabled: bool) -> Result<UserRecord>;

    async fn set_password_hash(&self, username: &str, password_hash: &str) -> Result<UserRecord>;

    /// Sets both TOTP columns (pending enrolment and confirmed secret).
    async fn set_totp(
        &self,
        username: &str,
        pending: Option<String>,
        secret: Option<String>,
    ) -> Result<UserRecord>;

    /// Records an account's lockout (replacing the one kept, unless that one lasts longer).
    /// A username no user has is not kept: unknown names cost no row.
    async fn save_login_lockout(&self, lockout: LoginLockout) -> Result<()>;

    /// Forgets an account's lockout (a successful login).
    async fn clear_login_lockout(&self, username: &str) -> Result<()>;

    /// The lockouts still in force at `now`; the ended ones are deleted.
    async fn login_lockouts(&self, now: DateTime<Utc>) -> Result<Vec<LoginLockout>>;

    /// Appends one line; the log has no update or delete (the database refuses them).
    async fn append_audit(&self, entry: AuditRecord) -> Result<()>;

    /// The operator's retention: deletes the oldest lines older than `before`, at most
    /// `limit` of them, and appends `record` (its detail followed by the count) in the same
    /// transaction, so no line goes without one saying so. Returns how many went; with none,
    /// nothing is written. The only delete the database lets through.
    async fn prune_audit(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        record: AuditRecord,
    ) -> Result<u64>;

    async fn list_audit(&self, query: AuditQuery) -> Result<Vec<AuditRecord>>;
}
