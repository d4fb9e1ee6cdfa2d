//! The registry as the scheduler sees it ([`RegistryModel`]: sites with effective labels,
//! health, PUE, prices and carbon; compute offers; links with their current metrics;
//! quotas), and the planning cluster built from it ([`snapshot`]).
//!
//! Registered capacity is a planning target: in the snapshot, nodes are synthesized from
//! compute resources: accelerator pools become nodes of up to `UNITS_PER_ACCEL_NODE` chips with
//! `HOST_CORES_PER_ACCEL` cores and `HOST_GIB_PER_ACCEL` GiB of host memory per chip; CPU
//! pools become nodes of up to `CORES_PER_CPU_NODE` cores. Each node gets
//! `LOCAL_STORAGE_GIB` of local disk. These shapes follow common 8-GPU servers. The binder
//! places on live machines instead (`runtime::livestate`), from the same model.

use crate::RuntimeState;
use crate::access::{Inheritance, decode_spec, visible_to_tenant};
use crate::caller::{Actor, Caller};
use crate::error::{ApiError, ApiResult};
use chrono::Utc;
use cpn_api_types::Code;
use cpn_api_types::registry::{
    ChipType, ComputeSpec, LinkMetrics, LinkSpec, ResourceSpec, SiteHealth, SiteMetrics, SiteSpec,
};
use cpn_model::{GeoPoint, Kind};
use cpn_sched::task::Chip;
use cpn_sched::task::Demand;
use cpn_sched::{Cluster, ClusterBuilder, NodeSpec, SiteIdx};
use cpn_store::ListQuery;
use std::collections::HashMap;

pub const UNITS_PER_ACCEL_NODE: u64 = 8;
pub const HOST_CORES_PER_ACCEL: u64 = 16;
pub const HOST_GIB_PER_ACCEL: u64 = 128;
pub const CORES_PER_CPU_NODE: u64 = 64;
pub const LOCAL_STORAGE_GIB: u64 = 4096;
/// Host memory per core when a CPU pool does not say.
pub const DEFAULT_GIB_PER_CORE: f64 = 4.0;
/// Keeps one absurd registration from exhausting memory.
pub const MAX_NODES_PER_RESOURCE: u64 = 20_000;

/// The cluster plus the registry ids behind its site indices.
pub struct Inventory {
    pub cluster: Cluster,
    pub site_ids: Vec<String>,
}

pub fn chip_of(c: ChipType) -> Chip {
    match c {
        ChipType::Cpu => Chip::Cpu,
        ChipType::Gpu => Chip::Gpu,
        ChipType::Npu => Chip::Npu,
        ChipType::Dcu | ChipType::Fpga => Chip::Other,
    }
}

/// Store setting holding the ids of isolated (cordoned) compute resources, a JSON list.
pub const ISOLATED_RESOURCES_SETTING: &str = "isolated_resources";
/// Prefix of an allocation's `node_id` when it holds capacity of a registry resource.
pub const RESOURCE_ALLOCATION_PREFIX: &str = "resource:";

/// Ids of the resources isolated by I2 operations.
pub async fn isolated_resources(state: &RuntimeState) -> ApiResult<Vec<String>> {
    Ok(state
        .store
        .get_setting(ISOLATED_RESOURCES_SETTING)
        .await?
        .and_then(|v| serde_json::from_str(&v).ok())
        .unwrap_or_default())
}

pub async fn set_isolated_resources(state: &RuntimeState, ids: &[String]) -> ApiResult<()> {
    let v = serde_json::to_string(ids).map_err(|e| ApiError::new(Code::Internal, e.to_string()))?;
    state
        .store
        .put_setting(ISOLATED_RESOURCES_SETTING, &v)
        .await?;
    state.runtime.federation.registry_changed();
    Ok(())
}

/// The registry as the scheduler sees it, before any machine: every site (effective labels,
/// health from its latest metrics sample or its spec, PUE, electricity price, carbon),
/// every compute offer, every link with its current metrics, tenant quotas and the
/// isolated resources, each object with its visibility. Read by one function
/// ([`RegistryModel::load`]) and turned into clusters by two: [`snapshot_with_resources`]
/// (planning: nodes synthesized from the offers) and `runtime::livestate::live_cluster`
/// (the binder: the nodes agents reported, matched to these offers). The live state keeps
/// one cached copy, rebuilt only after a registry change.
#[derive(Debug, Clone, Default)]
pub struct RegistryModel {
    pub sites: Vec<RegSite>,
    /// Site index by registry id.
    pub site_index: HashMap<String, usize>,
    pub offers: Vec<RegOffer>,
    pub links: Vec<RegLink>,
    pub quotas: Vec<(String, cpn_sched::cluster::Quota)>,
    /// Per site, its offers (indices in `offers`), in registry order.
    pub site_offers: Vec<Vec<usize>>,
    /// The live state's registry epoch this model was read at.
    pub epoch: u64,
}

#[derive(Debug, Clone)]
pub struct RegSite {
    pub id: String,
    pub name: String,
    pub public: bool,
    pub tenant: String,
    /// Health the registry gives it: its latest metrics sample, else its spec.
    pub health: SiteHealth,
    /// The scheduler's site, `healthy` from `health` alone.
    pub spec: cpn_sched::SiteSpec,
}

/// A registered compute resource: what a site offers, with its economics.
#[derive(Debug, Clone)]
pub struct RegOffer {
    pub id: String,
    pub name: String,
    pub public: bool,
    pub tenant: String,
    /// Index in [`RegistryModel::sites`].
    pub site: usize,
    pub labels: cpn_model::Labels,
    pub compute: ComputeSpec,
    /// Isolated by an I2 operation: nothing new is placed on it.
    pub isolated: bool,
}

impl RegOffer {
    /// The scheduler's chip of the offer.
    pub fn chip(&self) -> Chip {
        chip_of(self.compute.chip_type)
    }
    /// (TFLOPS, CNY per unit-hour, watts per unit): what every node of the offer, synthesized
    /// or live, carries into the scheduler's price, performance and energy factors.
    pub fn economics(&self) -> (f64, f64, f64) {
        let c = &self.compute;
        (c.tflops.unwrap_or(0.0), c.unit_price, c.power_watts)
    }
}

#[derive(Debug, Clone)]
pub struct RegLink {
    pub public: bool,
    pub tenant: String,
    /// Site indices in [`RegistryModel::sites`].
    pub a: usize,
    pub z: usize,
    pub attrs: cpn_topology::LinkAttrs,
}

/// The metric samples of every object of `kind` in force at `now`, by object id; a sample
/// that does not decode is skipped.
async fn metrics_now<T: serde::de::DeserializeOwned>(
    state: &RuntimeState,
    kind: Kind,
    now: chrono::DateTime<Utc>,
) -> ApiResult<HashMap<String, T>> {
    Ok(state
        .store
        .metrics_at(kind, now)
        .await?
        .into_iter()
        .filter_map(|m| {
            serde_json::from_value(m.value)
                .ok()
                .map(|v| (m.object_id, v))
        })
        .collect())
}

impl RegistryModel {
    /// Reads every site, compute resource, link (with the metrics in force now), quota and
    /// isolation, whoever owns them; callers filter by visibility.
    pub async fn load(state: &RuntimeState) -> ApiResult<RegistryModel> {
        let all = ListQuery::default();
        let now = Utc::now();
        let mut inh = Inheritance::load(state).await?;
        let site_metrics: HashMap<String, SiteMetrics> =
            metrics_now(state, Kind::Site, now).await?;
        let mut model = RegistryModel::default();
        for rec in state.store.list_objects(Kind::Site, &all).await? {
            let spec: SiteSpec = decode_spec(&rec)?;
            let health = site_metrics
                .get(&rec.id)
                .and_then(|m| m.health)
                .unwrap_or(spec.health);
            let mut labels = inh.effective(&rec).await?;
            labels.insert(crate::tasks::SITE_NAME_LABEL.into(), rec.name.clone());
            model.site_index.insert(rec.id.clone(), model.sites.len());
            model.sites.push(RegSite {
                spec: cpn_sched::SiteSpec {
                    name: rec.name.clone(),
                    region: spec.region.clone(),
                    labels,
                    location: Some(GeoPoint::new(spec.location.lat, spec.location.lon)),
                    pue: spec.pue,
                    electricity_price: spec.electricity_price,
                    carbon_intensity: spec.carbon_intensity,
                    healthy: health != SiteHealth::Down,
                },
                health,
                id: rec.id,
                name: rec.name,
                public: rec.public,
                tenant: rec.tenant,
            });
        }
        let isolated: std::collections::HashSet<String> =
            isolated_resources(state).await?.into_iter().collect();
        for rec in state.store.list_objects(Kind::Resource, &all).await? {
            let spec: ResourceSpec = decode_spec(&rec)?;
            let (Some(compute), Some(&site)) = (spec.compute, model.site_index.get(&spec.site))
            else {
                continue;
            };
            model.offers.push(RegOffer {
                labels: inh.effective(&rec).await?,
                isolated: isolated.contains(&rec.id),
                id: rec.id,
                name: rec.name,
                public: rec.public,
                tenant: rec.tenant,
                site,
                compute,
            });
        }
        let link_metrics: HashMap<String, LinkMetrics> =
            metrics_now(state, Kind::Link, now).await?;
        for rec in state.store.list_objects(Kind::Link, &all).await? {
            let spec: LinkSpec = decode_spec(&rec)?;
            let (Some(&a), Some(&z)) = (
                model.site_index.get(&spec.from),
                model.site_index.get(&spec.to),
            ) else {
                continue;
            };
            let m = link_metrics.get(&rec.id).copied().unwrap_or(LinkMetrics {
                latency_ms: spec.latency_ms,
                bandwidth_gbps: spec.bandwidth_gbps,
                jitter_ms: spec.jitter_ms,
                loss_pct: spec.loss_pct,
            });
            model.links.push(RegLink {
                public: rec.public,
                tenant: rec.tenant,
                a,
                z,
                attrs: cpn_topology::LinkAttrs {
                    latency_ms: m.latency_ms,
                    bandwidth_gbps: m.bandwidth_gbps,
                    jitter_ms: m.jitter_ms,
                    loss_pct: m.loss_pct,
                    bidirectional: spec.bidirectional,
                },
            });
        }
        model.quotas = quotas(state).await?;
        model.index_offers();
        Ok(model)
    }

    /// Fills `site_offers` from `offers`.
    pub fn index_offers(&mut self) {
        self.site_offers = vec![Vec::new(); self.sites.len()];
        for (i, o) in self.offers.iter().enumerate() {
            self.site_offers[o.site].push(i);
        }
    }

    /// A cluster builder holding the sites `admit(public, tenant)` lets in, the links between
    /// them it lets in too, and every quota; with, per model site, its index in the builder.
    pub fn builder(&self, admit: Admit<'_>) -> (ClusterBuilder, Vec<Option<SiteIdx>>) {
        let mut b = ClusterBuilder::new();
        for (tenant, q) in &self.quotas {
            b.quota(tenant, *q);
        }
        let index: Vec<Option<SiteIdx>> = self
            .sites
            .iter()
            .map(|s| admit(s.public, &s.tenant).then(|| b.site(s.spec.clone())))
            .collect();
        for l in &self.links {
            if let (Some(a), Some(z), true) = (index[l.a], index[l.z], admit(l.public, &l.tenant)) {
                b.link(a, z, l.attrs);
            }
        }
        (b, index)
    }

    /// The offers of a site (model index), in registry order.
    pub fn offers_of(&self, site: usize) -> impl Iterator<Item = (usize, &RegOffer)> {
        self.site_offers
            .get(site)
            .into_iter()
            .flatten()
            .map(|&i| (i, &self.offers[i]))
    }
}

/// Which sites (and links) a cluster lets in, by (public, tenant).
pub type Admit<'a> = &'a (dyn Fn(bool, &str) -> bool + Sync);

/// Whether `who` may see an object of (`public`, `tenant`): the rule of
/// `registry::visible_to_tenant`, everything for operators.
pub fn admits(who: &Caller) -> impl Fn(bool, &str) -> bool + Sync + '_ {
    move |public, tenant| who.is_operator() || visible_to_tenant(public, tenant, &who.tenant)
}

/// [`admits`] for an actor that may be a background component (the operations the rules
/// engine runs): the same rule over the actor's role and tenant.
pub fn admits_actor(who: &Actor) -> impl Fn(bool, &str) -> bool + Sync + '_ {
    move |public, tenant| who.is_operator() || visible_to_tenant(public, tenant, who.tenant())
}

/// A snapshot of everything the caller may schedule onto.
pub async fn snapshot(state: &RuntimeState, who: &Caller) -> ApiResult<Inventory> {
    Ok(snapshot_with_resources(state, who, None).await?.0)
}

/// [`snapshot`], with the nodes synthesized from each resource (by resource id);
/// `skip_allocation` leaves that allocation's capacity free (to check an adjustment).
/// Registered capacity is a planning target: these nodes need no live machine.
pub async fn snapshot_with_resources(
    state: &RuntimeState,
    who: impl Into<Actor>,
    skip_allocation: Option<&str>,
) -> ApiResult<(Inventory, HashMap<String, Vec<cpn_sched::NodeIdx>>)> {
    let who: &Actor = &who.into();
    let model = state.runtime.federation.registry(state).await?;
    let silent = crate::livestate::silent_sites(&model, &state.store.list_nodes().await?);
    let admit = admits_actor(who);
    let (mut b, index) = model.builder(&admit);
    let site_ids: Vec<String> = model
        .sites
        .iter()
        .zip(&index)
        .filter(|(_, i)| i.is_some())
        .map(|(s, _)| s.id.clone())
        .collect();

    let mut names_by_resource: HashMap<String, Vec<String>> = HashMap::new();
    for o in &model.offers {
        let Some(site) = index[o.site] else {
            continue;
        };
        if !admit(o.public, &o.tenant) {
            continue;
        }
        let c = &o.compute;
        let chip = o.chip();
        let (tflops, price, watts) = o.economics();
        let accelerator = chip != Chip::Cpu;
        let per_node = if accelerator {
            UNITS_PER_ACCEL_NODE
        } else {
            CORES_PER_CPU_NODE
        };
        let nodes = c.count.div_ceil(per_node).min(MAX_NODES_PER_RESOURCE);
        for i in 0..nodes {
            let units = per_node.min(c.count - i * per_node);
            let (cpu_cores, memory_gib, gpus) = if accelerator {
                (
                    units * HOST_CORES_PER_ACCEL,
                    units * HOST_GIB_PER_ACCEL,
                    units as u32,
                )
            } else {
                let per_core = if c.memory_gib > 0.0 {
                    c.memory_gib
                } else {
                    DEFAULT_GIB_PER_CORE
                };
                (units, (units as f64 * per_core) as u64, 0)
            };
            let name = format!("{}-{:03}", o.name, i + 1);
            names_by_resource
                .entry(o.id.clone())
                .or_default()
                .push(name.clone());
            b.node(NodeSpec {
                name,
                site,
                labels: o.labels.clone(),
                healthy: model.sites[o.site].spec.healthy && !silent[o.site],
                cpu_milli: cpu_cores * 1000,
                memory_mib: memory_gib * 1024,
                storage_gib: LOCAL_STORAGE_GIB,
                chip: Some(chip),
                model: c.model.clone(),
                architecture: c.architecture.clone(),
                gpus,
                tflops_per_unit: tflops,
                price_per_unit_hour: price,
                watts_per_unit: watts,
            });
        }
    }
    let mut cluster = b.build().map_err(|e| {
        ApiError::new(
            Code::Internal,
            format!("registry does not form a schedulable cluster: {e}"),
        )
    })?;
    // Measured health, as the binder sees it: a site whose machines all stopped answering
    // is down for planning too.
    for (m, i) in index.iter().enumerate() {
        if let (Some(i), true) = (i, silent[m]) {
            cluster.sites[*i as usize].spec.healthy = false;
        }
    }
    let by_name: HashMap<&str, cpn_sched::NodeIdx> = cluster
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.spec.name.as_str(), i as cpn_sched::NodeIdx))
        .collect();
    let resource_nodes: HashMap<String, Vec<cpn_sched::NodeIdx>> = names_by_resource
        .into_iter()
        .map(|(id, names)| {
            let idx = names
                .iter()
                .filter_map(|n| by_name.get(n.as_str()).copied())
                .collect();
            (id, idx)
        })
        .collect();
    for o in model.offers.iter().filter(|o| o.isolated) {
        for &n in resource_nodes.get(&o.id).into_iter().flatten() {
            cluster.set_cordoned(n, true);
        }
    }
    apply_resource_allocations(state, &mut cluster, &resource_nodes, skip_allocation);
    Ok((Inventory { cluster, site_ids }, resource_nodes))
}

/// Takes every hold of the capacity ledger on a registry resource (`resource:<id>`, I2
/// allocations) out of the snapshot: each on the first node of the resource it fits.
/// Holds on live nodes (tasks, decisions, node allocations) are the live cluster's: the
/// snapshot's nodes are synthesized from the registry, a planning target.
fn apply_resource_allocations(
    state: &RuntimeState,
    cluster: &mut Cluster,
    resource_nodes: &HashMap<String, Vec<cpn_sched::NodeIdx>>,
    skip_allocation: Option<&str>,
) {
    let ledger = state.runtime.ledger();
    for (kind, id, h) in ledger.active(chrono::Utc::now()) {
        if kind != crate::ledger::HoldKind::Allocation || Some(id) == skip_allocation {
            continue;
        }
        let Some(nodes) = h.resource().and_then(|r| resource_nodes.get(r)) else {
            continue;
        };
        if reserve_first(cluster, &h.tenant, nodes, &h.demand).is_none() {
            tracing::warn!(allocation = %id, target = %h.target, "resource no longer holds this allocation");
        }
    }
}

/// Reserves `demand` on the first of `nodes` it fits; the node taken.
pub fn reserve_first(
    cluster: &mut Cluster,
    tenant: &str,
    nodes: &[cpn_sched::NodeIdx],
    demand: &Demand,
) -> Option<cpn_sched::NodeIdx> {
    nodes.iter().copied().find(|&n| {
        cluster
            .reserve(tenant, n, demand, cpn_sched::cluster::GpuPick::BestFit)
            .is_some()
    })
}

/// Every tenant's quota (for the `tenant_quota` filter).
pub async fn quotas(state: &RuntimeState) -> ApiResult<Vec<(String, cpn_sched::cluster::Quota)>> {
    let mut out = Vec::new();
    for t in state.store.list_tenants().await? {
        let q: cpn_api_types::identity::TenantQuota =
            serde_json::from_value(t.quota).unwrap_or_default();
        if q != Default::default() {
            out.push((
                t.name,
                cpn_sched::cluster::Quota {
                    gpu_milli: q.gpus.map(|g| (g * 1000.0).round() as u64),
                    cpu_milli: q.cpu_cores.map(|c| (c * 1000.0).round() as u64),
                    memory_mib: q.memory_gib.map(|m| (m * 1024.0).round() as u64),
                },
            ));
        }
    }
    Ok(out)
}

/// Capacity held by one decision, as stored with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredDemand {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub gpus: u32,
    pub gpu_milli: u32,
    pub storage_gib: u64,
}

impl From<Demand> for StoredDemand {
    fn from(d: Demand) -> Self {
        StoredDemand {
            cpu_milli: d.cpu_milli,
            memory_mib: d.memory_mib,
            gpus: d.gpus,
            gpu_milli: d.gpu_milli,
            storage_gib: d.storage_gib,
        }
    }
}

impl From<StoredDemand> for Demand {
    fn from(d: StoredDemand) -> Self {
        Demand {
            cpu_milli: d.cpu_milli,
            memory_mib: d.memory_mib,
            gpus: d.gpus,
            gpu_milli: d.gpu_milli,
            storage_gib: d.storage_gib,
        }
    }
}
