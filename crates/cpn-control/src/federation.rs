//! The federation twin as a service: replays a timed workload (a shipped trace or an
//! uploaded pod CSV with creation and deletion times) over a snapshot of the live federation
//! under one or two policies, with `cpn_sim::federation`, and answers with each policy's
//! cost, energy, latency, queueing delay and per-site utilization. Synchronous but bounded
//! ([`MAX_FEDERATION_TASKS`]); the replays run on the blocking pool.

use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::inventory::{self, Inventory};
use crate::policy;
use crate::registry::violations_to_error;
use crate::simulation::{csv_error, read, shipped};
use crate::state::Control;
use cpn_api_types::Code;
use cpn_api_types::registry::{Validate, Violations};
use cpn_api_types::simulation::{
    FederationPlacement, FederationReport, FederationRequest, FederationResult, FederationSiteUse,
    MAX_FEDERATION_TASKS, TimedTaskSubmit,
};
use cpn_sched::Cluster;
use cpn_sim::federation::{self, OriginAssignment, TimedTask, WorkloadOptions};
use cpn_sim::trace::{self, PodRow};
use std::path::Path;

/// A `tasks` workload as the scheduler's timed tasks, each converted as the binder converts
/// a submitted task (`placement_spec`, `task_from_spec`), named by its task name.
fn timed_tasks(
    who: &Caller,
    timed: &[TimedTaskSubmit],
    limit: usize,
    time_scale: f64,
) -> ApiResult<Vec<TimedTask>> {
    if timed.len() > limit {
        return Err(ApiError::field(
            "workload.tasks",
            format!("{} tasks, more than the limit of {limit}", timed.len()),
        ));
    }
    timed
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let field = format!("workload.tasks[{i}].task");
            let mut v = Violations::default();
            t.task.validate(&mut v);
            violations_to_error(v).map_err(|e| e.within(&field))?;
            let spec = crate::runtime::tasks::placement_spec(&t.task, &who.tenant);
            let mut task = crate::runtime::placement::task_from_spec(&who.into(), &spec, 0)
                .map_err(|e| e.within(&field))?;
            task.id = t.task.name.clone();
            Ok(TimedTask {
                arrival_s: (t.arrival_s as f64 * time_scale).round() as u64,
                duration_s: ((t.duration_s as f64 * time_scale).round() as u64).max(1),
                task,
            })
        })
        .collect()
}

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
            "give exactly one of `trace` (a shipped trace name), `pods_csv` or `tasks`",
        )),
    }
}

/// The report on the wire; `names` (per task, per node) when placements were asked for.
fn wire(
    policy: &str,
    r: federation::FederationReport,
    names: Option<(&[TimedTask], &Cluster, &[String])>,
    shown: &dyn Fn(usize) -> bool,
) -> FederationReport {
    let placements = names.map(|(tasks, cluster, node_names)| {
        tasks
            .iter()
            .zip(&r.placements)
            .map(|(t, p)| FederationPlacement {
                task: t.task.id.clone(),
                site: p.map(|(s, _, _)| cluster.site(s).spec.name.clone()),
                at_s: p.map(|(_, _, at)| at),
                node: p.map(|(_, n, _)| {
                    node_names
                        .get(n as usize)
                        .cloned()
                        .unwrap_or_else(|| cluster.node(n).spec.name.clone())
                }),
            })
            .collect()
    });
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
            .enumerate()
            .filter(|(i, _)| shown(*i))
            .map(|(_, s)| FederationSiteUse {
                site: s.site,
                gpu: s.gpu,
                cpu: s.cpu,
                placed: s.placed,
            })
            .collect(),
        placements,
    }
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, format!("federation replay worker: {e}"))
}

/// Validates the request, builds the workload and replays it under each policy.
pub async fn replay(
    state: &Control,
    who: &Caller,
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
    // The federation: the live nodes as the binder sees them (every site, the binder's
    // filters in front of the profile), or the registered capacity.
    let (cluster, node_names, live_sites) = if req.live {
        let nodes = state.store.list_nodes().await?;
        let live = crate::runtime::livestate::live_cluster(state, &nodes, &|_, _| true).await?;
        (live.cluster, live.node_names, Some(live.site_access))
    } else {
        let Inventory { cluster, .. } = inventory::snapshot(state, who).await?;
        (cluster, Vec::new(), None)
    };
    let (tasks, field) = match &req.workload.tasks {
        Some(timed) => (
            timed_tasks(who, timed, limit, time_scale)?,
            "workload.tasks",
        ),
        None => {
            let data = state.sim_data_dir.clone();
            let req2 = req.clone();
            let pods = tokio::task::spawn_blocking(move || load_pods(data.as_deref(), &req2))
                .await
                .map_err(internal)??;
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
            let field = if req.workload.trace.is_some() {
                "workload.trace"
            } else {
                "workload.pods_csv"
            };
            (federation::workload(&pods, &regions, &opts), field)
        }
    };
    let tasks = std::sync::Arc::new(tasks);
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
        let profile = match &live_sites {
            Some(sites) => crate::runtime::binder::with_visibility(profile, sites),
            None => profile,
        };
        let replayed = cluster.clone();
        let workload = tasks.clone();
        let seed = req.seed;
        let report = tokio::task::spawn_blocking(move || {
            federation::run(
                replayed,
                &workload,
                profile,
                seed,
                cpn_sched::queue::DEFAULT_AGING_S,
            )
        })
        .await
        .map_err(internal)?;
        let names = req
            .placements
            .then_some((tasks.as_slice(), &cluster, node_names.as_slice()));
        // The live cluster holds every tenant's sites (as the binder's does): the caller
        // sees the use of those it may see. Placements land only there (the visibility
        // filter), and the registered snapshot holds only those anyway.
        let shown = |i: usize| {
            live_sites.as_ref().is_none_or(|sites| {
                who.is_operator()
                    || sites.get(i).is_some_and(|s| {
                        crate::registry::visible_to_tenant(s.public, &s.tenant, &who.tenant)
                    })
            })
        };
        reports.push(wire(name, report, names, &shown));
    }
    Ok(FederationResult {
        tasks: tasks.len(),
        reports,
    })
}
