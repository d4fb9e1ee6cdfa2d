//! `03-GpuClustering`: keeps tasks of one GPU "affinity" class together. A task's class is
//! `share-gpu` (a fraction of one GPU) or `k-gpu` (k whole GPUs); CPU-only tasks score 0
//! everywhere. Bands, each plus ⌊25·(8000 − node free GPU milli)/8000⌋ (fuller first):
//! 75 when the node hosts only tasks of the task's class, 50 when it hosts that class among
//! others, 25 when it hosts no GPU task, 0 otherwise. GPUs inside the node: best fit.
//!
//! The cluster does not record which tasks a node hosts, so the plugin does: its
//! [`GpuPicker::pick`] (called once per placement, right before the reservation) adds the
//! task's class to the node. A node with no GPU milli in use hosts no GPU task whatever the
//! record says, so a profile reused on a fresh cluster starts clean; releases are not seen
//! (the benchmark has no departures): call [`GpuClustering::forget`] after one.

use super::{MAX_SPEC_GPU, best_fit_gpus};
use crate::cluster::{Cluster, GpuAssignment, Node, NodeIdx};
use crate::framework::{Better, CycleState, GpuPicker, NodeScore, Plugin};
use crate::task::{Demand, Task};
use std::collections::HashMap;
use std::sync::Mutex;

pub const NAME: &str = "gpu_clustering";

/// Affinity class: 0 for `share-gpu`, k for `k-gpu`.
pub type Class = u32;

/// The class of a demand; None for CPU-only.
pub fn class(d: &Demand) -> Option<Class> {
    if d.gpus == 0 {
        None
    } else if d.gpu_milli < 1000 {
        Some(0)
    } else {
        Some(d.gpus)
    }
}

#[derive(Debug, Default)]
pub struct GpuClustering {
    /// Per node: GPU tasks placed on it, counted by class.
    hosted: Mutex<HashMap<NodeIdx, Vec<(Class, u32)>>>,
}

fn gpu_in_use(node: &Node) -> bool {
    node.gpu_milli_free() < node.gpu_free.len() as u64 * 1000
}

impl GpuClustering {
    /// Forgets what node `n` hosts (after tasks left it).
    pub fn forget(&self, n: NodeIdx) {
        self.hosted.lock().expect("not poisoned").remove(&n);
    }

    /// The classes node `n` hosts, with counts.
    pub fn hosted(&self, cluster: &Cluster, n: NodeIdx) -> Vec<(Class, u32)> {
        if !gpu_in_use(cluster.node(n)) {
            return Vec::new();
        }
        let hosted = self.hosted.lock().expect("not poisoned");
        hosted.get(&n).cloned().unwrap_or_default()
    }

    /// The integer score of `d` on node `n`.
    pub fn score(&self, cluster: &Cluster, n: NodeIdx, d: &Demand) -> i64 {
        let Some(class) = class(d) else {
            return 0;
        };
        let node = cluster.node(n);
        let left = node.gpu_milli_free() as i64;
        let max = MAX_SPEC_GPU as i64;
        let fill = 25 * (max - left) / max;
        let band = if !gpu_in_use(node) {
            25
        } else {
            let hosted = self.hosted.lock().expect("not poisoned");
            match hosted.get(&n).map(Vec::as_slice).unwrap_or(&[]) {
                [] => 25,
                [(c, _)] if *c == class => 75,
                many if many.iter().any(|(c, _)| *c == class) => 50,
                _ => 0,
            }
        };
        band + fill
    }
}

impl Plugin for GpuClustering {
    fn name(&self) -> &'static str {
        NAME
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for GpuClustering {
    fn score_node(
        &self,
        _state: &CycleState,
        task: &Task,
        cluster: &Cluster,
        node: NodeIdx,
    ) -> f64 {
        self.score(cluster, node, &task.demand) as f64
    }
    fn better(&self) -> Better {
        Better::Higher
    }
}

impl GpuPicker for GpuClustering {
    fn pick(&self, cluster: &Cluster, node: NodeIdx, task: &Task) -> Option<GpuAssignment> {
        let n = cluster.node(node);
        let gpus = best_fit_gpus(n, &task.demand)?;
        if let Some(class) = class(&task.demand) {
            let mut hosted = self.hosted.lock().expect("not poisoned");
            let entry = hosted.entry(node).or_default();
            if !gpu_in_use(n) {
                entry.clear(); // a record from before the node was emptied
            }
            match entry.iter_mut().find(|(c, _)| *c == class) {
                Some((_, k)) => *k += 1,
                None => entry.push((class, 1)),
            }
        }
        Some(gpus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::cycle::{Mode, Scheduler};
    use crate::plugins::gpu::tests::task;
    use crate::plugins::gpu::{GpuPolicy, TargetWorkload, profile};
    use crate::plugins::testkit::{gpu_node, site};
    use std::sync::Arc;

    fn place(p: &GpuClustering, c: &mut Cluster, n: NodeIdx, t: &Task) {
        let g = p.pick(c, n, t).unwrap();
        assert!(c.reserve_exact("x", n, &t.demand, &g));
    }

    #[test]
    fn bands_by_hosted_classes_plus_fill() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        for name in ["a", "b", "c", "d"] {
            b.node(gpu_node(name, s, "G2", 8));
        }
        let mut c = b.build().unwrap();
        let p = GpuClustering::default();
        let share = task(1000, 1, 500);
        let one = task(1000, 1, 1000);
        place(&p, &mut c, 0, &share); // a: share only, 7500 free
        place(&p, &mut c, 1, &share); // b: share and 1-gpu, 6500 free
        place(&p, &mut c, 1, &one);
        place(&p, &mut c, 2, &one); // c: 1-gpu only, 7000 free
        // d: empty.
        let d = &share.demand;
        // a: 75 + ⌊25·500/8000⌋ = 75 + 1.
        assert_eq!(p.score(&c, 0, d), 76);
        // b: 50 + ⌊25·1500/8000⌋ = 50 + 4.
        assert_eq!(p.score(&c, 1, d), 54);
        // c: other class only: 0 + ⌊25·1000/8000⌋ = 3.
        assert_eq!(p.score(&c, 2, d), 3);
        // d: no GPU task: 25 + 0.
        assert_eq!(p.score(&c, 3, d), 25);
        // A 1-GPU task: c is its own class only.
        assert_eq!(p.score(&c, 2, &one.demand), 78);
        assert_eq!(p.score(&c, 0, &one.demand), 1);
        // CPU-only tasks score 0 everywhere and leave no class behind.
        assert_eq!(p.score(&c, 3, &task(1000, 0, 0).demand), 0);
        place(&p, &mut c, 3, &task(1000, 0, 0));
        assert_eq!(p.score(&c, 3, d), 25);
        assert_eq!(p.hosted(&c, 1), vec![(0, 1), (1, 1)]);

        // A fresh cluster with the same plugin: nothing is hosted any more.
        let fresh = {
            let mut b = ClusterBuilder::new();
            let s = b.site(site("s", "east"));
            for name in ["a", "b", "c", "d"] {
                b.node(gpu_node(name, s, "G2", 8));
            }
            b.build().unwrap()
        };
        assert_eq!(p.score(&fresh, 0, d), 25);
    }

    #[test]
    fn the_profile_groups_shares_together() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("a", s, "G2", 8));
        b.node(gpu_node("b", s, "G2", 8));
        let mut c = b.build().unwrap();
        let w = Arc::new(TargetWorkload::from_counts([]));
        let mut sched = Scheduler::new(profile(GpuPolicy::GpuClustering, w, 1), 1);
        let first = sched
            .schedule(&task(1000, 1, 300), &mut c, Mode::Fast)
            .0
            .unwrap();
        // The 1-GPU task avoids the node with the share (25 + 0 beats 0 + 0).
        let whole = sched
            .schedule(&task(1000, 1, 1000), &mut c, Mode::Fast)
            .0
            .unwrap();
        assert_ne!(whole.node, first.node);
        // The next share joins the first: 75 + 0 beats 0 + ⌊25·1000/8000⌋ = 3.
        let second = sched
            .schedule(&task(1000, 1, 300), &mut c, Mode::Fast)
            .0
            .unwrap();
        assert_eq!(second.node, first.node);
        assert_eq!(
            second.gpus,
            vec![(0, 300)],
            "best fit: the GPU already shared"
        );
    }
}
