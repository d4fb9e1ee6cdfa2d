//! Tenants, users and sessions (SH-USR-10/11, SH-SEC-03).

use crate::auth::{
    API_KEY_DEFAULT_TTL, API_KEY_MAX_TTL, LOGIN_TOKEN_TTL, check_password_policy, decoy_hash,
    hash_password, issue_token, verify_password,
};
use crate::caller::SignedIn;
use crate::error::{ApiError, ApiResult};
use crate::state::Control;
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::identity::{
    ApiKey, ChangePassword, CreateApiKey, CreateTenant, CreateUser, CreatedApiKey, LoginRequest,
    LoginResponse, MfaEnrollment, ResetPassword, Revoked, Role, Scope, Tenant, TenantQuota, User,
};
use cpn_store::{NewUser, SessionInfo, SessionKind, TenantRecord, UserRecord};

pub fn user_view(u: UserRecord) -> ApiResult<User> {
    Ok(User {
        role: Role::parse(&u.role)
            .ok_or_else(|| ApiError::new(Code::Internal, format!("unknown role {}", u.role)))?,
        id: u.id,
        username: u.username,
        tenant: u.tenant,
        display_name: u.display_name,
        created_at: u.created_at,
        disabled: u.disabled,
        mfa_enabled: u.totp_secret.is_some(),
    })
}

fn tenant_view(t: TenantRecord) -> Tenant {
    Tenant {
        // A quota that does not decode (written by a newer cpn) shows as unlimited.
        quota: serde_json::from_value(t.quota).unwrap_or_default(),
        id: t.id,
        name: t.name,
        display_name: t.display_name,
        created_at: t.created_at,
    }
}

fn check_quota(q: &TenantQuota) -> ApiResult<()> {
    for (name, v) in [
        ("gpus", q.gpus),
        ("cpu_cores", q.cpu_cores),
        ("memory_gib", q.memory_gib),
    ] {
        if let Some(x) = v
            && !(x.is_finite() && x >= 0.0)
        {
            return Err(ApiError::field(
                format!("quota.{name}"),
                "must be a finite number >= 0",
            ));
        }
    }
    Ok(())
}

fn quota_json(q: &TenantQuota) -> ApiResult<serde_json::Value> {
    serde_json::to_value(q).map_err(|e| ApiError::new(Code::Internal, e.to_string()))
}

/// Sets a tenant's quota (operators): it bounds what the tenant's decisions may hold.
pub async fn set_quota(
    state: &Control,
    who: &SignedIn,
    tenant: &str,
    quota: TenantQuota,
) -> ApiResult<Tenant> {
    operator_only(who, "set quotas")?;
    check_quota(&quota)?;
    let t = state
        .store
        .set_tenant_quota(tenant, quota_json(&quota)?)
        .await?;
    state.runtime.federation.registry_changed();
    Ok(tenant_view(t))
}

fn operator_only(who: &SignedIn, what: &str) -> ApiResult<()> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("only operators may {what}")))
    }
}

/// A refused login: an API error, or a 429 that says when to retry.
pub enum LoginRefused {
    Api(ApiError),
    Throttled { message: String, retry_after: u64 },
}

impl From<ApiError> for LoginRefused {
    fn from(e: ApiError) -> Self {
        LoginRefused::Api(e)
    }
}

impl From<cpn_store::StoreError> for LoginRefused {
    fn from(e: cpn_store::StoreError) -> Self {
        LoginRefused::Api(e.into())
    }
}

/// What the hashing thread found.
enum Checked {
    /// The account or address got locked while the request waited for a thread.
    Locked(std::time::Duration),
    /// Whether the password matched, and the user if there is one.
    Verified(bool, Option<UserRecord>),
}

/// Password login: throttled per account and address, hashed on the bounded pool, TOTP when
/// enrolled, every attempt audited.
pub async fn login(
    state: &Control,
    source: &str,
    req: LoginRequest,
) -> Result<LoginResponse, LoginRefused> {
    let outcome = try_login(state, source, &req).await;
    let (result, status, detail, tenant) = match &outcome {
        Ok(r) => ("success", 200, String::new(), r.user.tenant.clone()),
        Err(LoginRefused::Throttled { message, .. }) => {
            let result = if message.contains("locked") {
                "locked"
            } else {
                "busy"
            };
            (
                result,
                Code::TooManyRequests.http_status(),
                message.clone(),
                String::new(),
            )
        }
        Err(LoginRefused::Api(e)) => (
            if e.code == Code::Internal {
                "error"
            } else {
                "failure"
            },
            e.code.http_status(),
            e.message.clone(),
            String::new(),
        ),
    };
    crate::audit::record_login(
        state,
        &req.username,
        &tenant,
        source,
        result,
        status,
        &detail,
    )
    .await;
    outcome
}

fn locked(d: std::time::Duration) -> LoginRefused {
    let secs = d.as_secs_f64().ceil() as u64;
    LoginRefused::Throttled {
        message: format!(
            "too many failed logins: this account or address is locked for {secs} s more; even the right password is refused until then"
        ),
        retry_after: secs,
    }
}

async fn try_login(
    state: &Control,
    source: &str,
    req: &LoginRequest,
) -> Result<LoginResponse, LoginRefused> {
    // One message for unknown user and wrong password, so usernames cannot be probed.
    let denied = || ApiError::unauthenticated("wrong username or password");
    let throttle = state.accounts.throttle.clone();
    if let Some(d) = throttle.locked(&req.username, source) {
        return Err(locked(d));
    }
    let busy = |crate::auth::Busy| LoginRefused::Throttled {
        message: "the server is busy checking passwords; retry in a second".into(),
        retry_after: 1,
    };
    // Admission first: a flood beyond the queue costs no store read and no hash. The user is
    // read on the hashing thread too, so at most one read per thread runs at once (each
    // concurrent read beyond the store's pool would open a connection of its own).
    let admission = state.accounts.hashing.admit().map_err(busy)?;
    let (store, runtime) = (state.store.clone(), tokio::runtime::Handle::current());
    let (password, username, address) = (
        req.password.clone(),
        req.username.clone(),
        source.to_string(),
    );
    let checked = admission
        .run(move || {
            // Guesses queued before the lockout began are not verified either.
            if let Some(d) = throttle.locked(&username, &address) {
                return Ok(Checked::Locked(d));
            }
            let user = runtime.block_on(store.find_user(&username))?;
            let hash = user
                .as_ref()
                .map_or_else(|| decoy_hash(), |u| u.password_hash.as_str());
            let ok = verify_password(&password, hash);
            Ok::<_, cpn_store::StoreError>(Checked::Verified(ok, user))
        })
        .await
        .map_err(busy)??;
    let user = match checked {
        Checked::Locked(d) => return Err(locked(d)),
        Checked::Verified(true, Some(user)) => user,
        Checked::Verified(..) => {
            state.accounts.throttle.failure(&req.username, source);
            return Err(denied().into());
        }
    };
    if user.disabled {
        // A self-registered account still waiting for activation or review: say what to do.
        if let Some(refusal) = crate::market_accounts::login_refusal(state, &user.username).await? {
            return Err(refusal.into());
        }
        return Err(ApiError::unauthenticated(format!(
            "user {} is disabled; an operator can enable it (cpn user enable {})",
            user.username, user.username
        ))
        .into());
    }
    match (&user.totp_secret, &req.totp) {
        (Some(secret), Some(code)) => {
            let secret = open_totp_secret(state, &user.username, secret)?;
            let step = crate::totp::matching_step(&secret, code, Utc::now().timestamp());
            let fresh = step.is_some_and(|s| state.accounts.totp_used.claim(&user.username, s));
            if !fresh {
                state.accounts.throttle.failure(&req.username, source);
                return Err(ApiError {
                    code: Code::MfaRequired,
                    message: "wrong, expired or already used TOTP code; wait for the next one"
                        .into(),
                    field: Some("totp".into()),
                }
                .into());
            }
        }
        (Some(_), None) => {
            return Err(ApiError {
                code: Code::MfaRequired,
                message: "this account has MFA: send the current 6-digit code as `totp` (cpn login --totp CODE)".into(),
                field: Some("totp".into()),
            }
            .into());
        }
        (None, _) => {
            if state.accounts.config.require_mfa_for_operators && user.role == "operator" {
                return Err(ApiError::forbidden(format!(
                    "operators must use MFA on this server: enrol first with the operator token (CPN_TOKEN=$(cat admin.token) cpn mfa enroll --user {})",
                    user.username
                ))
                .into());
            }
        }
    }
    state.accounts.throttle.success(&req.username);
    let (token, session) = issue_token(
        state.store.as_ref(),
        &user,
        SessionKind::Login,
        "login",
        None,
        Utc::now() + LOGIN_TOKEN_TTL,
    )
    .await?;
    Ok(LoginResponse {
        token,
        expires_at: session.expires_at,
        user: user_view(user)?,
    })
}

pub async fn logout(state: &Control, who: &SignedIn) -> ApiResult<()> {
    state.store.revoke_session(&who.token_hash).await?;
    Ok(())
}

pub async fn whoami(state: &Control, who: &SignedIn) -> ApiResult<User> {
    let user = state
        .store
        .find_user(&who.username)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("user no longer exists"))?;
    user_view(user)
}

pub async fn create_tenant(
    state: &Control,
    who: &SignedIn,
    req: CreateTenant,
) -> ApiResult<Tenant> {
    operator_only(who, "create tenants")?;
    crate::registry::validate_name(&req.name)?;
    if let Some(q) = &req.quota {
        check_quota(q)?;
    }
    let tenant = state
        .store
        .create_tenant(&req.name, &req.display_name)
        .await?;
    match req.quota {
        Some(q) => {
            let t = state
                .store
                .set_tenant_quota(&tenant.name, quota_json(&q)?)
                .await?;
            state.runtime.federation.registry_changed();
            Ok(tenant_view(t))
        }
        None => Ok(tenant_view(tenant)),
    }
}

pub async fn list_tenants(state: &Control, who: &SignedIn) -> ApiResult<Vec<Tenant>> {
    let all = state.store.list_tenants().await?;
    Ok(all
        .into_iter()
        .filter(|t| who.is_operator() || t.name == who.tenant)
        .map(tenant_view)
        .collect())
}

pub async fn create_user(state: &Control, who: &SignedIn, req: CreateUser) -> ApiResult<User> {
    operator_only(who, "create users")?;
    cpn_model::validate_name(&req.username).map_err(|e| {
        ApiError::field(
            "username",
            format!("invalid username {:?}: {e}", req.username),
        )
    })?;
    check_password_policy(
        "password",
        &req.password,
        &[&req.username, &req.display_name],
    )?;
    if state.store.find_tenant(&req.tenant).await?.is_none() {
        return Err(ApiError::field(
            "tenant",
            format!("no tenant named {:?}; create it first", req.tenant),
        ));
    }
    let password = req.password;
    let hash = state
        .accounts
        .hashing
        .run_api(move || hash_password(&password))
        .await??;
    let user = state
        .store
        .create_user(NewUser {
            username: req.username,
            password_hash: hash,
            tenant: req.tenant,
            role: req.role.as_str().to_string(),
            display_name: req.display_name,
            now: Utc::now(),
        })
        .await?;
    user_view(user)
}

pub async fn list_users(state: &Control, who: &SignedIn) -> ApiResult<Vec<User>> {
    let tenant = (!who.is_operator()).then_some(who.tenant.as_str());
    state
        .store
        .list_users(tenant)
        .await?
        .into_iter()
        .map(user_view)
        .collect()
}

/// The session behind the caller's token.
async fn session_of(state: &Control, who: &SignedIn) -> ApiResult<SessionInfo> {
    let now = Utc::now();
    state
        .store
        .lookup_session(&who.token_hash, now, now - chrono::Duration::days(36500))
        .await?
        .map(|(s, _)| s)
        .ok_or_else(|| ApiError::unauthenticated("token is no longer valid"))
}

/// API keys cannot manage accounts: a leaked automation key must not mint more keys or
/// change passwords.
async fn not_with_api_key(state: &Control, who: &SignedIn, what: &str) -> ApiResult<()> {
    if session_of(state, who).await?.kind == SessionKind::ApiKey {
        return Err(ApiError::forbidden(format!(
            "API keys may not {what}; log in with a password"
        )));
    }
    Ok(())
}

async fn user_named(state: &Control, username: &str) -> ApiResult<UserRecord> {
    state
        .store
        .find_user(username)
        .await?
        .ok_or_else(|| ApiError::not_found("user", username))
}

/// Disable (or enable) a user (operators). Disabling revokes every token of the user; the
/// store also refuses a disabled user's tokens, so none works from this moment.
pub async fn set_disabled(
    state: &Control,
    who: &SignedIn,
    username: &str,
    disabled: bool,
) -> ApiResult<User> {
    operator_only(
        who,
        if disabled {
            "disable users"
        } else {
            "enable users"
        },
    )?;
    if disabled && username == who.username {
        return Err(ApiError::new(
            Code::InvalidState,
            "you cannot disable yourself; ask another operator",
        ));
    }
    let user = state.store.set_user_disabled(username, disabled).await?;
    if disabled {
        state.store.revoke_user_sessions(&user.id, None).await?;
    }
    user_view(user)
}

/// Revoke every login session and API key of a user (operators, or the user itself).
pub async fn revoke_sessions(
    state: &Control,
    who: &SignedIn,
    username: &str,
) -> ApiResult<Revoked> {
    if username != who.username {
        operator_only(who, "revoke other users' sessions")?;
    }
    let user = user_named(state, username).await?;
    let revoked = state.store.revoke_user_sessions(&user.id, None).await?;
    Ok(Revoked { revoked })
}

/// Change one's own password; the other login sessions of the user end.
pub async fn change_password(
    state: &Control,
    who: &SignedIn,
    req: ChangePassword,
) -> ApiResult<User> {
    not_with_api_key(state, who, "change passwords").await?;
    let user = user_named(state, &who.username).await?;
    check_password_policy(
        "new_password",
        &req.new_password,
        &[&user.username, &user.display_name],
    )?;
    let (old, stored, new) = (
        req.old_password,
        user.password_hash.clone(),
        req.new_password,
    );
    let hash = state
        .accounts
        .hashing
        .run_api(move || verify_password(&old, &stored).then(|| hash_password(&new)))
        .await?
        .ok_or_else(|| ApiError::field("old_password", "is not the current password"))??;
    let user = state.store.set_password_hash(&user.username, &hash).await?;
    let current = session_of(state, who).await?;
    for s in state
        .store
        .list_sessions(&user.id, SessionKind::Login, Utc::now())
        .await?
    {
        if s.id != current.id {
            state.store.revoke_session_id(&user.id, &s.id).await?;
        }
    }
    user_view(user)
}

/// An operator sets a new password for a user; every token of the user is revoked.
pub async fn reset_password(
    state: &Control,
    who: &SignedIn,
    username: &str,
    req: ResetPassword,
) -> ApiResult<User> {
    operator_only(who, "reset passwords")?;
    let user = user_named(state, username).await?;
    check_password_policy(
        "new_password",
        &req.new_password,
        &[&user.username, &user.display_name],
    )?;
    let new = req.new_password;
    let hash = state
        .accounts
        .hashing
        .run_api(move || hash_password(&new))
        .await??;
    let user = state.store.set_password_hash(username, &hash).await?;
    state.store.revoke_user_sessions(&user.id, None).await?;
    user_view(user)
}

fn key_view(s: SessionInfo) -> ApiKey {
    ApiKey {
        id: s.id,
        name: s.name,
        scopes: s
            .scopes
            .unwrap_or_default()
            .iter()
            .filter_map(|s| Scope::parse(s))
            .collect(),
        created_at: s.created_at,
        expires_at: s.expires_at,
        last_used_at: s.last_used_at,
    }
}

/// Create an API key for oneself, with scopes and an expiry; the token is shown once.
pub async fn create_api_key(
    state: &Control,
    who: &SignedIn,
    req: CreateApiKey,
) -> ApiResult<CreatedApiKey> {
    not_with_api_key(state, who, "create API keys").await?;
    if req.name.trim().is_empty() || req.name.len() > 100 {
        return Err(ApiError::field("name", "must be 1 to 100 characters"));
    }
    if req.scopes.is_empty() {
        return Err(ApiError::field(
            "scopes",
            "name at least one of read, write, metrics:read",
        ));
    }
    if req.scopes.contains(&Scope::MetricsRead) && !who.is_operator() {
        return Err(ApiError::forbidden(
            "only operators may create keys with the metrics:read scope",
        ));
    }
    let now = Utc::now();
    let expires_at = req.expires_at.unwrap_or(now + API_KEY_DEFAULT_TTL);
    if expires_at <= now || expires_at > now + API_KEY_MAX_TTL {
        return Err(ApiError::field(
            "expires_at",
            "must be in the future and at most 365 days away",
        ));
    }
    let user = user_named(state, &who.username).await?;
    let mut scopes: Vec<String> = req.scopes.iter().map(|s| s.as_str().to_string()).collect();
    scopes.sort();
    scopes.dedup();
    let (token, info) = issue_token(
        state.store.as_ref(),
        &user,
        SessionKind::ApiKey,
        req.name.trim(),
        Some(scopes),
        expires_at,
    )
    .await?;
    Ok(CreatedApiKey {
        token,
        key: key_view(info),
    })
}

/// The caller's live API keys.
pub async fn list_api_keys(state: &Control, who: &SignedIn) -> ApiResult<Vec<ApiKey>> {
    Ok(state
        .store
        .list_sessions(&who.user_id, SessionKind::ApiKey, Utc::now())
        .await?
        .into_iter()
        .map(key_view)
        .collect())
}

/// Revoke one of the caller's API keys.
pub async fn revoke_api_key(state: &Control, who: &SignedIn, id: &str) -> ApiResult<()> {
    let keys = state
        .store
        .list_sessions(&who.user_id, SessionKind::ApiKey, Utc::now())
        .await?;
    if !keys.iter().any(|k| k.id == id) || !state.store.revoke_session_id(&who.user_id, id).await? {
        return Err(ApiError::not_found("api key", id));
    }
    Ok(())
}

/// Start TOTP enrolment for oneself, or (operators) for another user: a new secret waits
/// for a code from the authenticator.
pub async fn mfa_enroll(
    state: &Control,
    who: &SignedIn,
    username: Option<&str>,
) -> ApiResult<MfaEnrollment> {
    not_with_api_key(state, who, "change MFA").await?;
    let username = username.unwrap_or(&who.username);
    if username != who.username {
        operator_only(who, "enrol MFA for other users")?;
    }
    let user = user_named(state, username).await?;
    let secret = crate::totp::new_secret();
    state
        .store
        .set_totp(
            username,
            Some(seal_totp_secret(state, username, &secret)?),
            user.totp_secret.clone(),
        )
        .await?;
    Ok(MfaEnrollment {
        secret: crate::totp::base32(&secret),
        otpauth_uri: crate::totp::otpauth_uri("cpn", username, &secret),
    })
}

/// Confirm the pending TOTP secret with a current code; from then on login needs a code.
pub async fn mfa_confirm(
    state: &Control,
    who: &SignedIn,
    username: Option<&str>,
    code: &str,
) -> ApiResult<User> {
    not_with_api_key(state, who, "change MFA").await?;
    let username = username.unwrap_or(&who.username);
    if username != who.username {
        operator_only(who, "confirm MFA for other users")?;
    }
    let user = user_named(state, username).await?;
    let pending = user.totp_pending.clone().ok_or_else(|| {
        ApiError::new(
            Code::InvalidState,
            "no MFA enrolment is pending; start one with POST /api/v1/auth/mfa/enroll",
        )
    })?;
    let secret = open_totp_secret(state, username, &pending)?;
    if !crate::totp::verify(&secret, code, Utc::now().timestamp()) {
        return Err(ApiError::field("code", "wrong or expired code"));
    }
    user_view(state.store.set_totp(username, None, Some(pending)).await?)
}

/// A TOTP secret as the store keeps it: sealed ([`crate::sealed_secrets`]).
fn seal_totp_secret(state: &Control, username: &str, secret: &[u8]) -> ApiResult<String> {
    state
        .accounts
        .sealer
        .seal(username, secret)
        .map_err(|e| ApiError::new(Code::Internal, format!("sealing the TOTP secret: {e}")))
}

fn open_totp_secret(state: &Control, username: &str, stored: &str) -> ApiResult<Vec<u8>> {
    state
        .accounts
        .sealer
        .open(username, stored)
        .map_err(|e| ApiError::new(Code::Internal, format!("stored TOTP secret: {e}")))
}

/// Turn MFA off for a user (operators): for a lost authenticator.
pub async fn mfa_disable(state: &Control, who: &SignedIn, username: &str) -> ApiResult<User> {
    operator_only(who, "turn MFA off")?;
    user_view(state.store.set_totp(username, None, None).await?)
}
