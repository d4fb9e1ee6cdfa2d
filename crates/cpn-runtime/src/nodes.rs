//! Nodes as the API shows them, and the real-time state of nodes and sites (IF-I3-03).

use crate::RuntimeState;
use crate::access::decode_spec;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use cpn_api_types::agent::{
    Capacity, Executor, NodeInventory, NodeMetrics, NodeState, NodeView, SiteStatus,
};
use cpn_api_types::registry::SiteSpec;
use cpn_model::Kind;
use cpn_store::{ListQuery, NodeRecord};
use std::collections::HashSet;

/// Ids of the sites `who` may read (public ones and its tenant's); `None` for operators,
/// who read every site. A node is visible exactly when its site is: the same rule as
/// `registry::can_read`, evaluated by the store's `visible_to_tenant` query.
pub async fn readable_sites(
    state: &RuntimeState,
    who: &Caller,
) -> ApiResult<Option<HashSet<String>>> {
    if who.is_operator() {
        return Ok(None);
    }
    let q = ListQuery {
        visible_to_tenant: Some(who.tenant.clone()),
        ..Default::default()
    };
    Ok(Some(
        state
            .store
            .list_objects(Kind::Site, &q)
            .await?
            .into_iter()
            .map(|r| r.id)
            .collect(),
    ))
}

fn sees(readable: &Option<HashSet<String>>, n: &NodeRecord) -> bool {
    readable.as_ref().is_none_or(|ids| ids.contains(&n.site_id))
}

/// [`resolve`], as `who` sees nodes: one on a site it may not read is reported missing.
pub async fn resolve_visible(
    state: &RuntimeState,
    who: &Caller,
    key: &str,
) -> ApiResult<NodeRecord> {
    let readable = readable_sites(state, who).await?;
    let n = resolve(state, key).await?;
    if sees(&readable, &n) {
        Ok(n)
    } else {
        Err(ApiError::not_found("node", key))
    }
}

/// A node by id, or by `site/name`.
pub async fn resolve(state: &RuntimeState, key: &str) -> ApiResult<NodeRecord> {
    if let Some(n) = state.store.get_node(key).await? {
        return Ok(n);
    }
    let found = match key.split_once('/') {
        Some((site, name)) => state
            .store
            .list_nodes()
            .await?
            .into_iter()
            .find(|n| n.site == site && n.name == name),
        None => {
            let mut matches: Vec<NodeRecord> = state
                .store
                .list_nodes()
                .await?
                .into_iter()
                .filter(|n| n.name == key)
                .collect();
            if matches.len() > 1 {
                return Err(ApiError::bad_request(format!(
                    "{} nodes are named {key:?}; say which as site/name",
                    matches.len()
                )));
            }
            matches.pop()
        }
    };
    found.ok_or_else(|| ApiError::not_found("node", key))
}

pub fn inventory_of(n: &NodeRecord) -> NodeInventory {
    serde_json::from_value(n.inventory.clone()).unwrap_or_default()
}

pub fn executor_of(n: &NodeRecord) -> Executor {
    if n.executor == "slurm" {
        Executor::Slurm
    } else {
        Executor::Agent
    }
}

pub fn capacity_of(inv: &NodeInventory) -> Capacity {
    Capacity {
        cpu_cores: inv.cpu_cores as f64,
        memory_gib: inv.memory_mib as f64 / 1024.0,
        gpus: inv.gpus.len() as f64,
    }
}

/// Fraction not held, by the scarcest dimension the node has.
pub fn idle_rate(cap: &Capacity, used: &Capacity) -> f64 {
    let mut rate: f64 = 1.0;
    for (c, u) in [
        (cap.cpu_cores, used.cpu_cores),
        (cap.memory_gib, used.memory_gib),
        (cap.gpus, used.gpus),
    ] {
        if c > 0.0 {
            rate = rate.min(((c - u) / c).clamp(0.0, 1.0));
        }
    }
    rate
}

/// Capacity held on each node (the capacity ledger: tasks, decisions, allocations), and
/// active task counts.
fn held(state: &RuntimeState) -> std::collections::HashMap<String, (Capacity, u32)> {
    let mut out: std::collections::HashMap<String, (Capacity, u32)> = Default::default();
    let ledger = state.runtime.ledger();
    for (kind, _, h) in ledger.active(chrono::Utc::now()) {
        let e = out.entry(h.target.clone()).or_default();
        // A task inside a lease uses part of the lease's hold: counted once, as the lease.
        if h.takes_capacity(kind) {
            e.0.cpu_cores += h.demand.cpu_milli as f64 / 1000.0;
            e.0.memory_gib += h.demand.memory_mib as f64 / 1024.0;
            e.0.gpus += h.demand.gpu_milli_total() as f64 / 1000.0;
        }
        if kind == super::ledger::HoldKind::Task {
            e.1 += 1;
        }
    }
    out
}

pub async fn views(state: &RuntimeState) -> ApiResult<Vec<NodeView>> {
    let held = held(state);
    let nodes = state.store.list_nodes().await?;
    let mut offers = super::livestate::node_offers(state, &nodes).await?;
    Ok(nodes
        .into_iter()
        .map(|n| {
            let (allocated, tasks) = held.get(&n.id).cloned().unwrap_or_default();
            let how = offers.remove(&n.id).unwrap_or_default();
            view(state, n, allocated, tasks, how)
        })
        .collect())
}

/// How a node met the registry: the offer it fulfils, or why none.
type OfferMatch = (Option<String>, Option<String>);

fn view(
    state: &RuntimeState,
    n: NodeRecord,
    allocated: Capacity,
    tasks_active: u32,
    (offer, unregistered): OfferMatch,
) -> NodeView {
    let inventory = inventory_of(&n);
    let capacity = capacity_of(&inventory);
    let (metrics, last) = state
        .runtime
        .with_live(&n.id, |l| (l.metrics.clone(), l.last_heartbeat_at));
    NodeView {
        executor: executor_of(&n),
        state: if n.ready {
            NodeState::Ready
        } else {
            NodeState::NotReady
        },
        cordoned: n.cordoned,
        occupied_by: n.occupied_by,
        labels: n.labels,
        idle_rate: idle_rate(&capacity, &allocated),
        emulated: inventory.emulated,
        capacity,
        allocated,
        tasks_active,
        metrics,
        last_heartbeat: last,
        registered_at: n.registered_at,
        inventory,
        id: n.id,
        name: n.name,
        site: n.site,
        offer,
        unregistered,
    }
}

/// The nodes `who` may see: those on sites it may read.
pub async fn visible_views(state: &RuntimeState, who: &Caller) -> ApiResult<Vec<NodeView>> {
    let readable = readable_sites(state, who).await?;
    let held = held(state);
    let mut nodes = state.store.list_nodes().await?;
    nodes.retain(|n| sees(&readable, n));
    let mut offers = super::livestate::node_offers(state, &nodes).await?;
    Ok(nodes
        .into_iter()
        .map(|n| {
            let (allocated, tasks) = held.get(&n.id).cloned().unwrap_or_default();
            let how = offers.remove(&n.id).unwrap_or_default();
            view(state, n, allocated, tasks, how)
        })
        .collect())
}

pub async fn get(state: &RuntimeState, who: &Caller, key: &str) -> ApiResult<NodeView> {
    let n = resolve_visible(state, who, key).await?;
    let held = held(state);
    let (allocated, tasks) = held.get(&n.id).cloned().unwrap_or_default();
    let how = super::livestate::node_offers(state, std::slice::from_ref(&n))
        .await?
        .remove(&n.id)
        .unwrap_or_default();
    Ok(view(state, n, allocated, tasks, how))
}

/// A site's real-time state; 404 for a site `who` may not read, as `GET /sites/{id}` does.
/// Pending tasks count only the caller's tenant's, unless it is an operator.
pub async fn site_status(state: &RuntimeState, who: &Caller, site: &str) -> ApiResult<SiteStatus> {
    let rec = match state.store.find_object_by_name(Kind::Site, site).await? {
        Some(r) => Some(r),
        None => state.store.get_object(Kind::Site, site).await?,
    }
    .filter(|r| crate::access::can_read(&who.into(), r))
    .ok_or_else(|| ApiError::not_found("site", site))?;
    let spec: SiteSpec = decode_spec(&rec)?;
    let nodes: Vec<NodeView> = views(state)
        .await?
        .into_iter()
        .filter(|n| n.site == rec.name)
        .collect();
    let records = state.store.list_nodes().await?;
    let (health, health_reason) = super::livestate::site_health(state, &rec.id, &records).await?;
    let mut capacity = Capacity::default();
    let mut allocated = Capacity::default();
    let (mut cpu, mut load, mut ready, mut tasks) = (0.0, 0.0, 0u32, 0u32);
    let mut power: Option<f64> = None;
    for n in &nodes {
        tasks += n.tasks_active;
        if n.state != NodeState::Ready {
            continue;
        }
        ready += 1;
        capacity.cpu_cores += n.capacity.cpu_cores;
        capacity.memory_gib += n.capacity.memory_gib;
        capacity.gpus += n.capacity.gpus;
        allocated.cpu_cores += n.allocated.cpu_cores;
        allocated.memory_gib += n.allocated.memory_gib;
        allocated.gpus += n.allocated.gpus;
        if let Some(m) = &n.metrics {
            cpu += m.cpu_util_pct;
            load += m.load1;
            if let Some(p) = m.power_watts {
                *power.get_or_insert(0.0) += p;
            }
        }
    }
    let pending = state
        .store
        .list_tasks(cpn_store::TaskQuery {
            states: vec!["pending".into()],
            tenant: (!who.is_operator()).then(|| who.tenant.clone()),
            ..Default::default()
        })
        .await?
        .into_iter()
        .filter(|t| {
            t.spec.pointer("/constraints/site").and_then(|s| s.as_str()) == Some(rec.name.as_str())
        })
        .count() as u32;
    Ok(SiteStatus {
        site: rec.name,
        region: spec.region,
        location: spec.location,
        nodes: nodes.len() as u32,
        nodes_ready: ready,
        idle_rate: idle_rate(&capacity, &allocated),
        capacity,
        allocated,
        cpu_util_pct: if ready > 0 { cpu / ready as f64 } else { 0.0 },
        load1: load,
        power_watts: power,
        tasks_active: tasks,
        tasks_pending: pending,
        health,
        health_reason,
    })
}

/// A node's recent metrics, oldest first (`GET /api/v1/nodes/{id}/metrics`): what its agent
/// reported over the last half hour, one sample per 5 s. Empty for a node that reports no
/// metrics (Slurm nodes) or that has not reported since the server started.
pub async fn metrics_history(
    state: &RuntimeState,
    who: &Caller,
    key: &str,
) -> ApiResult<Vec<NodeMetrics>> {
    let node = resolve_visible(state, who, key).await?;
    let live = state
        .runtime
        .live
        .lock()
        .expect("live-node lock is never poisoned");
    Ok(live
        .get(&node.id)
        .map(|l| l.history.iter().cloned().collect())
        .unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_rate_follows_the_scarcest_dimension() {
        let cap = Capacity {
            cpu_cores: 8.0,
            memory_gib: 32.0,
            gpus: 0.0,
        };
        let used = Capacity {
            cpu_cores: 2.0,
            memory_gib: 24.0,
            gpus: 0.0,
        };
        assert!((idle_rate(&cap, &used) - 0.25).abs() < 1e-9);
        assert_eq!(idle_rate(&cap, &Capacity::default()), 1.0);
    }
}
