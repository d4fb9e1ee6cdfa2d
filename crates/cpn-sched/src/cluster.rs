//! The world a cycle schedules into: sites, the nodes inside them, their free capacity,
//! and the topology between sites. Built once from the registry (or a trace), then kept
//! current by events: `reserve`/`release` (O(GPUs of the node)), and `add_node`,
//! `remove_node`, `update_node`, `set_site`, `set_registry` (O(the node's site), or
//! O(sites + links) for the registry part, never a walk over every node), each leaving
//! the aggregates and offers exactly as a fresh build of the same world would.

use crate::task::{Chip, Demand};
use cpn_model::{GeoPoint, Labels};
use cpn_topology::{Latency, SiteIndex, Topology};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

pub type SiteIdx = u32;
pub type NodeIdx = u32;
/// An interned string (chip model, architecture).
pub type Sym = u32;

/// Per-tenant ceiling; `None` fields are unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub gpu_milli: Option<u64>,
    pub cpu_milli: Option<u64>,
    pub memory_mib: Option<u64>,
}

/// What a site is, as given by the registry.
#[derive(Debug, Clone, Default)]
pub struct SiteSpec {
    pub name: String,
    pub region: String,
    pub labels: Labels,
    pub location: Option<GeoPoint>,
    pub pue: f64,
    /// CNY per kWh.
    pub electricity_price: f64,
    /// gCO2 per kWh.
    pub carbon_intensity: Option<f64>,
    pub healthy: bool,
}

/// What a node is, as given by the registry or an agent.
#[derive(Debug, Clone, Default)]
pub struct NodeSpec {
    pub name: String,
    pub site: SiteIdx,
    pub labels: Labels,
    pub healthy: bool,
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub storage_gib: u64,
    pub chip: Option<Chip>,
    /// Chip model of its accelerators (or CPU model for CPU-only nodes).
    pub model: String,
    pub architecture: String,
    pub gpus: u32,
    /// Peak TFLOPS of one accelerator (or of the whole CPU node for CPU-only nodes).
    /// This and the two below are NaN when unknown (a live machine that fulfils no
    /// registered offer): the site scores skip non-finite values, so an unknown node never
    /// makes its site look cheap, fast or frugal, and a site that knows none is given the
    /// mean of the sites that do (`plugins::or_mean`), so it neither wins nor loses.
    pub tflops_per_unit: f64,
    /// CNY per accelerator-hour, or per core-hour for CPU-only nodes.
    pub price_per_unit_hour: f64,
    /// Watts per accelerator at load, or per core for CPU-only nodes.
    pub watts_per_unit: f64,
}

/// One kind of compute a site offers: its nodes grouped by chip, model and architecture.
/// Static (capacity changes are in the aggregates), so site-level price, performance and
/// energy scores cost O(offers), not O(nodes).
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub chip: Option<Chip>,
    pub model: Sym,
    pub architecture: Sym,
    /// Accelerators, or CPU cores for CPU-only nodes.
    pub units: u64,
    pub nodes: u32,
    /// Cheapest price among the nodes, CNY per unit-hour.
    pub price_per_unit_hour: f64,
    /// Best peak TFLOPS per unit among the nodes.
    pub tflops_per_unit: f64,
    /// Mean watts per unit.
    pub watts_per_unit: f64,
}

#[derive(Debug, Clone)]
pub struct Site {
    pub spec: SiteSpec,
    /// Its nodes, in the order they were given (the builder's order, then joins at the
    /// end): the order the node phase walks. A list, not a range of `Cluster::nodes`, so a
    /// node joins or leaves in O(the site) without moving any other site's nodes.
    pub nodes: Vec<NodeIdx>,
    pub offers: Vec<Offer>,
    /// Vertex in the topology graph.
    pub vertex: Option<SiteIndex>,
    /// How many nodes the sites before it have: its node at position `p` is the
    /// `first_ordinal + p`-th node in site order, the index a fresh build would give it.
    /// Tie-breaks key on this, not on `NodeIdx`, so an incrementally kept cluster decides
    /// exactly as a fresh build of the same world.
    pub first_ordinal: u32,
    pub free: Aggregate,
    pub total: Aggregate,
    /// Free capacity per offer (same order as `offers`), so a site whose H800s are free
    /// but whose A100s are full does not pass for an A100-only task.
    pub offer_free: Vec<Aggregate>,
    /// Per offer, how many schedulable nodes have each count of whole free GPUs: keeps
    /// `max_node_whole_gpus` exact when `reserve` and `release` update the aggregates in
    /// place instead of walking the site's nodes.
    whole_gpu_nodes: Vec<Vec<u32>>,
    /// How many schedulable nodes have each count of GPUs: keeps `total.max_node_whole_gpus`
    /// exact when a node's health flips in place.
    gpu_nodes: Vec<u32>,
}

/// Sums over a site's schedulable nodes (`free`: what is left; `total`: their capacity),
/// kept current by every change so site-level filters and scores cost O(1) instead of a
/// walk over every node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Aggregate {
    pub cpu_milli: u64,
    pub memory_mib: u64,
    pub storage_gib: u64,
    pub gpu_milli: u64,
    /// GPUs with nothing allocated on them.
    pub whole_gpus: u64,
    /// Most whole GPUs free on any one node (an upper bound after releases).
    pub max_node_whole_gpus: u32,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub spec: NodeSpec,
    pub model: Sym,
    pub architecture: Sym,
    pub cpu_used: u64,
    pub memory_used: u64,
    pub storage_used: u64,
    /// Free milli of each GPU (1000 = untouched).
    pub gpu_free: Vec<u32>,
    /// Index of this node's offer in its site's `offers`.
    pub offer: u16,
    pub cordoned: bool,
}

impl Node {
    pub fn cpu_free(&self) -> u64 {
        self.spec.cpu_milli - self.cpu_used
    }
    pub fn memory_free(&self) -> u64 {
        self.spec.memory_mib - self.memory_used
    }
    pub fn storage_free(&self) -> u64 {
        self.spec.storage_gib - self.storage_used
    }
    pub fn whole_gpus_free(&self) -> u32 {
        self.gpu_free.iter().filter(|&&m| m == 1000).count() as u32
    }
    pub fn gpu_milli_free(&self) -> u64 {
        self.gpu_free.iter().map(|&m| m as u64).sum()
    }
    pub fn schedulable(&self) -> bool {
        self.spec.healthy && !self.cordoned
    }

    /// Whether the node's free capacity holds `d` (GPU shape included).
    pub fn fits(&self, d: &Demand) -> bool {
        if d.cpu_milli > self.cpu_free()
            || d.memory_mib > self.memory_free()
            || d.storage_gib > self.storage_free()
        {
            return false;
        }
        if d.gpus == 0 {
            return true;
        }
        // `gpus` GPUs, each with `gpu_milli` free (whole GPUs: fully free).
        let want = d.gpu_milli.clamp(1, 1000);
        self.gpu_free.iter().filter(|&&m| m >= want).count() as u32 >= d.gpus
    }
}

/// GPUs given to one placement: (GPU index on the node, milli).
pub type GpuAssignment = Vec<(u32, u32)>;

/// Interns strings so hot loops compare integers.
#[derive(Debug, Clone, Default)]
pub struct Symbols {
    names: Vec<String>,
    ids: HashMap<String, Sym>,
}

impl Symbols {
    pub fn intern(&mut self, s: &str) -> Sym {
        if let Some(&id) = self.ids.get(s) {
            return id;
        }
        let id = self.names.len() as Sym;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.ids.get(s).copied()
    }
    pub fn name(&self, id: Sym) -> &str {
        &self.names[id as usize]
    }
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub sites: Vec<Site>,
    /// Every node, dense: `remove_node` moves the last node into the hole, so scans over
    /// all nodes (GPU policies' `prepare`) never meet a vacant slot.
    pub nodes: Vec<Node>,
    pub symbols: Symbols,
    pub topology: Topology,
    pub quotas: BTreeMap<String, Quota>,
    /// Per tenant: (gpu milli, cpu milli, memory MiB) in use.
    pub usage: BTreeMap<String, (u64, u64, u64)>,
    site_by_name: HashMap<String, SiteIdx>,
    /// `Topology::latencies_from` each vertex, filled on first use: the topology does not
    /// change after build, so one search per origin serves every later cycle.
    latencies: Vec<OnceLock<Arc<Vec<Latency>>>>,
}

/// Collects sites, nodes and links, then lays nodes out contiguously per site.
#[derive(Debug, Default)]
pub struct ClusterBuilder {
    sites: Vec<SiteSpec>,
    nodes: Vec<NodeSpec>,
    links: Vec<(SiteIdx, SiteIdx, cpn_topology::LinkAttrs)>,
    quotas: BTreeMap<String, Quota>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BuildError(pub String);

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BuildError {}

impl ClusterBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn site(&mut self, spec: SiteSpec) -> SiteIdx {
        self.sites.push(spec);
        (self.sites.len() - 1) as SiteIdx
    }

    pub fn node(&mut self, spec: NodeSpec) -> &mut Self {
        self.nodes.push(spec);
        self
    }

    pub fn link(&mut self, a: SiteIdx, b: SiteIdx, attrs: cpn_topology::LinkAttrs) -> &mut Self {
        self.links.push((a, b, attrs));
        self
    }

    pub fn quota(&mut self, tenant: &str, quota: Quota) -> &mut Self {
        self.quotas.insert(tenant.to_string(), quota);
        self
    }

    pub fn build(mut self) -> Result<Cluster, BuildError> {
        let n_sites = self.sites.len();
        if let Some(bad) = self.nodes.iter().find(|n| n.site as usize >= n_sites) {
            return Err(BuildError(format!(
                "node {:?} names site #{} of {n_sites}",
                bad.name, bad.site
            )));
        }
        // Stable sort keeps the caller's node order within a site: determinism.
        self.nodes.sort_by_key(|n| n.site);
        let mut topo = cpn_topology::TopologyBuilder::new();
        let mut vertices = Vec::with_capacity(n_sites);
        for s in &self.sites {
            vertices.push(Some(
                topo.add_site(s.name.clone(), s.location)
                    .map_err(|e| BuildError(e.to_string()))?,
            ));
        }
        for (a, b, attrs) in &self.links {
            let (Some(Some(va)), Some(Some(vb))) =
                (vertices.get(*a as usize), vertices.get(*b as usize))
            else {
                return Err(BuildError(format!(
                    "link between unknown sites #{a} and #{b}"
                )));
            };
            topo.add_link(*va, *vb, *attrs)
                .map_err(|e| BuildError(e.to_string()))?;
        }
        let mut symbols = Symbols::default();
        let mut nodes = Vec::with_capacity(self.nodes.len());
        for spec in self.nodes {
            nodes.push(Node {
                model: symbols.intern(&spec.model),
                architecture: symbols.intern(&spec.architecture),
                cpu_used: 0,
                memory_used: 0,
                storage_used: 0,
                gpu_free: vec![1000; spec.gpus as usize],
                offer: 0,
                cordoned: false,
                spec,
            });
        }
        let mut sites = Vec::with_capacity(n_sites);
        let mut start = 0usize;
        let mut site_by_name = HashMap::new();
        for (i, spec) in self.sites.into_iter().enumerate() {
            let end = start
                + nodes[start..]
                    .iter()
                    .take_while(|n| n.spec.site as usize == i)
                    .count();
            if site_by_name
                .insert(spec.name.clone(), i as SiteIdx)
                .is_some()
            {
                return Err(BuildError(format!("two sites are named {:?}", spec.name)));
            }
            let members: Vec<NodeIdx> = (start as NodeIdx..end as NodeIdx).collect();
            let offers = offers_of(&mut nodes, &members);
            sites.push(Site {
                spec,
                nodes: members,
                offers,
                vertex: vertices[i],
                first_ordinal: start as u32,
                free: Aggregate::default(),
                total: Aggregate::default(),
                offer_free: Vec::new(),
                whole_gpu_nodes: Vec::new(),
                gpu_nodes: Vec::new(),
            });
            start = end;
        }
        let mut cluster = Cluster {
            sites,
            nodes,
            symbols,
            topology: topo.build(),
            quotas: self.quotas,
            usage: BTreeMap::new(),
            site_by_name,
            latencies: (0..n_sites).map(|_| OnceLock::new()).collect(),
        };
        for s in 0..cluster.sites.len() {
            cluster.refresh_site(s as SiteIdx);
        }
        Ok(cluster)
    }
}

/// Groups a site's nodes (`members`, in site order) into offers and tells each node its
/// offer. O(members · offers).
fn offers_of(nodes: &mut [Node], members: &[NodeIdx]) -> Vec<Offer> {
    let mut offers: Vec<Offer> = Vec::new();
    for &i in members {
        let n = &mut nodes[i as usize];
        let units = if n.spec.gpus > 0 {
            n.spec.gpus as u64
        } else {
            n.spec.cpu_milli / 1000
        };
        match offers.iter_mut().enumerate().find(|(_, o)| {
            o.chip == n.spec.chip && o.model == n.model && o.architecture == n.architecture
        }) {
            Some((i, o)) => {
                n.offer = i as u16;
                let total = o.units + units;
                if total > 0 {
                    o.watts_per_unit = (o.watts_per_unit * o.units as f64
                        + n.spec.watts_per_unit * units as f64)
                        / total as f64;
                }
                o.units = total;
                o.nodes += 1;
                o.price_per_unit_hour = o.price_per_unit_hour.min(n.spec.price_per_unit_hour);
                o.tflops_per_unit = o.tflops_per_unit.max(n.spec.tflops_per_unit);
            }
            None => {
                n.offer = offers.len() as u16;
                offers.push(Offer {
                    chip: n.spec.chip,
                    model: n.model,
                    architecture: n.architecture,
                    units,
                    nodes: 1,
                    price_per_unit_hour: n.spec.price_per_unit_hour,
                    tflops_per_unit: n.spec.tflops_per_unit,
                    watts_per_unit: n.spec.watts_per_unit,
                })
            }
        }
    }
    offers
}

impl Cluster {
    pub fn site_by_name(&self, name: &str) -> Option<SiteIdx> {
        self.site_by_name.get(name).copied()
    }

    /// Latency from vertex `from` to every vertex, as `Topology::latencies_from`, computed
    /// once per vertex for the life of the cluster.
    pub fn latencies_from(&self, from: SiteIndex) -> Arc<Vec<Latency>> {
        self.latencies[from.index()]
            .get_or_init(|| Arc::new(self.topology.latencies_from(from)))
            .clone()
    }

    pub fn site(&self, i: SiteIdx) -> &Site {
        &self.sites[i as usize]
    }

    pub fn node(&self, i: NodeIdx) -> &Node {
        &self.nodes[i as usize]
    }

    /// Recomputes a site's aggregates (free site-wide and per offer, total) from its
    /// nodes. O(nodes of the site).
    pub fn refresh_site(&mut self, s: SiteIdx) {
        let site = &self.sites[s as usize];
        let mut a = Aggregate::default();
        let mut total = Aggregate::default();
        let mut per_offer = vec![Aggregate::default(); site.offers.len()];
        let mut hist = vec![Vec::new(); site.offers.len()];
        let mut gpu_nodes = Vec::new();
        for &i in &site.nodes {
            let n = &self.nodes[i as usize];
            if !n.schedulable() {
                continue;
            }
            count(&mut gpu_nodes, n.spec.gpus, true);
            total.cpu_milli += n.spec.cpu_milli;
            total.memory_mib += n.spec.memory_mib;
            total.storage_gib += n.spec.storage_gib;
            total.gpu_milli += n.spec.gpus as u64 * 1000;
            total.whole_gpus += n.spec.gpus as u64;
            total.max_node_whole_gpus = total.max_node_whole_gpus.max(n.spec.gpus);
            let whole = n.whole_gpus_free();
            count(&mut hist[n.offer as usize], whole, true);
            for agg in [&mut a, &mut per_offer[n.offer as usize]] {
                agg.cpu_milli += n.cpu_free();
                agg.memory_mib += n.memory_free();
                agg.storage_gib += n.storage_free();
                agg.gpu_milli += n.gpu_milli_free();
                agg.whole_gpus += whole as u64;
                agg.max_node_whole_gpus = agg.max_node_whole_gpus.max(whole);
            }
        }
        let site = &mut self.sites[s as usize];
        site.free = a;
        site.total = total;
        site.offer_free = per_offer;
        site.whole_gpu_nodes = hist;
        site.gpu_nodes = gpu_nodes;
    }

    /// Node `n` becomes healthy or not, nothing else changing: its share moves in or out
    /// of its site's aggregates in place, O(GPUs of the node) (offers count every node,
    /// healthy or not, so they stay).
    fn set_healthy(&mut self, n: NodeIdx, healthy: bool) {
        let before = Share::of(&self.nodes[n as usize]);
        let was = self.nodes[n as usize].schedulable();
        self.nodes[n as usize].spec.healthy = healthy;
        let node = &self.nodes[n as usize];
        let now = node.schedulable();
        if was != now {
            let spec = &node.spec;
            let site = &mut self.sites[spec.site as usize];
            let t = &mut site.total;
            if now {
                t.cpu_milli += spec.cpu_milli;
                t.memory_mib += spec.memory_mib;
                t.storage_gib += spec.storage_gib;
                t.gpu_milli += spec.gpus as u64 * 1000;
                t.whole_gpus += spec.gpus as u64;
            } else {
                t.cpu_milli -= spec.cpu_milli;
                t.memory_mib -= spec.memory_mib;
                t.storage_gib -= spec.storage_gib;
                t.gpu_milli -= spec.gpus as u64 * 1000;
                t.whole_gpus -= spec.gpus as u64;
            }
            count(&mut site.gpu_nodes, spec.gpus, now);
            t.max_node_whole_gpus = site.gpu_nodes.iter().rposition(|&c| c > 0).unwrap_or(0) as u32;
        }
        self.update_site(n, before);
    }

    /// Regroups a site's offers and recomputes its aggregates: what a node joining,
    /// leaving or changing costs. O(nodes of the site · offers).
    fn rebuild_site(&mut self, s: SiteIdx) {
        let members = std::mem::take(&mut self.sites[s as usize].nodes);
        self.sites[s as usize].offers = offers_of(&mut self.nodes, &members);
        self.sites[s as usize].nodes = members;
        self.refresh_site(s);
    }

    /// Recomputes `first_ordinal` of the sites after `s` (a node joined or left `s`).
    /// O(sites).
    fn renumber_after(&mut self, s: SiteIdx) {
        let mut next =
            self.sites[s as usize].first_ordinal + self.sites[s as usize].nodes.len() as u32;
        for site in &mut self.sites[s as usize + 1..] {
            site.first_ordinal = next;
            next += site.nodes.len() as u32;
        }
    }

    fn check_site(&self, s: SiteIdx, node: &str) -> Result<(), BuildError> {
        if (s as usize) < self.sites.len() {
            Ok(())
        } else {
            Err(BuildError(format!(
                "node {node:?} names site #{s} of {}",
                self.sites.len()
            )))
        }
    }

    /// A node joins its site (at the end of the site's order, as if the builder had been
    /// given it last), free. O(nodes of the site).
    pub fn add_node(&mut self, spec: NodeSpec) -> Result<NodeIdx, BuildError> {
        self.add_node_at(spec, usize::MAX)
    }

    /// A node joins its site at `position` in the site's order (clamped to its end), free:
    /// a caller whose fresh builds give nodes in some order (by name, say) keeps that order.
    /// O(nodes of the site).
    pub fn add_node_at(&mut self, spec: NodeSpec, position: usize) -> Result<NodeIdx, BuildError> {
        self.check_site(spec.site, &spec.name)?;
        let n = self.nodes.len() as NodeIdx;
        let site = spec.site;
        self.nodes.push(Node {
            model: self.symbols.intern(&spec.model),
            architecture: self.symbols.intern(&spec.architecture),
            cpu_used: 0,
            memory_used: 0,
            storage_used: 0,
            gpu_free: vec![1000; spec.gpus as usize],
            offer: 0,
            cordoned: false,
            spec,
        });
        let members = &mut self.sites[site as usize].nodes;
        members.insert(position.min(members.len()), n);
        self.rebuild_site(site);
        self.renumber_after(site);
        Ok(n)
    }

    /// Node `n` leaves. The last node moves into its index: the answer is the index that
    /// node had (None when `n` was the last), for callers that map ids to indices. What was
    /// reserved on `n` leaves with it; tenant usage is the caller's to release first (as
    /// it would be with `release`). O(nodes of the two sites touched).
    pub fn remove_node(&mut self, n: NodeIdx) -> Option<NodeIdx> {
        let site = self.nodes[n as usize].spec.site;
        let members = &mut self.sites[site as usize].nodes;
        if let Some(p) = members.iter().position(|&m| m == n) {
            // `remove`, not `swap_remove`: the site's order is the node phase's order.
            members.remove(p);
        }
        let last = (self.nodes.len() - 1) as NodeIdx;
        self.nodes.swap_remove(n as usize);
        let moved = (n != last).then(|| {
            let other = self.nodes[n as usize].spec.site;
            for m in self.sites[other as usize].nodes.iter_mut() {
                if *m == last {
                    *m = n;
                }
            }
            last
        });
        self.rebuild_site(site);
        self.renumber_after(site);
        moved
    }

    /// Node `n` is now `spec` (capacity, labels, health, economics, even its site); the
    /// answer is whether anything the scheduler sees changed (nothing is touched if not).
    /// What is reserved on it stays, cut to the new capacity (GPUs beyond the new count
    /// go); a caller that wants its holds re-fitted releases them first and reserves them
    /// again after. A node moving to another site goes to the end of that site's order.
    /// O(nodes of the site, or of both sites when it moves).
    pub fn update_node(&mut self, n: NodeIdx, spec: NodeSpec) -> Result<bool, BuildError> {
        self.check_site(spec.site, &spec.name)?;
        let old = &self.nodes[n as usize].spec;
        if same_but_health(old, &spec) {
            if old.healthy == spec.healthy {
                return Ok(false);
            }
            // A node lost or back: the commonest change, and O(1) in the site.
            self.set_healthy(n, spec.healthy);
            return Ok(true);
        }
        let model = self.symbols.intern(&spec.model);
        let architecture = self.symbols.intern(&spec.architecture);
        let node = &mut self.nodes[n as usize];
        let old_site = node.spec.site;
        node.model = model;
        node.architecture = architecture;
        node.cpu_used = node.cpu_used.min(spec.cpu_milli);
        node.memory_used = node.memory_used.min(spec.memory_mib);
        node.storage_used = node.storage_used.min(spec.storage_gib);
        node.gpu_free.resize(spec.gpus as usize, 1000);
        let new_site = spec.site;
        node.spec = spec;
        if new_site != old_site {
            let members = &mut self.sites[old_site as usize].nodes;
            if let Some(p) = members.iter().position(|&m| m == n) {
                members.remove(p);
            }
            self.sites[new_site as usize].nodes.push(n);
            self.rebuild_site(old_site);
            self.renumber_after(old_site.min(new_site));
        }
        self.rebuild_site(new_site);
        Ok(true)
    }

    /// Site `s` is now `spec` (PUE, prices, carbon, health, labels, region): O(1). Its name
    /// must stay unique; its location only moves latencies through `set_registry`, which
    /// rebuilds the topology.
    pub fn set_site(&mut self, s: SiteIdx, spec: SiteSpec) -> Result<(), BuildError> {
        let old = &self.sites[s as usize].spec.name;
        if *old != spec.name {
            if self.site_by_name.contains_key(&spec.name) {
                return Err(BuildError(format!("two sites are named {:?}", spec.name)));
            }
            self.site_by_name.remove(old);
            self.site_by_name.insert(spec.name.clone(), s);
        }
        self.sites[s as usize].spec = spec;
        Ok(())
    }

    /// The registry part anew: `sites` (the same sites, in the same order, as this
    /// cluster's), the links between them and the quotas, as a builder given no nodes. Site
    /// specs, the topology and quotas are replaced; no node is touched. O(sites + links).
    /// Refuses, changing nothing, when the sites are not the same (a site joined or left:
    /// the caller builds anew).
    pub fn set_registry(&mut self, registry: ClusterBuilder) -> Result<(), BuildError> {
        if !registry.nodes.is_empty() {
            return Err(BuildError("the registry part has no nodes".into()));
        }
        let skeleton = registry.build()?;
        if skeleton.sites.len() != self.sites.len()
            || skeleton
                .sites
                .iter()
                .zip(&self.sites)
                .any(|(a, b)| a.spec.name != b.spec.name)
        {
            return Err(BuildError(
                "the registry's sites are not this cluster's sites".into(),
            ));
        }
        for (site, new) in self.sites.iter_mut().zip(skeleton.sites) {
            site.spec = new.spec;
            site.vertex = new.vertex;
        }
        self.latencies = (0..self.sites.len()).map(|_| OnceLock::new()).collect();
        self.topology = skeleton.topology;
        self.quotas = skeleton.quotas;
        Ok(())
    }

    /// Moves node `n`'s share of its site's aggregates from `before` (taken just before the
    /// node changed) to what it is now: O(GPUs of the node), and exactly what
    /// `refresh_site` would compute.
    fn update_site(&mut self, n: NodeIdx, before: Share) {
        let node = &self.nodes[n as usize];
        let after = Share::of(node);
        let offer = node.offer as usize;
        let site = &mut self.sites[node.spec.site as usize];
        let hist = &mut site.whole_gpu_nodes[offer];
        if let Some(w) = before.counted {
            count(hist, w, false);
        }
        if let Some(w) = after.counted {
            count(hist, w, true);
        }
        let top = hist.iter().rposition(|&c| c > 0).unwrap_or(0) as u32;
        let o = &mut site.offer_free[offer];
        before.move_to(&after, o);
        o.max_node_whole_gpus = top;
        before.move_to(&after, &mut site.free);
        site.free.max_node_whole_gpus = site
            .offer_free
            .iter()
            .map(|a| a.max_node_whole_gpus)
            .max()
            .unwrap_or(0);
    }

    /// Takes `d` from node `n`, choosing GPUs with `pick`; returns the GPUs used.
    /// Refuses (None) when the node cannot hold it, so capacity never goes negative.
    pub fn reserve(
        &mut self,
        tenant: &str,
        n: NodeIdx,
        d: &Demand,
        pick: GpuPick,
    ) -> Option<GpuAssignment> {
        let before = Share::of(&self.nodes[n as usize]);
        let node = &mut self.nodes[n as usize];
        if !node.fits(d) {
            return None;
        }
        let mut gpus = GpuAssignment::new();
        if d.gpus > 0 {
            let want = d.gpu_milli.clamp(1, 1000);
            if d.whole_gpus() {
                for (i, m) in node.gpu_free.iter_mut().enumerate() {
                    if gpus.len() as u32 == d.gpus {
                        break;
                    }
                    if *m == 1000 {
                        *m = 0;
                        gpus.push((i as u32, 1000));
                    }
                }
            } else {
                for _ in 0..d.gpus {
                    // Each share goes on a different GPU: hide the ones already chosen.
                    let mut view = node.gpu_free.clone();
                    for &(i, _) in &gpus {
                        view[i as usize] = 0;
                    }
                    let i = pick.choose(&view, want)?;
                    gpus.push((i as u32, want));
                }
                for &(i, m) in &gpus {
                    node.gpu_free[i as usize] -= m;
                }
            }
        }
        node.cpu_used += d.cpu_milli;
        node.memory_used += d.memory_mib;
        node.storage_used += d.storage_gib;
        // No new String per reservation once the tenant is known.
        let u = match self.usage.get_mut(tenant) {
            Some(u) => u,
            None => self.usage.entry(tenant.to_string()).or_default(),
        };
        u.0 += d.gpu_milli_total();
        u.1 += d.cpu_milli;
        u.2 += d.memory_mib;
        self.update_site(n, before);
        Some(gpus)
    }

    /// Takes `d` from node `n` on exactly the GPUs given (a policy's own GPU choice).
    /// Refuses, changing nothing, unless the GPUs are distinct, `d.gpus` many, and each has
    /// the share free, and the rest of the demand fits.
    pub fn reserve_exact(
        &mut self,
        tenant: &str,
        n: NodeIdx,
        d: &Demand,
        gpus: &GpuAssignment,
    ) -> bool {
        let node = &self.nodes[n as usize];
        let want = if d.gpus == 0 {
            0
        } else {
            d.gpu_milli.clamp(1, 1000)
        };
        let mut seen = Vec::with_capacity(gpus.len());
        let valid = gpus.len() as u32 == d.gpus
            && gpus.iter().all(|&(i, m)| {
                let fresh = !seen.contains(&i);
                seen.push(i);
                fresh && m == want && node.gpu_free.get(i as usize).is_some_and(|&free| free >= m)
            });
        if !valid || !node.fits(d) {
            return false;
        }
        let before = Share::of(node);
        let node = &mut self.nodes[n as usize];
        for &(i, m) in gpus {
            node.gpu_free[i as usize] -= m;
        }
        node.cpu_used += d.cpu_milli;
        node.memory_used += d.memory_mib;
        node.storage_used += d.storage_gib;
        let u = match self.usage.get_mut(tenant) {
            Some(u) => u,
            None => self.usage.entry(tenant.to_string()).or_default(),
        };
        u.0 += d.gpu_milli_total();
        u.1 += d.cpu_milli;
        u.2 += d.memory_mib;
        self.update_site(n, before);
        true
    }

    /// Returns what `reserve` took.
    pub fn release(&mut self, tenant: &str, n: NodeIdx, d: &Demand, gpus: &GpuAssignment) {
        let before = Share::of(&self.nodes[n as usize]);
        let node = &mut self.nodes[n as usize];
        for &(i, m) in gpus {
            if let Some(free) = node.gpu_free.get_mut(i as usize) {
                *free = (*free + m).min(1000);
            }
        }
        node.cpu_used = node.cpu_used.saturating_sub(d.cpu_milli);
        node.memory_used = node.memory_used.saturating_sub(d.memory_mib);
        node.storage_used = node.storage_used.saturating_sub(d.storage_gib);
        if let Some(u) = self.usage.get_mut(tenant) {
            u.0 = u.0.saturating_sub(d.gpu_milli_total());
            u.1 = u.1.saturating_sub(d.cpu_milli);
            u.2 = u.2.saturating_sub(d.memory_mib);
        }
        self.update_site(n, before);
    }

    /// Takes a node out of (or back into) scheduling.
    pub fn set_cordoned(&mut self, n: NodeIdx, cordoned: bool) {
        self.nodes[n as usize].cordoned = cordoned;
        let site = self.nodes[n as usize].spec.site;
        self.refresh_site(site);
    }
}

/// Whether two node specs are the same to the scheduler (NaN economics equal NaN: an
/// unknown price staying unknown is no change).
pub fn same_node_spec(a: &NodeSpec, b: &NodeSpec) -> bool {
    a.healthy == b.healthy && same_but_health(a, b)
}

/// [`same_node_spec`] but for `healthy`.
pub fn same_but_health(a: &NodeSpec, b: &NodeSpec) -> bool {
    let same = |x: f64, y: f64| x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan());
    a.name == b.name
        && a.site == b.site
        && a.labels == b.labels
        && a.cpu_milli == b.cpu_milli
        && a.memory_mib == b.memory_mib
        && a.storage_gib == b.storage_gib
        && a.chip == b.chip
        && a.model == b.model
        && a.architecture == b.architecture
        && a.gpus == b.gpus
        && same(a.tflops_per_unit, b.tflops_per_unit)
        && same(a.price_per_unit_hour, b.price_per_unit_hour)
        && same(a.watts_per_unit, b.watts_per_unit)
}

/// Adds (or removes) one node with `whole` free GPUs to a histogram of nodes by that count.
fn count(hist: &mut Vec<u32>, whole: u32, add: bool) {
    let w = whole as usize;
    if hist.len() <= w {
        hist.resize(w + 1, 0);
    }
    if add {
        hist[w] += 1;
    } else {
        hist[w] -= 1;
    }
}

/// What one node adds to its site's free aggregates.
#[derive(Debug, Clone, Copy, Default)]
struct Share {
    cpu_milli: u64,
    memory_mib: u64,
    storage_gib: u64,
    gpu_milli: u64,
    whole_gpus: u64,
    /// Its whole free GPUs, the histogram bucket it is counted in; None when the node is
    /// not schedulable (and so counts nowhere).
    counted: Option<u32>,
}

impl Share {
    fn of(n: &Node) -> Share {
        if !n.schedulable() {
            return Share::default();
        }
        let whole = n.whole_gpus_free();
        Share {
            cpu_milli: n.cpu_free(),
            memory_mib: n.memory_free(),
            storage_gib: n.storage_free(),
            gpu_milli: n.gpu_milli_free(),
            whole_gpus: whole as u64,
            counted: Some(whole),
        }
    }

    /// Replaces this share by `after` in `a` (all but `max_node_whole_gpus`).
    fn move_to(&self, after: &Share, a: &mut Aggregate) {
        a.cpu_milli = a.cpu_milli - self.cpu_milli + after.cpu_milli;
        a.memory_mib = a.memory_mib - self.memory_mib + after.memory_mib;
        a.storage_gib = a.storage_gib - self.storage_gib + after.storage_gib;
        a.gpu_milli = a.gpu_milli - self.gpu_milli + after.gpu_milli;
        a.whole_gpus = a.whole_gpus - self.whole_gpus + after.whole_gpus;
    }
}

/// How a shared (fractional) GPU is chosen inside a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum GpuPick {
    /// The GPU whose free milli is smallest but enough: packs fractions together.
    #[default]
    BestFit,
    /// The GPU with the most free milli: spreads fractions out.
    WorstFit,
    /// The first GPU that fits.
    FirstFit,
}

impl GpuPick {
    pub fn choose(self, free: &[u32], want: u32) -> Option<usize> {
        let fitting = free.iter().enumerate().filter(|&(_, &m)| m >= want);
        match self {
            GpuPick::BestFit => fitting.min_by_key(|&(i, &m)| (m, i)).map(|(i, _)| i),
            GpuPick::WorstFit => fitting
                .max_by_key(|&(i, &m)| (m, std::cmp::Reverse(i)))
                .map(|(i, _)| i),
            GpuPick::FirstFit => fitting.map(|(i, _)| i).next(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_sites() -> Cluster {
        let mut b = ClusterBuilder::new();
        let a = b.site(SiteSpec {
            name: "a".into(),
            region: "east".into(),
            healthy: true,
            pue: 1.3,
            ..Default::default()
        });
        let w = b.site(SiteSpec {
            name: "w".into(),
            region: "west".into(),
            healthy: true,
            pue: 1.2,
            ..Default::default()
        });
        // Given out of order on purpose: the builder groups nodes by site.
        b.node(NodeSpec {
            name: "w1".into(),
            site: w,
            healthy: true,
            cpu_milli: 8000,
            memory_mib: 1024,
            gpus: 2,
            ..Default::default()
        });
        b.node(NodeSpec {
            name: "a1".into(),
            site: a,
            healthy: true,
            cpu_milli: 4000,
            memory_mib: 1024,
            gpus: 0,
            ..Default::default()
        });
        b.build().unwrap()
    }

    #[test]
    fn nodes_are_grouped_per_site_and_aggregates_follow_reservations() {
        let mut c = two_sites();
        assert_eq!(c.site(0).nodes, vec![0]);
        assert_eq!(c.node(c.site(1).nodes[0]).spec.name, "w1");
        assert_eq!(c.site(1).free.whole_gpus, 2);
        let d = Demand {
            cpu_milli: 1000,
            memory_mib: 100,
            gpus: 1,
            gpu_milli: 300,
            storage_gib: 0,
        };
        let g = c.reserve("t", 1, &d, GpuPick::BestFit).unwrap();
        assert_eq!(g, vec![(0, 300)]);
        assert_eq!(c.site(1).free.whole_gpus, 1);
        assert_eq!(c.site(1).free.gpu_milli, 1700);
        // Best fit puts the next fraction on the same GPU.
        let g2 = c
            .reserve(
                "t",
                1,
                &Demand {
                    gpu_milli: 500,
                    ..d
                },
                GpuPick::BestFit,
            )
            .unwrap();
        assert_eq!(g2, vec![(0, 500)]);
        assert_eq!(c.usage["t"].0, 800);
        c.release("t", 1, &d, &g);
        assert_eq!(c.node(1).gpu_free, vec![500, 1000]);
        assert_eq!(c.usage["t"].0, 500);
    }

    #[test]
    fn reserve_refuses_what_does_not_fit() {
        let mut c = two_sites();
        let d = Demand {
            cpu_milli: 5000,
            ..Default::default()
        };
        assert!(c.reserve("t", 0, &d, GpuPick::BestFit).is_none());
        assert_eq!(c.node(0).cpu_used, 0);
        let three_gpus = Demand {
            gpus: 3,
            gpu_milli: 1000,
            ..Default::default()
        };
        assert!(c.reserve("t", 1, &three_gpus, GpuPick::BestFit).is_none());
    }

    #[test]
    fn reserve_and_release_keep_the_aggregates_refresh_would_compute() {
        let mut c = crate::synthetic::cluster(2, 60, 9);
        let tasks = crate::synthetic::tasks(400, 9);
        let mut held = Vec::new();
        let check = |c: &mut Cluster| {
            for s in 0..c.sites.len() as SiteIdx {
                let (free, per_offer) = (c.site(s).free, c.site(s).offer_free.clone());
                c.refresh_site(s);
                assert_eq!(c.site(s).free, free);
                assert_eq!(c.site(s).offer_free, per_offer);
            }
        };
        for (i, t) in tasks.iter().enumerate() {
            let n = (i * 7919 % c.nodes.len()) as NodeIdx;
            if let Some(g) = c.reserve(&t.tenant, n, &t.demand, GpuPick::BestFit) {
                held.push((t, n, g));
            }
            if i % 3 == 0 && !held.is_empty() {
                let (t, n, g) = held.swap_remove(i % held.len());
                c.release(&t.tenant, n, &t.demand, &g);
            }
            if i % 50 == 0 {
                c.set_cordoned((i % c.nodes.len()) as NodeIdx, i % 100 == 0);
            }
            check(&mut c);
        }
    }

    #[test]
    fn shares_on_several_gpus_and_exact_reservations() {
        let mut c = two_sites();
        let two_halves = Demand {
            gpus: 2,
            gpu_milli: 500,
            ..Default::default()
        };
        assert!(c.node(1).fits(&two_halves));
        let g = c.reserve("t", 1, &two_halves, GpuPick::BestFit).unwrap();
        assert_eq!(g, vec![(0, 500), (1, 500)], "each share on its own GPU");
        assert_eq!(c.node(1).gpu_free, vec![500, 500]);
        // An exact reservation must name distinct GPUs with the share free.
        let one_half = Demand {
            gpus: 1,
            gpu_milli: 500,
            ..Default::default()
        };
        assert!(!c.reserve_exact("t", 1, &one_half, &vec![(0, 600)]));
        assert!(!c.reserve_exact("t", 1, &two_halves, &vec![(0, 500), (0, 500)]));
        assert!(c.reserve_exact("t", 1, &one_half, &vec![(1, 500)]));
        assert_eq!(c.node(1).gpu_free, vec![500, 0]);
        assert_eq!(c.site(1).free.gpu_milli, 500);
        assert!(!c.node(1).fits(&two_halves));
    }

    #[test]
    fn gpu_pick_strategies() {
        let free = [1000, 200, 600, 600];
        assert_eq!(GpuPick::BestFit.choose(&free, 500), Some(2));
        assert_eq!(GpuPick::WorstFit.choose(&free, 500), Some(0));
        assert_eq!(GpuPick::FirstFit.choose(&free, 100), Some(0));
        assert_eq!(GpuPick::BestFit.choose(&free, 1001), None);
    }

    /// Incremental changes against a fresh build of the same world: random sequences of
    /// joins, departures, node and site changes, reservations and releases.
    mod incremental {
        use super::*;
        use proptest::prelude::*;

        #[derive(Debug, Clone)]
        enum Op {
            Add {
                site: usize,
                shape: usize,
                healthy: bool,
                at: usize,
            },
            Remove {
                pick: usize,
            },
            Update {
                pick: usize,
                shape: usize,
                healthy: bool,
                site: usize,
            },
            SetSite {
                site: usize,
                pue_tenths: u8,
                healthy: bool,
            },
            Reserve {
                pick: usize,
                tenant: u8,
                kind: usize,
            },
            Release {
                pick: usize,
            },
            Health {
                pick: usize,
            },
        }

        const SITES: usize = 3;

        fn link(latency_ms: f64) -> cpn_topology::LinkAttrs {
            cpn_topology::LinkAttrs {
                latency_ms,
                bandwidth_gbps: 10.0,
                jitter_ms: 0.0,
                loss_pct: 0.0,
                bidirectional: true,
            }
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                3 => (0..SITES, 0..5usize, any::<bool>(), any::<usize>())
                    .prop_map(|(site, shape, healthy, at)| Op::Add { site, shape, healthy, at }),
                1 => any::<usize>().prop_map(|pick| Op::Remove { pick }),
                2 => (any::<usize>(), 0..5usize, any::<bool>(), 0..SITES).prop_map(
                    |(pick, shape, healthy, site)| Op::Update { pick, shape, healthy, site }
                ),
                1 => (0..SITES, 10..20u8, any::<bool>())
                    .prop_map(|(site, pue_tenths, healthy)| Op::SetSite { site, pue_tenths, healthy }),
                4 => (any::<usize>(), 0..3u8, 0..4usize)
                    .prop_map(|(pick, tenant, kind)| Op::Reserve { pick, tenant, kind }),
                2 => any::<usize>().prop_map(|pick| Op::Release { pick }),
                2 => any::<usize>().prop_map(|pick| Op::Health { pick }),
            ]
        }

        fn site_spec(i: usize, pue_tenths: u8, healthy: bool) -> SiteSpec {
            SiteSpec {
                name: format!("s{i}"),
                region: "east".into(),
                pue: pue_tenths as f64 / 10.0,
                healthy,
                ..Default::default()
            }
        }

        /// Five node kinds: two share an offer with different prices, one has unknown
        /// (NaN) economics, as an unregistered live machine.
        fn node_spec(name: &str, site: usize, shape: usize, healthy: bool) -> NodeSpec {
            let (model, gpus, price, chip) = [
                ("A100", 4, 9.0, Chip::Gpu),
                ("A100", 8, 7.5, Chip::Gpu),
                ("H800", 2, 12.0, Chip::Gpu),
                ("xeon", 0, 0.2, Chip::Cpu),
                ("mystery", 1, f64::NAN, Chip::Gpu),
            ][shape];
            let mut labels = Labels::new();
            labels.insert("shape".into(), shape.to_string());
            NodeSpec {
                name: name.into(),
                site: site as SiteIdx,
                labels,
                healthy,
                cpu_milli: 16_000 + shape as u64 * 1000,
                memory_mib: 65_536,
                storage_gib: 100,
                chip: Some(chip),
                model: model.into(),
                architecture: "x86_64".into(),
                gpus,
                tflops_per_unit: if price.is_nan() {
                    f64::NAN
                } else {
                    100.0 + gpus as f64
                },
                price_per_unit_hour: price,
                watts_per_unit: if price.is_nan() { f64::NAN } else { 300.0 },
            }
        }

        const DEMANDS: [Demand; 4] = [
            Demand {
                cpu_milli: 2000,
                memory_mib: 1024,
                storage_gib: 0,
                gpus: 1,
                gpu_milli: 1000,
            },
            Demand {
                cpu_milli: 1000,
                memory_mib: 512,
                storage_gib: 1,
                gpus: 1,
                gpu_milli: 300,
            },
            Demand {
                cpu_milli: 4000,
                memory_mib: 4096,
                storage_gib: 0,
                gpus: 0,
                gpu_milli: 0,
            },
            Demand {
                cpu_milli: 1000,
                memory_mib: 1024,
                storage_gib: 0,
                gpus: 2,
                gpu_milli: 1000,
            },
        ];

        /// The world as plain data, to build afresh.
        #[derive(Default)]
        struct World {
            sites: Vec<SiteSpec>,
            /// Per site, its nodes' names in site order.
            order: Vec<Vec<String>>,
            specs: HashMap<String, NodeSpec>,
            /// (node, tenant, demand, GPUs given), in the order they were taken.
            held: Vec<(String, String, Demand, GpuAssignment)>,
        }

        impl World {
            fn build(&self) -> Cluster {
                let mut b = ClusterBuilder::new();
                for s in &self.sites {
                    b.site(s.clone());
                }
                b.link(0, 1, link(5.0));
                for names in &self.order {
                    for n in names {
                        b.node(self.specs[n].clone());
                    }
                }
                let mut c = b.build().expect("a valid world");
                for (node, tenant, d, gpus) in &self.held {
                    let n = c.nodes.iter().position(|x| &x.spec.name == node).unwrap();
                    assert!(
                        c.reserve_exact(tenant, n as NodeIdx, d, gpus),
                        "{node} holds {d:?}"
                    );
                }
                c
            }
        }

        fn trimmed(h: &[u32]) -> &[u32] {
            &h[..h.iter().rposition(|&c| c > 0).map_or(0, |p| p + 1)]
        }

        fn offer_view(c: &Cluster, o: &Offer) -> String {
            format!(
                "{:?} {} {} units={} nodes={} price={:?} tflops={:?} watts={:?}",
                o.chip,
                c.symbols.name(o.model),
                c.symbols.name(o.architecture),
                o.units,
                o.nodes,
                o.price_per_unit_hour,
                o.tflops_per_unit,
                o.watts_per_unit
            )
        }

        fn assert_same(live: &Cluster, fresh: &Cluster) {
            assert_eq!(live.nodes.len(), fresh.nodes.len());
            assert_eq!(live.sites.len(), fresh.sites.len());
            for (s, (a, b)) in live.sites.iter().zip(&fresh.sites).enumerate() {
                assert_eq!(format!("{:?}", a.spec), format!("{:?}", b.spec));
                assert_eq!(live.site_by_name(&a.spec.name), Some(s as SiteIdx));
                let names = |c: &Cluster, site: &Site| -> Vec<String> {
                    site.nodes
                        .iter()
                        .map(|&n| c.node(n).spec.name.clone())
                        .collect()
                };
                assert_eq!(names(live, a), names(fresh, b), "site {s} order");
                assert_eq!(a.first_ordinal, b.first_ordinal, "site {s} ordinal");
                for (&x, &y) in a.nodes.iter().zip(&b.nodes) {
                    let (x, y) = (live.node(x), fresh.node(y));
                    assert!(same_node_spec(&x.spec, &y.spec), "{}", x.spec.name);
                    assert_eq!(
                        (
                            x.cpu_used,
                            x.memory_used,
                            x.storage_used,
                            &x.gpu_free,
                            x.offer
                        ),
                        (
                            y.cpu_used,
                            y.memory_used,
                            y.storage_used,
                            &y.gpu_free,
                            y.offer
                        ),
                        "{}",
                        x.spec.name
                    );
                    assert_eq!(live.symbols.name(x.model), fresh.symbols.name(y.model));
                }
                let offers = |c: &Cluster, site: &Site| -> Vec<String> {
                    site.offers.iter().map(|o| offer_view(c, o)).collect()
                };
                assert_eq!(offers(live, a), offers(fresh, b), "site {s} offers");
                assert_eq!(a.free, b.free, "site {s} free");
                assert_eq!(a.total, b.total, "site {s} total");
                assert_eq!(a.offer_free, b.offer_free, "site {s} free per offer");
                let hist = |site: &Site| -> Vec<Vec<u32>> {
                    site.whole_gpu_nodes
                        .iter()
                        .map(|h| trimmed(h).to_vec())
                        .collect()
                };
                assert_eq!(hist(a), hist(b), "site {s} histogram");
                assert_eq!(
                    trimmed(&a.gpu_nodes),
                    trimmed(&b.gpu_nodes),
                    "site {s} GPU nodes"
                );
            }
            let used = |c: &Cluster| -> Vec<(String, (u64, u64, u64))> {
                c.usage
                    .iter()
                    .filter(|(_, u)| **u != (0, 0, 0))
                    .map(|(t, u)| (t.clone(), *u))
                    .collect()
            };
            assert_eq!(used(live), used(fresh));
        }

        fn pick_node(w: &World, pick: usize) -> Option<String> {
            let all: Vec<&String> = w.order.iter().flatten().collect();
            (!all.is_empty()).then(|| all[pick % all.len()].clone())
        }

        /// Releases what `node` holds, in the live cluster and the world; returns it.
        fn release_all(
            c: &mut Cluster,
            w: &mut World,
            idx: &HashMap<String, NodeIdx>,
            node: &str,
        ) -> Vec<(String, String, Demand, GpuAssignment)> {
            let (mine, rest) = std::mem::take(&mut w.held)
                .into_iter()
                .partition(|h| h.0 == node);
            w.held = rest;
            for (_, tenant, d, gpus) in &mine {
                c.release(tenant, idx[node], d, gpus);
            }
            mine
        }

        fn run(ops: Vec<Op>) {
            let mut w = World {
                sites: (0..SITES).map(|i| site_spec(i, 12, true)).collect(),
                order: vec![Vec::new(); SITES],
                ..Default::default()
            };
            // Starts from a built world of a few nodes, as the live state does.
            for i in 0..4 {
                let name = format!("n{i}");
                w.specs
                    .insert(name.clone(), node_spec(&name, i % SITES, i, true));
                w.order[i % SITES].push(name);
            }
            let mut c = w.build();
            let mut idx: HashMap<String, NodeIdx> = c
                .nodes
                .iter()
                .enumerate()
                .map(|(i, n)| (n.spec.name.clone(), i as NodeIdx))
                .collect();
            let mut next = 4;
            for op in ops {
                match op {
                    Op::Add {
                        site,
                        shape,
                        healthy,
                        at,
                    } => {
                        let name = format!("n{next}");
                        next += 1;
                        let spec = node_spec(&name, site, shape, healthy);
                        // Half at the end, half somewhere inside the site's order.
                        let at = if at % 2 == 0 {
                            usize::MAX
                        } else {
                            at % (w.order[site].len() + 1)
                        };
                        let n = c.add_node_at(spec.clone(), at).unwrap();
                        idx.insert(name.clone(), n);
                        w.specs.insert(name.clone(), spec);
                        let order = &mut w.order[site];
                        order.insert(at.min(order.len()), name);
                    }
                    Op::Remove { pick } => {
                        let Some(name) = pick_node(&w, pick) else {
                            continue;
                        };
                        release_all(&mut c, &mut w, &idx, &name);
                        let n = idx.remove(&name).unwrap();
                        if let Some(old) = c.remove_node(n) {
                            let moved = c.node(n).spec.name.clone();
                            assert_eq!(idx.insert(moved, n), Some(old));
                        }
                        w.specs.remove(&name);
                        w.order.iter_mut().for_each(|o| o.retain(|x| *x != name));
                    }
                    Op::Update {
                        pick,
                        shape,
                        healthy,
                        site,
                    } => {
                        let Some(name) = pick_node(&w, pick) else {
                            continue;
                        };
                        let mine = release_all(&mut c, &mut w, &idx, &name);
                        let spec = node_spec(&name, site, shape, healthy);
                        let changed = c.update_node(idx[&name], spec.clone()).unwrap();
                        assert_eq!(changed, !same_node_spec(&w.specs[&name], &spec));
                        if w.specs[&name].site as usize != site {
                            w.order.iter_mut().for_each(|o| o.retain(|x| *x != name));
                            w.order[site].push(name.clone());
                        }
                        w.specs.insert(name.clone(), spec);
                        for (node, tenant, d, gpus) in mine {
                            if c.reserve_exact(&tenant, idx[&node], &d, &gpus) {
                                w.held.push((node, tenant, d, gpus));
                            }
                        }
                    }
                    Op::Health { pick } => {
                        // A node lost or back with what it holds kept, as a heartbeat does.
                        let Some(name) = pick_node(&w, pick) else {
                            continue;
                        };
                        let mut spec = w.specs[&name].clone();
                        spec.healthy = !spec.healthy;
                        assert!(c.update_node(idx[&name], spec.clone()).unwrap());
                        w.specs.insert(name, spec);
                    }
                    Op::SetSite {
                        site,
                        pue_tenths,
                        healthy,
                    } => {
                        let spec = site_spec(site, pue_tenths, healthy);
                        c.set_site(site as SiteIdx, spec.clone()).unwrap();
                        w.sites[site] = spec;
                    }
                    Op::Reserve { pick, tenant, kind } => {
                        let Some(name) = pick_node(&w, pick) else {
                            continue;
                        };
                        let tenant = format!("t{tenant}");
                        let d = DEMANDS[kind];
                        if let Some(g) = c.reserve(&tenant, idx[&name], &d, GpuPick::BestFit) {
                            w.held.push((name, tenant, d, g));
                        }
                    }
                    Op::Release { pick } => {
                        if w.held.is_empty() {
                            continue;
                        }
                        let (name, tenant, d, g) = w.held.remove(pick % w.held.len());
                        c.release(&tenant, idx[&name], &d, &g);
                    }
                }
                assert_same(&c, &w.build());
            }
            // And it decides as a fresh build does: the same tasks, seed and profile land
            // on the same nodes (tie-breaks key on site order, not on node indices).
            let mut fresh = w.build();
            let tasks = crate::synthetic::tasks(30, 5);
            let mut a = crate::Scheduler::new(crate::plugins::default_profile(), 9);
            let mut b = crate::Scheduler::new(crate::plugins::default_profile(), 9);
            for t in &tasks {
                let name = |c: &Cluster, r: Result<crate::Placement, crate::Unschedulable>| {
                    r.ok().map(|p| c.node(p.node).spec.name.clone())
                };
                let x = a.schedule(t, &mut c, crate::Mode::Fast);
                let y = b.schedule(t, &mut fresh, crate::Mode::Fast);
                assert_eq!(name(&c, x.0), name(&fresh, y.0), "{}", t.id);
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(200))]
            #[test]
            fn incremental_changes_match_a_fresh_build(ops in proptest::collection::vec(op(), 1..60)) {
                run(ops);
            }
        }

        #[test]
        fn set_registry_replaces_sites_and_links_but_no_node() {
            let c0 = crate::synthetic::cluster(3, 10, 4);
            let mut c = c0.clone();
            let mut b = ClusterBuilder::new();
            for s in &c0.sites {
                b.site(SiteSpec {
                    pue: 2.0,
                    ..s.spec.clone()
                });
            }
            b.link(0, 2, link(1.0));
            b.quota(
                "t",
                Quota {
                    gpu_milli: Some(1),
                    ..Default::default()
                },
            );
            c.set_registry(b).unwrap();
            assert!(c.sites.iter().all(|s| s.spec.pue == 2.0));
            assert_eq!(c.topology.link_count(), 1);
            assert_eq!(c.quotas["t"].gpu_milli, Some(1));
            assert_eq!(c.nodes.len(), c0.nodes.len());
            assert_eq!(c.sites[1].free, c0.sites[1].free);
            let mut other = ClusterBuilder::new();
            other.site(c0.sites[0].spec.clone());
            assert!(c.set_registry(other).is_err(), "a site left: build anew");
        }
    }
}
