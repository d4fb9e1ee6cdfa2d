//! The binder's live cluster, kept across binding cycles (issue #13, deliverable 1): one
//! `cpn_sched::Cluster` of every registry site and every live node, changed by events
//! instead of rebuilt per cycle.
//!
//! At the start of a cycle [`LiveState::binder_cluster`] brings it up to date with what
//! happened since the last one, each event costing O(the node's site) at most:
//!
//! - **nodes**: every store write of a node record (join, register, readiness, cordon,
//!   occupation: `LiveState::node_changed`) is queued; a record whose scheduler view did
//!   not change (same spec, same readiness) costs a comparison and nothing else; one that
//!   did is updated in place (`Cluster::update_node`), joins at its place in the site's
//!   order (by name, as `list_nodes` orders a fresh build), or leaves. The site's live
//!   counts and measured health follow.
//! - **holds**: the capacity ledger records which holds changed (`Ledger::take_changes`);
//!   each is released and taken again only if it differs from what the cluster took, and a
//!   hold with an expiry stops holding at it.
//! - **registry**: on a new registry epoch, when the sites are the same sites, the site
//!   specs, links and quotas are replaced (`Cluster::set_registry`, O(sites + links)) and
//!   only the nodes of sites whose offers changed are matched again. A site joining or
//!   leaving rebuilds the whole cluster, as does the first cycle and a reloaded ledger.
//!
//! The binder's own placements are taken by its round directly on this cluster; they are
//! recorded as the task's hold and put in the ledger before the cycle lets the capacity
//! lock go, so that the next cycle, which may run while they are committed, finds them
//! unchanged; the commit then puts the stored hold in their place, or releases a placement
//! the store did not bind, and the next cycle applies that.
//! The per-request views (capacity, `POST /schedule`, "why here now", the twin on live
//! nodes) still build their own cluster with `livestate::live_cluster`, filtered for
//! their caller.

use super::ledger::{Hold, HoldKey};
use super::livestate::{LiveCluster, LiveState, build_live, live_sites, measured_site, node_spec};
use crate::RuntimeState;
use crate::error::ApiResult;
use crate::inventory::RegistryModel;
use chrono::{DateTime, Utc};
use cpn_sched::cluster::{GpuPick, same_but_health, same_node_spec};
use cpn_sched::task::Demand;
use cpn_sched::{GpuAssignment, NodeIdx, NodeSpec, SiteIdx};
use cpn_store::NodeRecord;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// Set (in a debug build) to compare the binder's live cluster with a fresh build at every
/// cycle; a value other than `1` is a file the difference is appended to.
pub(crate) const CHECK_ENV: &str = "CPN_CHECK_LIVE_CLUSTER";

/// What the scheduler sees of two live clusters, compared: sites (name, health, free and
/// total capacity but for which GPU a fractional hold sits on, offers), their nodes in
/// order (spec and what is used), and the live filters' counts.
fn same_cluster(a: &LiveCluster, b: &LiveCluster) -> Result<(), String> {
    let (ca, cb) = (&a.cluster, &b.cluster);
    if ca.sites.len() != cb.sites.len() || ca.nodes.len() != cb.nodes.len() {
        return Err(format!(
            "{} sites, {} nodes against {} sites, {} nodes",
            ca.sites.len(),
            ca.nodes.len(),
            cb.sites.len(),
            cb.nodes.len()
        ));
    }
    for (s, (x, y)) in ca.sites.iter().zip(&cb.sites).enumerate() {
        let cap = |g: &cpn_sched::cluster::Aggregate| {
            (g.cpu_milli, g.memory_mib, g.storage_gib, g.gpu_milli)
        };
        if x.spec.name != y.spec.name
            || x.spec.healthy != y.spec.healthy
            || cap(&x.free) != cap(&y.free)
            || x.total != y.total
            || x.first_ordinal != y.first_ordinal
            || format!(
                "{:?}",
                x.offers
                    .iter()
                    .map(|o| (o.units, o.nodes))
                    .collect::<Vec<_>>()
            ) != format!(
                "{:?}",
                y.offers
                    .iter()
                    .map(|o| (o.units, o.nodes))
                    .collect::<Vec<_>>()
            )
        {
            return Err(format!(
                "site {s}: {:?} against {:?}",
                (&x.spec.name, x.spec.healthy, x.free, x.total),
                (&y.spec.name, y.spec.healthy, y.free, y.total)
            ));
        }
        let (la, lb) = (&a.site_access[s], &b.site_access[s]);
        if (la.nodes, la.ready) != (lb.nodes, lb.ready) {
            return Err(format!(
                "site {s}: live counts {:?} against {:?}",
                (la.nodes, la.ready),
                (lb.nodes, lb.ready)
            ));
        }
        for (&i, &j) in x.nodes.iter().zip(&y.nodes) {
            let (n, m) = (ca.node(i), cb.node(j));
            let used = |n: &cpn_sched::cluster::Node| {
                (
                    n.cpu_used,
                    n.memory_used,
                    n.storage_used,
                    n.gpu_milli_free(),
                )
            };
            if !same_node_spec(&n.spec, &m.spec) || used(n) != used(m) {
                return Err(format!(
                    "site {s}: node {} ({:?}) against {} ({:?})",
                    n.spec.name,
                    used(n),
                    m.spec.name,
                    used(m)
                ));
            }
        }
    }
    Ok(())
}

/// Tenant the blockers of a [`LeaseWindow`] are held for: none, so no tenant's quota or
/// usage counts them.
const BLOCKER: &str = "";

/// A lease's share of one node opened for one of its tasks: the lease's hold is given back
/// and everything else free on the node is held by blockers, so the node offers exactly
/// what the share has left (its leased cards, CPU and memory not used by the lease's other
/// tasks). The scheduler then places the task as any other, restricted to this node; close
/// the window with [`BinderCluster::close_lease`] before the cluster is used for anything
/// else.
pub struct LeaseWindow {
    key: HoldKey,
    lease: u64,
    pub node: NodeIdx,
    blockers: Vec<(Demand, GpuAssignment)>,
}

/// A ledger hold as the live cluster took it.
#[derive(Debug)]
struct Taken {
    hold: Hold,
    /// The GPUs the cluster gave it; `None` while it takes nothing here (its node is not in
    /// the cluster, or cannot hold it).
    given: Option<GpuAssignment>,
}

/// The binder's live cluster and what it needs to apply events to it.
pub struct BinderCluster {
    /// The cluster with its per-node and per-site names. `matches` is left empty: only the
    /// capacity view reads it, from its own build.
    pub live: LiveCluster,
    /// Node index by node id.
    index: HashMap<String, NodeIdx>,
    /// Per node (by index): the record its spec was derived from.
    records: Vec<NodeRecord>,
    /// Cluster site of each model site (every site: the binder admits them all).
    site_of: Vec<Option<SiteIdx>>,
    /// Every ledger hold on a node target that holds now, taken or not.
    holds: HashMap<HoldKey, Taken>,
    /// Hold keys by target node id.
    on_node: HashMap<String, HashSet<HoldKey>>,
    /// Holds with an expiry, by it.
    expiries: BTreeSet<(DateTime<Utc>, HoldKey)>,
    /// Keys of each lease's holds and of its tasks' holds, by lease.
    by_lease: HashMap<u64, BTreeSet<HoldKey>>,
}

/// What a sync did, for the counters and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub full_build: bool,
    /// Node records looked at, and those whose scheduler view changed.
    pub nodes_seen: usize,
    pub nodes_changed: usize,
    pub holds_changed: usize,
}

impl LiveState {
    /// Queues a node record just written to the store for the binder's live cluster.
    pub fn node_changed(&self, rec: &NodeRecord) {
        self.changed_nodes
            .lock()
            .expect("changed-node lock is never poisoned")
            .insert(rec.id.clone(), rec.clone());
    }

    /// The binder's live cluster, brought up to date (see the module doc). Taken out of the
    /// live state for the cycle: give it back with [`LiveState::put_binder_cluster`]; one
    /// not given back (an error in between) is built anew next time. Call under
    /// `Runtime::capacity_lock`.
    pub async fn binder_cluster(
        &self,
        state: &RuntimeState,
    ) -> ApiResult<(BinderCluster, SyncStats)> {
        let model = self.registry(state).await?;
        let mut slot = self
            .binder
            .lock()
            .expect("binder cluster lock is never poisoned")
            .take();
        if let Some(bc) = slot.as_mut()
            && bc.live.model.epoch != model.epoch
            && !bc.set_registry(state, &model)
        {
            slot = None;
        }
        // Taken before the nodes are listed: a change from here on is applied next time.
        let changed: Vec<NodeRecord> = std::mem::take(
            &mut *self
                .changed_nodes
                .lock()
                .expect("changed-node lock is never poisoned"),
        )
        .into_values()
        .collect();
        let mut stats = SyncStats::default();
        let (mut bc, built) = match slot {
            Some(bc) => (bc, false),
            None => {
                let nodes = state.store.list_nodes().await?;
                (BinderCluster::build(state, model.clone(), &nodes)?, true)
            }
        };
        if !built {
            stats.nodes_seen = changed.len();
            for rec in changed {
                stats.nodes_changed += usize::from(bc.apply_node(state, rec));
            }
        }
        let now = Utc::now();
        {
            let mut ledger = state.runtime.ledger();
            let changes = ledger.take_changes();
            if built || changes.reset {
                let all: Vec<(HoldKey, Hold)> =
                    ledger.all().map(|(k, h)| (k.clone(), h.clone())).collect();
                drop(ledger);
                bc.reset_holds(all, now);
            } else {
                drop(ledger);
                stats.holds_changed = changes.holds.len();
                for (key, hold) in changes.holds {
                    bc.apply_hold(key, hold, now);
                }
            }
        }
        bc.expire(now);
        stats.full_build = built;
        if built {
            self.full_builds.fetch_add(1, Ordering::Relaxed);
        }
        if cfg!(debug_assertions) && std::env::var_os(CHECK_ENV).is_some() {
            self.check_against_fresh(state, &bc, model.epoch).await?;
        }
        Ok((bc, stats))
    }

    /// Debug builds with [`CHECK_ENV`] set: compares the cluster kept by events with one
    /// built fresh from the store and the ledger, and aborts the server on a difference (so
    /// any e2e test run with it set fails loudly). Skipped when something changed while the
    /// fresh one was read (a node record, a hold, the registry): then they may differ.
    async fn check_against_fresh(
        &self,
        state: &RuntimeState,
        bc: &BinderCluster,
        epoch: u64,
    ) -> ApiResult<()> {
        let nodes = state.store.list_nodes().await?;
        let fresh = super::livestate::live_cluster(state, &nodes, &|_, _| true).await?;
        let quiet = |epoch_now: u64| {
            epoch_now == epoch
                && self
                    .changed_nodes
                    .lock()
                    .expect("changed-node lock is never poisoned")
                    .is_empty()
                && !state.runtime.ledger().has_changes()
        };
        if !quiet(fresh.model.epoch) {
            return Ok(());
        }
        if let Err(why) = same_cluster(&bc.live, &fresh) {
            // A write the store committed is reported (`node_changed`, the ledger) just
            // after: one read in that gap differs without anything being wrong.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            if !quiet(self.registry(state).await?.epoch) {
                return Ok(());
            }
            let report = format!("the binder's live cluster differs from a fresh build: {why}\n");
            eprint!("{CHECK_ENV}: {report}");
            // A path in the variable gets the report too (e2e servers have no stderr).
            if let Some(path) = std::env::var_os(CHECK_ENV).filter(|p| p != "1") {
                use std::io::Write;
                if let Ok(mut f) = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                {
                    let _ = f.write_all(report.as_bytes());
                }
            }
            std::process::abort();
        }
        Ok(())
    }

    /// Gives the binder's live cluster back for the next cycle.
    pub fn put_binder_cluster(&self, bc: BinderCluster) {
        *self
            .binder
            .lock()
            .expect("binder cluster lock is never poisoned") = Some(bc);
    }
}

impl BinderCluster {
    /// Every registry site and every node of `nodes` on one, holding nothing yet.
    pub fn build(
        state: &RuntimeState,
        model: Arc<RegistryModel>,
        nodes: &[NodeRecord],
    ) -> ApiResult<BinderCluster> {
        let (_, site_of) = model.builder(&|_, _| true);
        let mut live = build_live(state, model, nodes, &|_, _| true)?;
        live.matches = Vec::new();
        let by_id: HashMap<&str, &NodeRecord> = nodes.iter().map(|n| (n.id.as_str(), n)).collect();
        let records: Vec<NodeRecord> = live
            .node_ids
            .iter()
            .map(|id| {
                (*by_id
                    .get(id.as_str())
                    .expect("every cluster node has a record"))
                .clone()
            })
            .collect();
        let index = live
            .node_ids
            .iter()
            .enumerate()
            .map(|(i, id)| (id.clone(), i as NodeIdx))
            .collect();
        Ok(BinderCluster {
            live,
            index,
            records,
            site_of,
            holds: HashMap::new(),
            on_node: HashMap::new(),
            expiries: BTreeSet::new(),
            by_lease: HashMap::new(),
        })
    }

    pub fn node_index(&self, id: &str) -> Option<NodeIdx> {
        self.index.get(id).copied()
    }

    // ------------------------------------------------------------ registry

    /// The registry part anew, when the sites are the same sites; false (nothing changed)
    /// when they are not and the cluster must be built anew.
    fn set_registry(&mut self, state: &RuntimeState, model: &Arc<RegistryModel>) -> bool {
        let old = self.live.model.clone();
        if old.sites.len() != model.sites.len()
            || old
                .sites
                .iter()
                .zip(&model.sites)
                .any(|(a, b)| a.id != b.id)
        {
            return false;
        }
        let (b, site_of) = model.builder(&|_, _| true);
        if site_of != self.site_of || self.live.cluster.set_registry(b).is_err() {
            return false;
        }
        let (fresh, _) = live_sites(model, &site_of);
        let access = Arc::make_mut(&mut self.live.site_access);
        for (a, f) in access.iter_mut().zip(fresh) {
            *a = super::livestate::LiveSite {
                nodes: a.nodes,
                ready: a.ready,
                ..f
            };
        }
        self.live.site_names = access.iter().map(|a| a.name.clone()).collect();
        self.live.model = model.clone();
        for (m, s) in site_of.iter().enumerate() {
            let Some(s) = *s else { continue };
            self.site_health(s);
            let offers = |model: &RegistryModel| {
                format!(
                    "{:?}",
                    model.offers_of(m).map(|(_, o)| o).collect::<Vec<_>>()
                )
            };
            if offers(&old) != offers(model) {
                // The site's offers changed: its nodes are matched again.
                let members = self.live.cluster.site(s).nodes.clone();
                for n in members {
                    let (spec, _) = node_spec(state, model, m, s, &self.records[n as usize]);
                    self.update_node(n, spec);
                }
            }
        }
        true
    }

    // ------------------------------------------------------------ nodes

    /// Applies one node record; whether the scheduler's view changed.
    fn apply_node(&mut self, state: &RuntimeState, rec: NodeRecord) -> bool {
        let model = self.live.model.clone();
        let target = model
            .site_index
            .get(&rec.site_id)
            .and_then(|&m| self.site_of[m].map(|s| (m, s)));
        match (self.node_index(&rec.id), target) {
            (None, None) => false,
            (Some(n), None) => {
                self.remove_node(n);
                true
            }
            (None, Some((m, s))) => {
                self.add_node(state, &model, m, s, rec);
                true
            }
            (Some(n), Some((m, s))) => {
                let old = &self.records[n as usize];
                if old.site_id != rec.site_id || old.name != rec.name {
                    // Its place in the site's order is by name: leave and join again.
                    self.remove_node(n);
                    self.add_node(state, &model, m, s, rec);
                    return true;
                }
                let was_ready = old.ready;
                let (spec, _) = node_spec(state, &model, m, s, &rec);
                let ready = rec.ready;
                self.records[n as usize] = rec;
                let mut changed = self.update_node(n, spec);
                if ready != was_ready {
                    let a = &mut Arc::make_mut(&mut self.live.site_access)[s as usize];
                    if ready {
                        a.ready += 1;
                    } else {
                        a.ready -= 1;
                    }
                    self.site_health(s);
                    changed = true;
                }
                changed
            }
        }
    }

    fn add_node(
        &mut self,
        state: &RuntimeState,
        model: &RegistryModel,
        m: usize,
        s: SiteIdx,
        rec: NodeRecord,
    ) {
        let (spec, _) = node_spec(state, model, m, s, &rec);
        // After every node of the same name: `list_nodes` orders a site's nodes by name.
        let names = &self.live.node_names;
        let position = self
            .live
            .cluster
            .site(s)
            .nodes
            .partition_point(|&k| names[k as usize] <= rec.name);
        let n = self
            .live
            .cluster
            .add_node_at(spec, position)
            .expect("the site is one of the cluster's");
        debug_assert_eq!(n as usize, self.live.node_ids.len());
        let a = &mut Arc::make_mut(&mut self.live.site_access)[s as usize];
        a.nodes += 1;
        a.ready += u32::from(rec.ready);
        self.live.node_ids.push(rec.id.clone());
        self.live.node_names.push(rec.name.clone());
        self.index.insert(rec.id.clone(), n);
        self.records.push(rec);
        self.site_health(s);
        self.place_on(n);
    }

    fn remove_node(&mut self, n: NodeIdx) {
        self.unplace_on(n);
        let s = self.live.cluster.node(n).spec.site;
        let rec = &self.records[n as usize];
        let a = &mut Arc::make_mut(&mut self.live.site_access)[s as usize];
        a.nodes -= 1;
        a.ready -= u32::from(rec.ready);
        let id = self.live.node_ids[n as usize].clone();
        // Tenant usage of what it held was released by `unplace_on`.
        let moved = self.live.cluster.remove_node(n);
        self.live.node_ids.swap_remove(n as usize);
        self.live.node_names.swap_remove(n as usize);
        self.records.swap_remove(n as usize);
        self.index.remove(&id);
        if moved.is_some() {
            self.index.insert(self.live.node_ids[n as usize].clone(), n);
        }
        self.site_health(s);
    }

    /// Node `n` is now `spec`: nothing happens when the scheduler sees no difference; a
    /// node lost or back keeps what it holds (O(1) in its site); else its holds are
    /// released, the node changed, and its holds taken again.
    fn update_node(&mut self, n: NodeIdx, spec: NodeSpec) -> bool {
        let old = &self.live.cluster.node(n).spec;
        if same_node_spec(old, &spec) {
            return false;
        }
        if same_but_health(old, &spec) {
            return self
                .live
                .cluster
                .update_node(n, spec)
                .expect("the node stays on its site");
        }
        self.unplace_on(n);
        self.live
            .cluster
            .update_node(n, spec)
            .expect("the node stays on its site");
        self.place_on(n);
        true
    }

    /// Measured health of cluster site `s`: the registry's, unless every node stopped
    /// answering.
    fn site_health(&mut self, s: SiteIdx) {
        let m = self.live.site_model[s as usize];
        let healthy =
            measured_site(&self.live.model, m, &self.live.site_access[s as usize]).healthy;
        self.live.cluster.sites[s as usize].spec.healthy = healthy;
    }

    // ------------------------------------------------------------ holds

    fn keys_on(&self, n: NodeIdx) -> Vec<HoldKey> {
        self.on_node
            .get(&self.live.node_ids[n as usize])
            .map(|keys| keys.iter().cloned().collect())
            .unwrap_or_default()
    }

    fn place_on(&mut self, n: NodeIdx) {
        for key in self.keys_on(n) {
            self.place(&key);
        }
    }

    fn unplace_on(&mut self, n: NodeIdx) {
        for key in self.keys_on(n) {
            self.unplace(&key);
        }
    }

    /// Takes a hold out of its node, as `Ledger::reserve_into` does: the GPUs it was
    /// given, else a best fit; nothing when its node is not here or cannot hold it.
    fn place(&mut self, key: &HoldKey) {
        let Some(t) = self.holds.get_mut(key) else {
            return;
        };
        if t.given.is_some() || !t.hold.takes_capacity(key.0) {
            return;
        }
        let Some(&n) = self.index.get(&t.hold.target) else {
            return;
        };
        let c = &mut self.live.cluster;
        let h = &t.hold;
        t.given = if c.reserve_exact(&h.tenant, n, &h.demand, &h.gpus) {
            Some(h.gpus.clone())
        } else {
            c.reserve(&h.tenant, n, &h.demand, GpuPick::BestFit)
        };
    }

    fn unplace(&mut self, key: &HoldKey) {
        let Some(t) = self.holds.get_mut(key) else {
            return;
        };
        let (Some(g), Some(&n)) = (t.given.take(), self.index.get(&t.hold.target)) else {
            return;
        };
        self.live
            .cluster
            .release(&t.hold.tenant, n, &t.hold.demand, &g);
    }

    fn forget(&mut self, key: &HoldKey) {
        self.unplace(key);
        if let Some(t) = self.holds.remove(key) {
            if let Some(keys) = self.on_node.get_mut(&t.hold.target) {
                keys.remove(key);
                if keys.is_empty() {
                    self.on_node.remove(&t.hold.target);
                }
            }
            if let Some(at) = t.hold.expires_at {
                self.expiries.remove(&(at, key.clone()));
            }
            if let Some(lease) = t.hold.lease
                && let Some(keys) = self.by_lease.get_mut(&lease)
            {
                keys.remove(key);
                if keys.is_empty() {
                    self.by_lease.remove(&lease);
                }
            }
        }
    }

    /// A ledger key changed: `hold` is what it holds now (None: released).
    fn apply_hold(&mut self, key: HoldKey, hold: Option<Hold>, now: DateTime<Utc>) {
        let hold = hold.filter(|h| h.holds_at(now) && h.resource().is_none());
        if let (Some(t), Some(h)) = (self.holds.get(&key), &hold)
            && t.hold == *h
        {
            return;
        }
        self.forget(&key);
        let Some(h) = hold else { return };
        self.on_node
            .entry(h.target.clone())
            .or_default()
            .insert(key.clone());
        if let Some(at) = h.expires_at {
            self.expiries.insert((at, key.clone()));
        }
        if let Some(lease) = h.lease {
            self.by_lease.entry(lease).or_default().insert(key.clone());
        }
        self.holds.insert(
            key.clone(),
            Taken {
                hold: h,
                given: None,
            },
        );
        self.place(&key);
    }

    /// Every hold anew (a fresh cluster, or a reloaded ledger).
    fn reset_holds(&mut self, all: Vec<(HoldKey, Hold)>, now: DateTime<Utc>) {
        let keys: Vec<HoldKey> = self.holds.keys().cloned().collect();
        for k in keys {
            self.forget(&k);
        }
        for (k, h) in all {
            self.apply_hold(k, Some(h), now);
        }
    }

    /// Holds whose expiry has come stop holding.
    fn expire(&mut self, now: DateTime<Utc>) {
        while let Some((at, key)) = self.expiries.first().cloned() {
            if at > now {
                break;
            }
            self.forget(&key);
        }
    }

    /// The binder's round took `demand` on node `n` for task `task` with `gpus`: recorded
    /// as the task's hold (the caller marks the key changed in the ledger, so the next
    /// cycle reconciles it with what the store bound).
    /// What a task holds in this cluster (its placement, for the binder's own).
    pub fn task_hold(&self, task: &str) -> Option<&Hold> {
        self.holds
            .get(&(super::ledger::HoldKind::Task, task.to_string()))
            .map(|t| &t.hold)
    }

    /// A task placed inside `lease` took nothing itself (the lease's hold holds it).
    pub fn placed(
        &mut self,
        task: &str,
        n: NodeIdx,
        tenant: &str,
        demand: Demand,
        gpus: GpuAssignment,
        lease: Option<u64>,
    ) {
        let key: HoldKey = (super::ledger::HoldKind::Task, task.to_string());
        self.forget(&key);
        let target = self.live.node_ids[n as usize].clone();
        self.on_node
            .entry(target.clone())
            .or_default()
            .insert(key.clone());
        if let Some(lease) = lease {
            self.by_lease.entry(lease).or_default().insert(key.clone());
        }
        self.holds.insert(
            key,
            Taken {
                hold: Hold {
                    target,
                    tenant: tenant.to_string(),
                    demand,
                    gpus: gpus.clone(),
                    expires_at: None,
                    lease,
                },
                given: lease.is_none().then_some(gpus),
            },
        );
    }

    // ------------------------------------------------------------ leases

    /// The holds of `lease` that hold capacity here now, one per node, with the node's
    /// site and node names (a lease-bound task is restricted to them by label); empty when
    /// the lease holds nothing (it ended).
    pub fn lease_nodes(&self, lease: u64) -> Vec<(HoldKey, String, String)> {
        let Some(keys) = self.by_lease.get(&lease) else {
            return Vec::new();
        };
        keys.iter()
            .filter(|k| k.0 == super::ledger::HoldKind::Lease)
            .filter_map(|k| {
                let t = self.holds.get(k)?;
                t.given.as_ref()?;
                let n = *self.index.get(&t.hold.target)?;
                let site = self.live.cluster.node(n).spec.site;
                Some((
                    k.clone(),
                    self.live.site_names[site as usize].clone(),
                    self.live.node_names[n as usize].clone(),
                ))
            })
            .collect()
    }

    /// Whether `lease` has a hold here (false once it ended).
    pub fn has_lease(&self, lease: u64) -> bool {
        self.by_lease
            .get(&lease)
            .is_some_and(|keys| keys.iter().any(|k| k.0 == super::ledger::HoldKind::Lease))
    }

    /// The share a lease's hold `key` holds (its demand), if it holds now.
    pub fn lease_share(&self, key: &HoldKey) -> Option<Demand> {
        self.holds.get(key).map(|t| t.hold.demand)
    }

    /// Opens lease hold `key` for one of the lease's tasks (see [`LeaseWindow`]); None when
    /// it holds nothing now.
    pub fn open_lease(&mut self, key: &HoldKey) -> Option<LeaseWindow> {
        let t = self.holds.get(key)?;
        let leased = t.given.clone()?;
        let n = *self.index.get(&t.hold.target)?;
        let lease = t.hold.lease?;
        let (share, tenant, target) = (t.hold.demand, t.hold.tenant.clone(), &t.hold.target);
        // What the lease's tasks on this node use of the share.
        let (mut cpu, mut memory) = (0u64, 0u64);
        let mut gpu_used: HashMap<u32, u32> = HashMap::new();
        for k in self.by_lease.get(&lease).into_iter().flatten() {
            let Some(task) = self.holds.get(k) else {
                continue;
            };
            if k.0 != super::ledger::HoldKind::Task || &task.hold.target != target {
                continue;
            }
            cpu += task.hold.demand.cpu_milli;
            memory += task.hold.demand.memory_mib;
            for &(i, m) in &task.hold.gpus {
                *gpu_used.entry(i).or_default() += m;
            }
        }
        let c = &mut self.live.cluster;
        c.release(&tenant, n, &share, &leased);
        let node = c.node(n);
        let rest = Demand {
            cpu_milli: node
                .cpu_free()
                .saturating_sub(share.cpu_milli.saturating_sub(cpu)),
            memory_mib: node
                .memory_free()
                .saturating_sub(share.memory_mib.saturating_sub(memory)),
            ..Default::default()
        };
        let gpu_blocks: Vec<(u32, u32)> = node
            .gpu_free
            .iter()
            .enumerate()
            .filter_map(|(i, &free)| {
                let i = i as u32;
                let open = if leased.iter().any(|&(g, _)| g == i) {
                    1000u32
                        .saturating_sub(gpu_used.get(&i).copied().unwrap_or(0))
                        .min(free)
                } else {
                    0
                };
                (free > open).then_some((i, free - open))
            })
            .collect();
        let mut blockers = Vec::new();
        if c.reserve_exact(BLOCKER, n, &rest, &Vec::new()) {
            blockers.push((rest, Vec::new()));
        }
        for (i, m) in gpu_blocks {
            let d = Demand {
                gpus: 1,
                gpu_milli: m,
                ..Default::default()
            };
            if c.reserve_exact(BLOCKER, n, &d, &vec![(i, m)]) {
                blockers.push((d, vec![(i, m)]));
            }
        }
        self.holds.get_mut(key).expect("just read").given = None;
        Some(LeaseWindow {
            key: key.clone(),
            lease,
            node: n,
            blockers,
        })
    }

    /// Closes a lease window: the task the scheduler placed in it (if any) is recorded as
    /// a hold inside the lease, the blockers go and the lease's hold is taken again, so the
    /// node is as before but for the task's part of the share.
    pub fn close_lease(
        &mut self,
        w: LeaseWindow,
        placed: Option<(&str, &str, Demand, GpuAssignment)>,
    ) {
        if let Some((task, tenant, demand, gpus)) = placed {
            self.live.cluster.release(tenant, w.node, &demand, &gpus);
            self.placed(task, w.node, tenant, demand, gpus, Some(w.lease));
        }
        for (d, g) in w.blockers.iter().rev() {
            self.live.cluster.release(BLOCKER, w.node, d, g);
        }
        self.place(&w.key);
    }
}
