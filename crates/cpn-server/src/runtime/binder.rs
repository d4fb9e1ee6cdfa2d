//! The binding loop: pending tasks are placed by the scheduler on the live inventory and
//! bound durably before any executor hears of them (issue #5 item 4).
//!
//! One cycle reads the due pending tasks in queue order (priority, then age), builds the
//! cluster from the nodes executors reported (minus what active tasks and allocations
//! hold), runs the same `cpn_sched::Scheduler` that explain and the twin use, and commits
//! every binding of the cycle in one store transaction. Cycles run one at a time, so
//! capacity is never promised twice.

use super::lifecycle::Task;
use crate::error::ApiResult;
use crate::policy::{self, DEFAULT_POLICY};
use crate::registry::{Inheritance, decode_spec, visible_to_tenant};
use crate::state::AppState;
use chrono::Utc;
use cpn_api_types::registry::{SiteHealth, SiteSpec};
use cpn_api_types::schedule::TaskResources;
use cpn_api_types::tasks::TaskState;
use cpn_model::{GeoPoint, Kind, Labels};
use cpn_sched::cycle::Mode;
use cpn_sched::framework::SiteFilter;
use cpn_sched::task::Chip;
use cpn_sched::{
    Cluster, ClusterBuilder, CycleState, NodeIdx, NodeSpec, Plugin, Profile, Scheduler, Verdict,
};
use cpn_store::{ListQuery, NodeRecord, TaskOrder, TaskQuery, TaskWrite};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Most tasks one cycle considers.
pub const BATCH: usize = 4096;
/// Label of every live node: its name, for node selectors.
pub const NODE_NAME_LABEL: &str = "cpn.node/name";

/// Least time between the starts of two cycles. Under a stream of submissions this
/// batches them: one cycle's fixed cost (reading sites, nodes, policies) is shared by
/// every task that arrived meanwhile, at the price of at most this much dispatch delay.
pub const MIN_CYCLE_INTERVAL: Duration = Duration::from_millis(15);

pub async fn run(state: AppState) {
    let rt = state.runtime.clone();
    loop {
        let started = tokio::time::Instant::now();
        let considered = match cycle(&state).await {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "binding cycle failed; retrying");
                0
            }
        };
        if considered >= BATCH {
            continue;
        }
        tokio::select! {
            _ = rt.binder_wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        tokio::time::sleep_until(started + MIN_CYCLE_INTERVAL).await;
    }
}

/// The live cluster: one site per registry site with nodes, one node per node record.
pub struct LiveCluster {
    pub cluster: Cluster,
    pub node_ids: Vec<String>,
    pub node_names: Vec<String>,
    pub site_names: Vec<String>,
    /// Per site (by index): whether it is public, and its tenant.
    pub site_access: Arc<Vec<(bool, String)>>,
}

/// Name of the site filter that keeps a task off sites its tenant cannot see.
pub const SITE_VISIBILITY: &str = "site_visibility";
/// Reason code of that filter.
pub const NOT_VISIBLE: &str = "site_not_visible";

/// The live cluster holds every tenant's sites, so every profile the binder (and "why
/// here") runs gets this filter first: a task lands only on a site its tenant may see,
/// by `registry::visible_to_tenant`, the rule the registry reads with.
pub struct SiteVisibility {
    site_access: Arc<Vec<(bool, String)>>,
}

impl Plugin for SiteVisibility {
    fn name(&self) -> &'static str {
        SITE_VISIBILITY
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        Some(self)
    }
}

impl SiteFilter for SiteVisibility {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &cpn_sched::Task,
        _cluster: &Cluster,
        site: cpn_sched::SiteIdx,
    ) -> Verdict {
        let visible = self
            .site_access
            .get(site as usize)
            .is_some_and(|(public, tenant)| visible_to_tenant(*public, tenant, &task.tenant));
        if visible {
            Verdict::Fits
        } else {
            Verdict::RejectsForever(state.reason(SITE_VISIBILITY, NOT_VISIBLE, || {
                format!("the site is private to another tenant than {}", task.tenant)
            }))
        }
    }
}

/// `profile` with the visibility filter of `live` in front of its other plugins.
pub fn with_visibility(mut profile: Profile, site_access: &Arc<Vec<(bool, String)>>) -> Profile {
    profile.plugins.insert(
        0,
        Arc::new(SiteVisibility {
            site_access: site_access.clone(),
        }),
    );
    profile
}

pub async fn live_cluster(state: &AppState, nodes: &[NodeRecord]) -> ApiResult<LiveCluster> {
    let mut b = ClusterBuilder::new();
    crate::inventory::add_quotas(state, &mut b).await?;
    let mut inh = Inheritance::load(state).await?;
    let mut sites: HashMap<String, cpn_sched::SiteIdx> = HashMap::new();
    let mut site_names = Vec::new();
    let mut site_access = Vec::new();
    let all_sites = state
        .store
        .list_objects(Kind::Site, &ListQuery::default())
        .await?;
    for rec in &all_sites {
        if !nodes.iter().any(|n| n.site_id == rec.id) {
            continue;
        }
        let spec: SiteSpec = decode_spec(rec)?;
        let mut labels = inh.effective(rec).await?;
        labels.insert(super::tasks::SITE_NAME_LABEL.into(), rec.name.clone());
        let i = b.site(cpn_sched::SiteSpec {
            name: rec.name.clone(),
            region: spec.region.clone(),
            labels,
            location: Some(GeoPoint::new(spec.location.lat, spec.location.lon)),
            pue: spec.pue,
            electricity_price: spec.electricity_price,
            carbon_intensity: spec.carbon_intensity,
            healthy: spec.health != SiteHealth::Down,
        });
        sites.insert(rec.id.clone(), i);
        site_names.push(rec.name.clone());
        site_access.push((rec.public, rec.tenant.clone()));
    }
    let mut node_ids = Vec::new();
    let mut node_names = Vec::new();
    for n in nodes {
        let Some(&site) = sites.get(&n.site_id) else {
            continue;
        };
        let inv = super::nodes::inventory_of(n);
        let gpus = inv.gpus.len() as u32;
        let mut labels: Labels = n.labels.clone();
        labels.insert(NODE_NAME_LABEL.into(), n.name.clone());
        b.node(NodeSpec {
            name: n.id.clone(),
            site,
            labels,
            healthy: n.ready && !n.cordoned && n.occupied_by.is_none(),
            cpu_milli: inv.cpu_cores as u64 * 1000,
            memory_mib: inv.memory_mib,
            storage_gib: inv
                .disks
                .iter()
                .map(|d| d.available_gib)
                .fold(0.0, f64::max) as u64,
            chip: Some(if gpus > 0 { Chip::Gpu } else { Chip::Cpu }),
            model: inv
                .gpus
                .first()
                .map(|g| g.model.clone())
                .unwrap_or_else(|| inv.cpu_model.clone()),
            architecture: inv.arch.clone(),
            gpus,
            tflops_per_unit: 0.0,
            price_per_unit_hour: 0.0,
            watts_per_unit: 0.0,
        });
        node_ids.push(n.id.clone());
        node_names.push(n.name.clone());
    }
    let mut cluster = b.build().map_err(|e| {
        crate::error::ApiError::new(
            cpn_api_types::Code::Internal,
            format!("live nodes do not form a cluster: {e}"),
        )
    })?;
    let index: HashMap<&str, NodeIdx> = node_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as NodeIdx))
        .collect();
    // Capacity held by active tasks and by allocations (I2).
    {
        let usage = state
            .runtime
            .usage
            .lock()
            .expect("usage lock is never poisoned");
        for h in usage.by_task.values() {
            if let Some(&n) = index.get(h.node_id.as_str())
                && !cluster.reserve_exact(&h.tenant, n, &h.demand, &h.gpus)
            {
                // Over-committed (a node shrank): take what is there so nothing more lands.
                let _ = cluster.reserve(
                    &h.tenant,
                    n,
                    &h.demand,
                    cpn_sched::cluster::GpuPick::BestFit,
                );
            }
        }
    }
    for a in state.store.list_allocations(true).await? {
        let (Some(&n), Ok(r)) = (
            index.get(a.node_id.as_str()),
            serde_json::from_value::<TaskResources>(a.resources),
        ) else {
            continue;
        };
        let _ = cluster.reserve(
            &a.tenant,
            n,
            &super::tasks::demand_of(&r),
            cpn_sched::cluster::GpuPick::BestFit,
        );
    }
    Ok(LiveCluster {
        cluster,
        node_ids,
        node_names,
        site_names,
        site_access: Arc::new(site_access),
    })
}

/// Profiles by policy name for one cycle; stored policies are read once per cycle.
struct Policies {
    stored: Vec<cpn_policy::Policy>,
    schedulers: HashMap<String, Scheduler>,
    /// FGD's target workload: the shapes of this cycle's pending tasks (issue #4: the GPU
    /// policies are ordinary policies of the live scheduler).
    workload: std::sync::Arc<cpn_sched::plugins::gpu::TargetWorkload>,
    /// Per live site: public, tenant (for the visibility filter every profile gets).
    site_access: Arc<Vec<(bool, String)>>,
}

impl Policies {
    async fn load(
        state: &AppState,
        pending: &[cpn_sched::Task],
        site_access: Arc<Vec<(bool, String)>>,
    ) -> ApiResult<Policies> {
        Ok(Policies {
            stored: policy::load_all(state)
                .await?
                .into_iter()
                .map(|(p, _)| p)
                .collect(),
            schedulers: HashMap::new(),
            workload: std::sync::Arc::new(cpn_sched::plugins::gpu::TargetWorkload::from_tasks(
                pending,
            )),
            site_access,
        })
    }

    fn name_for(&self, named: Option<&str>, task: &cpn_sched::Task) -> String {
        match named {
            Some(n) => n.to_string(),
            None => cpn_policy::select(&self.stored, task)
                .map(|m| m.policy.name.clone())
                .unwrap_or_else(|| DEFAULT_POLICY.to_string()),
        }
    }

    fn scheduler(&mut self, name: &str) -> Result<&mut Scheduler, String> {
        if !self.schedulers.contains_key(name) {
            let profile: Profile = if name == DEFAULT_POLICY {
                cpn_sched::plugins::default_profile()
            } else {
                let workload = self.workload.clone();
                policy::compile(name, &self.stored, &move || workload.clone())
                    .map_err(|e| e.message)?
            };
            let profile = with_visibility(profile, &self.site_access);
            self.schedulers
                .insert(name.to_string(), Scheduler::new(profile, rand_seed()));
        }
        Ok(self.schedulers.get_mut(name).expect("inserted above"))
    }
}

fn rand_seed() -> u64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64
}

/// One binding cycle; returns how many pending tasks it looked at.
pub async fn cycle(state: &AppState) -> ApiResult<usize> {
    let rt = &state.runtime;
    let _capacity = rt.capacity_lock.lock().await;
    // Taken before anything is read: capacity freed from here on wakes another cycle.
    let capacity_changed = rt.take_capacity_changed();
    let now = Utc::now();
    let pending = state
        .store
        .list_tasks(TaskQuery {
            states: vec![TaskState::Pending.as_str().into()],
            // When capacity appeared, the tasks waiting for it are tried too, in queue
            // order, without waiting for the end of their backoff.
            due_at: (!capacity_changed).then_some(now),
            order: TaskOrder::Queue,
            limit: Some(BATCH),
            ..Default::default()
        })
        .await?;
    if pending.is_empty() {
        return Ok(0);
    }
    rt.counters.binder_cycles.fetch_add(1, Ordering::Relaxed);
    let considered = pending.len();
    let nodes = state.store.list_nodes().await?;
    let mut live = live_cluster(state, &nodes).await?;
    let mut writes = Vec::with_capacity(pending.len());
    let mut bound = 0u64;
    // Decode the batch first: its shapes are FGD's target workload.
    let mut batch = Vec::with_capacity(pending.len());
    for rec in pending {
        let mut task: Task = super::tasks::decode(rec)?;
        let due = task.record.not_before.is_none_or(|t| t <= now);
        if !due && !task.waits_for_capacity() {
            // A retry's backoff is kept whatever capacity does.
            continue;
        }
        let attempt = task.record.attempt;
        if task.spec.deadline.is_some_and(|d| d <= now) {
            let events = task.expire(now);
            writes.push(write(task, attempt, events));
            continue;
        }
        let placement = super::tasks::placement_spec(&task.spec, &task.record.tenant);
        let who = crate::extract::Principal {
            user_id: String::new(),
            username: task.record.owner.clone(),
            tenant: task.record.tenant.clone(),
            role: cpn_api_types::identity::Role::Operator,
            token_hash: String::new(),
        };
        let mut sched_task = match crate::schedule::task_from_spec(&who, &placement, 0) {
            Ok(t) => t,
            Err(e) => {
                let events = task.finish(now, None, Some(format!("invalid task: {e}")), None);
                writes.push(write(task, attempt, events));
                continue;
            }
        };
        sched_task.id = task.record.id.clone();
        batch.push((task, sched_task, due));
    }
    let shapes: Vec<cpn_sched::Task> = batch
        .iter()
        .filter(|(_, t, _)| t.demand.gpus > 0)
        .map(|(_, t, _)| t.clone())
        .collect();
    let mut policies = Policies::load(state, &shapes, live.site_access.clone()).await?;
    for (mut task, sched_task, due) in batch {
        let attempt = task.record.attempt;
        let name = policies.name_for(task.spec.policy.as_deref(), &sched_task);
        let scheduler = match policies.scheduler(&name) {
            Ok(s) => s,
            Err(e) => {
                let events = task.unschedulable(now, format!("policy {name:?}: {e}"));
                writes.push(write(task, attempt, events));
                continue;
            }
        };
        let events = match scheduler
            .schedule(&sched_task, &mut live.cluster, Mode::Fast)
            .0
        {
            Ok(p) => {
                bound += 1;
                let n = p.node as usize;
                let site = live.site_names[p.site as usize].clone();
                let gpus = p.gpus.iter().map(|(i, _)| *i).collect();
                let (node_id, node_name) = (live.node_ids[n].clone(), live.node_names[n].clone());
                task.bind(now, &node_id, &node_name, &site, gpus, &name)
            }
            Err(u) => {
                rt.counters.unschedulable.fetch_add(1, Ordering::Relaxed);
                let why = if live.node_ids.is_empty() {
                    "no nodes are registered: start `cpn agent` on a machine, or run `cpn serve` with its local agent".to_string()
                } else {
                    let reasons: Vec<String> =
                        u.reasons.iter().map(|(r, n)| format!("{r} x{n}")).collect();
                    format!("no node fits now ({})", reasons.join(", "))
                };
                if !due && task.unschedulable_for(&why) {
                    // Tried early because capacity appeared, and still waiting for the
                    // same reason: nothing to write (its backoff stands).
                    continue;
                }
                task.unschedulable(now, why)
            }
        };
        writes.push(write(task, attempt, events));
    }
    rt.commit(state, writes).await?;
    rt.counters.tasks_bound.fetch_add(bound, Ordering::Relaxed);
    Ok(considered)
}

fn write(task: Task, attempt: u32, events: Vec<cpn_store::NewEvent>) -> TaskWrite {
    TaskWrite {
        expect_states: vec![TaskState::Pending.as_str().into()],
        expect_attempt: attempt,
        record: task.into_record(),
        events,
    }
}

/// "Why here" for one task (`GET /api/v1/tasks/{id}/explain`): the scheduler's reasoning,
/// every filter verdict and score factor, for this task against the live nodes as they are
/// now, under the policy that bound it (or that would bind it, while it waits). A running
/// task's own hold is part of "now", so its node shows that much less free capacity than it
/// had when the task was bound; the binder itself keeps no per-task explanation, because
/// explaining every placement would cost the fast path its speed.
pub async fn explain_task(
    state: &AppState,
    who: &crate::extract::Principal,
    id: &str,
) -> ApiResult<cpn_api_types::schedule::Explanation> {
    let task = super::tasks::load(state, who, id).await?;
    let placement = super::tasks::placement_spec(&task.spec, &task.record.tenant);
    let mut sched_task = crate::schedule::task_from_spec(who, &placement, 0)?;
    sched_task.id = task.record.id.clone();
    let bound_by = task.status.policy.clone();
    let named = bound_by.as_deref().or(task.spec.policy.as_deref());
    let (mut choice, profile) = policy::choose(state, who, &sched_task, named).await?;
    if bound_by.is_some() {
        choice.reasons = vec!["the policy that bound this task".into()];
    }
    // The caller sees only nodes on sites it may read, and the task only sites its tenant
    // may see, as when it is bound.
    let readable = super::nodes::readable_sites(state, who).await?;
    let mut nodes = state.store.list_nodes().await?;
    nodes.retain(|n| readable.as_ref().is_none_or(|ids| ids.contains(&n.site_id)));
    let live = live_cluster(state, &nodes).await?;
    let mut scheduler = Scheduler::new(with_visibility(profile, &live.site_access), 0);
    let mut decision = scheduler.explain(&sched_task, &live.cluster);
    // The scheduler names live nodes by id; people know them as site/name.
    let names: HashMap<&str, &str> = live
        .node_ids
        .iter()
        .map(String::as_str)
        .zip(live.node_names.iter().map(String::as_str))
        .collect();
    let rename = |id: &mut String| {
        if let Some(n) = names.get(id.as_str()) {
            *id = (*n).to_string();
        }
    };
    if let Some(n) = decision.chosen_node.as_mut() {
        rename(n);
    }
    for c in decision.nodes.iter_mut() {
        rename(&mut c.name);
    }
    Ok(cpn_api_types::schedule::Explanation {
        task: task.record.id.clone(),
        policy: choice,
        decision: crate::schedule::decision_view(&decision),
    })
}
