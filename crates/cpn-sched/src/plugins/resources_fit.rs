//! Capacity filter: the site's free aggregates must hold the task (a necessary condition,
//! checked in O(1)), and the node's free capacity must hold it exactly (`Node::fits`, GPU
//! shape included). Capacity frees up, so misses are never permanent.

use crate::cluster::{Cluster, NodeIdx, SiteIdx};
use crate::framework::{CycleState, NodeFilter, Plugin, SiteFilter, Verdict};
use crate::task::{Resolved, Task};

pub const NAME: &str = "resources_fit";

pub const INSUFFICIENT_CPU: &str = "insufficient_cpu";
pub const INSUFFICIENT_MEMORY: &str = "insufficient_memory";
pub const INSUFFICIENT_STORAGE: &str = "insufficient_storage";
/// Not enough whole GPUs on one node, or not enough GPU milli for a shared fraction.
pub const INSUFFICIENT_GPU: &str = "insufficient_gpu";

#[derive(Debug, Clone, Copy, Default)]
pub struct ResourcesFit;

impl Plugin for ResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_site_filter(&self) -> Option<&dyn SiteFilter> {
        Some(self)
    }
    fn as_node_filter(&self) -> Option<&dyn NodeFilter> {
        Some(self)
    }
}

/// Free amounts to check a demand against, site-wide or on one node.
struct Free {
    cpu_milli: u64,
    memory_mib: u64,
    storage_gib: u64,
    /// Whole GPUs free in one place (a node: its own; a site: its best node).
    whole_gpus: u64,
    /// Milli free for a shared fraction (a node: on its emptiest GPU; a site: in total).
    gpu_milli: u64,
    gpu_milli_unit: &'static str,
}

/// The first resource short in `free`, as (code, needed, free, unit).
fn shortfall(task: &Task, free: &Free) -> Option<(&'static str, u64, u64, &'static str)> {
    let d = &task.demand;
    if d.cpu_milli > free.cpu_milli {
        return Some((INSUFFICIENT_CPU, d.cpu_milli, free.cpu_milli, "milli CPU"));
    }
    if d.memory_mib > free.memory_mib {
        return Some((
            INSUFFICIENT_MEMORY,
            d.memory_mib,
            free.memory_mib,
            "MiB memory",
        ));
    }
    if d.storage_gib > free.storage_gib {
        return Some((
            INSUFFICIENT_STORAGE,
            d.storage_gib,
            free.storage_gib,
            "GiB storage",
        ));
    }
    if d.gpus > 0 {
        if d.whole_gpus() {
            if (d.gpus as u64) > free.whole_gpus {
                return Some((
                    INSUFFICIENT_GPU,
                    d.gpus as u64,
                    free.whole_gpus,
                    "whole GPUs on one node",
                ));
            }
        } else if d.gpu_milli as u64 > free.gpu_milli {
            return Some((
                INSUFFICIENT_GPU,
                d.gpu_milli as u64,
                free.gpu_milli,
                free.gpu_milli_unit,
            ));
        }
    }
    None
}

fn reject(state: &CycleState, what: &str, miss: (&'static str, u64, u64, &'static str)) -> Verdict {
    let (code, need, free, unit) = miss;
    Verdict::Rejects(state.reason(NAME, code, || {
        format!("needs {need} {unit}, {what} has {free} free")
    }))
}

impl SiteFilter for ResourcesFit {
    fn filter_site(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        site: SiteIdx,
    ) -> Verdict {
        let s = cluster.site(site);
        // Only the offers the task accepts count: free H800s do not help an A100 task.
        let mut free = Free {
            cpu_milli: 0,
            memory_mib: 0,
            storage_gib: 0,
            whole_gpus: 0,
            gpu_milli: 0,
            gpu_milli_unit: "GPU milli",
        };
        let resolved = state.get::<Resolved>();
        for (offer, agg) in s.offers.iter().zip(&s.offer_free) {
            if resolved
                .is_some_and(|r| !r.accepts(task, offer.chip, offer.model, offer.architecture))
            {
                continue;
            }
            free.cpu_milli += agg.cpu_milli;
            free.memory_mib += agg.memory_mib;
            free.storage_gib += agg.storage_gib;
            free.whole_gpus = free.whole_gpus.max(agg.max_node_whole_gpus as u64);
            free.gpu_milli += agg.gpu_milli;
        }
        match shortfall(task, &free) {
            None => Verdict::Fits,
            Some(miss) => reject(state, &format!("site {}", s.spec.name), miss),
        }
    }
}

impl NodeFilter for ResourcesFit {
    fn filter_node(
        &self,
        state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> Verdict {
        let n = cluster.node(node);
        // `fits` is the rule reserve applies; the rest only names the resource.
        if n.fits(&task.demand) {
            return Verdict::Fits;
        }
        let free = Free {
            cpu_milli: n.cpu_free(),
            memory_mib: n.memory_free(),
            storage_gib: n.storage_free(),
            whole_gpus: n.whole_gpus_free() as u64,
            gpu_milli: n.gpu_free.iter().copied().max().unwrap_or(0) as u64,
            gpu_milli_unit: "GPU milli on one GPU",
        };
        let miss = shortfall(task, &free).unwrap_or((
            INSUFFICIENT_GPU,
            task.demand.gpus as u64,
            0,
            "GPUs",
        ));
        reject(state, &format!("node {}", n.spec.name), miss)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterBuilder, GpuPick};
    use crate::plugins::testkit::{cpu_node, cpu_task, gpu_node, gpu_task, site, state};
    use crate::task::Demand;

    fn code(v: Verdict) -> Option<&'static str> {
        match v {
            Verdict::Fits => None,
            Verdict::Rejects(r) => Some(r.code),
            Verdict::RejectsForever(_) => panic!("capacity misses are not permanent"),
        }
    }

    #[test]
    fn site_aggregates_are_a_necessary_condition() {
        // Site: two GPU nodes of 4 GPUs (16 cores, 64 GiB, 100 GiB each) and one 8-core node.
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("g0", s, "A100", 4));
        b.node(gpu_node("g1", s, "A100", 4));
        b.node(cpu_node("c0", s, 8));
        let mut c = b.build().unwrap();
        let site_code = |c: &Cluster, t: &Task| {
            code(ResourcesFit.filter_site(&state(t, c, &ResourcesFit), t, c, s))
        };

        // 40 cores = 16 + 16 + 8: fits exactly; 41 do not.
        assert_eq!(site_code(&c, &cpu_task(40_000)), None);
        let v = ResourcesFit.filter_site(
            &state(&cpu_task(40_001), &c, &ResourcesFit),
            &cpu_task(40_001),
            &c,
            s,
        );
        assert_eq!(
            v.reason().unwrap().detail.as_deref(),
            Some("needs 40001 milli CPU, site s has 40000 free")
        );
        assert_eq!(site_code(&c, &cpu_task(40_001)), Some(INSUFFICIENT_CPU));
        // Memory: 64 + 64 + 32 GiB = 163840 MiB.
        let big_mem = Task {
            demand: Demand {
                memory_mib: 163_841,
                ..cpu_task(1).demand
            },
            ..cpu_task(1)
        };
        assert_eq!(site_code(&c, &big_mem), Some(INSUFFICIENT_MEMORY));
        let big_disk = Task {
            demand: Demand {
                storage_gib: 301,
                ..cpu_task(1).demand
            },
            ..cpu_task(1)
        };
        assert_eq!(site_code(&c, &big_disk), Some(INSUFFICIENT_STORAGE));

        // Whole GPUs must be on one node: 8 free in total, but at most 4 together.
        assert_eq!(site_code(&c, &gpu_task(4)), None);
        assert_eq!(site_code(&c, &gpu_task(5)), Some(INSUFFICIENT_GPU));

        // Take 3 GPUs on g0 and 2 on g1: 3 whole free, best node has 2; milli free 3000.
        c.reserve("x", 0, &gpu_task(3).demand, GpuPick::BestFit)
            .unwrap();
        c.reserve("x", 1, &gpu_task(2).demand, GpuPick::BestFit)
            .unwrap();
        assert_eq!(site_code(&c, &gpu_task(2)), None);
        assert_eq!(site_code(&c, &gpu_task(3)), Some(INSUFFICIENT_GPU));
        let half = Task {
            demand: Demand {
                gpus: 1,
                gpu_milli: 500,
                ..gpu_task(1).demand
            },
            ..gpu_task(1)
        };
        assert_eq!(site_code(&c, &half), None);
    }

    #[test]
    fn nodes_use_the_exact_rule_and_name_the_resource() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("g0", s, "A100", 2));
        let mut c = b.build().unwrap();
        let node_code = |c: &Cluster, t: &Task| {
            code(ResourcesFit.filter_node(&state(t, c, &ResourcesFit), t, c, 0))
        };
        let frac = |m| Task {
            demand: Demand {
                gpus: 1,
                gpu_milli: m,
                ..gpu_task(1).demand
            },
            ..gpu_task(1)
        };
        // 700 milli go on GPU 0; GPU 0 then has only 300 left, so 400 go on GPU 1.
        c.reserve("x", 0, &frac(700).demand, GpuPick::BestFit)
            .unwrap();
        c.reserve("x", 0, &frac(400).demand, GpuPick::BestFit)
            .unwrap();
        assert_eq!(c.node(0).gpu_free, vec![300, 600]);
        assert_eq!(node_code(&c, &frac(600)), None);
        // 900 milli are free on the node, but no one GPU has 700.
        assert_eq!(node_code(&c, &frac(700)), Some(INSUFFICIENT_GPU));
        let st = state(&frac(700), &c, &ResourcesFit);
        assert_eq!(
            ResourcesFit
                .filter_node(&st, &frac(700), &c, 0)
                .reason()
                .unwrap()
                .detail
                .as_deref(),
            Some("needs 700 GPU milli on one GPU, node g0 has 600 free")
        );
        assert_eq!(node_code(&c, &gpu_task(1)), Some(INSUFFICIENT_GPU));
        // 16 cores less the 2 the two fractions took.
        assert_eq!(node_code(&c, &cpu_task(14_001)), Some(INSUFFICIENT_CPU));
        assert_eq!(node_code(&c, &cpu_task(14_000)), None);
    }
}
