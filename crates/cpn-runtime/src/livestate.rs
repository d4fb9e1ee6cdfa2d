//! The one live federation state (issue #13, deliverables 1 and 2): the cluster the binder
//! places real work on, built from the same registry model as explain, dry-run, plans and
//! the twin, with the machines agents reported in place of the synthesized nodes.
//!
//! Two parts. The **registry part** ([`RegistryModel`]: sites with PUE, electricity price,
//! carbon, tenancy and visibility, the links with their current metrics, the compute
//! offers with their economics, quotas, isolations) is read once and cached here; every
//! registry write (objects, tags, site and link metrics, quotas, isolations) calls
//! [`LiveState::registry_changed`] after it commits, and the next reader rebuilds it. The
//! **live part** is the nodes agents and Slurm reported, each matched to the registered
//! offer of its site it fulfils ([`match_offer`]: chip, model, architecture) so that it
//! carries that offer's TFLOPS, watts and unit price into the scheduler; a node that
//! fulfils none is unregistered capacity, with the reason, and has unknown economics (NaN,
//! which the site scores skip). What the capacity ledger holds on the nodes (active tasks,
//! `POST /schedule` decisions, allocations) is taken out.
//!
//! Health is measured: a site whose nodes all stopped answering is unhealthy whatever its
//! spec says, and a site with no live node at all is registered capacity only, a planning
//! target the binder never places on; the [`LiveSites`] filter says which in explain.
//!
//! [`live_cluster`] builds such a cluster in O(cluster) for one request (capacity, `POST
//! /schedule`, "why here now", the twin on live nodes), for the sites its caller may see.
//! The binder does not: it keeps one cluster of every site across cycles and applies the
//! events since the last cycle to it (`super::livecluster`), O(changed objects) per cycle;
//! this module gives it the pieces ([`build_live`], [`node_spec`], [`live_sites`],
//! [`measured_site`]) so both derive nodes and sites the same way.

use super::nodes::inventory_of;
use crate::RuntimeState;
use crate::caller::Caller;
use crate::error::{ApiError, ApiResult};
use crate::inventory::{RegOffer, RegistryModel};
use cpn_api_types::Code;
use cpn_api_types::agent::{
    Capacity, NodeInventory, OfferCapacity, OfferUnit, SiteCapacity, UnregisteredNode,
};
use cpn_api_types::registry::{ChipType, SiteHealth};
use cpn_model::Labels;
use cpn_sched::framework::SiteFilter;
use cpn_sched::task::Chip;
use cpn_sched::{Cluster, CycleState, NodeIdx, NodeSpec, Plugin, SiteIdx, Verdict};
use cpn_store::NodeRecord;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Node label naming the compute resource a node fulfils, when automatic matching cannot
/// tell (`cpn agent --label cpn.node/resource=NAME`). The node must still fulfil it.
pub const OFFER_LABEL: &str = "cpn.node/resource";

/// Economics of a node that fulfils no offer: unknown. The scheduler's site scores skip
/// non-finite values, so such a node never makes its site look cheap, fast or frugal.
pub const UNKNOWN: f64 = f64::NAN;

/// The registry part of the live state, cached between registry changes, and the binder's
/// live cluster kept between cycles.
#[derive(Default)]
pub struct LiveState {
    /// Bumped by every registry change, after it commits.
    epoch: AtomicU64,
    /// The model and the epoch it was read at.
    cached: Mutex<Option<(u64, Arc<RegistryModel>)>>,
    /// One rebuild at a time; others wait for it.
    loading: tokio::sync::Mutex<()>,
    /// How many times the registry part was read from the store.
    pub rebuilds: AtomicU64,
    /// Each node's match to the offers, by node id, with the registry epoch and the node
    /// record's `updated_at` it was made at: a node is matched when it (re)registers or the
    /// registry changes, not every cycle.
    matches: Mutex<HashMap<String, CachedMatch>>,
    /// The binder's live cluster between cycles (`livecluster`); None before the first
    /// cycle and while a cycle holds it.
    pub(super) binder: Mutex<Option<super::livecluster::BinderCluster>>,
    /// Node records written since the binder's live cluster last looked, by node id.
    pub(super) changed_nodes: Mutex<HashMap<String, NodeRecord>>,
    /// How many times the binder's live cluster was built from scratch.
    pub full_builds: AtomicU64,
    /// The stored policies and the registry epoch they were read at. Policies are registry
    /// objects, so every policy write bumps the epoch (`registry_changed`) and the next
    /// binding cycle reads them again; the others take them from here instead of the store.
    policies: Mutex<Option<(u64, Arc<Vec<cpn_policy::Policy>>)>>,
}

/// A node's match: (registry epoch, node record's `updated_at`, offer index or why none).
type CachedMatch = (u64, chrono::DateTime<chrono::Utc>, Result<usize, String>);

impl LiveState {
    /// Called after every committed write the registry part depends on.
    pub fn registry_changed(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    fn fresh(&self) -> Option<Arc<RegistryModel>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        let cached = self
            .cached
            .lock()
            .expect("registry cache lock is never poisoned");
        cached
            .as_ref()
            .filter(|(e, _)| *e == epoch)
            .map(|(_, m)| m.clone())
    }

    /// The registry part as of the last change. A read that races a change is stored under
    /// the epoch read before it started, so it is rebuilt at the next call.
    pub async fn registry(&self, state: &RuntimeState) -> ApiResult<Arc<RegistryModel>> {
        if let Some(m) = self.fresh() {
            return Ok(m);
        }
        let _one = self.loading.lock().await;
        if let Some(m) = self.fresh() {
            return Ok(m);
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let mut model = RegistryModel::load(state).await?;
        model.epoch = epoch;
        let model = Arc::new(model);
        self.rebuilds.fetch_add(1, Ordering::Relaxed);
        *self
            .cached
            .lock()
            .expect("registry cache lock is never poisoned") = Some((epoch, model.clone()));
        Ok(model)
    }
}

impl LiveState {
    /// The stored policies as of the last registry change (for the binder). As with the
    /// registry part, a read that races a change is stored under the epoch read before it
    /// started, so the next call reads them again.
    pub async fn policies(&self, state: &RuntimeState) -> ApiResult<Arc<Vec<cpn_policy::Policy>>> {
        let epoch = self.epoch.load(Ordering::SeqCst);
        if let Some((e, p)) = self
            .policies
            .lock()
            .expect("policy cache lock is never poisoned")
            .as_ref()
            && *e == epoch
        {
            return Ok(p.clone());
        }
        let loaded: Arc<Vec<cpn_policy::Policy>> = Arc::new(
            crate::policy::load_all(state)
                .await?
                .into_iter()
                .map(|(p, _)| p)
                .collect(),
        );
        *self
            .policies
            .lock()
            .expect("policy cache lock is never poisoned") = Some((epoch, loaded.clone()));
        Ok(loaded)
    }
}

impl LiveState {
    /// [`match_offer`] for a node record, remembered until the node re-registers or the
    /// registry changes.
    pub fn match_node(
        &self,
        model: &RegistryModel,
        site: usize,
        n: &NodeRecord,
        inv: &NodeInventory,
    ) -> Result<usize, String> {
        let mut cache = self
            .matches
            .lock()
            .expect("match cache lock is never poisoned");
        if let Some((e, at, m)) = cache.get(&n.id)
            && *e == model.epoch
            && *at == n.updated_at
        {
            return m.clone();
        }
        let m = match_offer(model, site, inv, &n.labels);
        cache.insert(n.id.clone(), (model.epoch, n.updated_at, m.clone()));
        m
    }

    /// Forgets the matches of nodes not in `keep` (removed nodes), when the cache has grown
    /// past twice their number.
    pub fn prune_matches(&self, keep: &[NodeRecord]) {
        let mut cache = self
            .matches
            .lock()
            .expect("match cache lock is never poisoned");
        if cache.len() > 2 * keep.len() + 16 {
            let ids: std::collections::HashSet<&str> = keep.iter().map(|n| n.id.as_str()).collect();
            cache.retain(|id, _| ids.contains(id.as_str()));
        }
    }
}

// ------------------------------------------------------------------ offers meet machines

/// How well a node fulfils an offer, best last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fit {
    /// Every word of the offer's model is in the node's (`A100-80G` in
    /// `NVIDIA A100-SXM4-80GB`).
    Words,
    /// The same model, ignoring case and punctuation.
    Exact,
}

fn words(s: &str) -> Vec<String> {
    s.split(|c: char| !c.is_ascii_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect()
}

/// `80g` is `80gb`.
fn same_word(a: &str, b: &str) -> bool {
    a == b || a.strip_suffix('b') == Some(b) || b.strip_suffix('b') == Some(a)
}

/// Whether the node's model (`NVIDIA A100-SXM4-80GB`, `Intel(R) Xeon(R) Platinum 8358 CPU`)
/// is the offer's (`A100-80G`, `Xeon-8358`): each word of the offer's is a word of the
/// node's, or two or three adjacent ones written together (`RTX4090`).
pub fn model_fit(offer: &str, node: &str) -> Option<Fit> {
    let (o, n) = (words(offer), words(node));
    if o.is_empty() || n.is_empty() {
        return None;
    }
    if o == n {
        return Some(Fit::Exact);
    }
    let found = |w: &String| {
        (0..n.len())
            .any(|i| (i + 1..=(i + 3).min(n.len())).any(|j| same_word(w, &n[i..j].concat())))
    };
    o.iter().all(found).then_some(Fit::Words)
}

/// One name per instruction set.
fn isa(arch: &str) -> String {
    let a = arch.trim().to_ascii_lowercase();
    match a.as_str() {
        "x86_64" | "x86-64" | "amd64" | "x64" => "x86_64".into(),
        "aarch64" | "arm64" | "armv8" | "arm64-v8a" => "arm64".into(),
        _ => a,
    }
}

/// The micro-architecture of well-known accelerator models (the agent reports the model
/// only); `None` when unknown, and then the architecture is not checked.
fn gpu_family(model: &str) -> Option<&'static str> {
    const TABLE: &[(&str, &str)] = &[
        ("a100", "ampere"),
        ("a800", "ampere"),
        ("a40", "ampere"),
        ("a30", "ampere"),
        ("a10", "ampere"),
        ("a16", "ampere"),
        ("3090", "ampere"),
        ("h100", "hopper"),
        ("h800", "hopper"),
        ("h200", "hopper"),
        ("h20", "hopper"),
        ("gh200", "hopper"),
        ("b100", "blackwell"),
        ("b200", "blackwell"),
        ("gb200", "blackwell"),
        ("l4", "ada"),
        ("l20", "ada"),
        ("l40", "ada"),
        ("l40s", "ada"),
        ("4090", "ada"),
        ("v100", "volta"),
        ("t4", "turing"),
    ];
    let w = words(model);
    TABLE
        .iter()
        .find(|(m, _)| w.iter().any(|x| x == m))
        .map(|(_, f)| *f)
}

/// The node's accelerator model, or its CPU model when it has none.
fn node_model(inv: &NodeInventory) -> &str {
    inv.gpus
        .first()
        .map(|g| g.model.as_str())
        .unwrap_or(inv.cpu_model.as_str())
}

/// Whether a node fulfils an offer, and how well; else why not.
pub fn fulfils(
    offer: &cpn_api_types::registry::ComputeSpec,
    inv: &NodeInventory,
) -> Result<Fit, String> {
    let gpus = inv.gpus.len();
    match offer.chip_type {
        ChipType::Cpu if gpus > 0 => {
            return Err(format!(
                "it has {gpus} GPU(s) ({}) and the offer is CPU cores",
                node_model(inv)
            ));
        }
        ChipType::Gpu if gpus == 0 => {
            return Err("it has no GPU and the offer is GPUs".into());
        }
        ChipType::Npu | ChipType::Dcu | ChipType::Fpga => {
            return Err(format!(
                "the offer is {} chips and agents detect NVIDIA GPUs only",
                serde_json::to_value(offer.chip_type)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ));
        }
        _ => {}
    }
    let model = node_model(inv);
    if offer.chip_type == ChipType::Cpu {
        if inv.arch.is_empty() {
            return Err("the node reports no architecture".into());
        }
        if isa(&inv.arch) != isa(&offer.architecture) {
            return Err(format!(
                "architecture {} is not {}",
                inv.arch, offer.architecture
            ));
        }
    } else if let Some(family) = gpu_family(model)
        && !offer.architecture.to_ascii_lowercase().contains(family)
    {
        return Err(format!("{model} is {family}, not {}", offer.architecture));
    }
    if model.is_empty() {
        return Err("the node reports no model".into());
    }
    model_fit(&offer.model, model)
        .ok_or_else(|| format!("model {model:?} is not {:?}", offer.model))
}

/// The offer (index in `model.offers`) of site `site` a node fulfils: the one its
/// [`OFFER_LABEL`] names, else the best fit (exact model before words, then registry
/// order); else why it fulfils none.
pub fn match_offer(
    model: &RegistryModel,
    site: usize,
    inv: &NodeInventory,
    labels: &Labels,
) -> Result<usize, String> {
    let site_name = &model.sites[site].name;
    if let Some(named) = labels.get(OFFER_LABEL) {
        let Some((i, o)) = model
            .offers_of(site)
            .find(|(_, o)| &o.name == named || &o.id == named)
        else {
            return Err(format!(
                "label {OFFER_LABEL}={named} names no compute resource of site {site_name}"
            ));
        };
        return fulfils(&o.compute, inv)
            .map(|_| i)
            .map_err(|why| format!("label {OFFER_LABEL} names {}, but {why}", o.name));
    }
    let mut best: Option<(Fit, usize)> = None;
    let mut misses = Vec::new();
    for (i, o) in model.offers_of(site) {
        match fulfils(&o.compute, inv) {
            Ok(fit) => {
                if best.is_none_or(|(b, _)| fit > b) {
                    best = Some((fit, i));
                }
            }
            Err(why) => misses.push(format!("{}: {why}", o.name)),
        }
    }
    match best {
        Some((_, i)) => Ok(i),
        None if misses.is_empty() => Err(format!(
            "site {site_name} registers no compute resource; register the machine's offer (chip, model, architecture, price) to price it"
        )),
        None => Err(format!(
            "it fulfils none of the compute resources of site {site_name} ({})",
            misses.join("; ")
        )),
    }
}

// ------------------------------------------------------------------ the live cluster

/// Label of every live node: its name, for node selectors.
pub const NODE_NAME_LABEL: &str = "cpn.node/name";

/// What the live filters know of a site of the live cluster.
#[derive(Debug, Clone)]
pub struct LiveSite {
    pub name: String,
    pub public: bool,
    pub tenant: String,
    /// Nodes reported for the site, and those answering.
    pub nodes: u32,
    pub ready: u32,
    /// Health from the registry (metrics, else spec).
    pub registry_health: SiteHealth,
    /// `"512 chip A100-80G, 20480 core Xeon-8358"`: what the registry says it offers.
    pub registered: String,
}

impl LiveSite {
    /// Measured health: down when every node stopped answering or the registry says so,
    /// degraded when the registry says so or some nodes stopped answering.
    pub fn health(&self) -> (SiteHealth, Option<String>) {
        if self.nodes > 0 && self.ready == 0 {
            return (
                SiteHealth::Down,
                Some(format!(
                    "none of its {} node(s) answers (no heartbeat within the node timeout)",
                    self.nodes
                )),
            );
        }
        match self.registry_health {
            SiteHealth::Healthy if self.ready < self.nodes => (
                SiteHealth::Degraded,
                Some(format!(
                    "{} of its {} node(s) do not answer",
                    self.nodes - self.ready,
                    self.nodes
                )),
            ),
            SiteHealth::Healthy => (SiteHealth::Healthy, None),
            h => (h, Some(format!("the registry marks it {}", health_str(h)))),
        }
    }

    /// A ready node on a site that is not down.
    pub fn binder_target(&self) -> bool {
        self.ready > 0 && self.health().0 != SiteHealth::Down
    }
}

fn health_str(h: SiteHealth) -> &'static str {
    match h {
        SiteHealth::Healthy => "healthy",
        SiteHealth::Degraded => "degraded",
        SiteHealth::Down => "down",
    }
}

/// How a live node met the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeMatch {
    /// Index in the model's offers.
    Offer(usize),
    Unregistered(String),
}

/// The live cluster: one site per admitted registry site (with nodes or not: the topology
/// runs through them all), one node per node record on those sites.
pub struct LiveCluster {
    pub cluster: Cluster,
    /// Per cluster node (by `NodeIdx`).
    pub node_ids: Vec<String>,
    pub node_names: Vec<String>,
    pub matches: Vec<NodeMatch>,
    /// Per cluster site (by `SiteIdx`).
    pub site_names: Vec<String>,
    pub site_model: Vec<usize>,
    pub site_access: Arc<Vec<LiveSite>>,
    pub model: Arc<RegistryModel>,
}

impl LiveCluster {
    /// The scheduler names live nodes by id; people know them by name.
    pub fn rename_nodes(&self, decision: &mut cpn_sched::Decision) {
        let names: std::collections::HashMap<&str, &str> = self
            .node_ids
            .iter()
            .map(String::as_str)
            .zip(self.node_names.iter().map(String::as_str))
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
    }
}

/// Builds the live cluster over the registry sites `admit(public, tenant)` lets in (and the
/// links it lets in), with `nodes` matched to their offers, minus every hold of the capacity
/// ledger on them (tasks, decisions, allocations; expired holds hold nothing). O(cluster):
/// what the per-request views (capacity, `POST /schedule`, "why here now", the twin on live
/// nodes) build for their caller; the binder keeps one up to date instead
/// ([`super::livecluster`]).
pub async fn live_cluster(
    state: &RuntimeState,
    nodes: &[NodeRecord],
    admit: crate::inventory::Admit<'_>,
) -> ApiResult<LiveCluster> {
    let model = state.runtime.federation.registry(state).await?;
    let mut live = build_live(state, model, nodes, admit)?;
    let idx: HashMap<&str, NodeIdx> = live
        .node_ids
        .iter()
        .enumerate()
        .map(|(i, id)| (id.as_str(), i as NodeIdx))
        .collect();
    // Capacity held by tasks, decisions and allocations (the ledger), expired holds aside.
    state
        .runtime
        .ledger()
        .reserve_into(chrono::Utc::now(), &mut live.cluster, &idx);
    Ok(live)
}

/// The live filters' view of every site `admit` lets in, in model order, with no node
/// counted yet; and the model index of each.
pub fn live_sites(model: &RegistryModel, index: &[Option<SiteIdx>]) -> (Vec<LiveSite>, Vec<usize>) {
    let mut access: Vec<LiveSite> = Vec::new();
    let mut site_model = Vec::new();
    for (i, s) in model.sites.iter().enumerate() {
        if index[i].is_some() {
            let registered: Vec<String> = model
                .offers_of(i)
                .map(|(_, o)| {
                    let unit = if o.chip() == Chip::Cpu {
                        "core"
                    } else {
                        "chip"
                    };
                    format!("{} {unit} {}", o.compute.count, o.compute.model)
                })
                .collect();
            access.push(LiveSite {
                name: s.name.clone(),
                public: s.public,
                tenant: s.tenant.clone(),
                nodes: 0,
                ready: 0,
                registry_health: s.health,
                registered: registered.join(", "),
            });
            site_model.push(i);
        }
    }
    (access, site_model)
}

/// What the scheduler sees of node record `n` on cluster site `site` (model site `m`):
/// its spec (the offer it fulfils gives economics and labels; healthy when ready, not
/// cordoned, not occupied, its offer not isolated) and how it met the registry.
pub fn node_spec(
    state: &RuntimeState,
    model: &RegistryModel,
    m: usize,
    site: SiteIdx,
    n: &NodeRecord,
) -> (NodeSpec, NodeMatch) {
    let inv = inventory_of(n);
    let found = state.runtime.federation.match_node(model, m, n, &inv);
    let offer: Option<&RegOffer> = found.as_ref().ok().map(|&i| &model.offers[i]);
    let gpus = inv.gpus.len() as u32;
    let mut labels: Labels = offer.map(|o| o.labels.clone()).unwrap_or_default();
    labels.extend(n.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert(NODE_NAME_LABEL.into(), n.name.clone());
    let (chip, model_name, architecture, (tflops, price, watts)) = match offer {
        Some(o) => (
            o.chip(),
            o.compute.model.clone(),
            o.compute.architecture.clone(),
            o.economics(),
        ),
        None => (
            if gpus > 0 { Chip::Gpu } else { Chip::Cpu },
            node_model(&inv).to_string(),
            inv.arch.clone(),
            (UNKNOWN, UNKNOWN, UNKNOWN),
        ),
    };
    let spec = NodeSpec {
        name: n.id.clone(),
        site,
        labels,
        healthy: n.ready
            && !n.cordoned
            && n.occupied_by.is_none()
            && !offer.is_some_and(|o| o.isolated),
        cpu_milli: inv.cpu_cores as u64 * 1000,
        memory_mib: inv.memory_mib,
        storage_gib: inv
            .disks
            .iter()
            .map(|d| d.available_gib)
            .fold(0.0, f64::max) as u64,
        chip: Some(chip),
        model: model_name,
        architecture,
        gpus,
        tflops_per_unit: tflops,
        price_per_unit_hour: price,
        watts_per_unit: watts,
    };
    let how = match found {
        Ok(i) => NodeMatch::Offer(i),
        Err(why) => NodeMatch::Unregistered(why),
    };
    (spec, how)
}

/// A site's spec as the scheduler sees it: the registry's, and not healthy when measured
/// down (every node stopped answering).
pub fn measured_site(model: &RegistryModel, m: usize, access: &LiveSite) -> cpn_sched::SiteSpec {
    let mut spec = model.sites[m].spec.clone();
    if access.health().0 == SiteHealth::Down {
        spec.healthy = false;
    }
    spec
}

/// [`live_cluster`] before the ledger's holds are taken out.
pub fn build_live(
    state: &RuntimeState,
    model: Arc<RegistryModel>,
    nodes: &[NodeRecord],
    admit: crate::inventory::Admit<'_>,
) -> ApiResult<LiveCluster> {
    let (mut b, index) = model.builder(admit);
    let (mut access, site_model) = live_sites(&model, &index);
    let mut matched: HashMap<&str, (&str, NodeMatch)> = HashMap::new();
    for n in nodes {
        let Some(&m) = model.site_index.get(&n.site_id) else {
            continue;
        };
        let Some(site) = index[m] else {
            continue;
        };
        let (spec, how) = node_spec(state, &model, m, site, n);
        let a = &mut access[site as usize];
        a.nodes += 1;
        a.ready += n.ready as u32;
        b.node(spec);
        matched.insert(n.id.as_str(), (n.name.as_str(), how));
    }
    state.runtime.federation.prune_matches(nodes);
    let mut cluster = b.build().map_err(|e| {
        ApiError::new(
            Code::Internal,
            format!("live nodes do not form a cluster: {e}"),
        )
    })?;
    // Measured health: a site whose nodes all stopped answering is not healthy.
    for (i, a) in access.iter().enumerate() {
        if a.health().0 == SiteHealth::Down {
            cluster.sites[i].spec.healthy = false;
        }
    }
    // The builder lays nodes out by site: read the order back from the cluster.
    let mut node_ids = Vec::with_capacity(cluster.nodes.len());
    let mut node_names = Vec::with_capacity(cluster.nodes.len());
    let mut matches = Vec::with_capacity(cluster.nodes.len());
    for n in &cluster.nodes {
        let (name, how) = matched
            .remove(n.spec.name.as_str())
            .expect("every cluster node was added above");
        node_ids.push(n.spec.name.clone());
        node_names.push(name.to_string());
        matches.push(how);
    }
    Ok(LiveCluster {
        cluster,
        node_ids,
        node_names,
        matches,
        site_names: access.iter().map(|a| a.name.clone()).collect(),
        site_model,
        site_access: Arc::new(access),
        model,
    })
}

// ------------------------------------------------------------------ the live site filter

/// Name of the site filter that keeps the binder to sites with answering machines.
pub const LIVE_SITES: &str = "live_sites";
/// The site has registered capacity but no live node: a planning target only.
pub const NO_LIVE_NODE: &str = "no_live_node";
/// Every node of the site stopped answering.
pub const SITE_NOT_ANSWERING: &str = "site_not_answering";

/// In front of every profile the binder and "why here" run (after the visibility filter):
/// registered capacity with no live node is never a binder target, and a site whose nodes
/// all stopped answering is down. Not permanent: machines join and come back.
pub struct LiveSites {
    pub sites: Arc<Vec<LiveSite>>,
}

impl Plugin for LiveSites {
    fn name(&self) -> &'static str {
        LIVE_SITES
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        Some(self)
    }
}

impl SiteFilter for LiveSites {
    fn filter_site(
        &self,
        state: &CycleState,
        _task: &cpn_sched::Task,
        _cluster: &Cluster,
        site: SiteIdx,
    ) -> Verdict {
        let Some(s) = self.sites.get(site as usize) else {
            return Verdict::Fits;
        };
        if s.nodes == 0 {
            return Verdict::Rejects(state.reason(LIVE_SITES, NO_LIVE_NODE, || {
                let offers = if s.registered.is_empty() {
                    "no compute resource".to_string()
                } else {
                    s.registered.clone()
                };
                format!(
                    "site {} has no live node: its registered capacity ({offers}) is a planning target only (dry-run, plans, the twin), never a binder target",
                    s.name
                )
            }));
        }
        if s.ready == 0 {
            return Verdict::Rejects(state.reason(LIVE_SITES, SITE_NOT_ANSWERING, || {
                format!(
                    "site {} is down: none of its {} node(s) answers (no heartbeat within the node timeout)",
                    s.name, s.nodes
                )
            }));
        }
        Verdict::Fits
    }
}

// ------------------------------------------------------------------ capacity views

fn units_of(chip: Chip, n: &cpn_sched::cluster::Node) -> (f64, f64) {
    if chip == Chip::Cpu {
        (
            n.spec.cpu_milli as f64 / 1000.0,
            n.cpu_free() as f64 / 1000.0,
        )
    } else {
        (n.spec.gpus as f64, n.gpu_milli_free() as f64 / 1000.0)
    }
}

/// Per site `who` may read (or the one named): registered offers against the live machines
/// that fulfil them (registered, live, allocated, free), unregistered nodes with the
/// reason, measured health (`GET /api/v1/capacity`).
pub async fn capacity(
    state: &RuntimeState,
    who: &Caller,
    site: Option<&str>,
) -> ApiResult<Vec<SiteCapacity>> {
    let nodes = state.store.list_nodes().await?;
    let admit = crate::inventory::admits(who);
    let live = live_cluster(state, &nodes, &admit).await?;
    if let Some(name) = site
        && !live.site_names.iter().any(|s| s == name)
        && !live
            .site_model
            .iter()
            .any(|&m| live.model.sites[m].id == name)
    {
        return Err(ApiError::not_found("site", name));
    }
    let ready: HashMap<&str, bool> = nodes.iter().map(|n| (n.id.as_str(), n.ready)).collect();
    let emulated: HashSet<&str> = nodes
        .iter()
        .filter(|n| n.inventory.get("emulated") == Some(&serde_json::Value::Bool(true)))
        .map(|n| n.id.as_str())
        .collect();
    let mut out = Vec::new();
    for (si, &m) in live.site_model.iter().enumerate() {
        let reg = &live.model.sites[m];
        if site.is_some_and(|s| s != reg.name && s != reg.id) {
            continue;
        }
        let ls = &live.site_access[si];
        let mut offers: Vec<(usize, OfferCapacity)> = live
            .model
            .offers_of(m)
            .filter(|(_, o)| admit(o.public, &o.tenant))
            .map(|(i, o)| {
                let (tflops, price, watts) = (
                    o.compute.tflops,
                    o.compute.unit_price,
                    o.compute.power_watts,
                );
                (
                    i,
                    OfferCapacity {
                        resource: o.name.clone(),
                        id: o.id.clone(),
                        chip_type: o.compute.chip_type,
                        model: o.compute.model.clone(),
                        architecture: o.compute.architecture.clone(),
                        unit: if o.chip() == Chip::Cpu {
                            OfferUnit::Core
                        } else {
                            OfferUnit::Chip
                        },
                        registered: o.compute.count as f64,
                        live: 0.0,
                        allocated: 0.0,
                        free: 0.0,
                        nodes_live: 0,
                        nodes_lost: 0,
                        nodes_emulated: 0,
                        unit_price: price,
                        tflops,
                        power_watts: watts,
                        isolated: o.isolated,
                    },
                )
            })
            .collect();
        let mut unregistered = Vec::new();
        let mut nodes_emulated = 0;
        let range = live.cluster.site(si as SiteIdx).nodes.clone();
        for n in range {
            let node = live.cluster.node(n);
            let id = live.node_ids[n as usize].as_str();
            let rec_ready = ready.get(id).copied().unwrap_or(false);
            let is_emulated = emulated.contains(id);
            nodes_emulated += u32::from(is_emulated);
            match &live.matches[n as usize] {
                NodeMatch::Offer(i) => {
                    let Some((_, o)) = offers.iter_mut().find(|(j, _)| j == i) else {
                        continue;
                    };
                    if !rec_ready {
                        o.nodes_lost += 1;
                        continue;
                    }
                    let chip = live.model.offers[*i].chip();
                    let (total, free) = units_of(chip, node);
                    o.nodes_live += 1;
                    o.nodes_emulated += u32::from(is_emulated);
                    o.live += total;
                    o.allocated += total - free;
                    if node.schedulable() {
                        o.free += free;
                    }
                }
                NodeMatch::Unregistered(why) => unregistered.push(UnregisteredNode {
                    node: live.node_names[n as usize].clone(),
                    node_id: live.node_ids[n as usize].clone(),
                    ready: rec_ready,
                    emulated: is_emulated,
                    capacity: Capacity {
                        cpu_cores: node.spec.cpu_milli as f64 / 1000.0,
                        memory_gib: node.spec.memory_mib as f64 / 1024.0,
                        gpus: node.spec.gpus as f64,
                    },
                    reason: why.clone(),
                }),
            }
        }
        let (health, health_reason) = ls.health();
        out.push(SiteCapacity {
            site: reg.name.clone(),
            region: reg.spec.region.clone(),
            health,
            health_reason,
            nodes: ls.nodes,
            nodes_ready: ls.ready,
            nodes_emulated,
            binder_target: ls.binder_target(),
            offers: offers.into_iter().map(|(_, o)| o).collect(),
            unregistered,
        });
    }
    Ok(out)
}

/// How each node met the registry, by node id: (offer name, unregistered reason), and each
/// site's measured health by site id. For the node and site views.
pub async fn node_offers(
    state: &RuntimeState,
    nodes: &[NodeRecord],
) -> ApiResult<HashMap<String, (Option<String>, Option<String>)>> {
    let model = state.runtime.federation.registry(state).await?;
    let mut out = HashMap::new();
    for n in nodes {
        let how = match model.site_index.get(&n.site_id) {
            None => (
                None,
                Some(format!("site {} is not in the registry", n.site)),
            ),
            Some(&m) => match state
                .runtime
                .federation
                .match_node(&model, m, n, &inventory_of(n))
            {
                Ok(i) => (Some(model.offers[i].name.clone()), None),
                Err(why) => (None, Some(why)),
            },
        };
        out.insert(n.id.clone(), how);
    }
    Ok(out)
}

/// Per model site: whether it has nodes and none of them answers (measured down).
pub fn silent_sites(model: &RegistryModel, nodes: &[NodeRecord]) -> Vec<bool> {
    let mut count = vec![(0u32, 0u32); model.sites.len()];
    for n in nodes {
        if let Some(&m) = model.site_index.get(&n.site_id) {
            count[m].0 += 1;
            count[m].1 += n.ready as u32;
        }
    }
    count
        .iter()
        .map(|&(all, ready)| all > 0 && ready == 0)
        .collect()
}

/// Why a site the planning explain chose is no binder target now (no machine, or none
/// answering); `None` when it is one.
pub async fn planning_only(state: &RuntimeState, site: &str) -> ApiResult<Option<String>> {
    let nodes = state.store.list_nodes().await?;
    let on: Vec<&NodeRecord> = nodes.iter().filter(|n| n.site == site).collect();
    Ok(if on.is_empty() {
        Some(format!(
            "site {site} has no live machine: its registered capacity is a planning target only, and a task submitted now is not bound there until a machine joins"
        ))
    } else if !on.iter().any(|n| n.ready) {
        Some(format!(
            "site {site} is down: none of its {} machine(s) answers, so a task submitted now is not bound there",
            on.len()
        ))
    } else {
        None
    })
}

/// A site's measured health from its node records and the registry.
pub async fn site_health(
    state: &RuntimeState,
    site_id: &str,
    nodes: &[NodeRecord],
) -> ApiResult<(SiteHealth, Option<String>)> {
    let model = state.runtime.federation.registry(state).await?;
    let Some(&m) = model.site_index.get(site_id) else {
        return Ok((SiteHealth::Healthy, None));
    };
    let on: Vec<&NodeRecord> = nodes.iter().filter(|n| n.site_id == site_id).collect();
    let s = LiveSite {
        name: model.sites[m].name.clone(),
        public: model.sites[m].public,
        tenant: model.sites[m].tenant.clone(),
        nodes: on.len() as u32,
        ready: on.iter().filter(|n| n.ready).count() as u32,
        registry_health: model.sites[m].health,
        registered: String::new(),
    };
    Ok(s.health())
}

#[cfg(test)]
mod tests {
    use super::*;
    use cpn_api_types::agent::GpuInfo;
    use cpn_api_types::registry::{ComputeSpec, SupplyMode};

    fn offer(chip: ChipType, arch: &str, model: &str) -> ComputeSpec {
        ComputeSpec {
            supply_mode: SupplyMode::BareMetal,
            chip_type: chip,
            architecture: arch.into(),
            model: model.into(),
            count: 8,
            memory_gib: 80.0,
            tflops: Some(312.0),
            unit_price: 9.5,
            power_watts: 400.0,
            pue: None,
        }
    }

    fn cpu_node(arch: &str, model: &str) -> NodeInventory {
        NodeInventory {
            arch: arch.into(),
            cpu_model: model.into(),
            cpu_cores: 8,
            ..Default::default()
        }
    }

    fn gpu_node(model: &str, n: u32) -> NodeInventory {
        NodeInventory {
            gpus: (0..n)
                .map(|i| GpuInfo {
                    index: i,
                    model: model.into(),
                    ..Default::default()
                })
                .collect(),
            ..cpu_node("x86_64", "AMD EPYC 7763 64-Core Processor")
        }
    }

    #[test]
    fn models_match_by_words() {
        assert_eq!(
            model_fit("A100-80G", "NVIDIA A100-SXM4-80GB"),
            Some(Fit::Words)
        );
        assert_eq!(model_fit("a100 80g", "A100-80G"), Some(Fit::Exact));
        assert_eq!(model_fit("A100-80G", "NVIDIA A100-SXM4-40GB"), None);
        assert_eq!(model_fit("A10", "NVIDIA A100-PCIE-40GB"), None);
        assert_eq!(
            model_fit("Xeon-8358", "Intel(R) Xeon(R) Platinum 8358 CPU @ 2.60GHz"),
            Some(Fit::Words)
        );
        assert_eq!(
            model_fit("RTX4090", "NVIDIA GeForce RTX 4090"),
            Some(Fit::Words)
        );
        assert_eq!(model_fit("H800", "NVIDIA H100 80GB HBM3"), None);
        assert_eq!(model_fit("", "anything"), None);
    }

    #[test]
    fn chip_architecture_and_model_must_all_fit() {
        let a100 = offer(ChipType::Gpu, "ampere", "A100-80G");
        assert_eq!(
            fulfils(&a100, &gpu_node("NVIDIA A100-SXM4-80GB", 8)),
            Ok(Fit::Words)
        );
        let why = fulfils(&a100, &cpu_node("x86_64", "Xeon")).unwrap_err();
        assert!(why.contains("no GPU"), "{why}");
        let hopper = offer(ChipType::Gpu, "hopper", "A100-80G");
        let why = fulfils(&hopper, &gpu_node("NVIDIA A100-SXM4-80GB", 8)).unwrap_err();
        assert!(why.contains("ampere, not hopper"), "{why}");

        let xeon = offer(ChipType::Cpu, "x86_64", "Xeon-8358");
        let node = cpu_node("x86_64", "Intel(R) Xeon(R) Platinum 8358 CPU @ 2.60GHz");
        assert_eq!(fulfils(&xeon, &node), Ok(Fit::Words));
        let arm = offer(ChipType::Cpu, "arm64", "Kunpeng-920");
        assert_eq!(
            fulfils(&arm, &cpu_node("aarch64", "Kunpeng-920")),
            Ok(Fit::Exact)
        );
        let why = fulfils(&arm, &node).unwrap_err();
        assert!(why.contains("architecture x86_64 is not arm64"), "{why}");
        let why = fulfils(&xeon, &gpu_node("NVIDIA H800", 8)).unwrap_err();
        assert!(why.contains("8 GPU(s)"), "{why}");
        let npu = offer(ChipType::Npu, "davinci", "Ascend-910B");
        assert!(fulfils(&npu, &node).unwrap_err().contains("npu"));
    }

    fn model_with(offers: &[(&str, ComputeSpec)]) -> RegistryModel {
        let mut m = RegistryModel::default();
        m.site_index.insert("s1".into(), 0);
        m.sites.push(crate::inventory::RegSite {
            id: "s1".into(),
            name: "east".into(),
            public: true,
            tenant: "system".into(),
            health: SiteHealth::Healthy,
            spec: Default::default(),
        });
        for (name, c) in offers {
            m.offers.push(RegOffer {
                id: format!("id-{name}"),
                name: name.to_string(),
                public: true,
                tenant: "system".into(),
                site: 0,
                labels: Default::default(),
                compute: c.clone(),
                isolated: false,
            });
        }
        m.index_offers();
        m
    }

    #[test]
    fn a_node_takes_the_best_offer_or_says_why_none() {
        let m = model_with(&[
            ("cpu-words", offer(ChipType::Cpu, "x86_64", "Xeon-8358")),
            (
                "cpu-exact",
                offer(ChipType::Cpu, "amd64", "Intel Xeon Platinum 8358 CPU"),
            ),
            ("gpus", offer(ChipType::Gpu, "ampere", "A100-80G")),
        ]);
        let node = cpu_node("x86_64", "Intel Xeon Platinum 8358 CPU");
        let none = Labels::default();
        assert_eq!(match_offer(&m, 0, &node, &none), Ok(1));
        // The label decides, and must still fit.
        let named = Labels::from([(OFFER_LABEL.to_string(), "cpu-words".to_string())]);
        assert_eq!(match_offer(&m, 0, &node, &named), Ok(0));
        let wrong = Labels::from([(OFFER_LABEL.to_string(), "gpus".to_string())]);
        let why = match_offer(&m, 0, &node, &wrong).unwrap_err();
        assert!(why.contains("names gpus, but it has no GPU"), "{why}");
        let missing = Labels::from([(OFFER_LABEL.to_string(), "nope".to_string())]);
        assert!(
            match_offer(&m, 0, &node, &missing)
                .unwrap_err()
                .contains("names no compute resource")
        );

        let arm = cpu_node("aarch64", "Kunpeng-920");
        let why = match_offer(&m, 0, &arm, &none).unwrap_err();
        assert!(
            why.starts_with("it fulfils none of the compute resources of site east ("),
            "{why}"
        );
        assert!(
            why.contains("cpu-words: architecture aarch64 is not x86_64"),
            "{why}"
        );
        assert!(why.contains("gpus: it has no GPU"), "{why}");

        let empty = model_with(&[]);
        let why = match_offer(&empty, 0, &arm, &none).unwrap_err();
        assert!(why.contains("registers no compute resource"), "{why}");
    }

    #[test]
    fn measured_health() {
        let mut s = LiveSite {
            name: "east".into(),
            public: true,
            tenant: "system".into(),
            nodes: 2,
            ready: 0,
            registry_health: SiteHealth::Healthy,
            registered: String::new(),
        };
        assert_eq!(s.health().0, SiteHealth::Down);
        assert!(!s.binder_target());
        s.ready = 1;
        assert_eq!(
            s.health(),
            (
                SiteHealth::Degraded,
                Some("1 of its 2 node(s) do not answer".into())
            )
        );
        assert!(s.binder_target());
        s.ready = 2;
        assert_eq!(s.health(), (SiteHealth::Healthy, None));
        s.registry_health = SiteHealth::Down;
        assert_eq!(s.health().0, SiteHealth::Down);
        s.nodes = 0;
        s.ready = 0;
        s.registry_health = SiteHealth::Healthy;
        assert_eq!(s.health().0, SiteHealth::Healthy);
        assert!(!s.binder_target());
    }
}
