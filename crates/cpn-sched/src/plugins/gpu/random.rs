//! `01-Random`: before scoring, one feasible node is drawn uniformly and scores 100, every
//! other node 0. Inside the node a GPU-sharing task goes on a GPU drawn uniformly among those
//! that hold its share; whole-GPU tasks take the lowest-index fully free GPUs.
//!
//! The draws come from a seeded splitmix64 stream advanced once per draw (node draws in
//! `prepare`, GPU draws in `pick`), so a run is a pure function of the seed and the sequence
//! of calls.

use super::{below, feasible, is_sharing, lowest_free_gpus, share, splitmix};
use crate::cluster::{Cluster, GpuAssignment, NodeIdx};
use crate::framework::{Better, CycleState, GpuPicker, NodeScore, Plugin};
use crate::task::Task;
use std::sync::atomic::{AtomicU64, Ordering};

pub const NAME: &str = "gpu_random";

#[derive(Debug)]
pub struct Random {
    seed: u64,
    draws: AtomicU64,
}

/// The node drawn for this cycle (None when no node is feasible).
struct Drawn(Option<NodeIdx>);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random {
            seed,
            draws: AtomicU64::new(0),
        }
    }

    fn draw(&self) -> u64 {
        let i = self.draws.fetch_add(1, Ordering::Relaxed);
        splitmix(splitmix(self.seed) ^ i)
    }
}

impl Plugin for Random {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, task: &Task, cluster: &Cluster, state: &mut CycleState) {
        // In site order (a fresh build's index order), so an incrementally kept cluster
        // draws the same node.
        let nodes: Vec<NodeIdx> = cluster
            .sites
            .iter()
            .flat_map(|s| s.nodes.iter().copied())
            .filter(|&n| feasible(state, task, cluster, n))
            .collect();
        let drawn = (!nodes.is_empty()).then(|| nodes[below(self.draw(), nodes.len())]);
        state.put(Drawn(drawn));
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for Random {
    fn score_node(
        &self,
        state: &CycleState,
        _task: &Task,
        _cluster: &Cluster,
        node: NodeIdx,
    ) -> f64 {
        match state.get::<Drawn>() {
            Some(Drawn(Some(n))) if *n == node => 100.0,
            _ => 0.0,
        }
    }
    fn better(&self) -> Better {
        Better::Higher
    }
}

impl GpuPicker for Random {
    fn pick(&self, cluster: &Cluster, node: NodeIdx, task: &Task) -> Option<GpuAssignment> {
        let d = &task.demand;
        let n = cluster.node(node);
        if d.gpus == 0 {
            return Some(GpuAssignment::new());
        }
        if !is_sharing(d) {
            return lowest_free_gpus(n, d.gpus);
        }
        let want = share(d);
        let mut fitting: Vec<u32> = (0..n.gpu_free.len() as u32)
            .filter(|&i| n.gpu_free[i as usize] >= want)
            .collect();
        let mut gpus = GpuAssignment::with_capacity(d.gpus as usize);
        for _ in 0..d.gpus {
            if fitting.is_empty() {
                return None;
            }
            let i = fitting.remove(below(self.draw(), fitting.len()));
            gpus.push((i, want));
        }
        Some(gpus)
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

    fn cluster() -> Cluster {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("a", s, "G2", 4));
        b.node(gpu_node("b", s, "G2", 4));
        b.node(gpu_node("c", s, "G2", 1));
        b.node(gpu_node("d", s, "G2", 4));
        b.build().unwrap()
    }

    #[test]
    fn one_feasible_node_scores_100_and_draws_are_uniform_and_seeded() {
        let c = cluster();
        // 2 whole GPUs: node c (1 GPU) is infeasible and never drawn.
        let t = task(1000, 2, 1000);
        let r = Random::new(42);
        let mut hits = [0u32; 4];
        for _ in 0..4000 {
            let st = state(&t, &c, &r);
            let scores: Vec<f64> = (0..4).map(|n| r.score_node(&st, &t, &c, n)).collect();
            assert_eq!(scores.iter().filter(|&&s| s == 100.0).count(), 1);
            assert_eq!(scores.iter().sum::<f64>(), 100.0);
            hits[scores.iter().position(|&s| s == 100.0).unwrap()] += 1;
        }
        assert_eq!(hits[2], 0);
        for h in [hits[0], hits[1], hits[3]] {
            assert!((1200..1470).contains(&h), "{hits:?}");
        }
        // Same seed, same stream; another seed, another one.
        let draws = |seed| {
            let r = Random::new(seed);
            (0..20).map(|_| r.draw()).collect::<Vec<_>>()
        };
        assert_eq!(draws(1), draws(1));
        assert_ne!(draws(1), draws(2));
    }

    #[test]
    fn shares_go_on_a_random_fitting_gpu_whole_gpus_lowest_first() {
        let mut c = cluster();
        set_gpus(&mut c, 0, &[200, 1000, 600, 1000]);
        let r = Random::new(3);
        let mut seen = [0u32; 4];
        for _ in 0..600 {
            let g = r.pick(&c, 0, &task(1000, 1, 500)).unwrap();
            assert_eq!(g.len(), 1);
            assert_eq!(g[0].1, 500);
            seen[g[0].0 as usize] += 1;
        }
        assert_eq!(seen[0], 0, "GPU 0 has only 200 free");
        assert!(seen[1] > 150 && seen[2] > 150 && seen[3] > 150, "{seen:?}");
        assert_eq!(
            r.pick(&c, 0, &task(1000, 2, 1000)),
            Some(vec![(1, 1000), (3, 1000)])
        );
        assert_eq!(r.pick(&c, 0, &task(1000, 0, 0)), Some(vec![]));
    }

    #[test]
    fn the_profile_places_on_the_drawn_node() {
        let c0 = cluster();
        let run = |seed| {
            let mut c = c0.clone();
            let w = Arc::new(TargetWorkload::from_counts([]));
            let mut s = Scheduler::new(profile(GpuPolicy::Random, w, seed), seed);
            (0..8)
                .map(|_| {
                    s.schedule(&task(1000, 1, 300), &mut c, Mode::Fast)
                        .0
                        .unwrap()
                        .node
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(run(5), run(5));
        let spread: std::collections::BTreeSet<_> = run(5).into_iter().collect();
        assert!(spread.len() > 1, "random placements spread over nodes");
    }
}
