//! HTTP surface of the south-bound operations (I2) and of `/metrics`. Thin handlers over
//! `runtime::operations` and `runtime::prom`.

use crate::error::ApiError;
use crate::extract::{JsonBody, Principal, QueryMap};
use crate::response::ApiResult;
use crate::rules;
use crate::runtime::{operations, prom};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use cpn_api_types::ErrorBody;
use cpn_api_types::operations::{AllocationView, OperationRequest, OperationView};
use cpn_api_types::rules::{RuleSpec, RuleView};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Run an operation on a node or resource (operators): allocate, release, adjust,
/// occupy, isolate, reclaim. Each one that runs is recorded with its trace; a failed one
/// answers 409 (or 404) naming its record.
#[utoipa::path(post, path = "/api/v1/operations", tag = "operations", security(("bearer" = [])), request_body = OperationRequest,
    responses((status = 201, body = OperationView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create_operation(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<OperationRequest>,
) -> ApiResult<(StatusCode, Json<OperationView>)> {
    Ok((
        StatusCode::CREATED,
        Json(operations::execute(&s, &who, body).await?),
    ))
}

/// Recorded operations, newest first (`limit`, default 100, at most 1000).
#[utoipa::path(get, path = "/api/v1/operations", tag = "operations", security(("bearer" = [])),
    params(("limit" = Option<usize>, Query)),
    responses((status = 200, body = Vec<OperationView>), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_operations(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<Vec<OperationView>>> {
    let limit = q
        .take("limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| ApiError::bad_request("limit must be a number"))
        })
        .transpose()?
        .unwrap_or(operations::DEFAULT_LIMIT);
    q.finish()?;
    Ok(Json(operations::list(&s, &who, limit).await?))
}

/// One recorded operation with its trace.
#[utoipa::path(get, path = "/api/v1/operations/{id}", tag = "operations", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = OperationView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_operation(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<OperationView>> {
    Ok(Json(operations::get(&s, &who, &id).await?))
}

/// Capacity held outside tasks: `active=true` only active ones, `active=false` only
/// released ones, all by default.
#[utoipa::path(get, path = "/api/v1/allocations", tag = "operations", security(("bearer" = [])),
    params(("active" = Option<bool>, Query)),
    responses((status = 200, body = Vec<AllocationView>), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_allocations(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<Vec<AllocationView>>> {
    let active = match q.take("active").as_deref() {
        None => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(_) => return Err(ApiError::bad_request("active must be true or false").into()),
    };
    q.finish()?;
    Ok(Json(operations::allocations(&s, &who, active).await?))
}

/// Prometheus metrics (text format 0.0.4): tasks by state, runtime counters, nodes and
/// per-node gauges. For operators and API keys with the `metrics:read` scope (a scrape-only
/// key: `cpn api-key create prometheus --scope metrics:read`).
#[utoipa::path(get, path = "/metrics", tag = "operations", security(("bearer" = [])),
    responses((status = 200, content_type = "text/plain", body = String), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
pub(crate) async fn metrics(
    State(s): State<AppState>,
    _reader: crate::extract::MetricsReader,
) -> ApiResult<Response> {
    let body = prom::render(&s).await?;
    Ok(([(header::CONTENT_TYPE, prom::CONTENT_TYPE)], body).into_response())
}

/// Create an ops rule (operators): a trigger (metric threshold, cron, event) and an action
/// (scale out / in, redeploy, isolate a node and move its work, run a task).
#[utoipa::path(post, path = "/api/v1/rules", tag = "operations", security(("bearer" = [])), request_body = RuleSpec,
    responses((status = 201, body = RuleView), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn create_rule(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<RuleSpec>,
) -> ApiResult<(StatusCode, Json<RuleView>)> {
    Ok((
        StatusCode::CREATED,
        Json(rules::create(&s, &who, body).await?),
    ))
}

/// Every ops rule with its recent firings.
#[utoipa::path(get, path = "/api/v1/rules", tag = "operations", security(("bearer" = [])),
    responses((status = 200, body = Vec<RuleView>), (status = 403, body = ErrorBody)))]
pub(crate) async fn list_rules(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<RuleView>>> {
    Ok(Json(rules::list(&s, &who).await?))
}

/// One ops rule with its firings (newest last).
#[utoipa::path(get, path = "/api/v1/rules/{id}", tag = "operations", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = RuleView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_rule(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<RuleView>> {
    Ok(Json(rules::get(&s, &who, &id).await?))
}

/// Delete an ops rule.
#[utoipa::path(delete, path = "/api/v1/rules/{id}", tag = "operations", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_rule(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    rules::delete(&s, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Enable (`/enable`) or disable (`/disable`) an ops rule.
#[utoipa::path(post, path = "/api/v1/rules/{id}/{switch}", tag = "operations", security(("bearer" = [])),
    params(("id" = String, Path), ("switch" = String, Path, description = "enable or disable")),
    responses((status = 200, body = RuleView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn switch_rule(
    State(s): State<AppState>,
    who: Principal,
    Path((id, switch)): Path<(String, String)>,
) -> ApiResult<Json<RuleView>> {
    let on = match switch.as_str() {
        "enable" => true,
        "disable" => false,
        other => return Err(ApiError::not_found("rule action", other).into()),
    };
    Ok(Json(rules::set_enabled(&s, &who, &id, on).await?))
}

/// The module's endpoints: each handler's `#[utoipa::path]` is the one declaration of its
/// method and path, for the router and the OpenAPI document alike. One `routes!` per path.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_operations, create_operation))
        .routes(routes!(get_operation))
        .routes(routes!(list_allocations))
        .routes(routes!(metrics))
        .routes(routes!(list_rules, create_rule))
        .routes(routes!(get_rule, delete_rule))
        .routes(routes!(switch_rule))
}
