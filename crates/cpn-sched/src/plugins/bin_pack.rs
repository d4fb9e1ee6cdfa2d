//! Bin packing inside a site (kube-scheduler's MostAllocated): fuller nodes score higher,
//! so small tasks fill partly used nodes and whole nodes stay free for large ones.
//!
//! Raw score, a fraction 0..=1: the mean over CPU, memory and (on nodes with GPUs) GPU milli
//! of `(used + requested) / capacity` after placing the task. Resources a node has none of
//! are left out of the mean.

use crate::cluster::{Cluster, Node, NodeIdx};
use crate::framework::{Better, CycleState, NodeScore, Plugin};
use crate::task::{Demand, Task};

pub const NAME: &str = "bin_pack";

#[derive(Debug, Clone, Copy, Default)]
pub struct BinPack;

/// `(used + requested) / capacity` for each resource the node has, each clamped to 0..=1.
/// Shared with `spread`, which scores the mirror image.
pub fn allocated_after(node: &Node, d: &Demand) -> impl Iterator<Item = f64> {
    let gpus = node.spec.gpus as u64;
    let gpu_used = (gpus * 1000).saturating_sub(node.gpu_milli_free());
    [
        (node.cpu_used + d.cpu_milli, node.spec.cpu_milli),
        (node.memory_used + d.memory_mib, node.spec.memory_mib),
        (gpu_used + d.gpu_milli_total(), gpus * 1000),
    ]
    .into_iter()
    .filter(|&(_, cap)| cap > 0)
    .map(|(used, cap)| (used as f64 / cap as f64).clamp(0.0, 1.0))
}

/// Mean of `xs`, 0 for none.
pub(crate) fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let (sum, n) = xs.fold((0.0, 0u32), |(s, n), x| (s + x, n + 1));
    if n == 0 { 0.0 } else { sum / n as f64 }
}

impl Plugin for BinPack {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for BinPack {
    fn score_node(
        &self,
        _state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> f64 {
        mean(allocated_after(cluster.node(node), &task.demand))
    }
    fn better(&self) -> Better {
        Better::Higher
    }
    fn unit(&self) -> &'static str {
        "fraction"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterBuilder, GpuPick};
    use crate::plugins::testkit::{cpu_node, cpu_task, gpu_node, gpu_task, site, state};

    #[test]
    fn mean_allocation_after_placement() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(cpu_node("c0", s, 8)); // 8000 milli, 32768 MiB
        b.node(cpu_node("c1", s, 8));
        b.node(gpu_node("g0", s, "A100", 4)); // 16000 milli, 65536 MiB, 4000 GPU milli
        let mut c = b.build().unwrap();
        c.reserve("x", 1, &cpu_task(4000).demand, GpuPick::BestFit)
            .unwrap(); // + 1024 MiB

        // A 2-core, 1024 MiB task.
        let t = cpu_task(2000);
        let st = state(&t, &c, &BinPack);
        // c0: cpu 2000/8000 = 0.25, memory 1024/32768 = 0.03125 → 0.140625.
        assert_eq!(BinPack.score_node(&st, &t, &c, 0), 0.140625);
        // c1: cpu 6000/8000 = 0.75, memory 2048/32768 = 0.0625 → 0.40625: the fuller node wins.
        assert_eq!(BinPack.score_node(&st, &t, &c, 1), 0.40625);
        // g0: cpu 2000/16000 = 0.125, memory 1024/65536 = 0.015625, GPU 0/4000 = 0 → 0.046875.
        assert_eq!(BinPack.score_node(&st, &t, &c, 2), 0.046875);

        // A 2-GPU task on g0: cpu 1000/16000, memory 1024/65536, GPU 2000/4000.
        let g = gpu_task(2);
        let st = state(&g, &c, &BinPack);
        assert_eq!(
            BinPack.score_node(&st, &g, &c, 2),
            (0.0625 + 0.015625 + 0.5) / 3.0
        );
    }
}
