//! Scheduling through the API (SC-ENG, SC-POL-05): explain one task and dry-run a batch
//! under one or two policies side by side, on a snapshot of the registry (planning; they
//! change nothing), and real decisions (`POST /schedule`): placed on the live cluster the
//! binder uses, stored, and held in the capacity ledger until released or expired.

use crate::caller::{Actor, Caller};
use crate::error::{ApiError, ApiResult};
use crate::inventory::{self, Inventory};
use crate::policy;
use crate::runtime::binder::{live_cluster, with_visibility};
use crate::runtime::ledger::{Hold, HoldKind};
use crate::runtime::placement::{DecisionBody, decision_view, task_from_spec};
use crate::state::Control;
use cpn_api_types::Code;
use cpn_api_types::schedule::*;
use cpn_sched::kpi::{KpiTotals, PlacementCost};
use cpn_sched::{Cluster, Mode, Scheduler, Task};

/// Upper bound of replicas in one dry-run, so one request cannot occupy the server.
pub const MAX_DRY_RUN_REPLICAS: u64 = 100_000;

pub async fn explain(state: &Control, who: &Caller, req: ExplainRequest) -> ApiResult<Explanation> {
    if req.hold_s.is_some() {
        return Err(ApiError::field(
            "hold_s",
            "explain holds nothing; hold_s is for POST /schedule",
        ));
    }
    let task = task_from_spec(&who.into(), &req.task, 0)?;
    let (choice, profile) = policy::choose(state, who, &task, req.policy.as_deref()).await?;
    let Inventory { cluster, .. } = inventory::snapshot(state, who).await?;
    let mut scheduler = Scheduler::new(profile, 0);
    let decision = scheduler.explain(&task, &cluster);
    let planning_only = match &decision.chosen_site {
        Some(site) => crate::runtime::livestate::planning_only(state, site).await?,
        None => None,
    };
    Ok(Explanation {
        task: task.id.clone(),
        policy: choice,
        decision: decision_view(&decision),
        planning_only,
        decided_at: None,
    })
}

/// Longest hold a decision may ask for (`hold_s`): 30 days.
pub const MAX_HOLD_S: u64 = 30 * 24 * 3600;

/// Schedules one task for real, on the live cluster the binder uses (the same
/// `live_cluster` and live filters as "why here", the sites the caller may see), under the
/// one capacity lock: stores the placement with its explanation and puts its hold in the
/// capacity ledger, so the binder places nothing on that capacity until it is released or
/// expires.
pub async fn place(
    state: &Control,
    who: &Caller,
    req: ExplainRequest,
) -> ApiResult<DecisionRecordView> {
    if req.task.replicas.is_some_and(|r| r != 1) {
        return Err(ApiError::field(
            "task.replicas",
            "a decision places one replica; compare replica spreads with dry-run",
        ));
    }
    if let Some(h) = req.hold_s
        && !(1..=MAX_HOLD_S).contains(&h)
    {
        return Err(ApiError::field(
            "hold_s",
            format!("must be 1..={MAX_HOLD_S} seconds, got {h}"),
        ));
    }
    let task = task_from_spec(&who.into(), &req.task, 0)?;
    let _capacity = state.runtime.capacity_lock.lock().await;
    let (choice, profile) = policy::choose(state, who, &task, req.policy.as_deref()).await?;
    let nodes = state.store.list_nodes().await?;
    let mut live = live_cluster(state, &nodes, &inventory::admits(who)).await?;
    let mut scheduler = Scheduler::new(with_visibility(profile, &live.site_access), 0);
    let (result, decision) = scheduler.schedule(&task, &mut live.cluster, Mode::Explain);
    let mut decision = decision.expect("explain mode returns a decision");
    live.rename_nodes(&mut decision);
    let decision = decision_view(&decision);
    let placement = result.map_err(|u| {
        let reasons: Vec<String> = u.reasons.iter().map(|(r, n)| format!("{r} x{n}")).collect();
        let hint = if u.forever {
            "no site will ever fit; change the task"
        } else {
            "retry when capacity frees up"
        };
        ApiError::new(
            Code::Unschedulable,
            format!(
                "no live node can take task {:?} now ({}); {hint}",
                task.id,
                reasons.join(", ")
            ),
        )
    })?;
    let now = chrono::Utc::now();
    let expires_at = req
        .hold_s
        .map(|h| now + chrono::TimeDelta::seconds(h as i64));
    let node_id = live.node_ids[placement.node as usize].clone();
    let node_name = live.node_names[placement.node as usize].clone();
    let site_name = live.site_names[placement.site as usize].clone();
    let site_id = live.model.sites[live.site_model[placement.site as usize]]
        .id
        .clone();
    let mut body = serde_json::json!({
        "policy": choice, "decision": decision, "gpus": placement.gpus, "node_id": node_id,
    });
    if let Some(at) = expires_at {
        body["expires_at"] = serde_json::json!(at);
    }
    let record = state
        .store
        .create_decision(cpn_store::NewDecision {
            tenant: task.tenant.clone(),
            task: task.id.clone(),
            site_id,
            node: node_name,
            demand: serde_json::to_value(inventory::StoredDemand::from(task.demand))
                .map_err(internal)?,
            body,
            now,
        })
        .await?;
    state.runtime.ledger().hold(
        HoldKind::Decision,
        &record.id,
        Hold {
            target: node_id,
            tenant: task.tenant.clone(),
            demand: task.demand,
            gpus: placement.gpus.clone(),
            expires_at,
            lease: None,
        },
    );
    Ok(DecisionRecordView {
        id: record.id,
        task: record.task,
        tenant: record.tenant,
        site: site_name,
        site_id: record.site_id,
        node: record.node,
        gpus: placement.gpus,
        resources: req.task.resources,
        policy: choice,
        decision,
        created_at: record.created_at,
        expires_at,
        released_at: None,
    })
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, e.to_string())
}

fn record_view(
    state_sites: &std::collections::HashMap<String, String>,
    r: cpn_store::DecisionRecord,
) -> ApiResult<DecisionRecordView> {
    let body: DecisionBody = serde_json::from_value(r.body)
        .map_err(|e| internal(format!("stored decision {}: {e}", r.id)))?;
    let demand: inventory::StoredDemand = serde_json::from_value(r.demand)
        .map_err(|e| internal(format!("stored decision {}: {e}", r.id)))?;
    Ok(DecisionRecordView {
        site: state_sites
            .get(&r.site_id)
            .cloned()
            .unwrap_or_else(|| r.site_id.clone()),
        id: r.id,
        task: r.task,
        tenant: r.tenant,
        site_id: r.site_id,
        node: r.node,
        gpus: body.gpus,
        resources: TaskResources {
            cpu_cores: demand.cpu_milli as f64 / 1000.0,
            memory_gib: demand.memory_mib as f64 / 1024.0,
            gpus: demand.gpus,
            gpu_share: (demand.gpus == 1 && demand.gpu_milli < 1000)
                .then(|| demand.gpu_milli as f64 / 1000.0),
            storage_gib: demand.storage_gib as f64,
        },
        policy: body.policy,
        decision: body.decision,
        created_at: r.created_at,
        expires_at: body.expires_at,
        released_at: r.released_at,
    })
}

async fn site_names(state: &Control) -> ApiResult<std::collections::HashMap<String, String>> {
    Ok(state
        .store
        .list_objects(cpn_model::Kind::Site, &cpn_store::ListQuery::default())
        .await?
        .into_iter()
        .map(|s| (s.id, s.name))
        .collect())
}

/// A stored decision the caller may see: its own tenant's, or any for operators.
async fn visible_decision(
    state: &Control,
    who: &Caller,
    id: &str,
) -> ApiResult<cpn_store::DecisionRecord> {
    match state.store.get_decision(id).await? {
        Some(d) if who.is_operator() || d.tenant == who.tenant => Ok(d),
        _ => Err(ApiError::not_found("decision", id)),
    }
}

pub async fn get_decision(
    state: &Control,
    who: &Caller,
    id: &str,
) -> ApiResult<DecisionRecordView> {
    let d = visible_decision(state, who, id).await?;
    record_view(&site_names(state).await?, d)
}

/// Which decisions to list (parsed at the edge, `query`).
pub struct DecisionFilter {
    pub page: crate::registry::ListParams,
    /// Only those still holding capacity.
    pub active_only: bool,
}

pub async fn list_decisions(
    state: &Control,
    who: &Caller,
    filter: DecisionFilter,
) -> ApiResult<cpn_api_types::Page<DecisionRecordView>> {
    let DecisionFilter {
        page: params,
        active_only,
    } = filter;
    let mut records = state
        .store
        .list_decisions(cpn_store::DecisionQuery {
            tenant: (!who.is_operator()).then(|| who.tenant.clone()),
            active_only,
            after: params.cursor.clone(),
            limit: Some(params.limit + 1),
        })
        .await?;
    let next_cursor = if records.len() > params.limit {
        records.truncate(params.limit);
        records.last().map(|r| r.id.clone())
    } else {
        None
    };
    let names = site_names(state).await?;
    let items = records
        .into_iter()
        .map(|r| record_view(&names, r))
        .collect::<ApiResult<Vec<_>>>()?;
    Ok(cpn_api_types::Page { items, next_cursor })
}

/// Gives a decision's capacity back and wakes the binder. Idempotent: releasing twice
/// keeps the first time.
pub async fn release_decision(
    state: &Control,
    who: &Caller,
    id: &str,
) -> ApiResult<DecisionRecordView> {
    let d = visible_decision(state, who, id).await?;
    let released = {
        let _capacity = state.runtime.capacity_lock.lock().await;
        let released = state
            .store
            .release_decision(&d.id, chrono::Utc::now())
            .await?;
        state.runtime.ledger().release(HoldKind::Decision, &d.id);
        released
    };
    state.runtime.capacity_changed();
    record_view(&site_names(state).await?, released)
}

pub async fn dry_run(state: &Control, who: &Caller, req: DryRunRequest) -> ApiResult<DryRunResult> {
    if req.policies.is_empty() || req.policies.len() > 2 {
        return Err(ApiError::field(
            "policies",
            "name one or two policies to compare (`default` is the built-in one)",
        ));
    }
    if req.tasks.is_empty() {
        return Err(ApiError::field("tasks", "give at least one task"));
    }
    let mut tasks: Vec<Batch> = Vec::with_capacity(req.tasks.len());
    let mut replicas_total = 0u64;
    let actor = Actor::from(who);
    for (i, spec) in req.tasks.iter().enumerate() {
        let task = task_from_spec(&actor, spec, i).map_err(|e| e.within(&format!("tasks[{i}]")))?;
        let replicas = spec.replicas.unwrap_or(1);
        replicas_total += replicas as u64;
        let spread = spec.spread.clone().unwrap_or_default();
        if spread.mode == SpreadMode::ByWeights && spread.weights.is_empty() {
            return Err(ApiError::field(
                format!("tasks[{i}].spread.weights"),
                "by_weights needs site weights",
            ));
        }
        for (site, w) in &spread.weights {
            if !(w.is_finite() && *w >= 0.0) {
                return Err(ApiError::field(
                    format!("tasks[{i}].spread.weights.{site}"),
                    "a weight must be a finite number >= 0",
                ));
            }
        }
        tasks.push(Batch {
            task,
            replicas,
            spread,
        });
    }
    if replicas_total > MAX_DRY_RUN_REPLICAS {
        return Err(ApiError::field(
            "tasks",
            format!("at most {MAX_DRY_RUN_REPLICAS} replicas per dry-run, got {replicas_total}"),
        ));
    }
    let Inventory { cluster, .. } = inventory::snapshot(state, who).await?;
    for (i, b) in tasks.iter().enumerate() {
        if let Some(unknown) = b
            .spread
            .weights
            .keys()
            .find(|s| cluster.site_by_name(s).is_none())
        {
            return Err(ApiError::field(
                format!("tasks[{i}].spread.weights.{unknown}"),
                format!("no site named {unknown:?}"),
            ));
        }
    }
    let mut runs = Vec::new();
    for name in &req.policies {
        let (_, profile) = policy::choose(state, who, &tasks[0].task, Some(name))
            .await
            .map_err(|e| e.within("policies"))?;
        // Scheduling a batch is CPU work; keep it off the async workers.
        let cluster = cluster.clone();
        let tasks = tasks.clone();
        let seed = req.seed;
        let name = name.clone();
        let run =
            tokio::task::spawn_blocking(move || run_batch(&name, profile, cluster, &tasks, seed))
                .await
                .map_err(|e| {
                    ApiError::new(
                        cpn_api_types::Code::Internal,
                        format!("dry-run worker: {e}"),
                    )
                })?;
        runs.push(run);
    }
    Ok(DryRunResult { runs })
}

/// One task of a dry-run batch with its replica count and spread.
#[derive(Clone)]
struct Batch {
    task: Task,
    replicas: u32,
    spread: ReplicaSpread,
}

/// Places every replica on a private copy of the cluster, tasks in queue order (priority
/// classes, FIFO inside a class), and sums up the KPIs.
fn run_batch(
    policy: &str,
    profile: cpn_sched::Profile,
    mut cluster: Cluster,
    batch: &[Batch],
    seed: u64,
) -> PolicyRun {
    let mut scheduler = Scheduler::new(profile, seed);
    let mut queue = cpn_sched::queue::TaskQueue::new(0);
    for b in batch {
        queue.push(b, b.task.priority, 0);
    }
    let mut placements = Vec::new();
    let mut totals = KpiTotals::default();
    while let Some(b) = queue.pop(0) {
        let task = &b.task;
        // Which site each replica is aimed at: none (by score) or a division's site.
        let targets: Vec<Option<cpn_sched::SiteIdx>> = match b.spread.mode {
            SpreadMode::ByScore => vec![None; b.replicas as usize],
            SpreadMode::ByCapacity | SpreadMode::ByWeights => {
                let weights: Vec<(cpn_sched::SiteIdx, f64)> =
                    if b.spread.mode == SpreadMode::ByCapacity {
                        let feasible: Vec<cpn_sched::SiteIdx> = scheduler
                            .rank_sites(task, &cluster)
                            .into_iter()
                            .map(|(s, _)| s)
                            .collect();
                        cpn_sched::replicas::capacity_weights(&cluster, task, &feasible)
                    } else {
                        b.spread
                            .weights
                            .iter()
                            .filter_map(|(name, w)| cluster.site_by_name(name).map(|s| (s, *w)))
                            .collect()
                    };
                let division = cpn_sched::replicas::divide(b.replicas, &weights);
                let mut t: Vec<Option<cpn_sched::SiteIdx>> = division
                    .into_iter()
                    .flat_map(|(s, n)| std::iter::repeat_n(Some(s), n as usize))
                    .collect();
                // Replicas no site can take (zero weights, no capacity) are still attempted by score.
                t.resize(b.replicas as usize, None);
                t
            }
        };
        for (replica, target) in targets.into_iter().enumerate() {
            let result = match target {
                None => scheduler.schedule(task, &mut cluster, Mode::Fast).0,
                Some(site) => scheduler.schedule_in_site(task, &mut cluster, site),
            };
            placements.push(account(&cluster, task, replica as u32, result, &mut totals));
        }
    }
    let utilization = cluster
        .sites
        .iter()
        .map(|s| {
            let frac = |free: u64, total: u64| {
                if total == 0 {
                    0.0
                } else {
                    1.0 - free as f64 / total as f64
                }
            };
            SiteUtilization {
                site: s.spec.name.clone(),
                gpu: frac(s.free.gpu_milli, s.total.gpu_milli),
                cpu: frac(s.free.cpu_milli, s.total.cpu_milli),
            }
        })
        .collect();
    PolicyRun {
        policy: policy.to_string(),
        placements,
        kpis: Kpis {
            placed: totals.placed,
            unplaced: totals.unplaced,
            total_cost_cny: totals.cost_cny,
            energy_kwh: totals.energy_kwh,
            mean_latency_ms: totals.mean_latency_ms(),
            utilization,
        },
    }
}

/// Adds one replica's outcome to the KPIs (`cpn_sched::kpi`, as plans and the twins count
/// them) and describes it.
fn account(
    cluster: &Cluster,
    task: &Task,
    replica: u32,
    result: Result<cpn_sched::Placement, cpn_sched::Unschedulable>,
    totals: &mut KpiTotals,
) -> PlacementView {
    match result {
        Ok(p) => {
            totals.add(&PlacementCost::of(cluster, task, &p), task.est_hours);
            let node = cluster.node(p.node);
            let site = cluster.site(p.site);
            PlacementView {
                task: task.id.clone(),
                replica,
                site: Some(site.spec.name.clone()),
                node: Some(node.spec.name.clone()),
                score: (p.score != 0.0).then_some(p.score),
                unplaced: Vec::new(),
            }
        }
        Err(u) => {
            totals.add_unplaced();
            PlacementView {
                task: task.id.clone(),
                replica,
                site: None,
                node: None,
                score: None,
                unplaced: u
                    .reasons
                    .into_iter()
                    .map(|(reason, count)| RejectionCount { reason, count })
                    .collect(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::caller::SystemActor;
    use cpn_api_types::identity::Role;

    fn for_tenant(tenant: &str) -> TaskSpec {
        TaskSpec {
            name: "t".into(),
            tenant: Some(tenant.into()),
            ..Default::default()
        }
    }

    /// The binder converts a task for its own tenant only: it acts with a user's rights in
    /// that tenant, not as the operator it used to impersonate.
    #[test]
    fn the_binder_converts_only_its_tasks_tenant() {
        let binder = Actor::System(SystemActor::Binder {
            tenant: "acme".into(),
        });
        let task = task_from_spec(&binder, &for_tenant("acme"), 0).expect("own tenant");
        assert_eq!(task.tenant, "acme");
        let err = task_from_spec(&binder, &for_tenant("globex"), 0).unwrap_err();
        assert_eq!(err.code, cpn_api_types::Code::Forbidden);
        let operator = Actor::from(&Caller {
            user_id: "u0".into(),
            username: "admin".into(),
            tenant: crate::caller::SYSTEM_TENANT.into(),
            role: Role::Operator,
        });
        assert!(task_from_spec(&operator, &for_tenant("globex"), 0).is_ok());
    }
}
