//! The HTTP surface: routes, thin handlers and the OpenAPI document generated from them.
//! Handlers only extract, call the service modules and wrap the answer.

use crate::error::ApiError;
use crate::extract::{ClientAddr, JsonBody, Principal, QueryMap};
use crate::openapi::EdgeResponses;
use crate::registry::{
    self, CloudKind, LinkKind, PlatformKind, PolicyKind, ResourceKind, SiteKind, TagKind,
};
use crate::response::{ApiResult, HttpError};
use crate::state::AppState;
use crate::{federation, identity, scenario, schedule, simulation, topology};
use axum::extract::{Path, State};
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use cpn_api_types::identity::*;
use cpn_api_types::registry::*;
use cpn_api_types::scenario::{Scenario, ScenarioReport};
use cpn_api_types::schedule::*;
use cpn_api_types::simulation::{
    FederationRequest, FederationResult, Simulation, SimulationRequest,
};
use cpn_api_types::topology::*;
use cpn_api_types::{Code, ErrorBody, Health, Page};
use cpn_model::Kind;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

fn etag(generation: u64) -> [(axum::http::HeaderName, HeaderValue); 1] {
    [(
        ETAG,
        HeaderValue::from_str(&format!("\"{generation}\"")).expect("digits are a valid header"),
    )]
}

/// Reads `If-Match: "3"` (also `W/"3"` or `3`) as a generation.
fn if_match(headers: &HeaderMap) -> crate::error::ApiResult<Option<u64>> {
    let Some(v) = headers.get(IF_MATCH) else {
        return Ok(None);
    };
    let s = v.to_str().unwrap_or_default().trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse::<u64>().map(Some).map_err(|_| ApiError {
        code: Code::BadRequest,
        message: format!("If-Match must be a generation number such as \"3\", got {s:?}"),
        field: Some("If-Match".into()),
    })
}

macro_rules! kind_handlers {
    ($m:ident, $K:ident, $list:tt, $item:tt, $obj:ident, $create:ident, $update:ident, $tag:tt) => {
        pub(crate) mod $m {
            use super::*;

            /// List objects the caller may see, filtered by a label selector.
            #[utoipa::path(get, path = $list, tag = $tag, security(("bearer" = [])),
                params(
                    ("selector" = Option<String>, Query, description = "Label selector over effective labels, e.g. `region=east,gpu.model in (A100,H800),!deprecated`"),
                    ("limit" = Option<usize>, Query, description = "Page size, 1..=1000, default 100"),
                    ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
                ),
                responses((status = 200, body = Page<$obj>), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
            pub(crate) async fn list(State(s): State<AppState>, who: Principal, q: QueryMap) -> ApiResult<Json<Page<$obj>>> {
                Ok(Json(registry::list::<$K>(&s, &who, crate::query::registry_list::<$K>(q)?).await?))
            }

            /// Register a new object. References may name other objects by id or name.
            #[utoipa::path(post, path = $list, tag = $tag, security(("bearer" = [])), request_body = $create,
                responses((status = 201, body = $obj), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
                          (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
            pub(crate) async fn create(State(s): State<AppState>, who: Principal, JsonBody(body): JsonBody<$create>) -> ApiResult<Response> {
                let obj = registry::create::<$K>(&s, &who, body).await?;
                Ok((StatusCode::CREATED, etag(obj.generation), Json(obj)).into_response())
            }

            /// Read one object by id or name.
            #[utoipa::path(get, path = $item, tag = $tag, security(("bearer" = [])),
                params(("id" = String, Path, description = "Id or name")),
                responses((status = 200, body = $obj), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
            pub(crate) async fn get(State(s): State<AppState>, who: Principal, Path(id): Path<String>) -> ApiResult<Response> {
                let obj = registry::get::<$K>(&s, &who, &id).await?;
                Ok((etag(obj.generation), Json(obj)).into_response())
            }

            /// Replace labels, visibility and spec, guarded by the generation (body or If-Match).
            #[utoipa::path(put, path = $item, tag = $tag, security(("bearer" = [])), request_body = $update,
                params(("id" = String, Path, description = "Id or name"),
                       ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,19}"?$"#, description = "Generation read, e.g. \"3\"")),
                responses((status = 200, body = $obj), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
                          (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody),
                          (status = 428, body = ErrorBody)))]
            pub(crate) async fn update(
                State(s): State<AppState>,
                who: Principal,
                Path(id): Path<String>,
                headers: HeaderMap,
                JsonBody(body): JsonBody<$update>,
            ) -> ApiResult<Response> {
                let obj = registry::update::<$K>(&s, &who, &id, if_match(&headers)?, body).await?;
                Ok((etag(obj.generation), Json(obj)).into_response())
            }

            /// Delete an object that nothing references any more.
            #[utoipa::path(delete, path = $item, tag = $tag, security(("bearer" = [])),
                params(("id" = String, Path, description = "Id or name"),
                       ("If-Match" = Option<String>, Header, pattern = r#"^(W/)?"?[0-9]{1,19}"?$"#, description = "Generation read, e.g. \"3\"")),
                responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
            pub(crate) async fn delete(State(s): State<AppState>, who: Principal, Path(id): Path<String>, headers: HeaderMap) -> ApiResult<StatusCode> {
                registry::delete::<$K>(&s, &who, &id, if_match(&headers)?).await?;
                Ok(StatusCode::NO_CONTENT)
            }

            pub(crate) fn routes() -> OpenApiRouter<AppState> {
                OpenApiRouter::default()
                    .routes(routes!(list, create))
                    .routes(routes!(get, update, delete))
            }
        }
    };
}

kind_handlers!(
    platforms,
    PlatformKind,
    "/api/v1/platforms",
    "/api/v1/platforms/{id}",
    Platform,
    PlatformCreate,
    PlatformUpdate,
    "platforms"
);
kind_handlers!(
    clouds,
    CloudKind,
    "/api/v1/clouds",
    "/api/v1/clouds/{id}",
    Cloud,
    CloudCreate,
    CloudUpdate,
    "clouds"
);
kind_handlers!(
    sites,
    SiteKind,
    "/api/v1/sites",
    "/api/v1/sites/{id}",
    Site,
    SiteCreate,
    SiteUpdate,
    "sites"
);
kind_handlers!(
    resources,
    ResourceKind,
    "/api/v1/resources",
    "/api/v1/resources/{id}",
    Resource,
    ResourceCreate,
    ResourceUpdate,
    "resources"
);
kind_handlers!(
    links,
    LinkKind,
    "/api/v1/links",
    "/api/v1/links/{id}",
    Link,
    LinkCreate,
    LinkUpdate,
    "links"
);
kind_handlers!(
    tags,
    TagKind,
    "/api/v1/tags",
    "/api/v1/tags/{id}",
    Tag,
    TagCreate,
    TagUpdate,
    "tags"
);
kind_handlers!(
    policies,
    PolicyKind,
    "/api/v1/policies",
    "/api/v1/policies/{id}",
    Policy,
    PolicyCreate,
    PolicyUpdate,
    "policies"
);

/// Every stored version of a policy, oldest first.
#[utoipa::path(get, path = "/api/v1/policies/{id}/versions", tag = "policies", security(("bearer" = [])),
    params(("id" = String, Path, description = "Policy id or name")),
    responses((status = 200, body = [PolicyVersion]), (status = 404, body = ErrorBody)))]
async fn policy_versions(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Vec<PolicyVersion>>> {
    let versions = registry::history::<PolicyKind>(&s, &who, &id).await?;
    Ok(Json(
        versions
            .into_iter()
            .map(|(generation, at, spec)| PolicyVersion {
                generation,
                at,
                spec,
            })
            .collect(),
    ))
}

/// Restore an earlier version of a policy as its newest generation.
#[utoipa::path(post, path = "/api/v1/policies/{id}/rollback", tag = "policies", security(("bearer" = [])), request_body = Rollback,
    params(("id" = String, Path, description = "Policy id or name")),
    responses((status = 200, body = Policy), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn policy_rollback(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<Rollback>,
) -> ApiResult<Response> {
    let obj = registry::rollback::<PolicyKind>(&s, &who, &id, body.to_generation, body.generation)
        .await?;
    Ok((etag(obj.generation), Json(obj)).into_response())
}

/// Explain where a task would go and why: every site's filter verdicts and factor scores.
/// The scheduler's plugins: filters, score plugins with their default weights, and the GPU
/// placement policies a policy may name.
#[utoipa::path(get, path = "/api/v1/schedule/plugins", tag = "scheduling", security(("bearer" = [])),
    responses((status = 200, body = PluginCatalog)))]
async fn schedule_plugins(_who: Principal) -> Json<PluginCatalog> {
    use cpn_sched::plugins::{DEFAULT_WEIGHTS, FILTERS, gpu::GpuPolicy};
    // The paper's ranking, best first, then our own.
    let gpu = GpuPolicy::ALL
        .iter()
        .rev()
        .chain([GpuPolicy::FgdPlus].iter())
        .map(|g| g.name().to_string())
        .collect();
    Json(PluginCatalog {
        filters: FILTERS.iter().map(|f| f.to_string()).collect(),
        scores: DEFAULT_WEIGHTS
            .iter()
            .map(|(name, w)| ScoreDefault {
                name: name.to_string(),
                default_weight: *w,
            })
            .collect(),
        gpu_policies: gpu,
    })
}

#[utoipa::path(post, path = "/api/v1/schedule/explain", tag = "scheduling", security(("bearer" = [])), request_body = ExplainRequest,
    responses((status = 200, body = Explanation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn schedule_explain(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<ExplainRequest>,
) -> ApiResult<Json<Explanation>> {
    Ok(Json(schedule::explain(&s, &who, body).await?))
}

/// Schedule one task for real: the placement is stored with its explanation and holds
/// capacity until released.
#[utoipa::path(post, path = "/api/v1/schedule", tag = "scheduling", security(("bearer" = [])), request_body = ExplainRequest,
    responses((status = 201, body = DecisionRecordView), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn schedule_place(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<ExplainRequest>,
) -> ApiResult<(StatusCode, Json<DecisionRecordView>)> {
    Ok((
        StatusCode::CREATED,
        Json(schedule::place(&s, &who, body).await?),
    ))
}

/// Stored decisions, oldest first; `?active=true` for those still holding capacity.
#[utoipa::path(get, path = "/api/v1/decisions", tag = "scheduling", security(("bearer" = [])),
    params(("active" = Option<bool>, Query, description = "Only unreleased decisions"),
           ("limit" = Option<usize>, Query, description = "Page size, 1..=1000"),
           ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page")),
    responses((status = 200, body = Page<DecisionRecordView>)))]
async fn list_decisions(
    State(s): State<AppState>,
    who: Principal,
    q: QueryMap,
) -> ApiResult<Json<Page<DecisionRecordView>>> {
    Ok(Json(
        schedule::list_decisions(&s, &who, crate::query::decisions(q)?).await?,
    ))
}

/// One stored decision with its full explanation.
#[utoipa::path(get, path = "/api/v1/decisions/{id}", tag = "scheduling", security(("bearer" = [])),
    params(("id" = String, Path, description = "Decision id")),
    responses((status = 200, body = DecisionRecordView), (status = 404, body = ErrorBody)))]
async fn get_decision(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DecisionRecordView>> {
    Ok(Json(schedule::get_decision(&s, &who, &id).await?))
}

/// Give a decision's capacity back.
#[utoipa::path(post, path = "/api/v1/decisions/{id}/release", tag = "scheduling", security(("bearer" = [])),
    params(("id" = String, Path, description = "Decision id")),
    responses((status = 200, body = DecisionRecordView), (status = 404, body = ErrorBody)))]
async fn release_decision(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<DecisionRecordView>> {
    Ok(Json(schedule::release_decision(&s, &who, &id).await?))
}

/// Place a batch under one or two policies without changing anything, and compare KPIs.
#[utoipa::path(post, path = "/api/v1/schedule/dry-run", tag = "scheduling", security(("bearer" = [])), request_body = DryRunRequest,
    responses((status = 200, body = DryRunResult), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn schedule_dry_run(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<DryRunRequest>,
) -> ApiResult<Json<DryRunResult>> {
    Ok(Json(schedule::dry_run(&s, &who, body).await?))
}

/// Start a policy simulation (SC-POL-05): replay a GPU workload (a shipped trace or an
/// uploaded pod CSV) on a GPU cluster (the shipped openb nodes or an uploaded node CSV)
/// under 1 to 6 GPU placement policies and up to 10 seeds, with the benchmark protocol of
/// the FGD paper. Answers at once with the queued job; poll it for progress and results.
/// Jobs run one at a time in the background. They are stored and outlive a restart, but a
/// job queued or running when the server stopped becomes `failed` ("interrupted"): start
/// it again. Each tenant keeps its newest 100 finished jobs and may have 4 queued or
/// running (429 beyond; both set by `cpn serve`). Bad CSVs get 422 naming the field and
/// the line.
#[utoipa::path(post, path = "/api/v1/simulations", tag = "simulation", security(("bearer" = [])), request_body = SimulationRequest,
    responses((status = 202, body = Simulation), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 422, body = ErrorBody),
              (status = 429, description = "The tenant has as many simulations queued or running as it may", body = ErrorBody)))]
async fn create_simulation(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<SimulationRequest>,
) -> ApiResult<(StatusCode, Json<Simulation>)> {
    Ok((
        StatusCode::ACCEPTED,
        Json(simulation::submit(&s, &who, body).await?),
    ))
}

/// Replay a timed workload over the live federation (the federation twin): a shipped trace
/// or an uploaded pod CSV with `creation_time` and `deletion_time`, under one or two
/// policies (`default` is the built-in one). Tasks queue (priority, aging) until they fit
/// and run for their durations; per policy the answer gives cost, energy, mean latency to
/// the tasks' origin regions, queueing delay and time-averaged utilization per site.
/// Synchronous; at most 20,000 tasks.
#[utoipa::path(post, path = "/api/v1/simulations/federation", tag = "simulation", security(("bearer" = [])), request_body = FederationRequest,
    responses((status = 200, body = FederationResult), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn federation_replay(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<FederationRequest>,
) -> ApiResult<Json<FederationResult>> {
    Ok(Json(federation::replay(&s, &who, body).await?))
}

/// Simulation jobs of the caller's tenant (every tenant's for operators), newest first.
#[utoipa::path(get, path = "/api/v1/simulations", tag = "simulation", security(("bearer" = [])),
    responses((status = 200, body = [Simulation]), (status = 401, body = ErrorBody)))]
async fn list_simulations(
    State(s): State<AppState>,
    who: Principal,
) -> ApiResult<Json<Vec<Simulation>>> {
    Ok(Json(simulation::list(&s, &who).await?))
}

/// One simulation job: state, progress and, once succeeded, per-policy results.
#[utoipa::path(get, path = "/api/v1/simulations/{id}", tag = "simulation", security(("bearer" = [])),
    params(("id" = String, Path, description = "Simulation id")),
    responses((status = 200, body = Simulation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_simulation(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Simulation>> {
    Ok(Json(simulation::get(&s, &who, &id).await?))
}

/// Cancel a simulation job: a queued one ends at once, a running one at its next check
/// (between runs, and between the events of a run), in both cases in state `cancelled`,
/// without results. 409 `invalid_state` when the job has already ended.
#[utoipa::path(post, path = "/api/v1/simulations/{id}/cancel", tag = "simulation", security(("bearer" = [])),
    params(("id" = String, Path, description = "Simulation id")),
    responses((status = 200, body = Simulation), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
async fn cancel_simulation(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
) -> ApiResult<Json<Simulation>> {
    Ok(Json(simulation::cancel(&s, &who, &id).await?))
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}

/// Readiness: the store answers a read.
#[utoipa::path(get, path = "/readyz", tag = "health", responses((status = 200, body = Health), (status = 500, body = ErrorBody)))]
async fn readyz(State(s): State<AppState>) -> ApiResult<Json<Health>> {
    s.store.get_setting("initialized").await?;
    Ok(Json(Health {
        status: "ready".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    }))
}

/// Apply a tag to many objects at once: listed targets and/or a kind with a selector.
#[utoipa::path(post, path = "/api/v1/tags/{id}/apply", tag = "tags", security(("bearer" = [])), request_body = ApplyTag,
    params(("id" = String, Path, description = "Tag name or id")),
    responses((status = 200, body = TaggingResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn apply_tag(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ApplyTag>,
) -> ApiResult<Json<TaggingResult>> {
    Ok(Json(registry::apply_tag(&s, &who, &id, body).await?))
}

/// Remove a tag from many objects at once.
#[utoipa::path(post, path = "/api/v1/tags/{id}/remove", tag = "tags", security(("bearer" = [])), request_body = RemoveTag,
    params(("id" = String, Path, description = "Tag name or id")),
    responses((status = 200, body = TaggingResult), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn remove_tag(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RemoveTag>,
) -> ApiResult<Json<TaggingResult>> {
    Ok(Json(registry::remove_tag(&s, &who, &id, body).await?))
}

/// The federation graph with the metrics in force at `at` (default: now).
#[utoipa::path(get, path = "/api/v1/topology", tag = "topology", security(("bearer" = [])),
    params(("at" = Option<String>, Query, description = "RFC 3339 time of the state to show")),
    responses((status = 200, body = Topology), (status = 400, body = ErrorBody)))]
async fn get_topology(
    State(s): State<AppState>,
    who: Principal,
    q: QueryMap,
) -> ApiResult<Json<Topology>> {
    Ok(Json(
        topology::topology(&s, &who, crate::query::topology_at(q)?).await?,
    ))
}

/// Record an observed sample of a link's metrics.
#[utoipa::path(post, path = "/api/v1/links/{id}/metrics", tag = "topology", security(("bearer" = [])), request_body = LinkMetrics,
    params(("id" = String, Path, description = "Link id or name")),
    responses((status = 201, body = MetricSample<LinkMetrics>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_link_metrics(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(m): JsonBody<LinkMetrics>,
) -> ApiResult<(StatusCode, Json<MetricSample<LinkMetrics>>)> {
    Ok((
        StatusCode::CREATED,
        Json(topology::post_metrics(&s, &who, Kind::Link, &id, m).await?),
    ))
}

/// A link's metric history, newest first.
#[utoipa::path(get, path = "/api/v1/links/{id}/metrics", tag = "topology", security(("bearer" = [])),
    params(("id" = String, Path, description = "Link id or name"), ("limit" = Option<usize>, Query, description = "At most this many samples")),
    responses((status = 200, body = [MetricSample<LinkMetrics>]), (status = 404, body = ErrorBody)))]
async fn get_link_metrics(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    q: QueryMap,
) -> ApiResult<Json<Vec<MetricSample<LinkMetrics>>>> {
    Ok(Json(
        topology::metric_history(&s, &who, Kind::Link, &id, crate::query::metric_limit(q)?).await?,
    ))
}

/// Record an observed sample of a site's load.
#[utoipa::path(post, path = "/api/v1/sites/{id}/metrics", tag = "topology", security(("bearer" = [])), request_body = SiteMetrics,
    params(("id" = String, Path, description = "Site id or name")),
    responses((status = 201, body = MetricSample<SiteMetrics>), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_site_metrics(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    JsonBody(m): JsonBody<SiteMetrics>,
) -> ApiResult<(StatusCode, Json<MetricSample<SiteMetrics>>)> {
    Ok((
        StatusCode::CREATED,
        Json(topology::post_metrics(&s, &who, Kind::Site, &id, m).await?),
    ))
}

/// A site's metric history, newest first.
#[utoipa::path(get, path = "/api/v1/sites/{id}/metrics", tag = "topology", security(("bearer" = [])),
    params(("id" = String, Path, description = "Site id or name"), ("limit" = Option<usize>, Query, description = "At most this many samples")),
    responses((status = 200, body = [MetricSample<SiteMetrics>]), (status = 404, body = ErrorBody)))]
async fn get_site_metrics(
    State(s): State<AppState>,
    who: Principal,
    Path(id): Path<String>,
    q: QueryMap,
) -> ApiResult<Json<Vec<MetricSample<SiteMetrics>>>> {
    Ok(Json(
        topology::metric_history(&s, &who, Kind::Site, &id, crate::query::metric_limit(q)?).await?,
    ))
}

/// Load a scenario document (the JSON form of a scenario YAML file). Items whose name exists are skipped.
#[utoipa::path(post, path = "/api/v1/scenario", tag = "scenario", security(("bearer" = [])), request_body = Scenario,
    responses((status = 200, body = ScenarioReport), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn load_scenario(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<Scenario>,
) -> ApiResult<Json<ScenarioReport>> {
    if !who.is_operator() {
        return Err(ApiError::forbidden("only operators may load scenarios").into());
    }
    Ok(Json(scenario::load(&s, &who, body).await?))
}

/// Exchange a username and password (and a TOTP code, once enrolled) for a bearer token
/// that ends after `--session-idle` unused (default 12 h) or 7 days.
///
/// 401 `unauthenticated` for a wrong username or password (the same for both), a disabled
/// user; 401 `mfa_required` when the account has MFA and `totp` is missing or wrong; 403
/// when operators must use MFA and this one has none. 429 `too_many_requests` with
/// `Retry-After` (seconds) when the account or the client's address is locked out after
/// repeated failures (5 per account, 50 per address, then 1 s doubling per failure up to
/// 15 min; even the right password is refused until it ends), or when the password-hashing
/// pool is full. Every attempt is in the audit log.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "identity", request_body = LoginRequest,
    responses((status = 200, body = LoginResponse), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody),
              (status = 429, body = ErrorBody, headers(("Retry-After" = u64, description = "Seconds to wait")))))]
async fn login(
    State(s): State<AppState>,
    ClientAddr(source): ClientAddr,
    JsonBody(body): JsonBody<LoginRequest>,
) -> Result<Json<LoginResponse>, Response> {
    identity::login(&s, &source, body)
        .await
        .map(Json)
        .map_err(crate::response::IntoHttp::into_http)
}

/// Revoke the token used for this request.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "identity", security(("bearer" = [])), responses((status = 204), (status = 401, body = ErrorBody)))]
async fn logout(State(s): State<AppState>, who: Principal) -> ApiResult<StatusCode> {
    identity::logout(&s, &who).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The caller's account.
#[utoipa::path(get, path = "/api/v1/auth/whoami", tag = "identity", security(("bearer" = [])), responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
async fn whoami(State(s): State<AppState>, who: Principal) -> ApiResult<Json<User>> {
    Ok(Json(identity::whoami(&s, &who).await?))
}

/// Tenants: all for operators, one's own otherwise.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "identity", security(("bearer" = [])), responses((status = 200, body = Vec<Tenant>)))]
async fn list_tenants(State(s): State<AppState>, who: Principal) -> ApiResult<Json<Vec<Tenant>>> {
    Ok(Json(identity::list_tenants(&s, &who).await?))
}

/// Create a tenant (operators).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "identity", security(("bearer" = [])), request_body = CreateTenant,
    responses((status = 201, body = Tenant), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_tenant(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<CreateTenant>,
) -> ApiResult<(StatusCode, Json<Tenant>)> {
    Ok((
        StatusCode::CREATED,
        Json(identity::create_tenant(&s, &who, body).await?),
    ))
}

/// Set a tenant's quota (operators); it bounds what the tenant's decisions may hold at once.
#[utoipa::path(put, path = "/api/v1/tenants/{name}/quota", tag = "identity", security(("bearer" = [])), request_body = TenantQuota,
    params(("name" = String, Path, description = "Tenant name")),
    responses((status = 200, body = Tenant), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn set_quota(
    State(s): State<AppState>,
    who: Principal,
    Path(name): Path<String>,
    JsonBody(body): JsonBody<TenantQuota>,
) -> ApiResult<Json<Tenant>> {
    Ok(Json(identity::set_quota(&s, &who, &name, body).await?))
}

/// Users: all for operators, one's own tenant otherwise.
#[utoipa::path(get, path = "/api/v1/users", tag = "identity", security(("bearer" = [])), responses((status = 200, body = Vec<User>)))]
async fn list_users(State(s): State<AppState>, who: Principal) -> ApiResult<Json<Vec<User>>> {
    Ok(Json(identity::list_users(&s, &who).await?))
}

/// Create a user (operators).
#[utoipa::path(post, path = "/api/v1/users", tag = "identity", security(("bearer" = [])), request_body = CreateUser,
    responses((status = 201, body = User), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn create_user(
    State(s): State<AppState>,
    who: Principal,
    JsonBody(body): JsonBody<CreateUser>,
) -> ApiResult<(StatusCode, Json<User>)> {
    Ok((
        StatusCode::CREATED,
        Json(identity::create_user(&s, &who, body).await?),
    ))
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The document's frame; its paths and schemas come from the routes (`api_routes`).
#[derive(OpenApi)]
#[openapi(info(
    title = "cpn",
    description = "Control plane of a computing power network: registry, tags, topology, identity, scheduling, tasks, agents, events."
))]
struct ApiDoc;

/// Every API endpoint. Each handler's `#[utoipa::path]` is the one declaration of its method
/// and path: `routes!` derives both the axum route and the document's operation from it, so
/// the two cannot disagree. One `routes!` per path (utoipa-axum routes every path of one
/// call to all of its handlers).
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(whoami))
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(set_quota))
        .routes(routes!(list_users, create_user))
        .merge(platforms::routes())
        .merge(clouds::routes())
        .merge(sites::routes())
        .merge(resources::routes())
        .merge(links::routes())
        .merge(tags::routes())
        .merge(policies::routes())
        .routes(routes!(policy_versions))
        .routes(routes!(policy_rollback))
        .routes(routes!(schedule_plugins))
        .routes(routes!(schedule_explain))
        .routes(routes!(schedule_dry_run))
        .routes(routes!(schedule_place))
        .routes(routes!(list_decisions))
        .routes(routes!(get_decision))
        .routes(routes!(release_decision))
        .routes(routes!(apply_tag))
        .routes(routes!(remove_tag))
        .routes(routes!(get_topology))
        .routes(routes!(get_link_metrics, post_link_metrics))
        .routes(routes!(get_site_metrics, post_site_metrics))
        .routes(routes!(load_scenario))
        .routes(routes!(list_simulations, create_simulation))
        .routes(routes!(federation_replay))
        .routes(routes!(get_simulation))
        .routes(routes!(cancel_simulation))
        .merge(crate::api_runtime::routes())
        .merge(crate::api_flows::routes())
        .merge(crate::api_design::routes())
        .merge(crate::api_ops::routes())
        .merge(crate::api_accounts::routes())
        .merge(crate::api_join::routes())
        .merge(crate::api_market::routes())
        .merge(crate::api_market_accounts::routes())
        .merge(crate::api_notify::routes())
}

/// The OpenAPI document the server serves at `/api/v1/openapi.json`, for the tests of
/// `openapi.rs` (the router builds the same from its own routes). The modifiers run on
/// the whole document, once every operation is in it: `EdgeResponses` adds to each
/// operation what the extractors may answer.
#[cfg(test)]
pub(crate) fn openapi_document() -> utoipa::openapi::OpenApi {
    finish_document(api_routes().split_for_parts().1)
}

fn finish_document(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    use utoipa::Modify;
    BearerAuth.modify(&mut doc);
    EdgeResponses.modify(&mut doc);
    doc
}

async fn not_found() -> HttpError {
    HttpError(ApiError::new(
        Code::NotFound,
        "no such endpoint; the API is under /api/v1 and described at /api/v1/openapi.json",
    ))
}

async fn method_not_allowed() -> Response {
    let mut r = HttpError(ApiError::new(
        Code::BadRequest,
        "method not allowed on this endpoint",
    ))
    .into_response();
    *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
    r
}

pub(crate) fn router(state: AppState) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    // Serialized once: the document is fixed when the router is built. The route is added
    // by hand, as it describes the API rather than being part of it.
    let doc = axum::body::Bytes::from(
        serde_json::to_vec(&finish_document(doc)).expect("the OpenAPI document serializes"),
    );
    let openapi = move || {
        let doc = doc.clone();
        async move { ([(CONTENT_TYPE, "application/json")], doc) }
    };
    api.route("/api/v1/openapi.json", get(openapi))
        .merge(cpn_web::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::audit_layer::record_mutations,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(|_| {
            HttpError(ApiError::new(
                Code::Internal,
                "internal error; the server log has details",
            ))
            .into_response()
        }))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}
