//! Spreading inside a site (kube-scheduler's LeastAllocated): emptier nodes score higher, so
//! load and failure risk are shared across nodes. The mirror of `bin_pack`.
//!
//! Raw score, a fraction 0..=1: the mean over CPU, memory and (on nodes with GPUs) GPU milli
//! of the share left free after placing the task.

use crate::cluster::{Cluster, NodeIdx};
use crate::framework::{Better, CycleState, NodeScore, Plugin};
use crate::plugins::bin_pack::{allocated_after, mean};
use crate::task::Task;

pub const NAME: &str = "spread";

#[derive(Debug, Clone, Copy, Default)]
pub struct Spread;

impl Plugin for Spread {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for Spread {
    fn score_node(
        &self,
        _state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> f64 {
        mean(allocated_after(cluster.node(node), &task.demand).map(|a| 1.0 - a))
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
    use crate::plugins::testkit::{cpu_node, cpu_task, site, state};

    #[test]
    fn mean_free_share_after_placement() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(cpu_node("c0", s, 8)); // 8000 milli, 32768 MiB
        b.node(cpu_node("c1", s, 8));
        let mut c = b.build().unwrap();
        c.reserve("x", 1, &cpu_task(4000).demand, GpuPick::BestFit)
            .unwrap(); // + 1024 MiB

        let t = cpu_task(2000); // 2 cores, 1024 MiB
        let st = state(&t, &c, &Spread);
        // c0: cpu free 6000/8000 = 0.75, memory free 31744/32768 = 0.96875 → 0.859375.
        assert_eq!(Spread.score_node(&st, &t, &c, 0), 0.859375);
        // c1: cpu free 2000/8000 = 0.25, memory free 30720/32768 = 0.9375 → 0.59375.
        assert_eq!(Spread.score_node(&st, &t, &c, 1), 0.59375);
    }
}
