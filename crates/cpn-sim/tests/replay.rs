//! The GPU-trace protocol on a tiny hand-made trace replays deterministically, and on the
//! real default trace the inflation reaches 130 % of GPU capacity to within one task.

use cpn_sim::protocol::{self, TUNE, Trace, arrival_order};
use cpn_sim::published::POLICIES;
use cpn_sim::rng::Rng;
use cpn_sim::trace::{parse_nodes, parse_pods};
use std::path::PathBuf;

fn tiny() -> Trace {
    let nodes = parse_nodes(
        "nodes.csv",
        "sn,cpu_milli,memory_mib,gpu,model\n\
         n0,32000,131072,8,G2\n\
         n1,16000,65536,4,T4\n\
         n2,16000,65536,2,P100\n\
         n3,8000,32768,1,P100\n\
         n4,64000,262144,8,G3\n",
    )
    .unwrap();
    let mut pods = String::from("name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec\n");
    let shapes = [
        (4000, 1, 500, ""),
        (8000, 1, 1000, ""),
        (2000, 0, 0, ""),
        (6000, 1, 250, "T4|P100"),
        (16000, 2, 1000, ""),
        (3000, 1, 810, ""),
        (12000, 4, 1000, "G2|G3"),
    ];
    for i in 0..30 {
        let (cpu, g, m, spec) = shapes[i * 7 % shapes.len()];
        pods.push_str(&format!("p{i:02},{cpu},1024,{g},{m},{spec}\n"));
    }
    Trace::new("tiny", nodes, parse_pods("pods.csv", &pods).unwrap())
}

#[test]
fn same_seed_same_curve_for_every_policy() {
    let trace = tiny();
    for policy in POLICIES {
        let a = protocol::run(&trace, policy, 42, true);
        let b = protocol::run(&trace, policy, 42, true);
        assert_eq!(a.curve, b.curve, "{policy}");
        assert_eq!(a.samples, b.samples, "{policy}");
        assert_eq!((a.placed, a.failed), (b.placed, b.failed));
        assert_eq!(a.placed + a.failed, a.tasks);
        let samples = a.samples.unwrap();
        assert_eq!(samples.len(), a.tasks, "one sample per task");
        // Monotone arrived, allocated never above arrived, inflation to ~130 %.
        for w in samples.windows(2) {
            assert!(w[1].arrived >= w[0].arrived);
        }
        for s in &samples {
            assert!(s.allocated <= s.arrived + 1e-9);
            assert!((0.0..=100.0 + 1e-9).contains(&s.frag_rate), "{s:?}");
        }
        let end = samples.last().unwrap().arrived;
        assert!(
            end <= 130.0 + 1e-9 && end > 100.0,
            "{policy}: ends at {end}"
        );
        assert_eq!(a.curve.allocated.len(), protocol::X_MAX + 1);
    }
    // Another seed is another order.
    let a = protocol::run(&trace, "random", 42, true);
    let c = protocol::run(&trace, "random", 43, true);
    assert_ne!(a.samples, c.samples);
}

#[test]
fn a_run_stops_when_asked_and_otherwise_is_the_same_run() {
    use std::cell::Cell;
    let trace = tiny();
    let asked = Cell::new(0usize);
    let whole = protocol::run_until(&trace, "fgd", 42, true, &|| {
        asked.set(asked.get() + 1);
        false
    })
    .expect("never told to stop");
    let plain = protocol::run(&trace, "fgd", 42, true);
    assert_eq!(whole.curve, plain.curve);
    assert_eq!(whole.samples, plain.samples);
    assert!(
        asked.get() > whole.tasks,
        "asked once per event, got {}",
        asked.get()
    );
    // Told to stop half way: no result, and no more questions after the answer.
    let half = asked.get() / 2;
    asked.set(0);
    let stopped = protocol::run_until(&trace, "fgd", 42, true, &|| {
        asked.set(asked.get() + 1);
        asked.get() > half
    });
    assert!(stopped.is_none());
    assert_eq!(asked.get(), half + 1);
    assert!(protocol::run_until(&trace, "fgd", 42, false, &|| true).is_none());
}

/// The repository's copy of the traces.
fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../data/alibaba-gpu-v2023")
}

#[test]
fn inflation_of_the_default_trace_reaches_130_percent_within_one_task() {
    let dir = data_dir();
    let read = |file: &str| {
        let path = dir.join(file);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    let pods = read("openb_pod_list_default.csv");
    let nodes = read("openb_node_list_gpu_node.csv");
    let nodes = parse_nodes("gpu_node.csv", &nodes).unwrap();
    let mut pods = parse_pods("default.csv", &pods).unwrap();
    pods.sort_by(|a, b| a.name.cmp(&b.name));
    let capacity = cpn_sim::trace::gpu_capacity_milli(&nodes);
    assert_eq!(capacity, 6_212_000);
    let target = TUNE * capacity as f64;
    let largest = pods.iter().map(|p| p.gpu_demand()).max().unwrap() as f64;
    for seed in 42..52 {
        let order = arrival_order(&pods, capacity, TUNE, &mut Rng::new(seed));
        let total: u64 = order.iter().map(|&i| pods[i].gpu_demand()).sum();
        assert!(
            (total as f64 - target).abs() <= largest,
            "seed {seed}: {total} vs {target}"
        );
        // Every original task comes first, once.
        let mut first = order[..pods.len()].to_vec();
        first.sort();
        assert!(first.iter().enumerate().all(|(i, &j)| i == j));
        assert!(order.len() > pods.len());
    }
}
