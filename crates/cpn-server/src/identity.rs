//! Tenants, users and sessions (SH-USR-10/11, SH-SEC-03).

use crate::auth::{LOGIN_TOKEN_TTL, hash_password, issue_session, verify_password};
use crate::error::{ApiError, ApiResult};
use crate::extract::Principal;
use crate::state::AppState;
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::identity::{
    CreateTenant, CreateUser, LoginRequest, LoginResponse, Role, Tenant, TenantQuota, User,
};
use cpn_store::{NewUser, TenantRecord, UserRecord};

pub fn user_view(u: UserRecord) -> ApiResult<User> {
    Ok(User {
        role: Role::parse(&u.role)
            .ok_or_else(|| ApiError::new(Code::Internal, format!("unknown role {}", u.role)))?,
        id: u.id,
        username: u.username,
        tenant: u.tenant,
        display_name: u.display_name,
        created_at: u.created_at,
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
    state: &AppState,
    who: &Principal,
    tenant: &str,
    quota: TenantQuota,
) -> ApiResult<Tenant> {
    operator_only(who, "set quotas")?;
    check_quota(&quota)?;
    Ok(tenant_view(
        state
            .store
            .set_tenant_quota(tenant, quota_json(&quota)?)
            .await?,
    ))
}

fn operator_only(who: &Principal, what: &str) -> ApiResult<()> {
    if who.is_operator() {
        Ok(())
    } else {
        Err(ApiError::forbidden(format!("only operators may {what}")))
    }
}

pub async fn login(state: &AppState, req: LoginRequest) -> ApiResult<LoginResponse> {
    // One message for unknown user and wrong password, so usernames cannot be probed.
    let denied = || ApiError::unauthenticated("wrong username or password");
    let user = state
        .store
        .find_user(&req.username)
        .await?
        .ok_or_else(denied)?;
    let hash = user.password_hash.clone();
    let password = req.password;
    // Argon2 is deliberately slow; keep it off the async workers.
    let ok = tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    if !ok {
        return Err(denied());
    }
    let (token, expires_at) = issue_session(state.store.as_ref(), &user, LOGIN_TOKEN_TTL).await?;
    Ok(LoginResponse {
        token,
        expires_at,
        user: user_view(user)?,
    })
}

pub async fn logout(state: &AppState, who: &Principal) -> ApiResult<()> {
    state.store.revoke_session(&who.token_hash).await?;
    Ok(())
}

pub async fn whoami(state: &AppState, who: &Principal) -> ApiResult<User> {
    let user = state
        .store
        .find_user(&who.username)
        .await?
        .ok_or_else(|| ApiError::unauthenticated("user no longer exists"))?;
    user_view(user)
}

pub async fn create_tenant(
    state: &AppState,
    who: &Principal,
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
        Some(q) => Ok(tenant_view(
            state
                .store
                .set_tenant_quota(&tenant.name, quota_json(&q)?)
                .await?,
        )),
        None => Ok(tenant_view(tenant)),
    }
}

pub async fn list_tenants(state: &AppState, who: &Principal) -> ApiResult<Vec<Tenant>> {
    let all = state.store.list_tenants().await?;
    Ok(all
        .into_iter()
        .filter(|t| who.is_operator() || t.name == who.tenant)
        .map(tenant_view)
        .collect())
}

pub async fn create_user(state: &AppState, who: &Principal, req: CreateUser) -> ApiResult<User> {
    operator_only(who, "create users")?;
    cpn_model::validate_name(&req.username).map_err(|e| {
        ApiError::field(
            "username",
            format!("invalid username {:?}: {e}", req.username),
        )
    })?;
    if req.password.chars().count() < 8 {
        return Err(ApiError::field("password", "must be at least 8 characters"));
    }
    if state.store.find_tenant(&req.tenant).await?.is_none() {
        return Err(ApiError::field(
            "tenant",
            format!("no tenant named {:?}; create it first", req.tenant),
        ));
    }
    let password = req.password;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| ApiError::new(Code::Internal, e.to_string()))??;
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

pub async fn list_users(state: &AppState, who: &Principal) -> ApiResult<Vec<User>> {
    let tenant = (!who.is_operator()).then_some(who.tenant.as_str());
    state
        .store
        .list_users(tenant)
        .await?
        .into_iter()
        .map(user_view)
        .collect()
}
