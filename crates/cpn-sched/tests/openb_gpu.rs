//! The GPU policies against the real openb traces (BENCHMARK.md §4.1 and §4.5 fixtures).
//! The traces are the repository's `data/alibaba-gpu-v2023` (or the folder `CPN_OPENB_DIR`
//! names); a missing file fails the test, never skips it.

use cpn_sched::Cluster;
use cpn_sched::cluster::{ClusterBuilder, NodeSpec, SiteSpec};
use cpn_sched::plugins::gpu::{TargetWorkload, cluster_fragmentation};
use cpn_sched::task::{Chip, Demand, Task};
use std::path::PathBuf;

fn dir() -> PathBuf {
    std::env::var_os("CPN_OPENB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/alibaba-gpu-v2023")
        })
}

fn rows(path: PathBuf) -> Vec<Vec<String>> {
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .skip(1)
        .filter(|l| !l.is_empty())
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn cluster(dir: &std::path::Path) -> Cluster {
    let mut b = ClusterBuilder::new();
    let s = b.site(SiteSpec {
        name: "openb".into(),
        healthy: true,
        pue: 1.0,
        ..Default::default()
    });
    for r in rows(dir.join("openb_node_list_gpu_node.csv")) {
        b.node(NodeSpec {
            name: r[0].clone(),
            site: s,
            healthy: true,
            cpu_milli: r[1].parse().unwrap(),
            memory_mib: r[2].parse().unwrap(),
            gpus: r[3].parse().unwrap(),
            chip: Some(Chip::Gpu),
            model: r[4].clone(),
            architecture: "x86_64".into(),
            ..Default::default()
        });
    }
    b.build().unwrap()
}

fn tasks(dir: &std::path::Path, trace: &str) -> Vec<Task> {
    rows(dir.join(format!("openb_pod_list_{trace}.csv")))
        .into_iter()
        .map(|r| {
            let gpus: u32 = r[3].parse().unwrap();
            Task {
                id: r[0].clone(),
                tenant: "openb".into(),
                demand: Demand {
                    cpu_milli: r[1].parse().unwrap(),
                    memory_mib: r[2].parse().unwrap(),
                    gpus,
                    gpu_milli: if gpus == 0 { 0 } else { r[4].parse().unwrap() },
                    storage_gib: 0,
                },
                models: r
                    .get(5)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.split('|').map(str::to_string).collect())
                    .unwrap_or_default(),
                ..Default::default()
            }
        })
        .collect()
}

#[test]
fn typical_pods_and_empty_cluster_fragmentation_match_the_fixtures() {
    let dir = dir();
    let c = cluster(&dir);
    assert_eq!(c.nodes.len(), 1213);
    let capacity: u64 = c.nodes.iter().map(|n| n.spec.gpus as u64 * 1000).sum();
    assert_eq!(capacity, 6_212_000);
    let w = TargetWorkload::from_tasks(&tasks(&dir, "default"));
    assert_eq!((w.len(), w.input_shapes()), (35, 91));
    let top: Vec<(u64, u32, u32, f64)> = w.shapes()[..10]
        .iter()
        .enumerate()
        .map(|(i, (s, _))| {
            let p = (w.popularity(i) * 10_000.0).round() / 10_000.0;
            (s.cpu_milli, s.gpu_milli, s.num_gpu, p)
        })
        .collect();
    assert_eq!(
        top,
        [
            (3152, 810, 1, 0.1348),
            (11300, 1000, 1, 0.1125),
            (11400, 1000, 1, 0.0771),
            (3152, 1000, 1, 0.0605),
            (11908, 470, 1, 0.05),
            (12500, 0, 0, 0.0471),
            (8000, 470, 1, 0.0464),
            (12000, 1000, 1, 0.042),
            (32000, 0, 0, 0.0373),
            (18708, 1000, 1, 0.0328),
        ]
    );
    for (trace, taken, shapes, rate) in [
        ("default", 35, 91, 13.94),
        ("cpu050", 35, 89, 5.55),
        ("gpushare100", 21, 49, 13.64),
    ] {
        let w = TargetWorkload::from_tasks(&tasks(&dir, trace));
        assert_eq!((w.len(), w.input_shapes()), (taken, shapes), "{trace}");
        let f = cluster_fragmentation(&c, &w);
        assert_eq!(f.idle_milli, capacity);
        let r = (f.rate_pct() * 100.0).round() / 100.0;
        assert_eq!(r, rate, "{trace}: {}", f.rate_pct());
    }
}
