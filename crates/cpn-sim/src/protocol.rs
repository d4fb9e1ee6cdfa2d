//! The replay protocol of the GPU-trace benchmark (BENCHMARK.md §3, §3.1): the 1213 GPU
//! nodes empty; the tasks sorted by name, shuffled with the run's seed, inflated to 130 % of
//! the cluster's GPU capacity (with the simulator's stop-test quirk), placed one by one by
//! the real scheduler under one policy, failures dropped; after every task the arrived and
//! allocated GPU, and the fragmentation of the target workload, are logged; the log is then
//! discretised onto integer arrived % ∈ [0, 130] as the authors' merge scripts do.

use crate::engine::{Engine, EventKind, Outcome, SimTask, Time};
use crate::policy;
use crate::rng::Rng;
use crate::trace::{self, NodeRow, PodRow};
use cpn_sched::{Cluster, Scheduler, Task};
use std::sync::Arc;

/// Inflation target: 130 % of the cluster's GPU capacity (`-tune 1.3`).
pub const TUNE: f64 = 1.3;
/// The discretised curves run over arrived % = 0, 1, …, `X_MAX`.
pub const X_MAX: usize = 130;

/// One trace ready to replay: the empty cluster, the tasks sorted by name, and the target
/// workload of FGD computed from the original (not inflated) task list.
#[derive(Clone)]
pub struct Trace {
    pub name: String,
    pub nodes: Vec<NodeRow>,
    /// Sorted by name.
    pub pods: Vec<PodRow>,
    /// `pods` as scheduler tasks, same order.
    pub tasks: Vec<Task>,
    pub cluster: Cluster,
    /// GPU capacity in milli-GPU (6212 × 1000 for `gpu_node`).
    pub capacity_milli: u64,
    pub target: Arc<policy::TargetWorkload>,
}

impl Trace {
    pub fn new(name: impl Into<String>, nodes: Vec<NodeRow>, mut pods: Vec<PodRow>) -> Trace {
        pods.sort_by(|a, b| a.name.cmp(&b.name));
        let tasks: Vec<Task> = pods.iter().map(PodRow::to_task).collect();
        let target = Arc::new(policy::target_workload(&tasks));
        Trace {
            name: name.into(),
            cluster: trace::build_cluster(&nodes),
            capacity_milli: trace::gpu_capacity_milli(&nodes),
            nodes,
            pods,
            tasks,
            target,
        }
    }
}

/// The arrival order of one run: indices into the name-sorted `pods`. Shuffles them all,
/// then, below `tune × capacity`, appends uniform draws (with replacement) until the next
/// draw would pass it — the stop test adds the draw's *per-GPU* `gpu_milli` while the total
/// adds `num_gpu × gpu_milli`, as the simulator does; above it, removes random tasks until
/// the total is at most the target.
pub fn arrival_order(pods: &[PodRow], capacity_milli: u64, tune: f64, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..pods.len()).collect();
    rng.shuffle(&mut order);
    if pods.is_empty() || tune <= 0.0 {
        return order;
    }
    let target = tune * capacity_milli as f64;
    let mut total: u64 = pods.iter().map(PodRow::gpu_demand).sum();
    if (total as f64) < target {
        loop {
            let i = rng.index(pods.len());
            if (total + pods[i].gpu_milli as u64) as f64 > target {
                break;
            }
            total += pods[i].gpu_demand();
            order.push(i);
        }
    } else {
        while total as f64 > target && !order.is_empty() {
            let k = rng.index(order.len());
            total -= pods[order.remove(k)].gpu_demand();
        }
    }
    order
}

/// What is logged after every task (all in %).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// GPU demand of every task processed so far, failed ones included, / capacity.
    pub arrived: f64,
    /// GPU milli held by placed tasks / capacity.
    pub allocated: f64,
    /// Σ_n F_n / capacity.
    pub frag_amount: f64,
    /// Σ_n F_n / idle GPU milli (0 when nothing is idle).
    pub frag_rate: f64,
}

/// Discretised curves: index x holds the value at arrived ≈ x % (`None` when no logged
/// event is near x).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Curve {
    pub allocated: Vec<Option<f64>>,
    pub frag_amount: Vec<Option<f64>>,
    pub frag_rate: Vec<Option<f64>>,
}

impl Curve {
    /// Unallocated GPU % at arrived = x %.
    pub fn unallocated(&self, x: usize) -> Option<f64> {
        self.allocated.get(x).copied().flatten().map(|a| 100.0 - a)
    }
}

/// Python's `round(x)`: to the nearest integer, halves to even (the merge scripts round
/// the arrived ratio with it).
pub fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 && (r as i64) % 2 != 0 {
        (r - x.signum()) as i64
    } else {
        r as i64
    }
}

/// §3.1: for each integer x ∈ [0, `X_MAX`], the mean over logged events whose arrived %
/// rounds to x; if there are none, the mean over events whose rounded arrived % is within
/// x ± 1; if still none, `None`.
pub fn discretise(samples: &[Sample]) -> Curve {
    let buckets = X_MAX + 2;
    // Per rounded arrived %: count and sums of the three metrics.
    let mut count = vec![0u32; buckets];
    let mut sums = vec![[0.0f64; 3]; buckets];
    for s in samples {
        let k = round_half_even(s.arrived);
        if k < 0 || k as usize >= buckets {
            continue;
        }
        let k = k as usize;
        count[k] += 1;
        sums[k][0] += s.allocated;
        sums[k][1] += s.frag_amount;
        sums[k][2] += s.frag_rate;
    }
    let mut curve = Curve {
        allocated: Vec::with_capacity(X_MAX + 1),
        frag_amount: Vec::with_capacity(X_MAX + 1),
        frag_rate: Vec::with_capacity(X_MAX + 1),
    };
    for x in 0..=X_MAX {
        let window = if count[x] > 0 {
            x..x + 1
        } else {
            x.saturating_sub(1)..x + 2
        };
        let n: u32 = count[window.clone()].iter().sum();
        let mean = |m: usize| -> Option<f64> {
            (n > 0).then(|| sums[window.clone()].iter().map(|s| s[m]).sum::<f64>() / n as f64)
        };
        curve.allocated.push(mean(0));
        curve.frag_amount.push(mean(1));
        curve.frag_rate.push(mean(2));
    }
    curve
}

/// One run of the protocol.
#[derive(Debug, Clone)]
pub struct RunResult {
    pub trace: String,
    pub policy: String,
    pub seed: u64,
    /// Tasks replayed (after inflation).
    pub tasks: usize,
    pub placed: usize,
    pub failed: usize,
    pub curve: Curve,
    /// The per-task log, when asked for.
    pub samples: Option<Vec<Sample>>,
}

/// Replays `trace` under `policy` with `seed`: §3 steps 4–9, then §3.1's discretisation.
pub fn run(trace: &Trace, policy_name: &str, seed: u64, keep_samples: bool) -> RunResult {
    match run_until(trace, policy_name, seed, keep_samples, &|| false) {
        Some(result) => result,
        None => unreachable!("a run that is never told to stop finishes"),
    }
}

/// [`run`], asking `stop` before the run and after each simulated event (so it should be
/// cheap, an atomic flag's load, say); `None` as soon as it answers `true`, the run left
/// unfinished. The server's simulation jobs stop a cancelled run with it.
pub fn run_until(
    trace: &Trace,
    policy_name: &str,
    seed: u64,
    keep_samples: bool,
    stop: &dyn Fn() -> bool,
) -> Option<RunResult> {
    if stop() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let order = arrival_order(&trace.pods, trace.capacity_milli, TUNE, &mut rng);
    // The same stream then seeds the fixed node order and the policy's own randomness.
    let sched_seed = rng.next_u64();
    let profile = policy::profile(policy_name, trace.target.clone(), sched_seed);
    let scheduler = Scheduler::new(profile, sched_seed);
    let tasks: Vec<SimTask> = order
        .iter()
        .map(|&i| SimTask {
            task: trace.tasks[i].clone(),
            duration: None,
        })
        .collect();
    let n = tasks.len();
    let mut engine = Engine::new(trace.cluster.clone(), scheduler, tasks);
    for k in 0..n {
        engine.push(k as Time, EventKind::Arrival(k));
    }
    let capacity = trace.capacity_milli.max(1) as f64;
    let mut frag = policy::FragmentationTracker::new(engine.cluster(), &trace.target);
    let (mut arrived, mut used) = (0u64, 0u64);
    let (mut placed, mut failed) = (0usize, 0usize);
    let mut samples = Vec::with_capacity(n);
    while let Some(outcome) = engine.step() {
        if stop() {
            return None;
        }
        match outcome {
            Outcome::Placed {
                task, placement, ..
            } => {
                let d = engine.tasks()[task].task.demand.gpu_milli_total();
                arrived += d;
                used += d;
                placed += 1;
                frag.update(engine.cluster(), placement.node);
            }
            Outcome::Failed { task, .. } => {
                arrived += engine.tasks()[task].task.demand.gpu_milli_total();
                failed += 1;
            }
            _ => continue,
        }
        let f = frag.fragmentation();
        samples.push(Sample {
            arrived: 100.0 * arrived as f64 / capacity,
            allocated: 100.0 * used as f64 / capacity,
            frag_amount: f.amount_pct(trace.capacity_milli),
            frag_rate: f.rate_pct(),
        });
    }
    Some(RunResult {
        trace: trace.name.clone(),
        policy: policy_name.to_string(),
        seed,
        tasks: n,
        placed,
        failed,
        curve: discretise(&samples),
        samples: keep_samples.then_some(samples),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, num_gpu: u32, gpu_milli: u32) -> PodRow {
        PodRow {
            name: name.into(),
            cpu_milli: 1000,
            memory_mib: 0,
            num_gpu,
            gpu_milli,
            gpu_spec: Vec::new(),
            creation_time: None,
            deletion_time: None,
        }
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(0.5), 0);
        assert_eq!(round_half_even(1.5), 2);
        assert_eq!(round_half_even(2.5), 2);
        assert_eq!(round_half_even(2.5000001), 3);
        assert_eq!(round_half_even(99.49), 99);
    }

    #[test]
    fn discretisation_averages_and_falls_back_to_the_window() {
        let s = |arrived: f64, allocated: f64| Sample {
            arrived,
            allocated,
            frag_amount: 0.0,
            frag_rate: 0.0,
        };
        // Nothing rounds to 2: x = 2 takes the events at 1 and 3.
        let c = discretise(&[s(0.9, 1.0), s(1.2, 3.0), s(3.0, 8.0)]);
        assert_eq!(c.allocated[1], Some(2.0));
        assert_eq!(c.allocated[2], Some(4.0));
        assert_eq!(c.allocated[3], Some(8.0));
        assert_eq!(c.allocated[4], Some(8.0));
        assert_eq!(c.allocated[5], None);
        assert_eq!(c.unallocated(3), Some(92.0));
    }

    #[test]
    fn inflation_appends_until_the_quirky_stop_test_and_deflation_removes() {
        let pods = vec![pod("a", 2, 1000), pod("b", 1, 500), pod("c", 0, 0)];
        // 2.5 GPUs of demand against 10 GPUs × 1.3 = 13.
        let mut rng = Rng::new(1);
        let order = arrival_order(&pods, 10_000, 1.3, &mut rng);
        let total: u64 = order.iter().map(|&i| pods[i].gpu_demand()).sum();
        assert!(total as f64 <= 13_000.0);
        // The stop test: the next draw (at most 1000 milli per GPU) would pass the target.
        assert!(13_000.0 - (total as f64) < 1_000.0);
        let mut first: Vec<usize> = order[..3].to_vec();
        first.sort();
        assert_eq!(first, vec![0, 1, 2], "originals first, each once");
        let order = arrival_order(&pods, 1_000, 1.3, &mut Rng::new(2));
        let total: u64 = order.iter().map(|&i| pods[i].gpu_demand()).sum();
        assert!(total <= 1_300);
    }
}
