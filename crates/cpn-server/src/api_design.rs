//! HTTP surface of design and provisioning: templates (DO-TPL, DO-RES), plans with their
//! comparison, and instruction sets (SC-PROV). Thin handlers over `design::*`.

use crate::design::{self, plans};
use crate::error::ApiError;
use crate::extract::{JsonBody, Principal};
use crate::response::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use cpn_api_types::ErrorBody;
use cpn_api_types::design::{
    Instruction, InstructionEdit, PlanRequest, PlanView, Recommendation, TemplateCreate,
    TemplateRollback, TemplateUpdate, TemplateVersionView, TemplateView, VersionOnly,
};
use cpn_api_types::flows::FlowView;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Templates the caller may see: published ones and their tenant's.
#[utoipa::path(get, path = "/api/v1/templates", tag = "design", security(("bearer" = [])),
    responses((status = 200, body = Vec<TemplateView>)))]
pub(crate) async fn list_templates(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<TemplateView>>> {
    Ok(Json(design::list(&s, &who).await?))
}

/// Create a draft template (JSON, or the same fields as YAML with a YAML content type);
/// 422 lists every error of the source with its path.
#[utoipa::path(post, path = "/api/v1/templates", tag = "design", security(("bearer" = [])), request_body = TemplateCreate,
    responses((status = 201, body = TemplateView), (status = 422, body = ErrorBody)))]
pub(crate) async fn create_template(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<TemplateView>)> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .to_ascii_lowercase();
    let req: TemplateCreate = if ct.contains("yaml") {
        let v: serde_json::Value = serde_yaml::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("body is not valid YAML: {e}")))?;
        crate::extract::from_value(v)?
    } else {
        crate::extract::parse_json(&body)?
    };
    Ok((
        StatusCode::CREATED,
        Json(design::create(&s, &who, req).await?),
    ))
}

/// Published templates ranked for the caller (history of their plans, then popularity).
#[utoipa::path(get, path = "/api/v1/templates/recommended", tag = "design", security(("bearer" = [])),
    responses((status = 200, body = Vec<Recommendation>)))]
pub(crate) async fn recommended(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<Recommendation>>> {
    Ok(Json(design::recommended(&s, &who).await?))
}

#[utoipa::path(get, path = "/api/v1/templates/{id}", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = TemplateView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_template(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(design::get(&s, &who, &id).await?))
}

/// Change a template: a new immutable version (compare-and-set on `version`).
#[utoipa::path(put, path = "/api/v1/templates/{id}", tag = "design", security(("bearer" = [])), request_body = TemplateUpdate,
    params(("id" = String, Path)), responses((status = 200, body = TemplateView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn update_template(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<TemplateUpdate>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(design::update(&s, &who, &id, req).await?))
}

#[utoipa::path(delete, path = "/api/v1/templates/{id}", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_template(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    design::delete(&s, &who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/templates/{id}/versions", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Vec<TemplateVersionView>)))]
pub(crate) async fn template_versions(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<TemplateVersionView>>> {
    Ok(Json(design::versions(&s, &who, &id).await?))
}

#[utoipa::path(post, path = "/api/v1/templates/{id}/rollback", tag = "design", security(("bearer" = [])), request_body = TemplateRollback,
    params(("id" = String, Path)), responses((status = 200, body = TemplateView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn rollback_template(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<TemplateRollback>,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(design::rollback(&s, &who, &id, req).await?))
}

fn version_only(body: &Bytes) -> crate::error::ApiResult<VersionOnly> {
    if body.is_empty() {
        Ok(VersionOnly::default())
    } else {
        crate::extract::parse_json(body)
    }
}

/// Publish (operators and suppliers only).
#[utoipa::path(post, path = "/api/v1/templates/{id}/publish", tag = "design", security(("bearer" = [])), request_body = VersionOnly,
    params(("id" = String, Path)), responses((status = 200, body = TemplateView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn publish_template(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(
        design::set_state(&s, &who, &id, "published", version_only(&body)?).await?,
    ))
}

/// Withdraw: the template goes offline (operators and suppliers only).
#[utoipa::path(post, path = "/api/v1/templates/{id}/withdraw", tag = "design", security(("bearer" = [])), request_body = VersionOnly,
    params(("id" = String, Path)), responses((status = 200, body = TemplateView), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn withdraw_template(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<TemplateView>> {
    Ok(Json(
        design::set_state(&s, &who, &id, "offline", version_only(&body)?).await?,
    ))
}

/// Instantiate with inputs → one plan per objective, compared in five dimensions, one
/// recommended.
#[utoipa::path(post, path = "/api/v1/templates/{id}/plans", tag = "design", security(("bearer" = [])), request_body = PlanRequest,
    params(("id" = String, Path)), responses((status = 201, body = Vec<PlanView>), (status = 422, body = ErrorBody)))]
pub(crate) async fn make_plans(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Vec<PlanView>>)> {
    let req: PlanRequest = if body.is_empty() {
        PlanRequest::default()
    } else {
        crate::extract::parse_json(&body)?
    };
    Ok((
        StatusCode::CREATED,
        Json(plans::make(&s, &who, &id, req).await?),
    ))
}

#[utoipa::path(get, path = "/api/v1/plans/{id}", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = PlanView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_plan(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PlanView>> {
    Ok(Json(plans::get(&s, &who, &id).await?))
}

/// The alternatives made by the same request as this plan (itself included).
#[utoipa::path(get, path = "/api/v1/plans/{id}/alternatives", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Vec<PlanView>), (status = 404, body = ErrorBody)))]
pub(crate) async fn plan_alternatives(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<PlanView>>> {
    Ok(Json(plans::alternatives(&s, &who, &id).await?))
}

/// Confirm a proposed plan: compiles its instruction set.
#[utoipa::path(post, path = "/api/v1/plans/{id}/confirm", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = PlanView), (status = 409, body = ErrorBody)))]
pub(crate) async fn confirm_plan(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<PlanView>> {
    Ok(Json(plans::confirm(&s, &who, &id).await?))
}

#[utoipa::path(get, path = "/api/v1/plans/{id}/instructions", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Vec<Instruction>)))]
pub(crate) async fn list_instructions(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<Instruction>>> {
    Ok(Json(plans::instructions(&s, &who, &id).await?))
}

#[utoipa::path(put, path = "/api/v1/plans/{id}/instructions/{iid}", tag = "design", security(("bearer" = [])), request_body = InstructionEdit,
    params(("id" = String, Path), ("iid" = String, Path)), responses((status = 200, body = Instruction), (status = 409, body = ErrorBody)))]
pub(crate) async fn edit_instruction(
    State(s): State<AppState>,
    who: Principal,
    Path((id, iid)): Path<(String, String)>,
    JsonBody(req): JsonBody<InstructionEdit>,
) -> ApiResult<Json<Instruction>> {
    Ok(Json(
        plans::edit_instruction(&s, &who, &id, &iid, req).await?,
    ))
}

#[utoipa::path(delete, path = "/api/v1/plans/{id}/instructions/{iid}", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path), ("iid" = String, Path)), responses((status = 200, body = PlanView), (status = 409, body = ErrorBody)))]
pub(crate) async fn delete_instruction(
    State(s): State<AppState>,
    who: Principal,
    Path((id, iid)): Path<(String, String)>,
) -> ApiResult<Json<PlanView>> {
    Ok(Json(plans::delete_instruction(&s, &who, &id, &iid).await?))
}

/// Execute a confirmed plan as a workflow; 409 `invalid_state` when the inventory it was
/// planned on changed (re-plan).
#[utoipa::path(post, path = "/api/v1/plans/{id}/execute", tag = "design", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 202, body = FlowView), (status = 409, body = ErrorBody),
        (status = 429, description = "The tenant has as many unfinished workflows as it may", body = ErrorBody)))]
pub(crate) async fn execute_plan(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<(StatusCode, Json<serde_json::Value>)> {
    // The value is the started workflow's `FlowView` (declared so above); the service still
    // hands it over as JSON.
    Ok((
        StatusCode::ACCEPTED,
        Json(plans::execute(&s, &who, &id).await?),
    ))
}

/// The module's endpoints: each handler's `#[utoipa::path]` is the one declaration of its
/// method and path, for the router and the OpenAPI document alike. One `routes!` per path.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_templates, create_template))
        .routes(routes!(recommended))
        .routes(routes!(get_template, update_template, delete_template))
        .routes(routes!(template_versions))
        .routes(routes!(rollback_template))
        .routes(routes!(publish_template))
        .routes(routes!(withdraw_template))
        .routes(routes!(make_plans))
        .routes(routes!(get_plan))
        .routes(routes!(plan_alternatives))
        .routes(routes!(confirm_plan))
        .routes(routes!(list_instructions))
        .routes(routes!(edit_instruction, delete_instruction))
        .routes(routes!(execute_plan))
}
