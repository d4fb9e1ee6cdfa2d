//! The binding loop: pending tasks are placed by the scheduler on the live inventory and
//! bound durably before any executor hears of them (issue #5 item 4).
//!
//! One cycle reads the due pending tasks (at most [`BATCH`]), orders them in a
//! `cpn_sched::queue::TaskQueue` (priority classes, FIFO inside a class, aging), brings the
//! binder's live cluster up to date with the events since the last cycle (`livecluster`:
//! nodes that changed, holds taken or given back, registry changes), and runs one
//! `cpn_sched::batch::Round` over them — the batch binding loop the twins run too — with a
//! brief record of each decision, stored with the binding for "why here". Cycles run one at
//! a time under the capacity lock, and each puts its placements' holds in the ledger before
//! letting it go, so capacity is never promised twice. Every write of a cycle is committed
//! in one store transaction while the next cycle runs (which leaves those tasks alone);
//! agents hear of a binding only once it is committed. A task no site can ever take waits `Limits::unplaceable_wait` for
//! capacity to appear, then fails with the reason.

use super::lifecycle::{BindingRecord, Task};
use crate::RuntimeState;
use crate::access::visible_to_tenant;
use crate::error::ApiResult;
use crate::policy::{self, DEFAULT_POLICY};
use chrono::Utc;
use cpn_api_types::tasks::TaskState;
use cpn_model::Requirement;
use cpn_sched::batch::{Outcome, Round, Schedulers, Shape};
use cpn_sched::cycle::Mode;
use cpn_sched::framework::SiteFilter;
use cpn_sched::queue::{DEFAULT_AGING_S, TaskQueue};
use cpn_sched::{Cluster, CycleState, Plugin, Profile, Scheduler, Verdict};
use cpn_store::{TaskOrder, TaskQuery, TaskWrite};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// Most tasks one cycle considers. A cycle holds the capacity lock from reading the
/// pending tasks to holding their placements, and its time grows with the batch (decode,
/// placement, the brief decisions): the old cap of 4,096 let cycles grow to ~870 tasks and
/// ~0.5 s under load. Measured with `cpn bench tasks` (a) on a shared 2-core machine, when
/// each cycle also waited for its own commit (~20 ms, mostly the fsync), 64 bound under
/// 2,000 tasks/s and 256 made cycles ~100 ms; with the commit overlapping the next cycle,
/// 128 binds ~2,100-2,300 tasks/s with cycles p99 40-45 ms. A full batch starts the next
/// cycle at once.
pub const BATCH: usize = 128;
/// Label of every live node: its name, for node selectors.
pub use super::livestate::NODE_NAME_LABEL;

/// Least time between the starts of two cycles. Under a stream of submissions this
/// batches them: one cycle's fixed cost (reading sites, nodes, policies) is shared by
/// every task that arrived meanwhile, at the price of at most this much dispatch delay.
pub const MIN_CYCLE_INTERVAL: Duration = Duration::from_millis(15);

pub async fn run(state: RuntimeState) {
    let rt = state.runtime.clone();
    // The commit of the previous cycle's writes, while the next cycle reads and places.
    let mut committing: Option<tokio::task::JoinHandle<()>> = None;
    loop {
        let started = tokio::time::Instant::now();
        let considered = match cycle(&state).await {
            Ok(None) => 0,
            Ok(Some(c)) => {
                // What the histogram measures: one cycle's own work, from taking the
                // capacity lock to its placements held in the ledger and its writes ready
                // (`Counters::binder_commit_seconds` has the commits).
                rt.counters.binder_cycle_seconds.observe(started.elapsed());
                // One commit in flight at a time: this cycle's writes go to the store once
                // the previous ones are durable, so they stay bounded when the disk is slow.
                if let Some(prev) = committing.take() {
                    let _ = prev.await;
                }
                let considered = c.considered;
                committing = Some(tokio::spawn(c.commit(state.clone())));
                considered
            }
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

pub use super::livestate::{LiveCluster, LiveSite, live_cluster};

/// Name of the site filter that keeps a task off sites its tenant cannot see.
pub const SITE_VISIBILITY: &str = "site_visibility";
/// Reason code of that filter.
pub const NOT_VISIBLE: &str = "site_not_visible";

/// The live cluster holds every tenant's sites, so every profile the binder (and "why
/// here") runs gets this filter first: a task lands only on a site its tenant may see,
/// by `registry::visible_to_tenant`, the rule the registry reads with.
pub struct SiteVisibility {
    site_access: Arc<Vec<LiveSite>>,
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
            .is_some_and(|s| visible_to_tenant(s.public, &s.tenant, &task.tenant));
        if visible {
            Verdict::Fits
        } else {
            Verdict::RejectsForever(state.reason(SITE_VISIBILITY, NOT_VISIBLE, || {
                format!("the site is private to another tenant than {}", task.tenant)
            }))
        }
    }
}

/// `profile` with the live filters in front of its other plugins: the visibility filter,
/// then `livestate::LiveSites` (no live node, or none answering).
pub fn with_visibility(mut profile: Profile, site_access: &Arc<Vec<LiveSite>>) -> Profile {
    profile.plugins.insert(
        0,
        Arc::new(super::livestate::LiveSites {
            sites: site_access.clone(),
        }),
    );
    profile.plugins.insert(
        0,
        Arc::new(SiteVisibility {
            site_access: site_access.clone(),
        }),
    );
    profile
}

/// Profiles by policy name for one cycle, compiled from the stored policies as of the last
/// registry change.
struct Policies {
    /// Cached between registry changes (`LiveState::policies`).
    stored: Arc<Vec<cpn_policy::Policy>>,
    schedulers: Schedulers<String>,
    /// FGD's target workload: the shapes of this cycle's pending tasks (issue #4: the GPU
    /// policies are ordinary policies of the live scheduler).
    workload: std::sync::Arc<cpn_sched::plugins::gpu::TargetWorkload>,
    /// Per live site: public, tenant, nodes (for the live filters every profile gets).
    site_access: Arc<Vec<LiveSite>>,
}

impl Policies {
    async fn load(
        state: &RuntimeState,
        pending: &[cpn_sched::Task],
        site_access: Arc<Vec<LiveSite>>,
    ) -> ApiResult<Policies> {
        Ok(Policies {
            stored: state.runtime.federation.policies(state).await?,
            schedulers: Schedulers::new(
                state
                    .runtime
                    .config
                    .scheduler_seed
                    .unwrap_or_else(rand_seed),
            ),
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
        let (stored, workload, sites) = (&self.stored, &self.workload, &self.site_access);
        self.schedulers
            .get(name, || {
                let profile: Profile = if name == DEFAULT_POLICY {
                    cpn_sched::plugins::default_profile()
                } else {
                    let workload = workload.clone();
                    policy::compile(name, stored, &move || workload.clone())
                        .map_err(|e| e.message)?
                };
                Ok(with_visibility(profile, sites))
            })
            .map_err(Clone::clone)
    }
}

fn rand_seed() -> u64 {
    Utc::now().timestamp_nanos_opt().unwrap_or(0) as u64
}

/// A cycle's outcome, placed and held but not yet written.
pub struct Placed {
    /// Pending tasks it looked at.
    pub considered: usize,
    bound: u64,
    /// Its writes (bindings, refusals, expiries), all of tasks in `Runtime::committing`.
    writes: Vec<TaskWrite>,
    /// Ids of the tasks it placed, whose holds it put in the ledger.
    placed: Vec<String>,
    /// For the debug log of where the time went.
    phases: String,
}

impl Placed {
    /// Writes the cycle's bindings in one store transaction. Only then do the bound nodes'
    /// agents hear of them (`Runtime::commit` wakes them after the store answered, and an
    /// agent is handed only tasks the store says are scheduled on it), so a binding is
    /// durable before its task is dispatched, and a crash before this loses only
    /// placements, which the restarted server makes again from the pending tasks.
    pub async fn commit(self, state: RuntimeState) {
        let rt = &state.runtime;
        let started = std::time::Instant::now();
        let ids: Vec<String> = self.writes.iter().map(|w| w.record.id.clone()).collect();
        let result = rt.commit(&state, self.writes).await;
        rt.counters.binder_commit_seconds.observe(started.elapsed());
        // A placement the store did not take (the task changed meanwhile, or the write
        // failed) holds nothing: its hold leaves the ledger, and so the live cluster.
        let failed: Vec<&String> = match &result {
            Ok(results) => ids
                .iter()
                .zip(results)
                .filter(|(_, r)| r.is_none())
                .map(|(id, _)| id)
                .collect(),
            Err(_) => ids.iter().collect(),
        };
        let mut freed = false;
        {
            let mut ledger = rt.ledger();
            for id in failed {
                if self.placed.contains(id) {
                    freed |= ledger.release(super::ledger::HoldKind::Task, id);
                }
            }
        }
        // Only after the store answered: a task read as pending from here on was not
        // written by this cycle, or its write failed and it is pending still.
        {
            let mut committing = rt
                .committing
                .lock()
                .expect("committing lock is never poisoned");
            for id in &ids {
                committing.remove(id);
            }
        }
        if freed {
            rt.capacity_changed();
        }
        match result {
            Ok(_) => {
                rt.counters
                    .tasks_bound
                    .fetch_add(self.bound, Ordering::Relaxed);
                tracing::debug!(
                    considered = self.considered,
                    bound = self.bound,
                    commit_ms = started.elapsed().as_secs_f64() * 1e3,
                    "binding cycle: {}",
                    self.phases
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "committing a binding cycle failed; its tasks wait for the next");
                // Its tasks are pending still: the next cycle takes them again.
                rt.binder_wake.notify_one();
            }
        }
    }
}

/// One binding cycle up to its writes: reads the pending tasks, places them on the live
/// cluster and puts their holds in the capacity ledger, under the capacity lock. The
/// writes are committed by [`Placed::commit`], while the next cycle runs. None when no
/// task was pending.
pub async fn cycle(state: &RuntimeState) -> ApiResult<Option<Placed>> {
    let rt = &state.runtime;
    let _capacity = rt.capacity_lock.lock().await;
    // Taken before anything is read: capacity freed from here on wakes another cycle.
    let capacity_changed = rt.take_capacity_changed();
    // Where a cycle's time goes, logged at debug level (`RUST_LOG=cpn_runtime::binder=debug`).
    let t0 = std::time::Instant::now();
    let now = Utc::now();
    // Taken before the store is read: a task whose commit ends after this is excluded
    // here; one whose commit ended before is no longer pending in what is read.
    let committing: std::collections::HashSet<String> = rt
        .committing
        .lock()
        .expect("committing lock is never poisoned")
        .clone();
    let mut pending = state
        .store
        .list_tasks(TaskQuery {
            states: vec![TaskState::Pending.as_str().into()],
            // When capacity appeared, the tasks waiting for it are tried too, in queue
            // order, without waiting for the end of their backoff.
            due_at: (!capacity_changed).then_some(now),
            order: TaskOrder::Queue,
            limit: Some(BATCH + committing.len()),
            ..Default::default()
        })
        .await?;
    pending.retain(|t| !committing.contains(&t.id));
    pending.truncate(BATCH);
    if pending.is_empty() {
        // Idle: the live cluster still takes the events (nodes joining, holds given back),
        // so the first loaded cycle does not pay for them, nor for building it.
        let (live, _) = rt.federation.binder_cluster(state).await?;
        rt.federation.put_binder_cluster(live);
        return Ok(None);
    }
    rt.counters.binder_cycles.fetch_add(1, Ordering::Relaxed);
    let t_read = t0.elapsed();
    let considered = pending.len();
    let mut writes = Vec::with_capacity(pending.len());
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
        // The task was authorized when it was submitted; converting it acts for its tenant
        // only, never as the operator.
        let who = crate::caller::Actor::System(crate::caller::SystemActor::Binder {
            tenant: task.record.tenant.clone(),
        });
        let mut sched_task = match crate::placement::task_from_spec(&who, &placement, 0) {
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
    // Taken once the batch is decoded: a cycle that fails before giving it back leaves
    // the next to build it anew.
    let t_decode = t0.elapsed();
    let (live, _) = rt.federation.binder_cluster(state).await?;
    let t_cluster = t0.elapsed();
    let policies = match Policies::load(state, &shapes, live.live.site_access.clone()).await {
        Ok(p) => p,
        Err(e) => {
            rt.federation.put_binder_cluster(live);
            return Err(e);
        }
    };
    let t_policies = t0.elapsed();
    // The round is CPU work (up to BATCH placements): it runs on the blocking pool, not on
    // the threads that answer requests.
    let unplaceable_wait = rt.config.limits.unplaceable_wait;
    let (
        RoundResult {
            writes,
            bound,
            unschedulable,
            placed,
        },
        live,
    ) = tokio::task::spawn_blocking(move || {
        let mut live = live;
        let r = place_batch(batch, &mut live, policies, now, unplaceable_wait, writes);
        (r, live)
    })
    .await
    .map_err(|e| {
        crate::error::ApiError::new(cpn_api_types::Code::Internal, format!("binding round: {e}"))
    })?;
    // The round took its placements on the live cluster; they go in the ledger now, before
    // the capacity lock is let go, so that whatever takes capacity next (the next cycle, a
    // `POST /schedule` decision, an allocation) counts them while their commit is in flight.
    // The commit puts the stored hold in their place, or takes back those it did not bind.
    {
        let mut ledger = rt.ledger();
        for id in &placed {
            if let Some(h) = live.task_hold(id) {
                ledger.hold(super::ledger::HoldKind::Task, id, h.clone());
            }
        }
    }
    rt.federation.put_binder_cluster(live);
    rt.counters
        .unschedulable
        .fetch_add(unschedulable, Ordering::Relaxed);
    {
        let mut committing = rt
            .committing
            .lock()
            .expect("committing lock is never poisoned");
        committing.extend(writes.iter().map(|w| w.record.id.clone()));
    }
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let t_round = t0.elapsed();
    let phases = format!(
        "read {:.2} ms, decode {:.2} ms, cluster {:.2} ms, policies {:.2} ms, round {:.2} ms",
        ms(t_read),
        ms(t_decode - t_read),
        ms(t_cluster - t_decode),
        ms(t_policies - t_cluster),
        ms(t_round - t_policies),
    );
    Ok(Some(Placed {
        considered,
        bound,
        writes,
        placed,
        phases,
    }))
}

/// One `Round` over a decoded batch in queue order: the bindings (with their brief
/// decisions) and the refusals, as task writes appended to `writes`.
fn place_batch(
    batch: Vec<(Task, cpn_sched::Task, bool)>,
    binder: &mut super::livecluster::BinderCluster,
    mut policies: Policies,
    now: chrono::DateTime<Utc>,
    unplaceable_wait: Duration,
    mut writes: Vec<TaskWrite>,
) -> RoundResult {
    let mut bound = 0u64;
    let mut unschedulable = 0u64;
    let mut placed = Vec::new();
    // Queue order: priority classes, FIFO inside a class, aging, as in the twins.
    let now_s = now.timestamp().max(0) as u64;
    let mut queue = TaskQueue::new(DEFAULT_AGING_S);
    for (i, (task, _, _)) in batch.iter().enumerate() {
        let submitted = task.record.submitted_at.timestamp().max(0) as u64;
        queue.push(i, task.record.priority, submitted);
    }
    let order = queue.pop_batch(batch.len(), now_s);
    let mut batch: Vec<Option<(Task, cpn_sched::Task, bool)>> =
        batch.into_iter().map(Some).collect();
    let mut round = Round::new();
    for i in order {
        let (mut task, sched_task, due) = batch[i].take().expect("each queued index once");
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
        let (outcome, brief, window) = match task.spec.lease {
            None => {
                let shape = Shape::of(&sched_task);
                let (outcome, brief) = round.place_recorded(
                    &name,
                    scheduler,
                    &sched_task,
                    &shape,
                    &mut binder.live.cluster,
                    Mode::Brief,
                );
                (outcome, brief, None)
            }
            Some(lease) => {
                match place_in_lease(&mut round, &name, scheduler, &sched_task, binder, lease) {
                    Ok(tried) => tried,
                    Err(why) => {
                        let events = task.abandon(now, &why, &why);
                        writes.push(write(task, attempt, events));
                        continue;
                    }
                }
            }
        };
        let live = &binder.live;
        let events = match outcome {
            Outcome::Placed(p) => {
                bound += 1;
                let (id, tenant) = (&task.record.id, &sched_task.tenant);
                match window {
                    Some(w) => {
                        binder.close_lease(w, Some((id, tenant, sched_task.demand, p.gpus.clone())))
                    }
                    None => {
                        binder.placed(id, p.node, tenant, sched_task.demand, p.gpus.clone(), None)
                    }
                }
                placed.push(task.record.id.clone());
                let live = &binder.live;
                let n = p.node as usize;
                let site = live.site_names[p.site as usize].clone();
                let gpus = p.gpus.iter().map(|(i, _)| *i).collect();
                let (node_id, node_name) = (live.node_ids[n].clone(), live.node_names[n].clone());
                let events = task.bind(now, &node_id, &node_name, &site, gpus, &name);
                task.status.binding = brief.map(|mut d| {
                    // A brief names no other node: the chosen one by name is all to rename.
                    d.chosen_node = Some(node_name);
                    BindingRecord {
                        at: now,
                        policy: name.clone(),
                        decision: crate::placement::decision_view(&d),
                    }
                });
                events
            }
            Outcome::Waits(u) => {
                unschedulable += 1;
                let what = match task.spec.lease {
                    Some(lease) => format!("it waits for its lease {lease}'s share"),
                    None => "no node fits now".to_string(),
                };
                let why = unschedulable_reason(live, &u, &what);
                if !due && task.unschedulable_for(&why) {
                    // Tried early because capacity appeared, and still waiting for the
                    // same reason: nothing to write (its backoff stands).
                    continue;
                }
                task.unschedulable(now, why)
            }
            Outcome::Never(u) => {
                unschedulable += 1;
                let why = unschedulable_reason(
                    live,
                    &u,
                    "no site can ever take it as the federation stands",
                );
                task.unplaceable(now, why, unplaceable_wait)
            }
        };
        writes.push(write(task, attempt, events));
    }
    RoundResult {
        writes,
        bound,
        unschedulable,
        placed,
    }
}

/// Label a lease-bound task carries while it is placed, so its shape (restricted to one
/// lease node) is never taken for another task's in the round's failure cache.
const LEASE_LABEL: &str = "cpn.lease/id";

/// Places a task of `lease` in the one pipeline, inside the lease's share: on each of the
/// lease's nodes in turn, in a window where the node offers only what the share has left
/// (`BinderCluster::open_lease`), restricted to that node by its site and node name
/// labels. A placement comes with its window still open, for the caller to close with it;
/// a failure closes them all and waits (a node that cannot take it now may later). Err
/// with the reason the task fails for good: the lease holds nothing (it ended), or the task
/// asks more than the lease holds on any one node.
fn place_in_lease(
    round: &mut Round,
    policy: &str,
    scheduler: &mut Scheduler,
    task: &cpn_sched::Task,
    binder: &mut super::livecluster::BinderCluster,
    lease: u64,
) -> Result<
    (
        Outcome,
        Option<cpn_sched::explain::Decision>,
        Option<super::livecluster::LeaseWindow>,
    ),
    String,
> {
    if !binder.has_lease(lease) {
        return Err("lease ended".into());
    }
    let nodes = binder.lease_nodes(lease);
    if nodes.is_empty() {
        // Its hold could not be taken (its node is gone, or was full when it started).
        let why = "the lease's share is not held on its node now".to_string();
        let u = cpn_sched::Unschedulable {
            reasons: vec![(why, 1)],
            forever: false,
        };
        return Ok((Outcome::Waits(u), None, None));
    }
    let d = &task.demand;
    let fits_share = |key| {
        binder.lease_share(key).is_some_and(|s| {
            d.cpu_milli <= s.cpu_milli && d.memory_mib <= s.memory_mib && d.gpus <= s.gpus
        })
    };
    if !nodes.iter().any(|(key, _, _)| fits_share(key)) {
        return Err(format!(
            "it asks more than lease {lease} holds on any of its nodes (CPU, memory or cards)"
        ));
    }
    let mut last = None;
    for (key, site, node) in nodes {
        let Some(w) = binder.open_lease(&key) else {
            continue;
        };
        let mut t = task.clone();
        t.site_selector.requirements.push(Requirement::Equals(
            super::tasks::SITE_NAME_LABEL.into(),
            site,
        ));
        t.node_selector
            .requirements
            .push(Requirement::Equals(NODE_NAME_LABEL.into(), node));
        t.labels.insert(LEASE_LABEL.into(), lease.to_string());
        let shape = Shape::of(&t);
        let (outcome, brief) = round.place_recorded(
            policy,
            scheduler,
            &t,
            &shape,
            &mut binder.live.cluster,
            Mode::Brief,
        );
        match outcome {
            Outcome::Placed(_) => return Ok((outcome, brief, Some(w))),
            // The share fits it (checked above): a node that cannot take it now may later.
            Outcome::Waits(u) | Outcome::Never(u) => {
                binder.close_lease(w, None);
                last = Some((Outcome::Waits(u), brief));
            }
        }
    }
    let (outcome, brief) = last.ok_or_else(|| "lease ended".to_string())?;
    Ok((outcome, brief, None))
}

/// What one binding round came to.
struct RoundResult {
    writes: Vec<TaskWrite>,
    bound: u64,
    unschedulable: u64,
    /// Ids of the tasks it placed.
    placed: Vec<String>,
}

fn unschedulable_reason(live: &LiveCluster, u: &cpn_sched::Unschedulable, what: &str) -> String {
    if live.node_ids.is_empty() {
        "no nodes are registered: start `cpn agent` on a machine, or run `cpn serve` with its local agent".to_string()
    } else {
        let reasons: Vec<String> = u.reasons.iter().map(|(r, n)| format!("{r} x{n}")).collect();
        format!("{what} ({})", reasons.join(", "))
    }
}

fn write(task: Task, attempt: u32, events: Vec<cpn_store::NewEvent>) -> TaskWrite {
    TaskWrite {
        expect_states: vec![TaskState::Pending.as_str().into()],
        expect_attempt: attempt,
        record: task.into_record(),
        events,
    }
}

/// "Why here" for one task (`GET /api/v1/tasks/{id}/explain`). A bound task answers with
/// the brief record the binder stored when it bound the current attempt, unless `now` asks
/// for "explain now": the scheduler's full reasoning (every filter verdict and score
/// factor) for this task against the live nodes as they are now, under the policy that
/// bound it (or that would bind it, while it waits). In that view a running task's own hold
/// is part of "now", so its node shows that much less free capacity than it had.
pub async fn explain_task(
    state: &RuntimeState,
    who: &crate::caller::Caller,
    id: &str,
    now: bool,
) -> ApiResult<cpn_api_types::schedule::Explanation> {
    let task = super::tasks::load(state, who, id).await?;
    if let (false, Some(b)) = (now, &task.status.binding) {
        return Ok(cpn_api_types::schedule::Explanation {
            task: task.record.id.clone(),
            policy: cpn_api_types::schedule::PolicyChoice {
                name: b.policy.clone(),
                generation: None,
                reasons: vec!["the policy that bound this task".into()],
                also_matched: Vec::new(),
                weights: b
                    .decision
                    .sites
                    .first()
                    .map(|s| {
                        s.factors
                            .iter()
                            .map(|f| (f.plugin.clone(), f.weight))
                            .collect()
                    })
                    .unwrap_or_default(),
            },
            decision: b.decision.clone(),
            planning_only: None,
            decided_at: Some(b.at),
        });
    }
    let placement = super::tasks::placement_spec(&task.spec, &task.record.tenant);
    let mut sched_task = crate::placement::task_from_spec(&who.into(), &placement, 0)?;
    sched_task.id = task.record.id.clone();
    let bound_by = task.status.policy.clone();
    let named = bound_by.as_deref().or(task.spec.policy.as_deref());
    let (mut choice, profile) = policy::choose(state, who, &sched_task, named).await?;
    if bound_by.is_some() {
        choice.reasons = vec!["the policy that bound this task".into()];
    }
    if let Some(lease) = task.spec.lease {
        // The view below is the federation's; the binder places this task only in its
        // lease's share, and says so in the task's reason while it waits for it.
        choice.reasons.push(format!(
            "runs inside lease {lease}: only on the lease's node(s), within the cards, CPU and memory it holds{}",
            task.status
                .reason
                .as_deref()
                .map(|r| format!("; now: {r}"))
                .unwrap_or_default()
        ));
    }
    // The caller sees only sites (and their nodes) it may read, and the task only sites its
    // tenant may see, as when it is bound.
    let nodes = state.store.list_nodes().await?;
    let live = live_cluster(state, &nodes, &crate::inventory::admits(who)).await?;
    let mut scheduler = Scheduler::new(with_visibility(profile, &live.site_access), 0);
    let mut decision = scheduler.explain(&sched_task, &live.cluster);
    live.rename_nodes(&mut decision);
    Ok(cpn_api_types::schedule::Explanation {
        task: task.record.id.clone(),
        policy: choice,
        decision: crate::placement::decision_view(&decision),
        planning_only: None,
        decided_at: None,
    })
}
