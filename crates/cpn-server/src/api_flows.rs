//! HTTP surface of the workflow engine (DO-FLOW): workflows, their journals and lean
//! reports, pause / resume / cancel, and process templates (import as JSON or YAML, export
//! as YAML, run). Thin handlers over `flows`.

use crate::error::ApiError;
use crate::extract::{JsonBody, Principal, QueryMap, parse_json};
use crate::flows::{self, Op};
use crate::response::ApiResult;
use crate::state::AppState;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cpn_api_types::flows::{
    CancelFlow, FlowDefinition, FlowReport, FlowView, ProcessView, RunProcess, StartFlow,
};
use cpn_api_types::{Code, ErrorBody};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Start a workflow: a DAG of steps run in parallel where dependencies allow, with
/// retries, timeouts, conditions, loops and compensation. 422 names the first invalid
/// field; the message lists every error.
#[utoipa::path(post, path = "/api/v1/flows", tag = "flows", security(("bearer" = [])), request_body = StartFlow,
    responses((status = 201, body = FlowView), (status = 422, body = ErrorBody),
        (status = 429, description = "The tenant has as many unfinished workflows as it may", body = ErrorBody)))]
pub(crate) async fn start_flow(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<StartFlow>,
) -> ApiResult<(StatusCode, Json<FlowView>)> {
    // Inputs are a field of the body, beside the definition the errors below are within.
    flows::check_inputs(&body.inputs)?;
    let view = flows::start(&s, &who, body.definition, body.inputs, None)
        .await
        .map_err(|e| e.within("definition"))?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// Workflows, oldest first; non-operators see their tenant's. Filter: `state`.
#[utoipa::path(get, path = "/api/v1/flows", tag = "flows", security(("bearer" = [])),
    params(("state" = Option<String>, Query)), responses((status = 200, body = Vec<FlowView>)))]
pub(crate) async fn list_flows(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<Vec<FlowView>>> {
    let state = q.take("state");
    q.finish()?;
    Ok(Json(flows::list(&s, &who, state).await?))
}

/// One workflow with its steps.
#[utoipa::path(get, path = "/api/v1/flows/{id}", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = FlowView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_flow(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowView>> {
    Ok(Json(flows::get(&s, &who, &id).await?))
}

/// The workflow's journal: every transition (`type`, `at`, `step`, …) with its `seq`.
#[utoipa::path(get, path = "/api/v1/flows/{id}/journal", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Vec<Object>), (status = 404, body = ErrorBody)))]
pub(crate) async fn flow_journal(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<serde_json::Value>>> {
    Ok(Json(flows::journal(&s, &who, &id).await?))
}

/// Lean metrics: per step start, end, duration and wait; parallel and serial rates; the
/// critical path.
#[utoipa::path(get, path = "/api/v1/flows/{id}/report", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = FlowReport), (status = 404, body = ErrorBody)))]
pub(crate) async fn flow_report(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowReport>> {
    Ok(Json(flows::report(&s, &who, &id).await?))
}

/// Pause: no new step starts; running steps finish.
#[utoipa::path(post, path = "/api/v1/flows/{id}/pause", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = FlowView), (status = 409, body = ErrorBody)))]
pub(crate) async fn pause_flow(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowView>> {
    Ok(Json(flows::control(&s, &who, &id, Op::Pause).await?))
}

/// Resume a paused workflow.
#[utoipa::path(post, path = "/api/v1/flows/{id}/resume", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = FlowView), (status = 409, body = ErrorBody)))]
pub(crate) async fn resume_flow(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<FlowView>> {
    Ok(Json(flows::control(&s, &who, &id, Op::Resume).await?))
}

/// Cancel: running steps are stopped (their tasks cancelled). Completed steps are not
/// rolled back unless `compensate=true`.
#[utoipa::path(post, path = "/api/v1/flows/{id}/cancel", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path), ("compensate" = Option<bool>, Query)), request_body = CancelFlow,
    responses((status = 200, body = FlowView), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel_flow(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    mut q: QueryMap,
    body: Bytes,
) -> ApiResult<Json<FlowView>> {
    let mut compensate = q.take("compensate").is_some_and(|v| v == "true");
    q.finish()?;
    if !body.iter().all(u8::is_ascii_whitespace) {
        let b: CancelFlow = parse_json(&body)?;
        compensate |= b.compensate;
    }
    Ok(Json(
        flows::control(&s, &who, &id, Op::Cancel { compensate }).await?,
    ))
}

fn parse_definition(headers: &HeaderMap, body: &[u8]) -> crate::error::ApiResult<FlowDefinition> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    if ct.contains("yaml") {
        let de = serde_yaml::Deserializer::from_slice(body);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ApiError::field(path, e.inner().to_string())
        })
    } else {
        parse_json(body)
    }
}

/// Import a process template: a workflow definition as JSON, or YAML with
/// `Content-Type: application/yaml`. Templates are shared with every user.
#[utoipa::path(post, path = "/api/v1/processes", tag = "flows", security(("bearer" = [])),
    request_body(content = FlowDefinition, content_type = "application/json"),
    responses((status = 201, body = ProcessView), (status = 422, body = ErrorBody)))]
pub(crate) async fn create_process(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<ProcessView>)> {
    let def = parse_definition(&headers, &body)?;
    Ok((
        StatusCode::CREATED,
        Json(flows::create_process(&s, &who, def).await?),
    ))
}

/// Process templates.
#[utoipa::path(get, path = "/api/v1/processes", tag = "flows", security(("bearer" = [])),
    responses((status = 200, body = Vec<ProcessView>)))]
pub(crate) async fn list_processes(
    State(s): State<AppState>,
    _who: Principal,
) -> ApiResult<Json<Vec<ProcessView>>> {
    Ok(Json(flows::list_processes(&s).await?))
}

/// One process template; `format=yaml` exports its definition as a YAML file.
#[utoipa::path(get, path = "/api/v1/processes/{id}", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path), ("format" = Option<String>, Query, description = "`json` (default) or `yaml`")),
    responses((status = 200, body = ProcessView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_process(
    State(s): State<AppState>,
    _who: Principal,
    Path(id): Path<String>,
    mut q: QueryMap,
) -> ApiResult<Response> {
    let format = q.take("format");
    q.finish()?;
    let (view, def) = flows::process_definition(&s, &id).await?;
    match format.as_deref() {
        None | Some("json") => Ok(Json(view).into_response()),
        Some("yaml") => {
            let text = serde_yaml::to_string(&def)
                .map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
            Ok(([(header::CONTENT_TYPE, "application/yaml")], text).into_response())
        }
        Some(f) => Err(ApiError::field("format", format!("{f:?} is not json or yaml")).into()),
    }
}

/// Start a workflow from a process template; body (optional): `{"inputs": {...}}`.
#[utoipa::path(post, path = "/api/v1/processes/{id}/run", tag = "flows", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RunProcess,
    responses((status = 201, body = FlowView), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody),
        (status = 429, description = "The tenant has as many unfinished workflows as it may", body = ErrorBody)))]
pub(crate) async fn run_process(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<FlowView>)> {
    let req: RunProcess = if body.iter().all(u8::is_ascii_whitespace) {
        RunProcess::default()
    } else {
        parse_json(&body)?
    };
    let (_, def) = flows::process_definition(&s, &id).await?;
    let view = flows::start(&s, &who, def, req.inputs, None).await?;
    Ok((StatusCode::CREATED, Json(view)))
}

/// The module's endpoints: each handler's `#[utoipa::path]` is the one declaration of its
/// method and path, for the router and the OpenAPI document alike. One `routes!` per path.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_flows, start_flow))
        .routes(routes!(get_flow))
        .routes(routes!(flow_journal))
        .routes(routes!(flow_report))
        .routes(routes!(pause_flow))
        .routes(routes!(resume_flow))
        .routes(routes!(cancel_flow))
        .routes(routes!(list_processes, create_process))
        .routes(routes!(get_process))
        .routes(routes!(run_process))
}
