//! South-bound operations (I2, IF-I2-01..06): allocate, release and adjust capacity held
//! outside any task, occupy and isolate nodes or resources, reclaim nodes.
//!
//! Input errors are answered at once (422) and not recorded. Everything else runs and is
//! recorded, with a trace of its steps and its outcome, whether it succeeded or failed,
//! and announced by an `operation` event. Capacity is checked and taken under
//! `Runtime::capacity_lock`, the one capacity lock (nodes and registry resources alike),
//! and every allocation is a hold of the capacity ledger (`ledger.rs`), so nothing is
//! promised twice.

use super::ledger::{Hold, HoldKind};
use super::{agents, binder, nodes, tasks};
use crate::RuntimeState;
use crate::access::decode_spec;
use crate::caller::{Actor, Caller};
use crate::error::{ApiError, ApiResult};
use crate::inventory::{self, RESOURCE_ALLOCATION_PREFIX};
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::events::types;
use cpn_api_types::operations::{
    AllocationView, OpKind, OpOutcome, OpTarget, OperationRequest, OperationView, TargetKind,
    TraceStep,
};
use cpn_api_types::registry::ResourceSpec;
use cpn_api_types::schedule::TaskResources;
use cpn_api_types::tasks::TaskState;
use cpn_model::Kind;
use cpn_sched::cluster::{GpuPick, Node};
use cpn_sched::task::Demand;
use cpn_store::{
    AllocationRecord, NewEvent, NodePatch, NodeRecord, ObjectRecord, OperationRecord, TaskQuery,
    TaskWrite,
};
use std::collections::HashMap;

/// Default and largest page of `GET /operations`.
pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;

/// What a running operation has learnt and done so far.
struct Ctx {
    tenant: String,
    target: Option<OpTarget>,
    allocation: Option<String>,
    trace: Vec<TraceStep>,
}

impl Ctx {
    fn step(&mut self, step: impl Into<String>, detail: impl Into<String>) {
        self.trace.push(TraceStep {
            at: Utc::now(),
            step: step.into(),
            detail: detail.into(),
        });
    }
}

fn invalid_state(message: impl Into<String>) -> ApiError {
    ApiError::new(Code::InvalidState, message)
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(Code::Internal, e.to_string())
}

/// Checks the request's shape; these errors are the caller's and are not recorded.
pub fn validate(req: &OperationRequest) -> ApiResult<()> {
    let needs_target = matches!(
        req.op,
        OpKind::Allocate | OpKind::Occupy | OpKind::Isolate | OpKind::Reclaim
    );
    match &req.target {
        None if needs_target => {
            return Err(ApiError::field(
                "target",
                format!(
                    "{} needs a target: {{\"kind\": \"node\", \"name\": \"site/name\"}}",
                    req.op.as_str()
                ),
            ));
        }
        Some(t) if t.name.trim().is_empty() => {
            return Err(ApiError::field("target.name", "must not be empty"));
        }
        Some(t)
            if t.kind == TargetKind::Resource
                && matches!(req.op, OpKind::Occupy | OpKind::Reclaim) =>
        {
            return Err(ApiError::field(
                "target.kind",
                format!(
                    "{} is not supported for resources; use a node",
                    req.op.as_str()
                ),
            ));
        }
        _ => {}
    }
    let needs_resources = matches!(req.op, OpKind::Allocate | OpKind::Adjust);
    match &req.resources {
        None if needs_resources => {
            return Err(ApiError::field(
                "resources",
                format!(
                    "{} needs resources, e.g. {{\"cpu_cores\": 2, \"memory_gib\": 4}}",
                    req.op.as_str()
                ),
            ));
        }
        Some(_) if !needs_resources => {
            return Err(ApiError::field(
                "resources",
                format!("{} takes no resources", req.op.as_str()),
            ));
        }
        Some(r) => check_resources(r)?,
        None => {}
    }
    let needs_allocation = matches!(req.op, OpKind::Release | OpKind::Adjust);
    match &req.allocation {
        None if needs_allocation => {
            return Err(ApiError::field(
                "allocation",
                format!("{} needs the allocation id", req.op.as_str()),
            ));
        }
        Some(a) if needs_allocation && a.trim().is_empty() => {
            return Err(ApiError::field("allocation", "must not be empty"));
        }
        Some(_) if !needs_allocation => {
            return Err(ApiError::field(
                "allocation",
                format!(
                    "{} takes no allocation (release and adjust do)",
                    req.op.as_str()
                ),
            ));
        }
        _ => {}
    }
    if req.enable.is_some() && !matches!(req.op, OpKind::Isolate | OpKind::Occupy) {
        return Err(ApiError::field(
            "enable",
            "enable applies to isolate and occupy only",
        ));
    }
    if req.tenant.is_some() && !matches!(req.op, OpKind::Allocate | OpKind::Occupy) {
        return Err(ApiError::field(
            "tenant",
            "tenant applies to allocate and occupy only",
        ));
    }
    Ok(())
}

fn check_resources(r: &TaskResources) -> ApiResult<()> {
    if !(r.cpu_cores.is_finite() && r.cpu_cores > 0.0) {
        return Err(ApiError::field(
            "resources.cpu_cores",
            "must be a number > 0",
        ));
    }
    if !(r.memory_gib.is_finite() && r.memory_gib >= 0.0) {
        return Err(ApiError::field(
            "resources.memory_gib",
            "must be a number >= 0",
        ));
    }
    if !(r.storage_gib.is_finite() && r.storage_gib >= 0.0) {
        return Err(ApiError::field(
            "resources.storage_gib",
            "must be a number >= 0",
        ));
    }
    if let Some(s) = r.gpu_share
        && !(s.is_finite() && s > 0.0 && s <= 1.0 && r.gpus == 1)
    {
        return Err(ApiError::field(
            "resources.gpu_share",
            "must be in (0, 1] and needs gpus: 1",
        ));
    }
    Ok(())
}

/// Resources in words, for traces and messages.
pub fn describe(r: &TaskResources) -> String {
    let mut s = format!("{} CPU cores, {} GiB memory", r.cpu_cores, r.memory_gib);
    if r.gpus > 0 {
        match r.gpu_share {
            Some(share) => s.push_str(&format!(", {share} of a GPU")),
            None => s.push_str(&format!(", {} GPUs", r.gpus)),
        }
    }
    if r.storage_gib > 0.0 {
        s.push_str(&format!(", {} GiB storage", r.storage_gib));
    }
    s
}

fn free_of(n: &Node) -> String {
    format!(
        "free: {} CPU cores, {:.1} GiB memory, {} whole GPUs",
        n.cpu_free() as f64 / 1000.0,
        n.memory_free() as f64 / 1024.0,
        n.whole_gpus_free()
    )
}

/// Whether `new` fits on the node once `old` (held there now) is given back. Which GPUs
/// `old` holds is not recorded, so its shares go back to the busiest GPUs that can have
/// held them.
pub fn fits_after_release(node: &Node, old: &Demand, new: &Demand) -> bool {
    let mut n = node.clone();
    n.cpu_used = n.cpu_used.saturating_sub(old.cpu_milli);
    n.memory_used = n.memory_used.saturating_sub(old.memory_mib);
    n.storage_used = n.storage_used.saturating_sub(old.storage_gib);
    if old.gpus > 0 {
        let m = old.gpu_milli.clamp(1, 1000);
        let mut held: Vec<usize> = (0..n.gpu_free.len())
            .filter(|&i| 1000 - n.gpu_free[i].min(1000) >= m)
            .collect();
        held.sort_by_key(|&i| n.gpu_free[i]);
        for i in held.into_iter().take(old.gpus as usize) {
            n.gpu_free[i] = (n.gpu_free[i] + m).min(1000);
        }
    }
    n.fits(new)
}

fn resources_of(a: &AllocationRecord) -> TaskResources {
    serde_json::from_value(a.resources.clone()).unwrap_or_default()
}

fn node_label(n: &NodeRecord) -> String {
    format!("{}/{}", n.site, n.name)
}

/// Runs an operation and records it. A failure is recorded and then answered with its
/// error, the message naming the record.
pub async fn execute(
    state: &RuntimeState,
    who: impl Into<Actor>,
    req: OperationRequest,
) -> ApiResult<OperationView> {
    let who: &Actor = &who.into();
    if !who.is_operator() {
        return Err(ApiError::forbidden(
            "operations on nodes and resources (allocate, release, adjust, occupy, isolate, reclaim) are for operators",
        ));
    }
    validate(&req)?;
    if let Some(t) = &req.tenant {
        let tenants = state.store.list_tenants().await?;
        if !tenants.iter().any(|x| &x.name == t) {
            return Err(ApiError::field("tenant", format!("no tenant named {t:?}")));
        }
    }
    let id = format!("op-{}", uuid::Uuid::now_v7().simple());
    let at = Utc::now();
    let mut ctx = Ctx {
        tenant: req
            .tenant
            .clone()
            .unwrap_or_else(|| who.tenant().to_string()),
        target: req.target.clone(),
        allocation: req.allocation.clone(),
        trace: Vec::new(),
    };
    let result = run(state, who, &req, &mut ctx).await;
    let (outcome, message, failure) = match result {
        Ok(m) => (OpOutcome::Succeeded, m, None),
        Err(e) => {
            ctx.step("fail", e.message.clone());
            (OpOutcome::Failed, e.message.clone(), Some(e))
        }
    };
    let view = OperationView {
        id: id.clone(),
        op: req.op,
        target: ctx.target,
        outcome,
        message,
        allocation: ctx.allocation,
        trace: ctx.trace,
        by: who.name().to_string(),
        tenant: ctx.tenant,
        at,
        request: req,
    };
    let body = serde_json::to_value(&view).map_err(internal)?;
    let target = view
        .target
        .as_ref()
        .map(|t| format!(" {}", t.name))
        .unwrap_or_default();
    let event = NewEvent {
        at: Utc::now(),
        event_type: types::OPERATION.into(),
        subject: id.clone(),
        tenant: view.tenant.clone(),
        severity: if failure.is_some() { "warning" } else { "info" }.into(),
        message: format!(
            "{}{target} {}: {}",
            view.op.as_str(),
            match view.outcome {
                OpOutcome::Succeeded => "succeeded",
                OpOutcome::Failed => "failed",
            },
            view.message
        ),
        data: body.clone(),
    };
    state
        .store
        .create_operation(
            OperationRecord {
                id: id.clone(),
                at,
                tenant: view.tenant.clone(),
                body,
            },
            vec![event],
        )
        .await?;
    state.runtime.events_written();
    match failure {
        None => Ok(view),
        Some(e) => Err(ApiError::new(
            e.code,
            format!("{} (recorded as operation {id})", e.message),
        )),
    }
}

async fn run(
    state: &RuntimeState,
    who: &Actor,
    req: &OperationRequest,
    ctx: &mut Ctx,
) -> ApiResult<String> {
    let target_kind = req.target.as_ref().map(|t| t.kind);
    let name = req
        .target
        .as_ref()
        .map(|t| t.name.trim().to_string())
        .unwrap_or_default();
    let enable = req.enable.unwrap_or(true);
    match (req.op, target_kind) {
        (OpKind::Allocate, Some(TargetKind::Node)) => {
            let r = req.resources.clone().unwrap_or_default();
            allocate_node(state, ctx, &name, &r).await
        }
        (OpKind::Allocate, Some(TargetKind::Resource)) => {
            let r = req.resources.clone().unwrap_or_default();
            allocate_resource(state, who, ctx, &name, &r).await
        }
        (OpKind::Release, _) => {
            let id = req.allocation.clone().unwrap_or_default();
            release(state, ctx, id.trim()).await
        }
        (OpKind::Adjust, _) => {
            let id = req.allocation.clone().unwrap_or_default();
            let r = req.resources.clone().unwrap_or_default();
            adjust(state, who, ctx, id.trim(), &r).await
        }
        (OpKind::Occupy, Some(TargetKind::Node)) => occupy(state, ctx, &name, enable).await,
        (OpKind::Isolate, Some(TargetKind::Node)) => isolate_node(state, ctx, &name, enable).await,
        (OpKind::Isolate, Some(TargetKind::Resource)) => {
            isolate_resource(state, ctx, &name, enable).await
        }
        (OpKind::Reclaim, Some(TargetKind::Node)) => {
            reclaim(state, who, ctx, &name, req.reason.as_deref()).await
        }
        // `validate` rules the rest out.
        (op, _) => Err(ApiError::bad_request(format!(
            "{} is not supported for this target",
            op.as_str()
        ))),
    }
}

async fn resolve_node(state: &RuntimeState, ctx: &mut Ctx, key: &str) -> ApiResult<NodeRecord> {
    let node = nodes::resolve(state, key).await?;
    ctx.step(
        "resolve target",
        format!(
            "node {} ({}, {} executor, {})",
            node_label(&node),
            node.id,
            node.executor,
            if node.ready { "Ready" } else { "NotReady" }
        ),
    );
    Ok(node)
}

async fn resolve_resource(
    state: &RuntimeState,
    ctx: &mut Ctx,
    key: &str,
) -> ApiResult<(ObjectRecord, ResourceSpec)> {
    let rec = match state.store.find_object_by_name(Kind::Resource, key).await? {
        Some(r) => r,
        None => state
            .store
            .get_object(Kind::Resource, key)
            .await?
            .ok_or_else(|| ApiError::not_found("resource", key))?,
    };
    let spec: ResourceSpec = decode_spec(&rec)?;
    ctx.step(
        "resolve target",
        format!("resource {} ({})", rec.name, rec.id),
    );
    Ok((rec, spec))
}

async fn allocate_node(
    state: &RuntimeState,
    ctx: &mut Ctx,
    key: &str,
    r: &TaskResources,
) -> ApiResult<String> {
    let node = resolve_node(state, ctx, key).await?;
    let label = node_label(&node);
    if !node.ready {
        return Err(invalid_state(format!(
            "node {label} is NotReady; nothing can be held on it"
        )));
    }
    if node.cordoned {
        return Err(invalid_state(format!(
            "node {label} is isolated (cordoned); lift it first (isolate with enable: false)"
        )));
    }
    if let Some(t) = &node.occupied_by
        && t != &ctx.tenant
    {
        return Err(invalid_state(format!(
            "node {label} is occupied by tenant {t:?}"
        )));
    }
    let rt = &state.runtime;
    let _capacity = rt.capacity_lock.lock().await;
    let all = state.store.list_nodes().await?;
    let mut live = binder::live_cluster(state, &all, &|_, _| true).await?;
    let Some(n) = live.node_ids.iter().position(|i| i == &node.id) else {
        return Err(invalid_state(format!(
            "node {label} is not schedulable: its site is not in the registry"
        )));
    };
    let n = n as cpn_sched::NodeIdx;
    let demand = tasks::demand_of(r);
    let free = free_of(live.cluster.node(n));
    if live
        .cluster
        .reserve(&ctx.tenant, n, &demand, GpuPick::BestFit)
        .is_none()
    {
        ctx.step(
            "check capacity",
            format!("{} does not fit ({free})", describe(r)),
        );
        return Err(ApiError::new(
            Code::Unschedulable,
            format!("node {label} cannot hold {} ({free})", describe(r)),
        ));
    }
    ctx.step("check capacity", format!("{} fits ({free})", describe(r)));
    let a = state
        .store
        .create_allocation(AllocationRecord {
            id: format!("alloc-{}", uuid::Uuid::now_v7().simple()),
            node_id: node.id.clone(),
            tenant: ctx.tenant.clone(),
            resources: serde_json::to_value(r).map_err(internal)?,
            created_at: Utc::now(),
            released_at: None,
        })
        .await?;
    hold(state, &a);
    ctx.step(
        "hold",
        format!(
            "allocation {} holds {} on {label} for tenant {}",
            a.id,
            describe(r),
            a.tenant
        ),
    );
    ctx.allocation = Some(a.id.clone());
    Ok(format!(
        "allocation {} holds {} on node {label} for tenant {}",
        a.id,
        describe(r),
        a.tenant
    ))
}

async fn allocate_resource(
    state: &RuntimeState,
    who: &Actor,
    ctx: &mut Ctx,
    key: &str,
    r: &TaskResources,
) -> ApiResult<String> {
    let (rec, _) = resolve_resource(state, ctx, key).await?;
    if inventory::isolated_resources(state)
        .await?
        .contains(&rec.id)
    {
        return Err(invalid_state(format!(
            "resource {} is isolated; lift it first (isolate with enable: false)",
            rec.name
        )));
    }
    let _capacity = state.runtime.capacity_lock.lock().await;
    let (mut inv, by_resource) = inventory::snapshot_with_resources(state, who, None).await?;
    let nodes = by_resource.get(&rec.id).cloned().unwrap_or_default();
    if nodes.is_empty() {
        return Err(invalid_state(format!(
            "resource {} has no compute nodes in the inventory (no compute section, or its site is missing)",
            rec.name
        )));
    }
    let demand = tasks::demand_of(r);
    let Some(n) = inventory::reserve_first(&mut inv.cluster, &ctx.tenant, &nodes, &demand) else {
        ctx.step(
            "check capacity",
            format!(
                "{} fits on none of the resource's {} nodes",
                describe(r),
                nodes.len()
            ),
        );
        return Err(ApiError::new(
            Code::Unschedulable,
            format!(
                "resource {} cannot hold {} on any of its {} nodes",
                rec.name,
                describe(r),
                nodes.len()
            ),
        ));
    };
    ctx.step(
        "check capacity",
        format!("{} fits on {}", describe(r), inv.cluster.node(n).spec.name),
    );
    let a = state
        .store
        .create_allocation(AllocationRecord {
            id: format!("alloc-{}", uuid::Uuid::now_v7().simple()),
            node_id: format!("{RESOURCE_ALLOCATION_PREFIX}{}", rec.id),
            tenant: ctx.tenant.clone(),
            resources: serde_json::to_value(r).map_err(internal)?,
            created_at: Utc::now(),
            released_at: None,
        })
        .await?;
    hold(state, &a);
    ctx.step(
        "hold",
        format!(
            "allocation {} holds {} of resource {} for tenant {}",
            a.id,
            describe(r),
            rec.name,
            a.tenant
        ),
    );
    ctx.allocation = Some(a.id.clone());
    Ok(format!(
        "allocation {} holds {} of resource {} for tenant {}",
        a.id,
        describe(r),
        rec.name,
        a.tenant
    ))
}

/// What an active allocation holds: on its node, or on its registry resource
/// (`resource:<id>`); best-fit GPUs.
pub fn hold_of(a: &AllocationRecord) -> Option<Hold> {
    if a.released_at.is_some() {
        return None;
    }
    let r: TaskResources = serde_json::from_value(a.resources.clone()).ok()?;
    Some(Hold {
        target: a.node_id.clone(),
        tenant: a.tenant.clone(),
        demand: tasks::demand_of(&r),
        gpus: Vec::new(),
        expires_at: None,
        lease: None,
    })
}

/// Puts an allocation's hold (new or adjusted) in the capacity ledger.
fn hold(state: &RuntimeState, a: &AllocationRecord) {
    if let Some(h) = hold_of(a) {
        state.runtime.ledger().hold(HoldKind::Allocation, &a.id, h);
    }
}

/// The active allocation `id`; fills in the tenant and target of the record.
async fn active_allocation(
    state: &RuntimeState,
    ctx: &mut Ctx,
    id: &str,
) -> ApiResult<AllocationRecord> {
    let a = state
        .store
        .get_allocation(id)
        .await?
        .ok_or_else(|| ApiError::not_found("allocation", id))?;
    ctx.tenant = a.tenant.clone();
    if ctx.target.is_none() {
        ctx.target = Some(match a.node_id.strip_prefix(RESOURCE_ALLOCATION_PREFIX) {
            Some(r) => OpTarget {
                kind: TargetKind::Resource,
                name: r.to_string(),
            },
            None => OpTarget {
                kind: TargetKind::Node,
                name: a.node_id.clone(),
            },
        });
    }
    ctx.step(
        "resolve allocation",
        format!(
            "allocation {} of tenant {} on {}: {}",
            a.id,
            a.tenant,
            a.node_id,
            describe(&resources_of(&a))
        ),
    );
    if let Some(at) = a.released_at {
        return Err(invalid_state(format!(
            "allocation {id} was already released at {}",
            at.to_rfc3339()
        )));
    }
    Ok(a)
}

async fn release(state: &RuntimeState, ctx: &mut Ctx, id: &str) -> ApiResult<String> {
    let a = active_allocation(state, ctx, id).await?;
    state.store.release_allocation(&a.id, Utc::now()).await?;
    state.runtime.ledger().release(HoldKind::Allocation, &a.id);
    ctx.step(
        format!("release allocation {}", a.id),
        format!(
            "{} given back on {}",
            describe(&resources_of(&a)),
            a.node_id
        ),
    );
    if !a.node_id.starts_with(RESOURCE_ALLOCATION_PREFIX) {
        state.runtime.capacity_changed();
    }
    Ok(format!(
        "allocation {} released ({} given back)",
        a.id,
        describe(&resources_of(&a))
    ))
}

async fn adjust(
    state: &RuntimeState,
    who: &Actor,
    ctx: &mut Ctx,
    id: &str,
    r: &TaskResources,
) -> ApiResult<String> {
    let a = active_allocation(state, ctx, id).await?;
    let old = resources_of(&a);
    let new_demand = tasks::demand_of(r);
    let old_demand = tasks::demand_of(&old);
    if let Some(res_id) = a.node_id.strip_prefix(RESOURCE_ALLOCATION_PREFIX) {
        let _capacity = state.runtime.capacity_lock.lock().await;
        let (mut inv, by_resource) =
            inventory::snapshot_with_resources(state, who, Some(&a.id)).await?;
        let nodes = by_resource.get(res_id).cloned().unwrap_or_default();
        if inventory::reserve_first(&mut inv.cluster, &a.tenant, &nodes, &new_demand).is_none() {
            ctx.step(
                "check capacity",
                format!("{} fits on none of the resource's nodes", describe(r)),
            );
            return Err(ApiError::new(
                Code::Unschedulable,
                format!(
                    "resource {res_id} cannot hold {} for allocation {}",
                    describe(r),
                    a.id
                ),
            ));
        }
        ctx.step(
            "check capacity",
            format!("{} fits with {} given back", describe(r), describe(&old)),
        );
        return finish_adjust(state, ctx, &a, &old, r, false).await;
    }
    let rt = &state.runtime;
    let _capacity = rt.capacity_lock.lock().await;
    let all = state.store.list_nodes().await?;
    let live = binder::live_cluster(state, &all, &|_, _| true).await?;
    let Some(n) = live.node_ids.iter().position(|i| i == &a.node_id) else {
        return Err(invalid_state(format!(
            "the node of allocation {} ({}) is gone or not schedulable",
            a.id, a.node_id
        )));
    };
    let node = live.cluster.node(n as cpn_sched::NodeIdx);
    let free = free_of(node);
    if !fits_after_release(node, &old_demand, &new_demand) {
        ctx.step(
            "check capacity",
            format!(
                "{} does not fit with {} given back ({free})",
                describe(r),
                describe(&old)
            ),
        );
        return Err(ApiError::new(
            Code::Unschedulable,
            format!(
                "node {} cannot hold {} for allocation {} ({} held now; {free})",
                live.node_names[n],
                describe(r),
                a.id,
                describe(&old)
            ),
        ));
    }
    ctx.step(
        "check capacity",
        format!(
            "{} fits with {} given back ({free})",
            describe(r),
            describe(&old)
        ),
    );
    let shrinks = new_demand.cpu_milli < old_demand.cpu_milli
        || new_demand.memory_mib < old_demand.memory_mib
        || new_demand.storage_gib < old_demand.storage_gib
        || new_demand.gpu_milli_total() < old_demand.gpu_milli_total();
    finish_adjust(state, ctx, &a, &old, r, shrinks).await
}

async fn finish_adjust(
    state: &RuntimeState,
    ctx: &mut Ctx,
    a: &AllocationRecord,
    old: &TaskResources,
    r: &TaskResources,
    wake: bool,
) -> ApiResult<String> {
    let adjusted = state
        .store
        .adjust_allocation(&a.id, serde_json::to_value(r).map_err(internal)?)
        .await?;
    hold(state, &adjusted);
    ctx.step(
        "adjust",
        format!("allocation {}: {} → {}", a.id, describe(old), describe(r)),
    );
    if wake {
        state.runtime.capacity_changed();
    }
    Ok(format!(
        "allocation {} now holds {} (was {})",
        a.id,
        describe(r),
        describe(old)
    ))
}

async fn occupy(state: &RuntimeState, ctx: &mut Ctx, key: &str, enable: bool) -> ApiResult<String> {
    let node = resolve_node(state, ctx, key).await?;
    let label = node_label(&node);
    if enable {
        if let Some(t) = &node.occupied_by {
            if t != &ctx.tenant {
                return Err(invalid_state(format!(
                    "node {label} is already occupied by tenant {t:?}; give it back first (occupy with enable: false)"
                )));
            }
            ctx.step("occupy", format!("already occupied by tenant {t}"));
            return Ok(format!("node {label} was already occupied by tenant {t}"));
        }
        let mut after = node.clone();
        after.occupied_by = Some(ctx.tenant.clone());
        let msg = format!("node {label} occupied by tenant {}", ctx.tenant);
        let rec = state
            .store
            .patch_node(
                &node.id,
                NodePatch {
                    occupied_by: Some(Some(ctx.tenant.clone())),
                    ..Default::default()
                },
                Utc::now(),
                vec![agents::node_event(&after, "info", msg.clone())],
            )
            .await?;
        state.runtime.federation.node_changed(&rec);
        state.runtime.events_written();
        ctx.step(
            "occupy",
            format!(
                "held whole for tenant {}; nothing new is placed on it, running tasks keep running (reclaim stops them)",
                ctx.tenant
            ),
        );
        Ok(msg)
    } else {
        let Some(t) = node.occupied_by.clone() else {
            ctx.step("occupy", "not occupied; nothing to give back");
            return Ok(format!("node {label} was not occupied"));
        };
        ctx.tenant = t.clone();
        let mut after = node.clone();
        after.occupied_by = None;
        let msg = format!("node {label} given back by tenant {t}");
        let rec = state
            .store
            .patch_node(
                &node.id,
                NodePatch {
                    occupied_by: Some(None),
                    ..Default::default()
                },
                Utc::now(),
                vec![agents::node_event(&after, "info", msg.clone())],
            )
            .await?;
        state.runtime.federation.node_changed(&rec);
        state.runtime.events_written();
        state.runtime.capacity_changed();
        ctx.step("give back", format!("no longer held for tenant {t}"));
        Ok(msg)
    }
}

async fn isolate_node(
    state: &RuntimeState,
    ctx: &mut Ctx,
    key: &str,
    enable: bool,
) -> ApiResult<String> {
    let node = resolve_node(state, ctx, key).await?;
    let label = node_label(&node);
    if node.cordoned == enable {
        let what = if enable { "cordoned" } else { "not cordoned" };
        ctx.step(
            if enable { "cordon" } else { "uncordon" },
            format!("already {what}"),
        );
        return Ok(format!("node {label} was already {what}"));
    }
    let mut after = node.clone();
    after.cordoned = enable;
    let msg = if enable {
        format!("node {label} cordoned: nothing new is placed on it")
    } else {
        format!("node {label} uncordoned")
    };
    let rec = state
        .store
        .patch_node(
            &node.id,
            NodePatch {
                cordoned: Some(enable),
                ..Default::default()
            },
            Utc::now(),
            vec![agents::node_event(
                &after,
                if enable { "warning" } else { "info" },
                msg.clone(),
            )],
        )
        .await?;
    state.runtime.federation.node_changed(&rec);
    state.runtime.events_written();
    if enable {
        ctx.step(
            "cordon",
            "nothing new is placed on the node; running tasks keep running",
        );
    } else {
        state.runtime.capacity_changed();
        ctx.step("uncordon", "the node takes new work again");
    }
    Ok(msg)
}

async fn isolate_resource(
    state: &RuntimeState,
    ctx: &mut Ctx,
    key: &str,
    enable: bool,
) -> ApiResult<String> {
    let (rec, _) = resolve_resource(state, ctx, key).await?;
    let mut ids = inventory::isolated_resources(state).await?;
    let was = ids.contains(&rec.id);
    if was == enable {
        let what = if enable { "isolated" } else { "not isolated" };
        ctx.step(
            if enable { "cordon" } else { "uncordon" },
            format!("already {what}"),
        );
        return Ok(format!("resource {} was already {what}", rec.name));
    }
    if enable {
        ids.push(rec.id.clone());
    } else {
        ids.retain(|i| i != &rec.id);
    }
    inventory::set_isolated_resources(state, &ids).await?;
    if enable {
        ctx.step(
            "cordon",
            "its nodes take no new placements (explain, dry-run, schedule)",
        );
        Ok(format!("resource {} isolated", rec.name))
    } else {
        ctx.step("uncordon", "its nodes take placements again");
        Ok(format!("resource {} no longer isolated", rec.name))
    }
}

async fn reclaim(
    state: &RuntimeState,
    who: &Actor,
    ctx: &mut Ctx,
    key: &str,
    reason: Option<&str>,
) -> ApiResult<String> {
    let node = resolve_node(state, ctx, key).await?;
    let label = node_label(&node);
    let now = Utc::now();
    let active = state
        .store
        .list_tasks(TaskQuery {
            node_id: Some(node.id.clone()),
            states: vec![
                TaskState::Scheduled.as_str().into(),
                TaskState::Running.as_str().into(),
            ],
            ..Default::default()
        })
        .await?;
    ctx.step(
        "list tasks",
        format!("{} active tasks on {label}", active.len()),
    );
    let why = match reason {
        Some(r) if !r.trim().is_empty() => {
            format!("node {label} reclaimed by {}: {}", who.name(), r.trim())
        }
        _ => format!("node {label} reclaimed by {}", who.name()),
    };
    let mut writes = Vec::new();
    let mut attempts = Vec::new();
    for rec in active {
        let mut task = tasks::decode(rec)?;
        let expect = task.record.state.clone();
        let attempt = task.record.attempt;
        attempts.push((task.record.id.clone(), task.attempt_id(), attempt));
        let events = task.evict(now, &why);
        writes.push(TaskWrite {
            expect_states: vec![expect],
            expect_attempt: attempt,
            record: task.into_record(),
            events,
        });
    }
    let results = state.runtime.commit(state, writes).await?;
    let mut evicted = 0;
    for ((task_id, attempt_id, attempt), result) in attempts.into_iter().zip(results) {
        match result {
            Some(rec) => {
                evicted += 1;
                ctx.step(
                    format!("evict task {task_id}"),
                    format!("attempt {attempt} stopped; the task is pending again"),
                );
                agents::stop_on_executor(state, &node.id, &rec, attempt_id.clone()).await;
                ctx.step(
                    format!("stop attempt {attempt_id}"),
                    format!(
                        "the {} executor of {label} is told to kill it",
                        node.executor
                    ),
                );
            }
            None => ctx.step(
                format!("evict task {task_id}"),
                "skipped: it finished or moved meanwhile",
            ),
        }
    }
    let mut released = 0;
    for a in state.store.list_allocations(true).await? {
        if a.node_id != node.id {
            continue;
        }
        state.store.release_allocation(&a.id, Utc::now()).await?;
        state.runtime.ledger().release(HoldKind::Allocation, &a.id);
        released += 1;
        ctx.step(
            format!("release allocation {}", a.id),
            format!(
                "{} of tenant {} given back",
                describe(&resources_of(&a)),
                a.tenant
            ),
        );
    }
    state.runtime.capacity_changed();
    Ok(format!(
        "node {label} reclaimed: {evicted} tasks evicted (rescheduled), {released} allocations released"
    ))
}

// ------------------------------------------------------------ reading

fn decode(rec: OperationRecord) -> ApiResult<OperationView> {
    serde_json::from_value(rec.body)
        .map_err(|e| internal(format!("stored operation {} does not decode: {e}", rec.id)))
}

/// Newest first; non-operators see their tenant's records.
pub async fn list(
    state: &RuntimeState,
    who: &Caller,
    limit: usize,
) -> ApiResult<Vec<OperationView>> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let fetch = if who.is_operator() {
        limit
    } else {
        50 * MAX_LIMIT
    };
    state
        .store
        .list_operations(fetch)
        .await?
        .into_iter()
        .filter(|r| who.is_operator() || r.tenant == who.tenant)
        .take(limit)
        .map(decode)
        .collect()
}

pub async fn get(state: &RuntimeState, who: &Caller, id: &str) -> ApiResult<OperationView> {
    match state.store.get_operation(id).await? {
        Some(r) if who.is_operator() || r.tenant == who.tenant => decode(r),
        _ => Err(ApiError::not_found("operation", id)),
    }
}

/// Allocations (`active`: only active ones, only released ones, or all when `None`).
pub async fn allocations(
    state: &RuntimeState,
    who: &Caller,
    active: Option<bool>,
) -> ApiResult<Vec<AllocationView>> {
    let recs = state.store.list_allocations(active == Some(true)).await?;
    let node_names: HashMap<String, String> = state
        .store
        .list_nodes()
        .await?
        .into_iter()
        .map(|n| (n.id, n.name))
        .collect();
    let mut resource_names: HashMap<String, String> = HashMap::new();
    let mut out = Vec::new();
    for a in recs {
        if !(who.is_operator() || a.tenant == who.tenant) {
            continue;
        }
        if active == Some(false) && a.released_at.is_none() {
            continue;
        }
        let node = match a.node_id.strip_prefix(RESOURCE_ALLOCATION_PREFIX) {
            Some(rid) => match resource_names.get(rid) {
                Some(n) => n.clone(),
                None => {
                    let name = state
                        .store
                        .get_object(Kind::Resource, rid)
                        .await?
                        .map(|r| r.name)
                        .unwrap_or_else(|| rid.to_string());
                    resource_names.insert(rid.to_string(), name.clone());
                    name
                }
            },
            None => node_names
                .get(&a.node_id)
                .cloned()
                .unwrap_or_else(|| a.node_id.clone()),
        };
        out.push(AllocationView {
            resources: resources_of(&a),
            id: a.id,
            node_id: a.node_id,
            node,
            tenant: a.tenant,
            created_at: a.created_at,
            released_at: a.released_at,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_sched::{ClusterBuilder, NodeSpec};

    fn req(op: OpKind) -> OperationRequest {
        OperationRequest {
            op,
            target: None,
            resources: None,
            allocation: None,
            tenant: None,
            enable: None,
            reason: None,
        }
    }

    fn node_target() -> Option<OpTarget> {
        Some(OpTarget {
            kind: TargetKind::Node,
            name: "local/n1".into(),
        })
    }

    fn field_of(r: ApiResult<()>) -> Option<String> {
        r.err().and_then(|e| e.field)
    }

    #[test]
    fn input_errors_name_the_field() {
        assert_eq!(
            field_of(validate(&req(OpKind::Allocate))),
            Some("target".into())
        );
        let mut a = req(OpKind::Allocate);
        a.target = node_target();
        assert_eq!(field_of(validate(&a)), Some("resources".into()));
        a.resources = Some(TaskResources {
            cpu_cores: 0.0,
            ..Default::default()
        });
        assert_eq!(field_of(validate(&a)), Some("resources.cpu_cores".into()));
        a.resources = Some(TaskResources::default());
        assert!(validate(&a).is_ok());

        assert_eq!(
            field_of(validate(&req(OpKind::Release))),
            Some("allocation".into())
        );
        let mut adj = req(OpKind::Adjust);
        adj.allocation = Some("alloc-1".into());
        assert_eq!(field_of(validate(&adj)), Some("resources".into()));

        let mut r = req(OpKind::Reclaim);
        r.target = Some(OpTarget {
            kind: TargetKind::Resource,
            name: "pool".into(),
        });
        let e = validate(&r).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("target.kind"));
        assert!(
            e.message
                .contains("not supported for resources; use a node")
        );

        let mut i = req(OpKind::Isolate);
        i.target = Some(OpTarget {
            kind: TargetKind::Resource,
            name: "pool".into(),
        });
        assert!(validate(&i).is_ok());
        i.enable = Some(false);
        assert!(validate(&i).is_ok());
        let mut rc = req(OpKind::Reclaim);
        rc.target = node_target();
        rc.enable = Some(true);
        assert_eq!(field_of(validate(&rc)), Some("enable".into()));
    }

    fn one_node(cpu: u64, gpus: u32) -> cpn_sched::Cluster {
        let mut b = ClusterBuilder::new();
        let s = b.site(cpn_sched::SiteSpec {
            name: "s".into(),
            region: "r".into(),
            labels: Default::default(),
            location: None,
            pue: 1.0,
            electricity_price: 0.0,
            carbon_intensity: None,
            healthy: true,
        });
        b.node(NodeSpec {
            name: "n".into(),
            site: s,
            labels: Default::default(),
            healthy: true,
            cpu_milli: cpu * 1000,
            memory_mib: 64 * 1024,
            storage_gib: 100,
            chip: None,
            model: String::new(),
            architecture: String::new(),
            gpus,
            tflops_per_unit: 0.0,
            price_per_unit_hour: 0.0,
            watts_per_unit: 0.0,
        });
        b.build().expect("one node forms a cluster")
    }

    fn res(cpu: f64, gpus: u32) -> Demand {
        tasks::demand_of(&TaskResources {
            cpu_cores: cpu,
            memory_gib: 1.0,
            gpus,
            gpu_share: None,
            storage_gib: 0.0,
        })
    }

    #[test]
    fn adjusting_counts_the_old_amount_as_free() {
        let mut c = one_node(4, 2);
        let old = res(3.0, 1);
        c.reserve("t", 0, &old, GpuPick::BestFit).expect("fits");
        let n = c.node(0);
        // 4 cores with 3 held: 4 fit only when the 3 come back.
        assert!(!n.fits(&res(4.0, 0)));
        assert!(fits_after_release(n, &old, &res(4.0, 0)));
        assert!(fits_after_release(n, &old, &res(2.0, 2)));
        assert!(!fits_after_release(n, &old, &res(5.0, 0)));
        assert!(!fits_after_release(n, &old, &res(1.0, 3)));
    }

    #[test]
    fn resources_read_in_words() {
        assert_eq!(
            describe(&TaskResources::default()),
            "1 CPU cores, 1 GiB memory"
        );
        let r = TaskResources {
            cpu_cores: 2.5,
            memory_gib: 8.0,
            gpus: 1,
            gpu_share: Some(0.5),
            storage_gib: 10.0,
        };
        assert_eq!(
            describe(&r),
            "2.5 CPU cores, 8 GiB memory, 0.5 of a GPU, 10 GiB storage"
        );
    }
}
