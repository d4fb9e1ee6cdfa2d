//! Tenants, users, roles and sessions (SH-USR, SH-SEC-03).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the platform: sees and changes everything.
    Operator,
    /// Offers compute: registers sites and resources, changes only what it owns.
    Supplier,
    /// Uses compute: reads what is public or in its own tenant.
    User,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Supplier => "supplier",
            Role::User => "user",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "operator" => Some(Role::Operator),
            "supplier" => Some(Role::Supplier),
            "user" => Some(Role::User),
            _ => None,
        }
    }
}

/// A tenant's ceiling on what its scheduled work may hold at once; absent fields are unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TenantQuota {
    /// GPUs (fractions count: 0.5 is half a GPU).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_cores: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_gib: Option<f64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Tenant {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    #[serde(default)]
    pub quota: TenantQuota,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    pub name: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub quota: Option<TenantQuota>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct User {
    pub id: String,
    pub username: String,
    /// Tenant name.
    pub tenant: String,
    pub role: Role,
    #[serde(default)]
    pub display_name: String,
    pub created_at: DateTime<Utc>,
    /// A disabled user cannot log in and its tokens do not work.
    #[serde(default)]
    pub disabled: bool,
    /// Login needs a TOTP code.
    #[serde(default)]
    pub mfa_enabled: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    pub username: String,
    /// At least 10 characters and not guessable (zxcvbn score 3 or more).
    pub password: String,
    /// Tenant name; it must exist.
    pub tenant: String,
    pub role: Role,
    #[serde(default)]
    pub display_name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
    /// The current 6-digit TOTP code, for users who enrolled MFA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginResponse {
    /// Opaque bearer token: send it as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: User,
}

/// Change one's own password: the old one proves it is you.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    pub old_password: String,
    pub new_password: String,
}

/// An operator sets a new password for a user; all of the user's tokens are revoked.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetPassword {
    pub new_password: String,
}

/// How many tokens a revocation ended.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Revoked {
    pub revoked: u64,
}

/// What an API key may do. The key never does more than its user's role allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum Scope {
    /// GET requests of the API.
    #[serde(rename = "read")]
    Read,
    /// Every request of the API (implies `read`).
    #[serde(rename = "write")]
    Write,
    /// `GET /metrics` only (operators may create such keys, e.g. for Prometheus).
    #[serde(rename = "metrics:read")]
    MetricsRead,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::MetricsRead => "metrics:read",
        }
    }

    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "metrics:read" => Some(Scope::MetricsRead),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    pub name: String,
    /// At least one.
    pub scopes: Vec<Scope>,
    /// Default: 90 days from now; at most 365 days.
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    #[serde(default)]
    pub last_used_at: Option<DateTime<Utc>>,
}

/// A new API key; the token is shown only here, only its hash is stored.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedApiKey {
    pub token: String,
    pub key: ApiKey,
}

/// A TOTP secret to load into an authenticator app; confirm it with a code to turn MFA on.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MfaEnrollment {
    /// Base32, as authenticator apps take it.
    pub secret: String,
    /// `otpauth://totp/...`, for a QR code.
    pub otpauth_uri: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MfaCode {
    /// The 6-digit code the authenticator shows now.
    pub code: String,
}

/// The operator token was replaced; the old one no longer works.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AdminTokenRotated {
    /// The file the new token was written to (mode 0600), on the server's machine.
    pub path: String,
    pub expires_at: DateTime<Utc>,
}

/// One line of the audit log: who did what to which object, from where, with what result.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    /// Position in the log (newer is larger); pass it as `cursor` to page back.
    pub seq: u64,
    pub at: DateTime<Utc>,
    /// Username; for a failed login, what was typed as one.
    pub actor: String,
    pub tenant: String,
    /// The client's address.
    pub source: String,
    /// `kind.verb`, e.g. `sites.create`, `users.disable`, `auth.login`.
    pub action: String,
    pub object_kind: String,
    pub object_id: String,
    #[serde(default)]
    pub generation_before: Option<u64>,
    #[serde(default)]
    pub generation_after: Option<u64>,
    /// `success`, `denied` (401/403), `rejected` (other 4xx), `error` (5xx), and for logins
    /// `failure`, `locked` (lockout) or `busy` (hashing pool full).
    pub result: String,
    pub status: u16,
    #[serde(default)]
    pub detail: String,
}
