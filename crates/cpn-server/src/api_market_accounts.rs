//! HTTP surface of the marketplace's self-service accounts (issue #14; Ius and Icpcss):
//! registration, activation and codes without a token (throttled per address), the caller's
//! own account, and the operators' review queue. The service is `market_accounts`.

use crate::error::ApiError;
use crate::extract::{ClientAddr, JsonBody, Principal, QueryMap};
use crate::market_accounts as svc;
use crate::response::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cpn_api_types::ErrorBody;
use cpn_api_types::market_accounts::*;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The registration agreement and privacy policy, and the version to accept.
#[utoipa::path(get, path = "/api/v1/market/terms", tag = "market",
    responses((status = 200, body = RegistrationTerms)))]
pub(crate) async fn terms() -> Json<RegistrationTerms> {
    Json(svc::terms())
}

/// Register a marketplace user (individual, university, research institution, enterprise)
/// or supplier (enterprise, individual). No token. Every invalid field is listed in the 422
/// message (`field` names the first); 409 when the username, e-mail or phone is taken; 503
/// when the server can send the verification code to none of the contacts given (no
/// `--smtp-relay`, no `--sms-gateway`); 429 past 20 requests per address in 10 minutes.
/// The code is sent in the background; the account cannot log in until activated (and, for
/// organizations, approved by an operator).
#[utoipa::path(post, path = "/api/v1/market/accounts/register", tag = "market", request_body = RegisterAccount,
    responses((status = 201, body = Registered), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn register(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    JsonBody(body): JsonBody<RegisterAccount>,
) -> ApiResult<(StatusCode, Json<Registered>)> {
    Ok((
        StatusCode::CREATED,
        Json(svc::register(&s, &source, body).await?),
    ))
}

/// Activate with the code that was sent (five wrong codes use it up). No token.
#[utoipa::path(post, path = "/api/v1/market/accounts/activate", tag = "market", request_body = ActivateAccount,
    responses((status = 200, body = MarketAccount), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn activate(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    JsonBody(body): JsonBody<ActivateAccount>,
) -> ApiResult<Json<MarketAccount>> {
    Ok(Json(svc::activate(&s, &source, body).await?))
}

/// Activate with the one-time link of the registration e-mail (sent when the server runs
/// with `--public-url`): the same as entering the code. No token; it only activates (no
/// session), works once, and its 256-bit token is stored hashed, so a mail scanner or a
/// forged page that opens it can at most activate the account the mail was for.
#[utoipa::path(get, path = "/api/v1/market/accounts/activate", tag = "market",
    params(("username" = String, Query, description = "The account the link was sent for"),
           ("token" = String, Query, description = "The link's one-time token")),
    responses((status = 200, body = MarketAccount), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn activate_link(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    mut q: QueryMap,
) -> ApiResult<Json<MarketAccount>> {
    let username = q.take("username");
    let token = q.take("token");
    q.finish()?;
    let required =
        |field: &str| ApiError::field(field, "required: open the link from the e-mail as it is");
    let username = username.ok_or_else(|| required("username"))?;
    let token = token.ok_or_else(|| required("token"))?;
    Ok(Json(
        svc::activate_link(&s, &source, &username, &token).await?,
    ))
}

/// Send a new verification code to an account waiting for activation. No token.
#[utoipa::path(post, path = "/api/v1/market/accounts/resend-code", tag = "market", request_body = ResendCode,
    responses((status = 200, body = CodeSent), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
              (status = 429, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn resend_code(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    JsonBody(body): JsonBody<ResendCode>,
) -> ApiResult<Json<CodeSent>> {
    Ok(Json(svc::resend_code(&s, &source, body).await?))
}

/// Send a rejected registration back to review with what the operator asked for fixed
/// (a new licence, the organization's name). No token: the password proves the owner
/// (401 when wrong, throttled like a login).
#[utoipa::path(post, path = "/api/v1/market/accounts/resubmit", tag = "market", request_body = ResubmitRegistration,
    responses((status = 200, body = MarketAccount), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn resubmit(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    JsonBody(body): JsonBody<ResubmitRegistration>,
) -> ApiResult<Json<MarketAccount>> {
    Ok(Json(svc::resubmit(&s, &source, body).await?))
}

/// The caller's own marketplace account.
#[utoipa::path(get, path = "/api/v1/market/accounts/me", tag = "market", security(("bearer" = [])),
    responses((status = 200, body = MarketAccount), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn mine(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<MarketAccount>> {
    Ok(Json(svc::mine(&s, &who).await?))
}

/// Edit the caller's profile; a new organization name or licence sends an organization
/// back to review (a rejected one resubmits this way).
#[utoipa::path(patch, path = "/api/v1/market/accounts/me", tag = "market", security(("bearer" = [])),
    request_body = UpdateProfile,
    responses((status = 200, body = MarketAccount), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn update_mine(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<UpdateProfile>,
) -> ApiResult<Json<MarketAccount>> {
    Ok(Json(svc::update_profile(&s, &who, body).await?))
}

/// Deregister the caller's account: personal data erased; username, history and
/// accounting records kept (the answer lists both). 409 while leases run or a debt is open.
#[utoipa::path(post, path = "/api/v1/market/accounts/me/deregister", tag = "market", security(("bearer" = [])),
    request_body = DeregisterAccount,
    responses((status = 200, body = Deregistered), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn deregister(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<DeregisterAccount>,
) -> ApiResult<Json<Deregistered>> {
    Ok(Json(svc::deregister(&s, &who, body).await?))
}

/// One marketplace account: operators, or its owner (others get 404).
#[utoipa::path(get, path = "/api/v1/market/accounts/{id}", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path, description = "Account id")),
    responses((status = 200, body = MarketAccount), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_account(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<MarketAccount>> {
    Ok(Json(svc::get(&s, &who, account_id(&id)?).await?))
}

/// An account's business licence file (operators).
#[utoipa::path(get, path = "/api/v1/market/accounts/{id}/licence", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path, description = "Account id")),
    responses((status = 200, content_type = "application/octet-stream", body = Vec<u8>, description = "The PDF, PNG or JPEG file, with its own content type"),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_licence(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let (content_type, data) = svc::licence(&s, &who, account_id(&id)?).await?;
    Ok(([(header::CONTENT_TYPE, content_type)], data).into_response())
}

/// The review queue (operators): accounts waiting for their business licence to be checked.
#[utoipa::path(get, path = "/api/v1/market/reviews", tag = "market", security(("bearer" = [])),
    responses((status = 200, body = Vec<MarketAccount>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(crate) async fn review_queue(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<MarketAccount>>> {
    Ok(Json(svc::review_queue(&s, &who).await?))
}

/// Approve a registration (operators; audited): its user can log in from now on.
#[utoipa::path(post, path = "/api/v1/market/accounts/{id}/approve", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path, description = "Account id")),
    responses((status = 200, body = MarketAccount), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn approve(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<MarketAccount>> {
    Ok(Json(svc::approve(&s, &who, account_id(&id)?).await?))
}

/// Reject a registration with a reason the owner sees (operators; audited).
#[utoipa::path(post, path = "/api/v1/market/accounts/{id}/reject", tag = "market", security(("bearer" = [])),
    params(("id" = u64, Path, description = "Account id")), request_body = RejectAccount,
    responses((status = 200, body = MarketAccount), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn reject(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RejectAccount>,
) -> ApiResult<Json<MarketAccount>> {
    Ok(Json(svc::reject(&s, &who, account_id(&id)?, body).await?))
}

/// Ids are numbers; any other text names no account (the same 404 as a missing one, in the
/// API's JSON error shape rather than the router's plain-text rejection).
fn account_id(text: &str) -> crate::error::ApiResult<u64> {
    text.parse()
        .map_err(|_| crate::error::ApiError::not_found("marketplace account", text))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(terms))
        .routes(routes!(register))
        .routes(routes!(activate, activate_link))
        .routes(routes!(resend_code))
        .routes(routes!(resubmit))
        .routes(routes!(mine, update_mine))
        .routes(routes!(deregister))
        .routes(routes!(get_account))
        .routes(routes!(get_licence))
        .routes(routes!(review_queue))
        .routes(routes!(approve))
        .routes(routes!(reject))
}
