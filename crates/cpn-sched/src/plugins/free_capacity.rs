//! Free capacity factor: sites with more of their capacity free score higher, which spreads
//! load over the federation and leaves headroom for bursts.
//!
//! Raw score, a fraction 0..=1: free / total of the resource the task is bound by, GPU milli
//! for accelerator tasks and CPU milli otherwise; 0 when the site has none of it.

use crate::cluster::{Cluster, SiteIdx};
use crate::framework::{Better, CycleState, Plugin, SiteScore};
use crate::task::Task;

pub const NAME: &str = "free_capacity";

#[derive(Debug, Clone, Copy, Default)]
pub struct FreeCapacity;

impl Plugin for FreeCapacity {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_score(&self) -> Option<&dyn SiteScore> {
        Some(self)
    }
}

impl SiteScore for FreeCapacity {
    fn score_site(
        &self,
        _state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> f64 {
        let s = cluster.site(site);
        let (free, total) = if task.demand.gpus > 0 {
            (s.free.gpu_milli, s.total.gpu_milli)
        } else {
            (s.free.cpu_milli, s.total.cpu_milli)
        };
        if total == 0 {
            0.0
        } else {
            (free as f64 / total as f64).clamp(0.0, 1.0)
        }
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
    fn free_share_of_the_binding_resource() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        let cpus = b.site(site("c", "east"));
        b.node(gpu_node("g", s, "A100", 4)); // 16 cores, 4 GPUs
        b.node(cpu_node("c0", cpus, 8));
        let mut c = b.build().unwrap();
        c.reserve("x", 0, &gpu_task(1).demand, GpuPick::BestFit)
            .unwrap(); // 1 GPU, 1 core
        c.reserve("x", 1, &cpu_task(2000).demand, GpuPick::BestFit)
            .unwrap();

        let g = gpu_task(1);
        let st = state(&g, &c, &FreeCapacity);
        assert_eq!(FreeCapacity.score_site(&st, &g, &c, s), 0.75); // 3000 / 4000 milli
        assert_eq!(FreeCapacity.score_site(&st, &g, &c, cpus), 0.0); // no GPUs at all

        let t = cpu_task(1000);
        let st = state(&t, &c, &FreeCapacity);
        assert_eq!(FreeCapacity.score_site(&st, &t, &c, s), 0.9375); // 15 / 16 cores
        assert_eq!(FreeCapacity.score_site(&st, &t, &c, cpus), 0.75); // 6 / 8 cores
    }
}
