//! Properties of scheduling over random small federations: no placement breaks a filter,
//! the same seed gives the same placements, and weighing a factor more never makes the
//! chosen site worse on that factor.

use cpn_model::{Labels, Selector};
use cpn_sched::cluster::{Quota, SiteIdx};
use cpn_sched::plugins::{self, ProfileSpec, default_profile, profile};
use cpn_sched::task::{Chip, Resolved};
use cpn_sched::{
    Better, Cluster, ClusterBuilder, CycleState, Demand, Mode, NodeSpec, Placement, Scheduler,
    SiteSpec, Task,
};
use cpn_topology::LinkAttrs;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

const REGIONS: [&str; 4] = ["east", "west", "north", "south"];
const MODELS: [&str; 3] = ["A100", "H800", "V100"];
const ARCHS: [&str; 2] = ["x86_64", "aarch64"];
const TENANTS: [&str; 2] = ["capped", "free"];

#[derive(Debug, Clone)]
struct NodeGen {
    healthy: bool,
    cordoned: bool,
    gpus: u32,
    model: usize,
    arch: usize,
    cores: u64,
    mem_gib: u64,
    ssd: bool,
    price: u8,
    watts: u16,
    tflops: u16,
}

#[derive(Debug, Clone)]
struct SiteGen {
    region: usize,
    gold: bool,
    healthy: bool,
    pue_tenths: u8,
    power_cents: u8,
    carbon: Option<u16>,
    nodes: Vec<NodeGen>,
}

#[derive(Debug, Clone)]
struct World {
    sites: Vec<SiteGen>,
    links: Vec<(usize, usize, u8)>,
    quota_gpus: Option<u64>,
}

fn node_gen() -> impl Strategy<Value = NodeGen> {
    (
        prop::bool::weighted(0.95),
        prop::bool::weighted(0.05),
        0u32..=4,
        0..MODELS.len(),
        0..ARCHS.len(),
        2u64..=32,
        4u64..=128,
        any::<bool>(),
        1u8..=30,
        (100u16..=700, 10u16..=1000),
    )
        .prop_map(
            |(
                healthy,
                cordoned,
                gpus,
                model,
                arch,
                cores,
                mem_gib,
                ssd,
                price,
                (watts, tflops),
            )| {
                NodeGen {
                    healthy,
                    cordoned,
                    gpus,
                    model,
                    arch,
                    cores,
                    mem_gib,
                    ssd,
                    price,
                    watts,
                    tflops,
                }
            },
        )
}

fn site_gen() -> impl Strategy<Value = SiteGen> {
    (
        0..REGIONS.len(),
        any::<bool>(),
        prop::bool::weighted(0.95),
        10u8..=20,
        20u8..=100,
        prop::option::of(100u16..=900),
        prop::collection::vec(node_gen(), 0..=4),
    )
        .prop_map(
            |(region, gold, healthy, pue_tenths, power_cents, carbon, nodes)| SiteGen {
                region,
                gold,
                healthy,
                pue_tenths,
                power_cents,
                carbon,
                nodes,
            },
        )
}

fn world(sites: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = World> {
    (
        prop::collection::vec(site_gen(), sites),
        prop::collection::vec((0usize..8, 0usize..8, 1u8..=80), 0..=8),
        prop::option::of(1u64..=6),
    )
        .prop_map(|(sites, links, quota_gpus)| World {
            sites,
            links,
            quota_gpus,
        })
}

fn build(w: &World) -> Cluster {
    let mut b = ClusterBuilder::new();
    let mut cordon = Vec::new();
    let mut next_node = 0u32;
    for (i, s) in w.sites.iter().enumerate() {
        let mut labels = Labels::new();
        labels.insert("tier".into(), if s.gold { "gold" } else { "silver" }.into());
        let idx = b.site(SiteSpec {
            name: format!("s{i}"),
            region: REGIONS[s.region].into(),
            labels,
            pue: s.pue_tenths as f64 / 10.0,
            electricity_price: s.power_cents as f64 / 100.0,
            carbon_intensity: s.carbon.map(f64::from),
            healthy: s.healthy,
            ..Default::default()
        });
        for (j, n) in s.nodes.iter().enumerate() {
            let mut labels = Labels::new();
            if n.ssd {
                labels.insert("disk".into(), "ssd".into());
            }
            b.node(NodeSpec {
                name: format!("s{i}-n{j}"),
                site: idx,
                labels,
                healthy: n.healthy,
                cpu_milli: n.cores * 1000,
                memory_mib: n.mem_gib * 1024,
                storage_gib: 500,
                chip: Some(if n.gpus > 0 { Chip::Gpu } else { Chip::Cpu }),
                model: if n.gpus > 0 { MODELS[n.model] } else { "xeon" }.into(),
                architecture: ARCHS[n.arch].into(),
                gpus: n.gpus,
                tflops_per_unit: n.tflops as f64,
                price_per_unit_hour: n.price as f64,
                watts_per_unit: n.watts as f64,
            });
            if n.cordoned {
                cordon.push(next_node);
            }
            next_node += 1;
        }
    }
    let n = w.sites.len();
    for &(a, z, ms) in &w.links {
        let (a, z) = (a % n, z % n);
        if a != z {
            b.link(
                a as SiteIdx,
                z as SiteIdx,
                LinkAttrs {
                    latency_ms: ms as f64,
                    bandwidth_gbps: 10.0,
                    jitter_ms: 0.0,
                    loss_pct: 0.0,
                    bidirectional: true,
                },
            );
        }
    }
    if let Some(g) = w.quota_gpus {
        b.quota(
            TENANTS[0],
            Quota {
                gpu_milli: Some(g * 1000),
                cpu_milli: None,
                memory_mib: None,
            },
        );
    }
    let mut c = b.build().expect("generated worlds are valid");
    for node in cordon {
        c.set_cordoned(node, true);
    }
    c
}

/// Empty four times in five, else a value of `s`.
fn sometimes<S: Strategy<Value = Vec<usize>>>(s: S) -> impl Strategy<Value = Vec<usize>> {
    prop::option::weighted(0.2, s).prop_map(Option::unwrap_or_default)
}

fn task_gen() -> impl Strategy<Value = Task> {
    let demand = (
        0u32..=2,
        prop::option::of(100u32..=900),
        250u64..=8000,
        256u64..=32_768,
        0u64..=100,
    )
        .prop_map(|(gpus, frac, cpu_milli, memory_mib, storage_gib)| Demand {
            cpu_milli,
            memory_mib,
            gpus,
            // A shared fraction only for single-GPU tasks.
            gpu_milli: frac.filter(|_| gpus == 1).unwrap_or(1000),
            storage_gib,
        });
    let placement = (
        // Hard constraints are rare enough that most tasks find somewhere to go.
        sometimes(prop::collection::vec(0..REGIONS.len(), 1..=3)),
        sometimes(prop::collection::vec(0..REGIONS.len(), 1..=1)),
        prop::bool::weighted(0.15),
        prop::bool::weighted(0.15),
        prop_oneof![
            8 => Just(None),
            1 => Just(Some(Chip::Gpu)),
            1 => Just(Some(Chip::Cpu)),
        ],
        sometimes(prop::collection::vec(0..MODELS.len(), 1..=2)),
    );
    let soft = (
        prop::option::of(0..REGIONS.len()),
        prop::collection::vec(0..MODELS.len(), 0..=3),
        prop::collection::vec(0..REGIONS.len(), 0..=1),
        prop::collection::vec(0..REGIONS.len(), 0..=1),
        0u8..=5,
        0..TENANTS.len(),
    );
    (demand, placement, soft).prop_map(
        |(
            demand,
            (regions_in, regions_not_in, gold, ssd, chip, models),
            (origin, preferred, affinity, anti, hours, tenant),
        )| {
            let regions = |v: Vec<usize>| v.into_iter().map(|r| REGIONS[r].to_string()).collect();
            let models_of = |v: Vec<usize>| v.into_iter().map(|m| MODELS[m].to_string()).collect();
            Task {
                id: "t".into(),
                tenant: TENANTS[tenant].into(),
                origin_region: origin.map(|r| REGIONS[r].to_string()),
                demand,
                chip,
                models: models_of(models),
                regions_in: regions(regions_in),
                regions_not_in: regions(regions_not_in),
                site_selector: if gold {
                    Selector::parse("tier=gold").unwrap()
                } else {
                    Selector::default()
                },
                node_selector: if ssd {
                    Selector::parse("disk=ssd").unwrap()
                } else {
                    Selector::default()
                },
                affinity_regions: regions(affinity),
                anti_affinity_regions: regions(anti),
                preferred_models: models_of(preferred),
                est_hours: hours as f64,
                ..Default::default()
            }
        },
    )
}

/// Checks a placement against every filter's rule, on the cluster as it was before.
fn check_placement(task: &Task, before: &Cluster, p: &Placement) -> Result<(), TestCaseError> {
    let site = before.site(p.site);
    let node = before.node(p.node);
    prop_assert!(site.nodes.contains(&p.node), "node outside its site");
    prop_assert!(site.spec.healthy, "unhealthy site");
    prop_assert!(node.schedulable(), "unhealthy or cordoned node");
    prop_assert!(
        task.regions_in.is_empty() || task.regions_in.contains(&site.spec.region),
        "region not allowed"
    );
    prop_assert!(
        !task.regions_not_in.contains(&site.spec.region),
        "region excluded"
    );
    prop_assert!(
        task.site_selector.matches(&site.spec.labels),
        "site selector"
    );
    prop_assert!(
        task.node_selector.matches(&node.spec.labels),
        "node selector"
    );
    prop_assert!(
        Resolved::new(task, before).accepts(task, node.spec.chip, node.model, node.architecture),
        "chip/model/architecture"
    );
    prop_assert!(node.fits(&task.demand), "does not fit");
    if let Some(q) = before.quotas.get(&task.tenant) {
        let used = before.usage.get(&task.tenant).copied().unwrap_or_default();
        if let Some(g) = q.gpu_milli {
            prop_assert!(used.0 + task.demand.gpu_milli_total() <= g, "over quota");
        }
    }
    Ok(())
}

/// The raw value of site score `factor` for `site`, as the runner would compute it.
fn raw(factor: &str, task: &Task, cluster: &Cluster, site: SiteIdx) -> (f64, Better) {
    let plugin = plugins::build(factor).unwrap();
    let mut state = CycleState::new(false);
    state.put(Resolved::new(task, cluster));
    plugin.prepare(task, cluster, &mut state);
    let score = plugin.as_site_score().unwrap();
    (
        score.score_site(&state, task, cluster, site),
        score.better(),
    )
}

const SITE_FACTORS: [&str; 8] = [
    "price",
    "latency",
    "energy",
    "carbon",
    "performance",
    "free_capacity",
    "model_preference",
    "location_affinity",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn placements_never_break_a_filter(
        w in world(1..=6),
        tasks in prop::collection::vec(task_gen(), 1..12),
        seed in any::<u64>(),
    ) {
        let mut cluster = build(&w);
        let mut sched = Scheduler::new(default_profile(), seed);
        for (i, t) in tasks.iter().enumerate() {
            let before = cluster.clone();
            let mode = if i % 2 == 0 { Mode::Fast } else { Mode::Explain };
            let (r, _) = sched.schedule(t, &mut cluster, mode);
            match r {
                Ok(p) => check_placement(t, &before, &p)?,
                Err(u) => {
                    prop_assert!(!u.reasons.is_empty());
                    prop_assert_ne!(u.reasons[0].0.as_str(), "reserve/refused");
                }
            }
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_placements(
        w in world(1..=6),
        tasks in prop::collection::vec(task_gen(), 1..12),
        seed in any::<u64>(),
    ) {
        let (mut c1, mut c2, mut c3) = (build(&w), build(&w), build(&w));
        let mut s1 = Scheduler::new(default_profile(), seed);
        let mut s2 = Scheduler::new(default_profile(), seed);
        let mut s3 = Scheduler::new(default_profile(), seed);
        for t in &tasks {
            let r1 = s1.schedule(t, &mut c1, Mode::Fast).0;
            let r2 = s2.schedule(t, &mut c2, Mode::Fast).0;
            // Explaining changes what is recorded, never what is decided.
            let r3 = s3.schedule(t, &mut c3, Mode::Explain).0;
            prop_assert_eq!(&r1, &r2);
            prop_assert_eq!(r1.ok(), r3.ok());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn a_heavier_weight_never_picks_a_worse_site_on_that_factor(
        w in world(3..=8),
        warmup in prop::collection::vec(task_gen(), 0..6),
        task in task_gen(),
        factor in 0..SITE_FACTORS.len(),
        low in 0.0f64..2.0,
        more in 0.5f64..30.0,
        seed in any::<u64>(),
    ) {
        let mut cluster = build(&w);
        let mut warm = Scheduler::new(default_profile(), seed);
        for t in &warmup {
            let _ = warm.schedule(t, &mut cluster, Mode::Fast);
        }
        let factor = SITE_FACTORS[factor];
        let with_weight = |weight: f64| {
            let mut spec = ProfileSpec::default();
            spec.weights.retain(|(n, _)| n != factor);
            spec.weights.push((factor.to_string(), weight));
            profile(&spec).unwrap()
        };
        let light = Scheduler::new(with_weight(low), seed).rank_sites(&task, &cluster);
        let heavy = Scheduler::new(with_weight(low + more), seed).rank_sites(&task, &cluster);
        prop_assert_eq!(light.len(), heavy.len());
        if let (Some(&(a, _)), Some(&(b, _))) = (light.first(), heavy.first()) {
            let (ra, better) = raw(factor, &task, &cluster, a);
            let (rb, _) = raw(factor, &task, &cluster, b);
            let tol = 1e-9 * (1.0 + ra.abs() + rb.abs());
            match better {
                Better::Lower => prop_assert!(rb <= ra + tol, "{factor}: {rb} at {b} vs {ra} at {a}"),
                Better::Higher => prop_assert!(rb >= ra - tol, "{factor}: {rb} at {b} vs {ra} at {a}"),
            }
        }
    }
}
