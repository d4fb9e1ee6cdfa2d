//! A small two-site cluster and a one-GPU task shared by the crate's tests.

use cpn_sched::task::{Chip, Demand};
use cpn_sched::{Cluster, ClusterBuilder, NodeSpec, SiteSpec, Task};

/// `hot`: PUE 1.5, 0.3 CNY/kWh, 8 GPUs on two nodes. `green`: PUE 1.2, 0.9 CNY/kWh, 2 GPUs.
pub fn cluster() -> Cluster {
    let mut b = ClusterBuilder::new();
    let sites = [("hot", "east", 1.5, 0.3, 4), ("green", "west", 1.2, 0.9, 1)];
    for (name, region, pue, price, gpus) in sites {
        let s = b.site(SiteSpec {
            name: name.into(),
            region: region.into(),
            labels: [("tier".to_string(), "gold".to_string())].into(),
            pue,
            electricity_price: price,
            healthy: true,
            ..Default::default()
        });
        for i in 1..=2 {
            b.node(NodeSpec {
                name: format!("{name}-{i}"),
                site: s,
                healthy: true,
                cpu_milli: 32_000,
                memory_mib: 256 * 1024,
                storage_gib: 1000,
                chip: Some(Chip::Gpu),
                model: "A100".into(),
                architecture: "x86_64".into(),
                gpus,
                tflops_per_unit: 312.0,
                price_per_unit_hour: 10.0,
                watts_per_unit: 400.0,
                ..Default::default()
            });
        }
    }
    b.build().expect("test cluster builds")
}

pub fn task() -> Task {
    Task {
        id: "t1".into(),
        tenant: "lab-a".into(),
        business: Some("training".into()),
        origin_region: Some("east".into()),
        demand: Demand {
            cpu_milli: 4000,
            memory_mib: 16 * 1024,
            gpus: 1,
            gpu_milli: 1000,
            storage_gib: 0,
        },
        est_hours: 2.0,
        labels: [("team".to_string(), "vision".to_string())].into(),
        ..Default::default()
    }
}
