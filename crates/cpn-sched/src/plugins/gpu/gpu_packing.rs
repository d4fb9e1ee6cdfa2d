//! `04-GpuPacking`: prefers GPUs already in use, then nodes already in use, then empty
//! nodes. CPU-only tasks score 0 everywhere. On a node whose GPUs are all free:
//! max(33 − free GPUs, free GPUs). Otherwise the task's GPUs are taken smallest-free-first
//! among those that hold its share; if any of them is fully free: max(50 − fully free GPUs
//! used, 33); else max(100 − ⌊Σ_used ⌊free·100/1000⌋ / 10⌋, 50). GPUs inside the node:
//! best fit (the same smallest-free-first choice).

use super::{best_fit_gpus, share};
use crate::cluster::{Cluster, GpuAssignment, Node, NodeIdx};
use crate::framework::{Better, CycleState, GpuPicker, NodeScore, Plugin};
use crate::task::{Demand, Task};

pub const NAME: &str = "gpu_packing";

#[derive(Debug, Clone, Copy, Default)]
pub struct GpuPacking;

/// The integer score of `d` on `node`.
pub fn score(node: &Node, d: &Demand) -> i64 {
    if d.gpus == 0 {
        return 0;
    }
    let fully_free = node.whole_gpus_free() as i64;
    if fully_free == node.gpu_free.len() as i64 {
        return (33 - fully_free).max(fully_free);
    }
    let want = share(d);
    let mut sorted: Vec<u32> = node.gpu_free.clone();
    sorted.sort_unstable();
    let used: Vec<u32> = sorted
        .into_iter()
        .filter(|&m| m >= want)
        .take(d.gpus as usize)
        .collect();
    if used.len() < d.gpus as usize {
        return 0;
    }
    let fully_free_used = used.iter().filter(|&&m| m == 1000).count() as i64;
    if fully_free_used > 0 {
        return (50 - fully_free_used).max(33);
    }
    let free_pct: i64 = used.iter().map(|&m| m as i64 * 100 / 1000).sum();
    (100 - free_pct / 10).max(50)
}

impl Plugin for GpuPacking {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for GpuPacking {
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

impl GpuPicker for GpuPacking {
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
    fn shared_gpus_then_used_nodes_then_empty_nodes() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("empty8", s, "G2", 8));
        b.node(gpu_node("empty2", s, "G2", 2));
        b.node(gpu_node("shared", s, "G2", 4));
        b.node(gpu_node("used", s, "G2", 4));
        let mut c = b.build().unwrap();
        set_gpus(&mut c, 2, &[0, 450, 750, 1000]);
        set_gpus(&mut c, 3, &[0, 0, 1000, 1000]);
        let share = task(1000, 1, 400).demand;
        // Empty nodes: max(33 − 8, 8) = 25; max(33 − 2, 2) = 31.
        assert_eq!(score(c.node(0), &share), 25);
        assert_eq!(score(c.node(1), &share), 31);
        // Smallest free that fits is 450: 100 − ⌊45 / 10⌋ = 96.
        assert_eq!(score(c.node(2), &share), 96);
        // 800 milli: smallest fitting is a fully free GPU: max(50 − 1, 33) = 49.
        assert_eq!(score(c.node(2), &task(1000, 1, 800).demand), 49);
        // Two whole GPUs on "used": max(50 − 2, 33) = 48.
        assert_eq!(score(c.node(3), &task(1000, 2, 1000).demand), 48);
        // A share that fits no partially used GPU only through 750: 100 − ⌊75/10⌋ = 93.
        assert_eq!(score(c.node(2), &task(1000, 1, 500).demand), 93);
        // CPU-only: 0.
        assert_eq!(score(c.node(0), &task(1000, 0, 0).demand), 0);
        assert_eq!(
            GpuPacking.pick(&c, 2, &task(1000, 1, 400)),
            Some(vec![(1, 400)])
        );

        let w = Arc::new(TargetWorkload::from_counts([]));
        let mut sched = Scheduler::new(profile(GpuPolicy::GpuPacking, w, 1), 1);
        let p = sched
            .schedule(&task(1000, 1, 400), &mut c, Mode::Fast)
            .0
            .unwrap();
        assert_eq!((p.node, p.gpus), (2, vec![(1, 400)]));
    }
}
