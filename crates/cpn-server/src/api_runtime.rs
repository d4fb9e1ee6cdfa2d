//! HTTP surface of running work: tasks, nodes, the agent protocol and the event stream.
//! Thin handlers over `runtime::*`, like `api.rs` over the registry.

use crate::error::ApiError;
use crate::extract::{JsonBody, Principal, QueryMap};
use crate::join::{NodeCaller, Registrant};
use crate::response::{ApiResult, IntoHttp};
use crate::runtime::{agents, events, nodes, tasks};
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cpn_api_types::agent::*;
use cpn_api_types::events::EventView;
use cpn_api_types::tasks::{LogStream, TaskSubmit, TaskSubmitted, TaskView};
use cpn_api_types::{ErrorBody, Page};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Submit a task: one process (argv or script) with resources, constraints, priority,
/// deadline, replicas and retry policy. 201 once it is durably queued.
#[utoipa::path(post, path = "/api/v1/tasks", tag = "tasks", security(("bearer" = [])), request_body = TaskSubmit,
    responses((status = 201, body = TaskSubmitted), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody, description = "`lease` names no lease of the task's tenant"),
        (status = 409, body = ErrorBody, description = "`lease` has ended"),
        (status = 422, body = ErrorBody)))]
pub(crate) async fn submit_task(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<TaskSubmit>,
) -> ApiResult<(StatusCode, Json<TaskSubmitted>)> {
    Ok((
        StatusCode::CREATED,
        Json(tasks::submit(&s, &who, body).await?),
    ))
}

/// List tasks, oldest first. Filters: `state` (comma list), `node`, `name`, `tenant`.
#[utoipa::path(get, path = "/api/v1/tasks", tag = "tasks", security(("bearer" = [])),
    params(("state" = Option<String>, Query, description = "e.g. `running,pending`"),
           ("node" = Option<String>, Query, description = "Node id or site/name"),
           ("name" = Option<String>, Query), ("tenant" = Option<String>, Query),
           ("limit" = Option<usize>, Query), ("cursor" = Option<String>, Query),
           ("order" = Option<String>, Query, description = "oldest (default) or newest first")),
    responses((status = 200, body = Page<TaskView>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_tasks(
    State(s): State<AppState>,
    who: Principal,
    q: QueryMap,
) -> ApiResult<Json<Page<TaskView>>> {
    Ok(Json(tasks::list(&s, &who, crate::query::tasks(q)?).await?))
}

/// Task counts by state, over the tasks the caller may see (its tenant's; every task for
/// operators). The console's overview reads it.
#[utoipa::path(get, path = "/api/v1/tasks/counts", tag = "tasks", security(("bearer" = [])),
    responses((status = 200, body = std::collections::BTreeMap<String, u64>)))]
pub(crate) async fn task_counts(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<std::collections::BTreeMap<String, u64>>> {
    Ok(Json(tasks::counts(&s, &who).await?))
}

/// One task with its state history and KPIs.
#[utoipa::path(get, path = "/api/v1/tasks/{id}", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = TaskView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_task(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    Ok(Json(tasks::get(&s, &who, &id).await?))
}

/// Cancel a pending, scheduled or running task; a running process group is killed.
#[utoipa::path(post, path = "/api/v1/tasks/{id}/cancel", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = TaskView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel_task(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<TaskView>> {
    Ok(Json(tasks::cancel(&s, &who, &id).await?))
}

/// A task's output as text: `stream=all|stdout|stderr`, `attempt=N` (default the last),
/// `follow=true` streams until the attempt ends.
#[utoipa::path(get, path = "/api/v1/tasks/{id}/logs", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path), ("stream" = Option<String>, Query), ("attempt" = Option<u32>, Query), ("follow" = Option<bool>, Query)),
    responses((status = 200, content_type = "text/plain", body = String), (status = 404, body = ErrorBody)))]
pub(crate) async fn task_logs(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    q: QueryMap,
) -> ApiResult<Response> {
    let body = tasks::logs(&s, &who, &id, crate::query::task_logs(q)?).await?;
    Ok((
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into_http(),
    )
        .into_response())
}

/// Nodes reported by agents and imported from Slurm, with capacity, what is held, the
/// latest metrics and the idle rate: those on sites the caller may read.
#[utoipa::path(get, path = "/api/v1/nodes", tag = "nodes", security(("bearer" = [])),
    responses((status = 200, body = Vec<NodeView>)))]
pub(crate) async fn list_nodes(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<NodeView>>> {
    Ok(Json(nodes::visible_views(&s, &who).await?))
}

/// One node, by id or `site/name` (real-time query, IF-I3-03); 404 for a node on a site the
/// caller may not read.
#[utoipa::path(get, path = "/api/v1/nodes/{id}", tag = "nodes", security(("bearer" = [])),
    params(("id" = String, Path, description = "Node id, name, or site/name")),
    responses((status = 200, body = NodeView), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_node(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<NodeView>> {
    Ok(Json(nodes::get(&s, &who, &id).await?))
}

/// Real-time state of a site: nodes ready, idle rate, load, location, power (IF-I3-03);
/// 404 for a site the caller may not read.
#[utoipa::path(get, path = "/api/v1/sites/{id}/status", tag = "nodes", security(("bearer" = [])),
    params(("id" = String, Path, description = "Site name or id")),
    responses((status = 200, body = SiteStatus), (status = 404, body = ErrorBody)))]
pub(crate) async fn site_status(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<SiteStatus>> {
    Ok(Json(nodes::site_status(&s, &who, &id).await?))
}

/// Registered offers against live machines, per site the caller may read (or the one
/// `site` names): each compute resource's registered, live, allocated and free units, the
/// nodes that fulfil no offer with the reason, and the site's measured health. Registered
/// capacity with no live node is a planning target only; `binder_target` says where real
/// work can go now.
#[utoipa::path(get, path = "/api/v1/capacity", tag = "nodes", security(("bearer" = [])),
    params(("site" = Option<String>, Query, description = "Site name or id")),
    responses((status = 200, body = Vec<SiteCapacity>), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn capacity(
    State(s): State<AppState>,
    who: Principal,
    mut q: QueryMap,
) -> ApiResult<Json<Vec<SiteCapacity>>> {
    let site = q.take("site");
    q.finish()?;
    Ok(Json(
        crate::runtime::livestate::capacity(&s, &who, site.as_deref()).await?,
    ))
}

/// Agent: register this host as a node of a site (same site and name: same node). The
/// bearer token is a join token (the answer then carries the node's own credential) or the
/// node's credential (a restarted agent).
#[utoipa::path(post, path = "/api/v1/agents/register", tag = "agents", security(("bearer" = [])), request_body = AgentRegister,
    responses((status = 200, body = AgentRegistered), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 415, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub(crate) async fn agent_register(
    State(s): State<AppState>,
    who: Registrant,
    JsonBody(body): JsonBody<AgentRegister>,
) -> ApiResult<Json<AgentRegistered>> {
    Ok(Json(agents::register(&s, who, body).await?))
}

/// Agent: metrics and held attempts; the answer lists attempts to kill and to forget.
#[utoipa::path(post, path = "/api/v1/agents/{node}/heartbeat", tag = "agents", security(("bearer" = [])), request_body = Heartbeat,
    params(("node" = String, Path)), responses((status = 200, body = HeartbeatReply), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn agent_heartbeat(
    State(s): State<AppState>,
    who: NodeCaller,
    Path(node): Path<String>,
    JsonBody(body): JsonBody<Heartbeat>,
) -> ApiResult<Json<HeartbeatReply>> {
    Ok(Json(agents::heartbeat(&s, &who, &node, body).await?))
}

/// Agent: long poll for work bound to the node (`wait_ms`, at most 60000).
#[utoipa::path(get, path = "/api/v1/agents/{node}/assignments", tag = "agents", security(("bearer" = [])),
    params(("node" = String, Path), ("wait_ms" = Option<u64>, Query)),
    responses((status = 200, body = Assignments), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn agent_assignments(
    State(s): State<AppState>,
    who: NodeCaller,
    Path(node): Path<String>,
    mut q: QueryMap,
) -> ApiResult<Json<Assignments>> {
    let wait = q
        .take("wait_ms")
        .map(|w| {
            w.parse::<u64>()
                .map_err(|_| ApiError::bad_request("wait_ms must be a number"))
        })
        .transpose()?
        .unwrap_or(0);
    q.finish()?;
    Ok(Json(agents::assignments(&s, &who, &node, wait).await?))
}

/// Agent: an attempt started or ended.
#[utoipa::path(post, path = "/api/v1/agents/{node}/attempts/{attempt}", tag = "agents", security(("bearer" = [])), request_body = AttemptReport,
    params(("node" = String, Path), ("attempt" = String, Path)),
    responses((status = 200, body = AttemptReply), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn agent_report(
    State(s): State<AppState>,
    who: NodeCaller,
    Path((node, attempt)): Path<(String, String)>,
    JsonBody(body): JsonBody<AttemptReport>,
) -> ApiResult<Json<AttemptReply>> {
    Ok(Json(agents::report(&s, &who, &node, &attempt, body).await?))
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct LogLength {
    /// Bytes of the stream the server now holds (send from there); once `capped`, every
    /// byte sent counts as delivered.
    pub length: u64,
    /// The attempt's output reached the server's cap (`cpn serve --max-task-output-mib`):
    /// the server stores nothing more of it, so stop sending.
    #[serde(default)]
    pub capped: bool,
}

/// Agent: output bytes of an attempt, starting at `offset` of `stream`. Output past the
/// attempt's cap is dropped after a truncation marker; the answer then says `capped`.
#[utoipa::path(post, path = "/api/v1/agents/{node}/attempts/{attempt}/logs", tag = "agents", security(("bearer" = [])),
    params(("node" = String, Path), ("attempt" = String, Path), ("stream" = String, Query), ("offset" = u64, Query)),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 200, body = LogLength), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn agent_logs(
    State(s): State<AppState>,
    who: NodeCaller,
    Path((node, attempt)): Path<(String, String)>,
    mut q: QueryMap,
    body: axum::body::Bytes,
) -> ApiResult<Json<LogLength>> {
    let stream = match q.take("stream").as_deref() {
        Some("stdout") => LogStream::Stdout,
        Some("stderr") => LogStream::Stderr,
        _ => return Err(ApiError::bad_request("stream must be stdout or stderr").into()),
    };
    let offset = q
        .take("offset")
        .and_then(|o| o.parse::<u64>().ok())
        .ok_or_else(|| ApiError::bad_request("offset must be a byte offset"))?;
    q.finish()?;
    let appended = agents::upload_log(&s, &who, &node, &attempt, stream, offset, &body).await?;
    Ok(Json(LogLength {
        length: appended.length,
        capped: appended.capped,
    }))
}

/// Server-Sent Events: task state changes, node state, operations and alarms.
/// `types` filters (`task`, `alarm`, `node.state`…), `subject` keeps one task's, node's or
/// flow's; `Last-Event-ID` (or `after`) resumes.
#[utoipa::path(get, path = "/api/v1/events", tag = "events", security(("bearer" = [])),
    params(("types" = Option<String>, Query), ("after" = Option<u64>, Query), ("subject" = Option<String>, Query),
           ("Last-Event-ID" = Option<String>, Header)),
    responses((status = 200, content_type = "text/event-stream", body = EventView)))]
pub(crate) async fn event_stream(
    State(s): State<AppState>,
    who: Principal,
    headers: HeaderMap,
    q: QueryMap,
) -> ApiResult<Response> {
    let last = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    let q = crate::query::events(q, last.as_deref())?;
    Ok(events::stream(s.0.rt, &who, q).await?.into_http())
}

/// Past events as JSON: oldest first after an id (`after`, default 0), or with
/// `order=newest` newest first before an id (`before`); at most `limit`. `types` and
/// `subject` (a task, node or flow id) filter.
#[utoipa::path(get, path = "/api/v1/events/log", tag = "events", security(("bearer" = [])),
    params(("types" = Option<String>, Query), ("subject" = Option<String>, Query),
           ("order" = Option<String>, Query, description = "oldest (default) or newest"),
           ("after" = Option<u64>, Query), ("before" = Option<u64>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Vec<EventView>)))]
pub(crate) async fn event_log(
    State(s): State<AppState>,
    who: Principal,
    q: QueryMap,
) -> ApiResult<Json<Vec<EventView>>> {
    Ok(Json(
        events::page(&s, &who, crate::query::events(q, None)?).await?,
    ))
}

/// A node's recent metrics, oldest first: one sample per 5 s over the last 30 minutes
/// (CPU, memory, load, disk, network, and per GPU utilisation, memory, temperature, power).
#[utoipa::path(get, path = "/api/v1/nodes/{id}/metrics", tag = "nodes", security(("bearer" = [])),
    params(("id" = String, Path, description = "Node id, name, or site/name")),
    responses((status = 200, body = Vec<NodeMetrics>), (status = 404, body = ErrorBody)))]
pub(crate) async fn node_metrics(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<NodeMetrics>>> {
    Ok(Json(nodes::metrics_history(&s, &who, &id).await?))
}

/// "Why here": for a bound task, the binder's own record of the binding as it decided it
/// (`decided_at` set: the best sites with their factor contributions and the rejections
/// that settled the rest); with `now=true`, or while the task waits, "explain now": every
/// filter verdict and score factor against the live nodes as they are now, under the
/// policy that bound it (or would bind it).
#[utoipa::path(get, path = "/api/v1/tasks/{id}/explain", tag = "tasks", security(("bearer" = [])),
    params(("id" = String, Path),
           ("now" = Option<bool>, Query, description = "Explain against the nodes as they are now instead of showing the stored decision")),
    responses((status = 200, body = cpn_api_types::schedule::Explanation), (status = 404, body = ErrorBody)))]
pub(crate) async fn explain_task(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    mut q: QueryMap,
) -> ApiResult<Json<cpn_api_types::schedule::Explanation>> {
    let now = q.take_bool("now")?;
    q.finish()?;
    Ok(Json(
        crate::runtime::binder::explain_task(&s, &who, &id, now).await?,
    ))
}

/// The module's endpoints: each handler's `#[utoipa::path]` is the one declaration of its
/// method and path, for the router and the OpenAPI document alike. One `routes!` per path.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .routes(routes!(list_tasks, submit_task))
        .routes(routes!(task_counts))
        .routes(routes!(get_task))
        .routes(routes!(cancel_task))
        .routes(routes!(task_logs))
        .routes(routes!(explain_task))
        .routes(routes!(node_metrics))
        .routes(routes!(list_nodes))
        .routes(routes!(get_node))
        .routes(routes!(site_status))
        .routes(routes!(capacity))
        .routes(routes!(agent_register))
        .routes(routes!(agent_heartbeat))
        .routes(routes!(agent_assignments))
        .routes(routes!(agent_report))
        .routes(routes!(agent_logs))
        .routes(routes!(event_stream))
        .routes(routes!(event_log))
}
