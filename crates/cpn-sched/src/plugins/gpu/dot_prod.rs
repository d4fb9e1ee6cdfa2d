//! `02-DotProd` (Tetris-style alignment, `-dimext merge -norm max`): the node's free vector
//! (free CPU, total free GPU milli) and the task's demand (CPU, GPUs × milli), both divided
//! element-wise by (`MAX_SPEC_CPU`, `MAX_SPEC_GPU`); score ⌊100·(1 − v_node·v_task / 2)⌋.
//! Higher wins, so the node whose free vector has the smallest dot product with the demand
//! is preferred. GPUs inside the node: best fit.

use super::{MAX_SPEC_CPU, MAX_SPEC_GPU, best_fit_gpus};
use crate::cluster::{Cluster, GpuAssignment, Node, NodeIdx};
use crate::framework::{Better, CycleState, GpuPicker, NodeScore, Plugin};
use crate::task::{Demand, Task};

pub const NAME: &str = "gpu_dot_prod";

#[derive(Debug, Clone, Copy, Default)]
pub struct DotProd;

/// The integer score of `d` on `node` (in the simulator's order of operations).
pub fn score(node: &Node, d: &Demand) -> i64 {
    let v_node = [
        node.cpu_free() as f64 / MAX_SPEC_CPU,
        node.gpu_milli_free() as f64 / MAX_SPEC_GPU,
    ];
    let v_task = [
        d.cpu_milli as f64 / MAX_SPEC_CPU,
        d.gpu_milli_total() as f64 / MAX_SPEC_GPU,
    ];
    let dot = v_node[0] * v_task[0] + v_node[1] * v_task[1];
    let s = 1.0 - dot / 2.0;
    (100.0 * s) as i64
}

impl Plugin for DotProd {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for DotProd {
    fn score_node(
        &self,
        _state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> f64 {
        score(cluster.node(node), &task.demand) as f64
    }
    fn better(&self) -> Better {
        Better::Higher
    }
}

impl GpuPicker for DotProd {
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
    use crate::plugins::testkit::{gpu_node, site};
    use std::sync::Arc;

    #[test]
    fn smallest_dot_product_wins_and_gpus_are_best_fit() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("a", s, "G2", 8)); // 16 cores, 8000 milli free
        b.node(gpu_node("b", s, "G2", 8));
        let mut c = b.build().unwrap();
        c.nodes[1].cpu_used = 8000;
        set_gpus(&mut c, 1, &[0, 0, 0, 0, 0, 0, 300, 700]);
        c.refresh_site(0);
        // Task: 32 cores, 1 × 500 milli. v_task = (0.25, 0.0625).
        let t = task(32_000, 1, 500);
        // a: v = (0.125, 1): dot = 0.03125 + 0.0625 = 0.09375 → ⌊100·(1 − 0.046875)⌋ = 95.
        assert_eq!(score(c.node(0), &t.demand), 95);
        // b: v = (0.0625, 0.125): dot = 0.015625 + 0.0078125 → ⌊100·0.98828125⌋ = 98.
        assert_eq!(score(c.node(1), &t.demand), 98);
        // Best fit on b: the 700 GPU.
        assert_eq!(
            DotProd.pick(&c, 1, &task(1000, 1, 500)),
            Some(vec![(7, 500)])
        );
        // CPU-only: only CPU counts. a: 1 − (0.125·0.25)/2 = 0.984375 → 98.
        assert_eq!(score(c.node(0), &task(32_000, 0, 0).demand), 98);

        // The profile places the 500-milli task on b (fits: 8 cores free ≥ 1 core).
        let w = Arc::new(TargetWorkload::from_counts([]));
        let mut sched = Scheduler::new(profile(GpuPolicy::DotProd, w, 1), 1);
        let p = sched
            .schedule(&task(1000, 1, 500), &mut c, Mode::Fast)
            .0
            .unwrap();
        assert_eq!((p.node, p.gpus), (1, vec![(7, 500)]));
    }
}
