//! `05-BestFit`: raw = ⌊100·(1 − [0.5·(free CPU − cpu)/128000 + 0.5·(free GPU milli −
//! GPUs·milli)/8000])⌋ (the tightest node scores highest), then min–max normalised over the
//! feasible nodes to an integer 0..=100 (`(raw − min)·100 / (max − min)`, all 0 when every
//! node scores the same). The normalisation's integer division merges near scores into ties,
//! so it is done here, over the feasible nodes found in `prepare`. GPUs inside the node:
//! best fit.

use super::{MAX_SPEC_CPU, MAX_SPEC_GPU, best_fit_gpus, feasible};
use crate::cluster::{Cluster, GpuAssignment, Node, NodeIdx};
use crate::framework::{Better, CycleState, GpuPicker, NodeScore, Plugin};
use crate::task::{Demand, Task};

pub const NAME: &str = "gpu_best_fit";

#[derive(Debug, Clone, Copy, Default)]
pub struct BestFit;

/// Lowest and highest raw score over the feasible nodes of this cycle.
struct Range {
    min: i64,
    max: i64,
}

/// The raw score of `d` on `node`, in the simulator's order of operations.
pub fn raw(node: &Node, d: &Demand) -> i64 {
    let free = [node.cpu_free() as f64, node.gpu_milli_free() as f64];
    let req = [d.cpu_milli as f64, d.gpu_milli_total() as f64];
    let max = [MAX_SPEC_CPU, MAX_SPEC_GPU];
    let mut s = 0.0;
    for i in 0..2 {
        s += (free[i] - req[i]) / max[i] * 0.5;
    }
    ((1.0 - s) * 100.0) as i64
}

/// `raw` mapped onto 0..=100 by integer min–max normalisation.
pub fn normalized(raw: i64, min: i64, max: i64) -> i64 {
    if max == min {
        0
    } else {
        (raw - min) * 100 / (max - min)
    }
}

impl Plugin for BestFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, task: &Task, cluster: &Cluster, state: &mut CycleState) {
        let (mut min, mut max) = (i64::MAX, i64::MIN);
        for n in 0..cluster.nodes.len() as NodeIdx {
            if feasible(state, task, cluster, n) {
                let r = raw(cluster.node(n), &task.demand);
                min = min.min(r);
                max = max.max(r);
            }
        }
        state.put(Range { min, max });
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for BestFit {
    fn score_node(&self, state: &CycleState, task: &Task, cluster: &Cluster, node: NodeIdx) -> f64 {
        let r = raw(cluster.node(node), &task.demand);
        match state.get::<Range>() {
            Some(range) if range.min <= range.max => normalized(r, range.min, range.max) as f64,
            _ => r as f64,
        }
    }
    fn better(&self) -> Better {
        Better::Higher
    }
}

impl GpuPicker for BestFit {
    fn pick(&self, cluster: &Cluster, node: NodeIdx, task: &Task) -> Option<GpuAssignment> {
        best_fit_gpus(cluster.node(node), &task.demand)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::cycle::{Mode, Scheduler};
    use crate::plugins::gpu::tests::{set_gpus, task};
    use crate::plugins::gpu::{GpuPolicy, TargetWorkload, profile};
    use crate::plugins::testkit::{gpu_node, site, state};
    use std::sync::Arc;

    #[test]
    fn tightest_node_wins_after_integer_normalisation() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("a", s, "G2", 8)); // 16 cores, 8 GPUs
        b.node(gpu_node("b", s, "G2", 8));
        b.node(gpu_node("c", s, "G2", 8));
        b.node(gpu_node("full", s, "G2", 1));
        let mut c = b.build().unwrap();
        set_gpus(&mut c, 1, &[0, 0, 0, 0, 0, 0, 0, 600]);
        set_gpus(&mut c, 2, &[0, 0, 0, 0, 0, 0, 1000, 1000]);
        set_gpus(&mut c, 3, &[100]);
        let t = task(1000, 1, 500);
        // a: 1 − [0.5·15000/128000 + 0.5·7500/8000] = 1 − 0.05859375 − 0.46875 → 47.
        assert_eq!(raw(c.node(0), &t.demand), 47);
        // b: 1 − [0.05859375 + 0.5·100/8000 = 0.00625] → 93.
        assert_eq!(raw(c.node(1), &t.demand), 93);
        // c: 1 − [0.05859375 + 0.5·1500/8000 = 0.09375] → 84.
        assert_eq!(raw(c.node(2), &t.demand), 84);
        // Normalised over a, b, c (full is infeasible): (r − 47)·100 / 46.
        let st = state(&t, &c, &BestFit);
        let score = |n| BestFit.score_node(&st, &t, &c, n);
        assert_eq!(score(0), 0.0);
        assert_eq!(score(1), 100.0);
        assert_eq!(score(2), 80.0); // 37·100/46 = 80.4
        assert_eq!(normalized(5, 5, 5), 0);

        let w = Arc::new(TargetWorkload::from_counts([]));
        let mut sched = Scheduler::new(profile(GpuPolicy::BestFit, w, 1), 1);
        let p = sched.schedule(&t, &mut c, Mode::Fast).0.unwrap();
        assert_eq!((p.node, p.gpus), (1, vec![(7, 500)]));
    }
}
