//! Synthetic federations and workloads for benchmarks and tests, in the spirit of
//! kube-scheduler's scheduler_perf: a mix of node shapes and a mix of task shapes, all
//! derived from a seed so the same call always builds the same world.
//!
//! The cluster has CPU-only nodes (64 cores, 256 GiB) and 8-accelerator nodes (A100, H800,
//! Ascend 910B) with their host CPU and memory, per-node prices, peak TFLOPS and watts; sites
//! spread over eight regions of China with PUE 1.1–1.5, electricity prices, coordinates and
//! links to a few neighbours whose latency follows distance. The tasks are mostly small CPU
//! tasks, with some whole-GPU tasks (1, 2, 4 or 8), some shared GPU fractions and a few with
//! region constraints, selectors or affinities.

use crate::cluster::{Cluster, ClusterBuilder, NodeSpec, SiteIdx, SiteSpec};
use crate::task::{Chip, Demand, Task};
use cpn_model::geo::estimated_rtt_ms;
use cpn_model::{GeoPoint, Labels, Requirement, Selector};
use cpn_topology::LinkAttrs;

/// A small deterministic generator (splitmix64): no dependency, same stream on every
/// platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.f64()
    }

    /// Uniform in 0..n (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.f64() < p
    }

    /// An index drawn with the given weights (which need not sum to 1).
    pub fn weighted(&mut self, weights: &[f64]) -> usize {
        let total: f64 = weights.iter().sum();
        let mut x = self.f64() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return i;
            }
            x -= w;
        }
        weights.len().saturating_sub(1)
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// The regions sites are spread over, with a centre each (degrees).
pub const REGIONS: [(&str, f64, f64); 8] = [
    ("north-china", 39.9, 116.4),    // Beijing
    ("east-china", 31.2, 121.5),     // Shanghai
    ("south-china", 23.1, 113.3),    // Guangzhou
    ("central-china", 30.6, 114.3),  // Wuhan
    ("southwest", 30.7, 104.1),      // Chengdu
    ("northwest", 36.1, 103.8),      // Lanzhou
    ("northeast", 41.8, 123.4),      // Shenyang
    ("inner-mongolia", 40.8, 111.7), // Hohhot
];

/// China's bounding box (lat, lon): every site lies inside.
pub const CHINA_LAT: (f64, f64) = (18.0, 53.5);
pub const CHINA_LON: (f64, f64) = (73.5, 135.0);

/// Site tiers, the `tier` label of every site.
pub const TIERS: [&str; 3] = ["gold", "silver", "bronze"];

/// One kind of node the generator makes.
#[derive(Debug, Clone, Copy)]
pub struct NodeShape {
    pub model: &'static str,
    pub architecture: &'static str,
    pub chip: Chip,
    /// Accelerators per node; 0 for CPU-only.
    pub gpus: u32,
    pub cores: u64,
    pub memory_gib: u64,
    pub storage_gib: u64,
    /// Per accelerator, or for the whole node when CPU-only.
    pub tflops_per_unit: f64,
    /// CNY per accelerator-hour, or per core-hour when CPU-only (before per-node jitter).
    pub price_per_unit_hour: f64,
    /// Per accelerator at load, or per core when CPU-only.
    pub watts_per_unit: f64,
    /// Share of the nodes of a site with this shape.
    pub share: f64,
}

/// The node shapes and their shares: half CPU-only, half 8-accelerator nodes.
pub const SHAPES: [NodeShape; 4] = [
    NodeShape {
        model: "xeon-8480",
        architecture: "x86_64",
        chip: Chip::Cpu,
        gpus: 0,
        cores: 64,
        memory_gib: 256,
        storage_gib: 2_000,
        tflops_per_unit: 4.5,
        price_per_unit_hour: 0.12,
        watts_per_unit: 6.0,
        share: 0.50,
    },
    NodeShape {
        model: "A100",
        architecture: "x86_64",
        chip: Chip::Gpu,
        gpus: 8,
        cores: 128,
        memory_gib: 1_024,
        storage_gib: 8_000,
        tflops_per_unit: 312.0,
        price_per_unit_hour: 16.0,
        watts_per_unit: 400.0,
        share: 0.20,
    },
    NodeShape {
        model: "H800",
        architecture: "x86_64",
        chip: Chip::Gpu,
        gpus: 8,
        cores: 128,
        memory_gib: 2_048,
        storage_gib: 8_000,
        tflops_per_unit: 989.0,
        price_per_unit_hour: 32.0,
        watts_per_unit: 700.0,
        share: 0.15,
    },
    NodeShape {
        model: "Ascend-910B",
        architecture: "aarch64",
        chip: Chip::Npu,
        gpus: 8,
        cores: 192,
        memory_gib: 1_536,
        storage_gib: 8_000,
        tflops_per_unit: 320.0,
        price_per_unit_hour: 11.0,
        watts_per_unit: 400.0,
        share: 0.15,
    },
];

/// Site `i` of a synthetic federation: the region it is in, so callers can aim tasks.
pub fn region_of_site(i: usize) -> &'static str {
    REGIONS[i % REGIONS.len()].0
}

/// A federation of `sites` sites with `nodes_per_site` nodes each, the same for the same
/// seed. Every site is healthy but about 1 % of those after the first; site 0 is in
/// `REGIONS[0]`, and sites go round the regions in turn.
pub fn cluster(sites: usize, nodes_per_site: usize, seed: u64) -> Cluster {
    let mut rng = Rng::new(seed ^ 0xC1u64.rotate_left(56));
    let mut b = ClusterBuilder::new();
    let mut locations = Vec::with_capacity(sites);
    let shares: Vec<f64> = SHAPES.iter().map(|s| s.share).collect();
    for i in 0..sites {
        let (region, lat, lon) = REGIONS[i % REGIONS.len()];
        let location = GeoPoint::new(
            (lat + rng.range(-3.0, 3.0)).clamp(CHINA_LAT.0, CHINA_LAT.1),
            (lon + rng.range(-4.0, 4.0)).clamp(CHINA_LON.0, CHINA_LON.1),
        );
        locations.push(location);
        let tier = *rng.pick(&TIERS);
        let mut labels = Labels::new();
        labels.insert("tier".into(), tier.into());
        let name = format!("site-{i:05}");
        let site = b.site(SiteSpec {
            name: name.clone(),
            region: region.into(),
            labels,
            location: Some(location),
            pue: rng.range(1.1, 1.5),
            electricity_price: rng.range(0.3, 0.9),
            carbon_intensity: Some(rng.range(300.0, 800.0)),
            healthy: i == 0 || !rng.chance(0.01),
        });
        // Prices differ from site to site, and a little from node to node.
        let site_price = rng.range(0.85, 1.15);
        for j in 0..nodes_per_site {
            let shape = SHAPES[rng.weighted(&shares)];
            let jitter = rng.range(0.97, 1.03);
            b.node(NodeSpec {
                name: format!("{name}-n{j:05}"),
                site,
                labels: Labels::new(),
                healthy: true,
                cpu_milli: shape.cores * 1000,
                memory_mib: shape.memory_gib * 1024,
                storage_gib: shape.storage_gib,
                chip: Some(shape.chip),
                model: shape.model.into(),
                architecture: shape.architecture.into(),
                gpus: shape.gpus,
                tflops_per_unit: shape.tflops_per_unit,
                price_per_unit_hour: shape.price_per_unit_hour * site_price * jitter,
                watts_per_unit: shape.watts_per_unit * rng.range(0.95, 1.05),
            });
        }
    }
    for (a, c, attrs) in links(&locations, &mut rng) {
        b.link(a, c, attrs);
    }
    b.build().expect("a synthetic cluster is well formed")
}

/// Links of the federation, each pair once. Inside a region every site links to the nearest
/// site of that region added before it (a tree, so the region is connected) and to its
/// nearest one overall; across regions every site has a long-haul link to the same-numbered
/// site of the next region, which rings the regions together. Latency is the distance
/// estimate of `estimated_rtt_ms` with up to 30 % detour.
fn links(locations: &[GeoPoint], rng: &mut Rng) -> Vec<(SiteIdx, SiteIdx, LinkAttrs)> {
    let n = locations.len();
    let r = REGIONS.len();
    let mut pairs = std::collections::BTreeSet::new();
    let mut pair = |a: usize, b: usize| {
        if a != b {
            pairs.insert((a.min(b), a.max(b)));
        }
    };
    // Sites of one region are i, i ± r, i ± 2r, …; the search window of 64 on either side
    // keeps this linear in the number of sites.
    let nearest = |i: usize, before_only: bool| -> Option<usize> {
        (1..=64usize)
            .flat_map(|k| [i.checked_sub(k * r), (!before_only).then_some(i + k * r)])
            .flatten()
            .filter(|&j| j < n)
            .map(|j| (locations[i].distance_km(&locations[j]), j))
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)))
            .map(|(_, j)| j)
    };
    for i in 0..n {
        if let Some(j) = nearest(i, true) {
            pair(i, j);
        }
        if let Some(j) = nearest(i, false) {
            pair(i, j);
        }
        // Long haul: the site of the next region with the same number within its region.
        let j = (i / r) * r + (i % r + 1) % r;
        if j < n {
            pair(i, j);
        }
    }
    pairs
        .into_iter()
        .map(|(a, b)| {
            let km = locations[a].distance_km(&locations[b]);
            let attrs = LinkAttrs {
                latency_ms: estimated_rtt_ms(km) * rng.range(1.0, 1.3),
                bandwidth_gbps: *rng.pick(&[10.0, 40.0, 100.0]),
                jitter_ms: rng.range(0.05, 2.0),
                loss_pct: rng.range(0.0, 0.1),
                bidirectional: true,
            };
            (a as SiteIdx, b as SiteIdx, attrs)
        })
        .collect()
}

/// Shares of task shapes in a synthetic workload; the rest of 1 after `shared_gpu` and
/// `whole_gpu` are CPU-only tasks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Mix {
    /// One GPU shared: 250 or 500 milli of it.
    pub shared_gpu: f64,
    /// 1, 2, 4 or 8 whole GPUs (or NPUs).
    pub whole_gpu: f64,
    /// Hard placement constraints: data residency (`regions_in` / `regions_not_in`) or a
    /// site selector on `tier`. Off for a single-site cluster, which cannot meet them.
    pub constrained: f64,
    /// Soft preferences: region affinity or anti-affinity.
    pub affinity: f64,
}

impl Default for Mix {
    fn default() -> Self {
        Mix {
            shared_gpu: 0.06,
            whole_gpu: 0.09,
            constrained: 0.05,
            affinity: 0.10,
        }
    }
}

/// CPU cores of a CPU-only task and their weights.
pub const CPU_TASK_CORES: [(f64, f64); 5] =
    [(0.5, 0.2), (1.0, 0.3), (2.0, 0.25), (3.0, 0.1), (4.0, 0.15)];
/// Whole GPUs of a GPU task and their weights.
pub const GPU_TASK_GPUS: [(u32, f64); 4] = [(1, 0.55), (2, 0.25), (4, 0.12), (8, 0.08)];

/// `n` tasks of the default [`Mix`], the same for the same seed.
pub fn tasks(n: usize, seed: u64) -> Vec<Task> {
    tasks_with(n, seed, &Mix::default())
}

/// `n` tasks of the given mix: CPU-only tasks of 0.5–4 cores with 1–4 GiB per core, shared
/// GPU fractions, and whole-GPU tasks with 8 cores and 64 GiB per GPU (a third of them on
/// NPUs); every task has an origin region and a tenant out of ten.
pub fn tasks_with(n: usize, seed: u64, mix: &Mix) -> Vec<Task> {
    let mut rng = Rng::new(seed ^ 0x7A5Cu64.rotate_left(48));
    let businesses = ["web", "batch", "inference", "training"];
    (0..n)
        .map(|i| {
            let origin = rng.below(REGIONS.len());
            let mut task = Task {
                id: format!("task-{i:06}"),
                tenant: format!("tenant-{}", rng.below(10)),
                origin_region: Some(REGIONS[origin].0.to_string()),
                priority: rng.below(10) as i32,
                est_hours: rng.range(0.25, 8.0),
                ..Default::default()
            };
            let kind = rng.f64();
            if kind < mix.shared_gpu {
                task.business = Some("inference".into());
                task.chip = Some(Chip::Gpu);
                task.demand = Demand {
                    cpu_milli: 2000,
                    memory_mib: 16 * 1024,
                    gpus: 1,
                    gpu_milli: *rng.pick(&[250, 500]),
                    storage_gib: 20,
                };
                task.preferred_models = vec!["A100".into()];
            } else if kind < mix.shared_gpu + mix.whole_gpu {
                let weights: Vec<f64> = GPU_TASK_GPUS.iter().map(|g| g.1).collect();
                let gpus = GPU_TASK_GPUS[rng.weighted(&weights)].0;
                task.business = Some("training".into());
                task.demand = Demand {
                    cpu_milli: 8000 * gpus as u64,
                    memory_mib: 64 * 1024 * gpus as u64,
                    gpus,
                    gpu_milli: 1000,
                    storage_gib: 100 * gpus as u64,
                };
                match rng.below(6) {
                    0 | 1 => {
                        task.chip = Some(Chip::Npu);
                        task.models = vec!["Ascend-910B".into()];
                    }
                    2 => {
                        task.chip = Some(Chip::Gpu);
                        task.models = vec!["H800".into()];
                    }
                    _ => {
                        task.chip = Some(Chip::Gpu);
                        task.preferred_models = vec!["H800".into(), "A100".into()];
                    }
                }
            } else {
                let weights: Vec<f64> = CPU_TASK_CORES.iter().map(|c| c.1).collect();
                let cores = CPU_TASK_CORES[rng.weighted(&weights)].0;
                task.business = Some(businesses[rng.below(3)].to_string());
                task.demand = Demand {
                    cpu_milli: (cores * 1000.0) as u64,
                    memory_mib: (cores * 1024.0) as u64 * (1 + rng.below(4) as u64),
                    gpus: 0,
                    gpu_milli: 0,
                    storage_gib: rng.below(20) as u64,
                };
            }
            if rng.chance(mix.constrained) {
                match rng.below(3) {
                    0 => task.regions_in = vec![REGIONS[origin].0.to_string()],
                    1 => task.regions_not_in = vec![REGIONS[(origin + 1) % REGIONS.len()].0.into()],
                    _ => {
                        task.site_selector = Selector {
                            requirements: vec![Requirement::In(
                                "tier".into(),
                                vec!["gold".into(), "silver".into()],
                            )],
                        }
                    }
                }
            }
            if rng.chance(mix.affinity) {
                if rng.chance(0.7) {
                    task.affinity_regions = vec![REGIONS[origin].0.to_string()];
                } else {
                    task.anti_affinity_regions =
                        vec![REGIONS[(origin + 4) % REGIONS.len()].0.to_string()];
                }
            }
            task
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_builds_the_same_world() {
        let a = cluster(20, 10, 7);
        let b = cluster(20, 10, 7);
        assert_eq!(a.sites.len(), 20);
        assert_eq!(a.nodes.len(), 200);
        assert_eq!(a.topology.link_count(), b.topology.link_count());
        for (x, y) in a.nodes.iter().zip(&b.nodes) {
            assert_eq!(x.spec.name, y.spec.name);
            assert_eq!(x.spec.model, y.spec.model);
            assert_eq!(x.spec.price_per_unit_hour, y.spec.price_per_unit_hour);
        }
        let c = cluster(20, 10, 8);
        assert!(
            a.nodes
                .iter()
                .zip(&c.nodes)
                .any(|(x, y)| x.spec.model != y.spec.model)
        );
        let t1 = tasks(100, 1);
        let t2 = tasks(100, 1);
        assert_eq!(
            t1.iter().map(|t| t.demand).collect::<Vec<_>>(),
            t2.iter().map(|t| t.demand).collect::<Vec<_>>()
        );
    }

    #[test]
    fn sites_are_plausible_and_connected() {
        let c = cluster(100, 4, 42);
        for (i, s) in c.sites.iter().enumerate() {
            assert_eq!(s.spec.region, region_of_site(i));
            assert!((1.1..=1.5).contains(&s.spec.pue));
            let p = s.spec.location.unwrap();
            assert!((CHINA_LAT.0..=CHINA_LAT.1).contains(&p.lat));
            assert!((CHINA_LON.0..=CHINA_LON.1).contains(&p.lon));
            assert_eq!(s.nodes.len(), 4);
        }
        assert!(c.sites[0].spec.healthy);
        let from = c.sites[0].vertex.unwrap();
        let paths = c.topology.shortest_paths(from);
        assert!((0..100).all(|i| paths.is_reachable(cpn_topology::SiteIndex(i))));
    }

    #[test]
    fn the_node_mix_follows_the_shapes() {
        let c = cluster(1, 4000, 3);
        let count = |m: &str| c.nodes.iter().filter(|n| n.spec.model == m).count() as f64;
        assert!((count("xeon-8480") / 4000.0 - 0.50).abs() < 0.03);
        assert!((count("A100") / 4000.0 - 0.20).abs() < 0.03);
        let gpu_nodes = c.nodes.iter().filter(|n| n.spec.gpus == 8).count();
        assert_eq!(c.site(0).total.whole_gpus, 8 * gpu_nodes as u64);
    }

    #[test]
    fn every_node_counts_in_its_own_offer() {
        let c = cluster(3, 200, 5);
        for s in &c.sites {
            for n in s.nodes.iter().map(|&i| &c.nodes[i as usize]) {
                let o = &s.offers[n.offer as usize];
                assert_eq!((o.model, o.chip), (n.model, n.spec.chip), "{}", n.spec.name);
            }
            let whole: u64 = s.offer_free.iter().map(|a| a.whole_gpus).sum();
            let cpu: u64 = s.offer_free.iter().map(|a| a.cpu_milli).sum();
            assert_eq!((whole, cpu), (s.free.whole_gpus, s.free.cpu_milli));
            for (o, a) in s.offers.iter().zip(&s.offer_free) {
                if o.chip != Some(Chip::Cpu) {
                    assert_eq!(a.whole_gpus, o.units, "{}", c.symbols.name(o.model));
                }
            }
        }
    }

    #[test]
    fn the_task_mix_is_mostly_small_cpu_tasks() {
        let ts = tasks(10_000, 42);
        let cpu = ts.iter().filter(|t| t.demand.gpus == 0).count();
        let shared = ts.iter().filter(|t| !t.demand.whole_gpus()).count();
        let eight = ts.iter().filter(|t| t.demand.gpus == 8).count();
        assert!((8000..9000).contains(&cpu), "{cpu}");
        assert!((450..750).contains(&shared), "{shared}");
        assert!(eight > 20, "{eight}");
        assert!(ts.iter().all(|t| t.origin_region.is_some()));
        assert!(ts.iter().any(|t| !t.regions_in.is_empty()));
        assert!(ts.iter().any(|t| !t.site_selector.is_empty()));
        assert!(ts.iter().any(|t| !t.affinity_regions.is_empty()));
        let cores: Vec<u64> = ts
            .iter()
            .filter(|t| t.demand.gpus == 0)
            .map(|t| t.demand.cpu_milli)
            .collect();
        assert!(cores.iter().all(|&m| (500..=4000).contains(&m)));
        let none = tasks_with(
            1000,
            42,
            &Mix {
                constrained: 0.0,
                ..Mix::default()
            },
        );
        assert!(none.iter().all(|t| t.regions_in.is_empty()
            && t.regions_not_in.is_empty()
            && t.site_selector.is_empty()));
    }
}
