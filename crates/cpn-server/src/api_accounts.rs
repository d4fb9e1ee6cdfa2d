//! HTTP surface of account control (issue #12): passwords, disabling users, revoking
//! sessions, API keys, TOTP MFA, the operator token, and the audit log.

use crate::error::ApiError;
use crate::extract::{JsonBody, Principal, QueryMap};
use crate::response::ApiResult;
use crate::state::AppState;
use crate::{audit, auth, identity};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use cpn_api_types::identity::*;
use cpn_api_types::{ErrorBody, Page};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Change one's own password (needs the old one); one's other login sessions end.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "identity", security(("bearer" = [])), request_body = ChangePassword,
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn change_password(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<ChangePassword>,
) -> ApiResult<Json<User>> {
    Ok(Json(identity::change_password(&s, &who, body).await?))
}

/// Disable a user (operators): it cannot log in, and its sessions and API keys stop working
/// at once (they are revoked).
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", tag = "identity", security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn disable_user(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(identity::set_disabled(&s, &who, &name, true).await?))
}

/// Enable a disabled user again (operators); it logs in anew.
#[utoipa::path(post, path = "/api/v1/users/{name}/enable", tag = "identity", security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn enable_user(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(identity::set_disabled(&s, &who, &name, false).await?))
}

/// Set a new password for a user (operators); every token of the user is revoked.
#[utoipa::path(post, path = "/api/v1/users/{name}/reset-password", tag = "identity", security(("bearer" = [])),
    request_body = ResetPassword, params(("name" = String, Path, description = "Username")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn reset_password(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<ResetPassword>,
) -> ApiResult<Json<User>> {
    Ok(Json(identity::reset_password(&s, &who, &name, body).await?))
}

/// Revoke every login session and API key of a user (operators, or the user itself).
#[utoipa::path(post, path = "/api/v1/users/{name}/revoke-sessions", tag = "identity", security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    responses((status = 200, body = Revoked), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_sessions(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<Revoked>> {
    Ok(Json(identity::revoke_sessions(&s, &who, &name).await?))
}

/// Turn a user's MFA off (operators), e.g. after a lost authenticator.
#[utoipa::path(post, path = "/api/v1/users/{name}/mfa/disable", tag = "identity", security(("bearer" = [])),
    params(("name" = String, Path, description = "Username")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn mfa_disable(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
) -> ApiResult<Json<User>> {
    Ok(Json(identity::mfa_disable(&s, &who, &name).await?))
}

/// Start TOTP enrolment for oneself (`?user=NAME`: for another user, operators): returns
/// the secret and an otpauth URI; confirm with a code to turn MFA on.
#[utoipa::path(post, path = "/api/v1/auth/mfa/enroll", tag = "identity", security(("bearer" = [])),
    params(("user" = Option<String>, Query, description = "Another user (operators)")),
    responses((status = 200, body = MfaEnrollment), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
pub(crate) async fn mfa_enroll(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<MfaEnrollment>> {
    let user = q.take("user");
    q.finish()?;
    Ok(Json(identity::mfa_enroll(&s, &who, user.as_deref()).await?))
}

/// Confirm the pending TOTP secret with the current code; login then needs a code.
#[utoipa::path(post, path = "/api/v1/auth/mfa/confirm", tag = "identity", security(("bearer" = [])), request_body = MfaCode,
    params(("user" = Option<String>, Query, description = "Another user (operators)")),
    responses((status = 200, body = User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn mfa_confirm(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
    JsonBody(body): JsonBody<MfaCode>,
) -> ApiResult<Json<User>> {
    let user = q.take("user");
    q.finish()?;
    Ok(Json(
        identity::mfa_confirm(&s, &who, user.as_deref(), &body.code).await?,
    ))
}

/// Create an API key for automation: scopes (`read`, `write`, `metrics:read`) and an
/// expiry. The token is in this answer only.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "identity", security(("bearer" = [])), request_body = CreateApiKey,
    responses((status = 201, body = CreatedApiKey), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
pub(crate) async fn create_api_key(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<CreateApiKey>,
) -> ApiResult<(StatusCode, Json<CreatedApiKey>)> {
    Ok((
        StatusCode::CREATED,
        Json(identity::create_api_key(&s, &who, body).await?),
    ))
}

/// The caller's live API keys (never their tokens).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = [ApiKey]), (status = 401, body = ErrorBody)))]
pub(crate) async fn list_api_keys(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<ApiKey>>> {
    Ok(Json(identity::list_api_keys(&s, &who).await?))
}

/// Revoke one of the caller's API keys.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "identity", security(("bearer" = [])),
    params(("id" = String, Path, description = "Key id")),
    responses((status = 204), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn revoke_api_key(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    identity::revoke_api_key(&s, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace the operator token (operators): a new one is written to `admin.token` (0600) on
/// the server's machine and every earlier one stops working.
#[utoipa::path(post, path = "/api/v1/auth/rotate-admin-token", tag = "identity", security(("bearer" = [])),
    responses((status = 200, body = AdminTokenRotated), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn rotate_admin_token(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<AdminTokenRotated>> {
    if !who.is_operator() {
        return Err(ApiError::forbidden("only operators may rotate the operator token").into());
    }
    let expires_at = auth::rotate_admin_token(s.store.as_ref(), &s.data_dir).await?;
    Ok(Json(AdminTokenRotated {
        path: s
            .data_dir
            .join(auth::ADMIN_TOKEN_FILE)
            .display()
            .to_string(),
        expires_at,
    }))
}

/// The audit log (operators), newest first: every mutating request and every login.
#[utoipa::path(get, path = "/api/v1/audit", tag = "identity", security(("bearer" = [])),
    params(
        ("actor" = Option<String>, Query, description = "Username (for failed logins: as typed)"),
        ("action" = Option<String>, Query, description = "Exact action (`sites.update`) or a prefix ending in `.` (`auth.`)"),
        ("kind" = Option<String>, Query, description = "Object kind, e.g. `sites`, `users`"),
        ("object" = Option<String>, Query, description = "Object id or name as in the request path"),
        ("result" = Option<String>, Query, description = "success, denied, rejected, error, failure, locked, busy"),
        ("tenant" = Option<String>, Query, description = "Actor's tenant"),
        ("since" = Option<String>, Query, description = "RFC 3339; at or after"),
        ("until" = Option<String>, Query, description = "RFC 3339; before"),
        ("limit" = Option<usize>, Query, description = "Page size, 1..=1000, default 100"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    responses((status = 200, body = Page<AuditEntry>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(crate) async fn list_audit(
    State(s): State<AppState>,
    who: Principal,
    q: QueryMap,
) -> ApiResult<Json<Page<AuditEntry>>> {
    Ok(Json(audit::list(&s, &who, crate::query::audit(q)?).await?))
}

/// The module's endpoints: each handler's `#[utoipa::path]` is the one declaration of its
/// method and path, for the router and the OpenAPI document alike. One `routes!` per path.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(change_password))
        .routes(routes!(mfa_enroll))
        .routes(routes!(mfa_confirm))
        .routes(routes!(rotate_admin_token))
        .routes(routes!(disable_user))
        .routes(routes!(enable_user))
        .routes(routes!(reset_password))
        .routes(routes!(revoke_sessions))
        .routes(routes!(mfa_disable))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
        .routes(routes!(list_audit))
}
