//! The GPU policies against the real openb traces (BENCHMARK.md §4.1 and §4.5 fixtures).
//! The trace folder is looked up in `CPN_OPENB_DIR`, then in `shared/data/alibaba-gpu-v2023`
//! above the workspace; the tests pass vacuously (with a note) when it is absent.

use cpn_sched::cluster::{ClusterBuilder, NodeSpec, SiteSpec};
use cpn_sched::cycle::{Mode, Scheduler};
use cpn_sched::plugins::gpu::{
    FragmentationTracker, GpuPolicy, TargetWorkload, cluster_fragmentation, profile,
};
use cpn_sched::task::{Chip, Demand, Task};
use cpn_sched::{Cluster, NodeIdx};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

fn dir() -> Option<PathBuf> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    std::env::var_os("CPN_OPENB_DIR")
        .map(PathBuf::from)
        .into_iter()
        .chain(
            manifest
                .ancestors()
                .map(|a| a.join("shared/data/alibaba-gpu-v2023")),
        )
        .find(|d| d.join("openb_node_list_gpu_node.csv").is_file())
}

fn rows(path: PathBuf) -> Vec<Vec<String>> {
    std::fs::read_to_string(path)
        .unwrap()
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
    let Some(dir) = dir() else {
        eprintln!("openb traces not found: skipped");
        return;
    };
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

/// A whole FGD run over the default trace inflated to 130 % (a simple seeded shuffle, not
/// the Go stream): prints the time per task. `cargo test --release -- --ignored --nocapture`.
#[test]
#[ignore]
fn fgd_run_timing() {
    let Some(dir) = dir() else {
        eprintln!("openb traces not found: skipped");
        return;
    };
    let base = cluster(&dir);
    let orig = tasks(&dir, "default");
    let w = Arc::new(TargetWorkload::from_tasks(&orig));
    let mut x = 42u64;
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        x >> 33
    };
    let mut list = orig.clone();
    for i in (1..list.len()).rev() {
        list.swap(i, next() as usize % (i + 1));
    }
    let target = 1.3 * 6_212_000.0;
    let mut demand: f64 = list.iter().map(|t| t.demand.gpu_milli_total() as f64).sum();
    while demand < target {
        let t = orig[next() as usize % orig.len()].clone();
        demand += t.demand.gpu_milli_total() as f64;
        list.push(t);
    }
    for policy in GpuPolicy::ALL {
        let mut c = base.clone();
        let mut tracker = FragmentationTracker::new(&c, &w);
        let mut s = Scheduler::new(profile(policy, w.clone(), 42), 42);
        let start = Instant::now();
        let (mut placed, mut used) = (0, 0u64);
        let mut at100 = None;
        let mut arrived = 0u64;
        for t in &list {
            arrived += t.demand.gpu_milli_total();
            if let Ok(p) = s.schedule(t, &mut c, Mode::Fast).0 {
                placed += 1;
                used += t.demand.gpu_milli_total();
                tracker.update(&c, p.node as NodeIdx);
            }
            if at100.is_none() && arrived >= 6_212_000 {
                at100 = Some((100.0 - used as f64 / 62_120.0, tracker.fragmentation()));
            }
        }
        let el = start.elapsed();
        let (unalloc, f) = at100.unwrap();
        eprintln!(
            "{policy:>10}: {} tasks, {placed} placed, {:.1} s, {:.0} µs/task; at 100 %: unallocated {unalloc:.2} %, frag {:.2} %",
            list.len(),
            el.as_secs_f64(),
            el.as_secs_f64() * 1e6 / list.len() as f64,
            f.amount_pct(6_212_000)
        );
    }
}
