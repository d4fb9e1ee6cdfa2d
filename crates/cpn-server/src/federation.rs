//! The federation twin as a service: replays a timed workload (a shipped trace or an
//! uploaded pod CSV with creation and deletion times) over a snapshot of the live federation
//! under one or two policies, with `cpn_sim::federation`, and answers with each policy's
//! cost, energy, latency, queueing delay and per-site utilization. Synchronous but bounded
//! ([`MAX_FEDERATION_TASKS`]); the replays run on the blocking pool.

use crate::error::{ApiError, ApiResult};
use crate::extract::Principal;
use crate::inventory::{self, Inventory};
use crate::policy;
use crate::simulation::{csv_error, read, shipped};
use crate::state::AppState;
use cpn_api_types::Code;
use cpn_api_types::simulation::{
    FederationReport, FederationRequest, FederationResult, FederationSiteUse, MAX_FEDERATION_TASKS,
};
use cpn_sim::federation::{self, OriginAssignment, WorkloadOptions};
use cpn_sim::trace::{self, PodRow};
use std::path::Path;

/// Reads the workload's pod rows; blocking.
fn load_pods(data: Option<&Path>, req: &FederationRequest) -> ApiResult<Vec<PodRow>> {
    match (&req.workload.trace, &req.workload.pods_csv) {
        (Some(t), None) => {
            if t.is_empty()
                || !t
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(ApiError::field(
                    "workload.trace",
                    format!("{t:?} is not a trace name such as `default`, `cpu050`, `gpushare40`"),
                ));
            }
            let file = format!("openb_pod_list_{t}.csv");
            let path = shipped(data, &file, "workload.trace")?;
            let text = read(&path, "workload.trace")?;
            trace::parse_pods(&file, &text).map_err(|e| csv_error("workload.trace", &e))
        }
        (None, Some(text)) => {
            trace::parse_pods("pods.csv", text).map_err(|e| csv_error("workload.pods_csv", &e))
        }
        _ => Err(ApiError::field(
            "workload",
            "give exactly one of `trace` (a shipped trace name) or `pods_csv`",
        )),
    }
}

fn wire(policy: &str, r: federation::FederationReport) -> FederationReport {
    FederationReport {
        policy: policy.to_string(),
        placed: r.placed,
        dropped: r.dropped,
        still_waiting: r.still_waiting,
        total_cost_cny: r.total_cost_cny,
        energy_kwh: r.energy_kwh,
        mean_latency_ms: r.mean_latency_ms,
        mean_queueing_delay_s: r.mean_queueing_delay_s,
        p95_queueing_delay_s: r.p95_queueing_delay_s,
        makespan_s: r.makespan_s,
        sites: r
            .sites
            .into_iter()
            .map(|s| FederationSiteUse {
                site: s.site,
                gpu: s.gpu,
                cpu: s.cpu,
                placed: s.placed,
            })
            .collect(),
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("federation replay worker: {e}"))
}

/// Validates the request, builds the workload and replays it under each policy.
pub async fn replay(
    state: &AppState,
    who: &Principal,
    req: FederationRequest,
) -> ApiResult<FederationResult> {
    if req.policies.is_empty() || req.policies.len() > 2 {
        return Err(ApiError::field(
            "policies",
            "name one or two policies to compare (`default` is the built-in one)",
        ));
    }
    let limit = req.workload.limit.unwrap_or(MAX_FEDERATION_TASKS);
    if limit == 0 || limit > MAX_FEDERATION_TASKS {
        return Err(ApiError::field(
            "workload.limit",
            format!("give 1 to {MAX_FEDERATION_TASKS} tasks"),
        ));
    }
    let time_scale = req.workload.time_scale.unwrap_or(1.0);
    if !(time_scale.is_finite() && time_scale > 0.0) {
        return Err(ApiError::field(
            "workload.time_scale",
            "must be a finite number > 0",
        ));
    }
    let data = state.sim_data_dir.clone();
    let req2 = req.clone();
    let pods = tokio::task::spawn_blocking(move || load_pods(data.as_deref(), &req2))
        .await
        .map_err(internal)??;
    let Inventory { cluster, .. } = inventory::snapshot(state, who).await?;
    let mut regions: Vec<String> = cluster
        .sites
        .iter()
        .map(|s| s.spec.region.clone())
        .filter(|r| !r.is_empty())
        .collect();
    regions.sort();
    regions.dedup();
    let opts = WorkloadOptions {
        limit: Some(limit),
        time_scale,
        origins: OriginAssignment::Seeded(req.seed),
    };
    let tasks = std::sync::Arc::new(federation::workload(&pods, &regions, &opts));
    let field = if req.workload.trace.is_some() {
        "workload.trace"
    } else {
        "workload.pods_csv"
    };
    let Some(first) = tasks.first() else {
        return Err(ApiError::field(
            field,
            "no row has both `creation_time` and `deletion_time`",
        ));
    };
    let mut reports = Vec::new();
    for name in &req.policies {
        let (_, profile) = policy::choose(state, who, &first.task, Some(name))
            .await
            .map_err(|e| e.within("policies"))?;
        let cluster = cluster.clone();
        let tasks = tasks.clone();
        let seed = req.seed;
        let report = tokio::task::spawn_blocking(move || {
            federation::run(
                cluster,
                &tasks,
                profile,
                seed,
                cpn_sched::queue::DEFAULT_AGING_S,
            )
        })
        .await
        .map_err(internal)?;
        reports.push(wire(name, report));
    }
    Ok(FederationResult {
        tasks: tasks.len(),
        reports,
    })
}
