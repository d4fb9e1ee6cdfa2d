//! End-to-end scheduling over a small federation with the default profile: explanations add
//! up, residency overrides the scores, misses carry reason codes, and reservations fill a
//! site until the next one takes over.

use cpn_sched::cluster::Quota;
use cpn_sched::plugins::{self, chip_model, default_profile, residency, resources_fit};
use cpn_sched::task::Chip;
use cpn_sched::{Cluster, ClusterBuilder, Demand, Mode, NodeSpec, Scheduler, SiteSpec, Task};
use cpn_topology::LinkAttrs;

fn link(ms: f64) -> LinkAttrs {
    LinkAttrs {
        latency_ms: ms,
        bandwidth_gbps: 100.0,
        jitter_ms: 0.0,
        loss_pct: 0.0,
        bidirectional: true,
    }
}

fn site(name: &str, region: &str, pue: f64, power: f64, carbon: f64) -> SiteSpec {
    SiteSpec {
        name: name.into(),
        region: region.into(),
        pue,
        electricity_price: power,
        carbon_intensity: Some(carbon),
        healthy: true,
        ..Default::default()
    }
}

fn gpu_node(name: &str, site: u32, model: &str, gpus: u32, price: f64, tflops: f64) -> NodeSpec {
    NodeSpec {
        name: name.into(),
        site,
        healthy: true,
        cpu_milli: 64_000,
        memory_mib: 262_144,
        storage_gib: 2000,
        chip: Some(Chip::Gpu),
        model: model.into(),
        architecture: "x86_64".into(),
        gpus,
        tflops_per_unit: tflops,
        price_per_unit_hour: price,
        watts_per_unit: if model == "H800" { 700.0 } else { 400.0 },
        ..Default::default()
    }
}

/// Four sites in four regions, linked bj — sh — gz — gy and bj — gy:
///
/// | site | region | GPUs              | CNY/GPU-h | PUE | CNY/kWh |
/// |------|--------|-------------------|-----------|-----|---------|
/// | bj   | north  | 2 × 4 A100        | 10        | 1.3 | 0.60    |
/// | sh   | east   | 2 × 4 A100        | 8         | 1.2 | 0.70    |
/// | gz   | south  | 1 × 8 H800        | 25        | 1.4 | 0.65    |
/// | gy   | west   | 2 × 4 A100 + CPU  | 6         | 1.1 | 0.35    |
fn federation() -> Cluster {
    let mut b = ClusterBuilder::new();
    let bj = b.site(site("bj", "north", 1.3, 0.60, 600.0));
    let sh = b.site(site("sh", "east", 1.2, 0.70, 550.0));
    let gz = b.site(site("gz", "south", 1.4, 0.65, 500.0));
    let gy = b.site(site("gy", "west", 1.1, 0.35, 300.0));
    b.node(gpu_node("bj-1", bj, "A100", 4, 10.0, 312.0));
    b.node(gpu_node("bj-2", bj, "A100", 4, 10.0, 312.0));
    b.node(gpu_node("sh-1", sh, "A100", 4, 8.0, 312.0));
    b.node(gpu_node("sh-2", sh, "A100", 4, 8.0, 312.0));
    b.node(gpu_node("gz-1", gz, "H800", 8, 25.0, 989.0));
    b.node(gpu_node("gy-1", gy, "A100", 4, 6.0, 312.0));
    b.node(gpu_node("gy-2", gy, "A100", 4, 6.0, 312.0));
    b.node(NodeSpec {
        name: "gy-cpu".into(),
        site: gy,
        healthy: true,
        cpu_milli: 64_000,
        memory_mib: 131_072,
        storage_gib: 1000,
        chip: Some(Chip::Cpu),
        model: "kunpeng".into(),
        architecture: "aarch64".into(),
        price_per_unit_hour: 0.1,
        watts_per_unit: 5.0,
        tflops_per_unit: 2.0,
        ..Default::default()
    });
    b.link(bj, sh, link(25.0));
    b.link(sh, gz, link(30.0));
    b.link(gz, gy, link(20.0));
    b.link(bj, gy, link(45.0));
    b.quota(
        "small",
        Quota {
            gpu_milli: Some(2000),
            ..Default::default()
        },
    );
    b.build().unwrap()
}

fn gpu_task(id: &str, gpus: u32, origin: &str) -> Task {
    Task {
        id: id.into(),
        tenant: "acme".into(),
        origin_region: Some(origin.into()),
        demand: Demand {
            cpu_milli: 4000,
            memory_mib: 16_384,
            gpus,
            gpu_milli: 1000,
            storage_gib: 50,
        },
        est_hours: 2.0,
        ..Default::default()
    }
}

#[test]
fn explanations_add_up_and_the_best_total_wins() {
    let mut cluster = federation();
    let mut sched = Scheduler::new(default_profile(), 7);
    for (origin, gpus) in [("east", 2), ("north", 1), ("south", 8), ("west", 4)] {
        let task = gpu_task("t", gpus, origin);
        let (result, decision) = sched.schedule(&task, &mut cluster, Mode::Explain);
        let decision = decision.unwrap();
        let placement = result.unwrap();
        let feasible: Vec<_> = decision.sites.iter().filter(|s| s.feasible).collect();
        assert!(!feasible.is_empty());
        for s in &decision.sites {
            let sum: f64 = s.factors.iter().map(|f| f.contribution).sum();
            assert!(
                (sum - s.total).abs() < 1e-9,
                "{}: {sum} vs {}",
                s.name,
                s.total
            );
            for f in &s.factors {
                assert!((0.0..=100.0).contains(&f.normalized));
                assert!((f.normalized * f.weight - f.contribution).abs() < 1e-9);
            }
        }
        let best = feasible
            .iter()
            .map(|s| s.total)
            .fold(f64::NEG_INFINITY, f64::max);
        assert_eq!(feasible[0].total, best);
        let chosen = decision.chosen_site.as_deref().unwrap();
        assert_eq!(chosen, feasible[0].name);
        assert_eq!(cluster.site(placement.site).spec.name, chosen);
        assert_eq!(decision.score, Some(best));
    }
}

#[test]
fn the_factors_rank_as_computed_by_hand() {
    let cluster = federation();
    let mut sched = Scheduler::new(default_profile(), 1);
    let task = gpu_task("t", 2, "west");
    let d = sched.explain(&task, &cluster);
    let raw = |site: &str, plugin: &str| {
        d.sites
            .iter()
            .find(|s| s.name == site)
            .unwrap()
            .factors
            .iter()
            .find(|f| f.plugin == plugin)
            .unwrap()
            .raw
    };
    // From gy: gz 20 ms, bj 45 ms, sh via gz 50 ms.
    assert_eq!(
        ["bj", "sh", "gz", "gy"].map(|s| raw(s, "latency")),
        [45.0, 50.0, 20.0, 0.0]
    );
    // 2 GPUs × CNY/GPU-h × 2 h.
    assert_eq!(
        ["bj", "sh", "gz", "gy"].map(|s| raw(s, "price")),
        [40.0, 32.0, 100.0, 24.0]
    );
    // gy: 2 × 0.4 kW × 1.1 × 2 h × 0.35 CNY/kWh = 0.616 CNY.
    assert!((raw("gy", "energy") - 0.616).abs() < 1e-12);
    assert_eq!(raw("gz", "performance"), 989.0);
    assert_eq!(d.chosen_site.as_deref(), Some("gy"));
}

#[test]
fn data_residency_excludes_the_site_that_would_win() {
    let cluster = federation();
    let task = gpu_task("t", 2, "west");
    let winner = Scheduler::new(default_profile(), 3)
        .explain(&task, &cluster)
        .chosen_site
        .unwrap();
    assert_eq!(winner, "gy");

    let resident = Task {
        regions_not_in: vec!["west".into()],
        ..task.clone()
    };
    let d = Scheduler::new(default_profile(), 3).explain(&resident, &cluster);
    let chosen = d.chosen_site.as_deref().unwrap();
    assert_ne!(chosen, "gy");
    let gy = d.sites.iter().find(|s| s.name == "gy").unwrap();
    assert!(!gy.feasible);
    let v = gy
        .verdicts
        .iter()
        .find(|v| v.plugin == residency::NAME)
        .unwrap();
    assert_eq!(v.code, Some(residency::REGION_EXCLUDED));
    assert!(v.forever);
    assert!(
        d.rejections
            .contains(&("residency/region_excluded".to_string(), 1))
    );

    // Allowed regions work the same way.
    let only_east = Task {
        regions_in: vec!["east".into()],
        ..task
    };
    let d = Scheduler::new(default_profile(), 3).explain(&only_east, &cluster);
    assert_eq!(d.chosen_site.as_deref(), Some("sh"));
    assert!(
        d.rejections
            .contains(&("residency/region_not_allowed".to_string(), 3))
    );
}

#[test]
fn unschedulable_tasks_say_why() {
    let mut cluster = federation();
    let mut sched = Scheduler::new(default_profile(), 5);

    // No node has 16 GPUs: a capacity miss, which may heal.
    let (r, d) = sched.schedule(&gpu_task("big", 16, "east"), &mut cluster, Mode::Explain);
    let u = r.unwrap_err();
    assert!(!u.forever);
    assert!(
        u.reasons
            .iter()
            .any(|(k, n)| k == "resources_fit/insufficient_gpu" && *n == 4),
        "{:?}",
        u.reasons
    );
    let d = d.unwrap();
    assert_eq!(d.chosen_site, None);
    assert!(d.sites.iter().all(|s| !s.feasible));
    let bj = &d.sites[0];
    let fit = bj
        .verdicts
        .iter()
        .find(|v| v.plugin == resources_fit::NAME)
        .unwrap();
    assert_eq!(fit.code, Some(resources_fit::INSUFFICIENT_GPU));
    assert!(!fit.forever);
    assert!(fit.detail.as_deref().unwrap().contains("16"));

    // No NPU anywhere: permanent.
    let npu = Task {
        chip: Some(Chip::Npu),
        ..gpu_task("npu", 1, "east")
    };
    let (r, _) = sched.schedule(&npu, &mut cluster, Mode::Fast);
    let u = r.unwrap_err();
    assert!(u.forever);
    assert_eq!(
        u.reasons,
        vec![(
            format!("{}/{}", chip_model::NAME, chip_model::NO_MATCHING_CHIP),
            4
        )]
    );

    // Over quota: every site says so, and it is not permanent.
    let over = Task {
        tenant: "small".into(),
        ..gpu_task("q", 3, "east")
    };
    let (r, _) = sched.schedule(&over, &mut cluster, Mode::Fast);
    let u = r.unwrap_err();
    assert!(!u.forever);
    assert_eq!(
        u.reasons,
        vec![("tenant_quota/quota_exceeded".to_string(), 4)]
    );

    // Nothing was reserved by the misses.
    for s in &cluster.sites {
        assert_eq!(s.free, s.total);
    }
}

#[test]
fn reservations_fill_the_best_site_then_move_on() {
    let mut cluster = federation();
    let mut sched = Scheduler::new(default_profile(), 11);
    let task = gpu_task("t", 4, "west");
    let gy = cluster.site_by_name("gy").unwrap();

    let mut nodes = Vec::new();
    for _ in 0..2 {
        let (r, _) = sched.schedule(&task, &mut cluster, Mode::Fast);
        let p = r.unwrap();
        assert_eq!(p.site, gy);
        assert_eq!(p.gpus.len(), 4);
        nodes.push(cluster.node(p.node).spec.name.clone());
    }
    nodes.sort();
    assert_eq!(nodes, ["gy-1", "gy-2"]);
    assert_eq!(cluster.site(gy).free.whole_gpus, 0);

    // gy is full: it is rejected for capacity and the next site takes the task.
    let (r, d) = sched.schedule(&task, &mut cluster, Mode::Explain);
    let p = r.unwrap();
    assert_ne!(p.site, gy);
    let d = d.unwrap();
    let gy_report = d.sites.iter().find(|s| s.name == "gy").unwrap();
    assert!(!gy_report.feasible);
    assert!(
        gy_report
            .verdicts
            .iter()
            .any(|v| v.code == Some(resources_fit::INSUFFICIENT_GPU))
    );

    // Keep going until everything that can hold 4 GPUs is used: bj 2, sh 2, gz 2 more.
    let mut placed = 3;
    while sched.schedule(&task, &mut cluster, Mode::Fast).0.is_ok() {
        placed += 1;
        assert!(placed <= 8);
    }
    assert_eq!(placed, 8);
    for s in &cluster.sites {
        assert_eq!(s.free.max_node_whole_gpus, 0, "{}", s.spec.name);
    }
}

#[test]
fn the_registry_lists_every_plugin() {
    assert_eq!(plugins::ALL.len(), 16);
    assert_eq!(&plugins::ALL[..plugins::FILTERS.len()], plugins::FILTERS);
}

/// A site whose H800s are free but whose A100s are taken must not pass the site filter for
/// an A100-only task (free capacity is kept per offer, not only per site).
#[test]
fn free_capacity_of_another_model_does_not_make_a_site_feasible() {
    use cpn_sched::task::Chip;
    use cpn_sched::{ClusterBuilder, Mode, NodeSpec, Scheduler, SiteSpec, Task};
    let mut b = ClusterBuilder::new();
    let mixed = b.site(SiteSpec {
        name: "mixed".into(),
        region: "r".into(),
        healthy: true,
        pue: 1.2,
        ..Default::default()
    });
    let other = b.site(SiteSpec {
        name: "other".into(),
        region: "r".into(),
        healthy: true,
        pue: 1.2,
        ..Default::default()
    });
    let gpu_node = |name: &str, site, model: &str| NodeSpec {
        name: name.into(),
        site,
        healthy: true,
        cpu_milli: 64_000,
        memory_mib: 512 * 1024,
        storage_gib: 100,
        chip: Some(Chip::Gpu),
        model: model.into(),
        architecture: "x".into(),
        gpus: 8,
        price_per_unit_hour: 1.0,
        ..Default::default()
    };
    b.node(gpu_node("mixed-a100", mixed, "A100"));
    b.node(gpu_node("mixed-h800", mixed, "H800"));
    b.node(gpu_node("other-a100", other, "A100"));
    let mut cluster = b.build().unwrap();
    let task = |id: &str| Task {
        id: id.into(),
        tenant: "t".into(),
        chip: Some(Chip::Gpu),
        models: vec!["A100".into()],
        demand: cpn_sched::Demand {
            cpu_milli: 1000,
            memory_mib: 1024,
            gpus: 8,
            gpu_milli: 1000,
            storage_gib: 0,
        },
        ..Default::default()
    };
    let mut scheduler = Scheduler::new(cpn_sched::plugins::default_profile(), 1);
    let mut placed = Vec::new();
    for i in 0..2 {
        let (r, _) = scheduler.schedule(&task(&format!("t{i}")), &mut cluster, Mode::Fast);
        placed.push(
            cluster
                .node(r.expect("two A100 nodes exist").node)
                .spec
                .name
                .clone(),
        );
    }
    placed.sort();
    assert_eq!(placed, ["mixed-a100", "other-a100"]);
    let decision = scheduler.explain(&task("t3"), &cluster);
    let mixed_report = decision.sites.iter().find(|s| s.name == "mixed").unwrap();
    assert!(
        !mixed_report.feasible,
        "the free H800 node must not make the site feasible for A100"
    );
    assert!(
        mixed_report
            .verdicts
            .iter()
            .any(|v| v.code == Some("insufficient_gpu"))
    );
}

#[test]
fn a_brief_decision_places_as_fast_does_and_keeps_the_winners_factors_as_explained() {
    let task = gpu_task("t", 2, "east");
    let explained = Scheduler::new(default_profile(), 9).explain(&task, &federation());

    let mut fast_cluster = federation();
    let fast = Scheduler::new(default_profile(), 9)
        .schedule(&task, &mut fast_cluster, Mode::Fast)
        .0
        .unwrap();
    let mut brief_cluster = federation();
    let (placed, brief) =
        Scheduler::new(default_profile(), 9).schedule(&task, &mut brief_cluster, Mode::Brief);
    let (placed, brief) = (placed.unwrap(), brief.expect("a brief record"));
    assert_eq!(placed, fast, "the same placement as the fast path");
    assert_eq!(brief.chosen_site, explained.chosen_site);
    assert_eq!(brief.chosen_node, explained.chosen_node);
    assert_eq!(brief.margin, explained.margin);
    assert!(brief.nodes.is_empty(), "no node reports: it is brief");
    assert!(brief.sites.len() <= cpn_sched::cycle::BRIEF_SITES);
    // The brief's sites are explain's best feasible sites, with the same factors.
    for (b, e) in brief.sites.iter().zip(&explained.sites) {
        assert_eq!(b.name, e.name);
        assert_eq!(b.total, e.total);
        assert_eq!(b.factors, e.factors);
        let sum: f64 = b.factors.iter().map(|f| f.contribution).sum();
        assert!((sum - b.total).abs() < 1e-9);
    }
}
