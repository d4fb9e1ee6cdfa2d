//! `06-FGD`, fragmentation gradient descent (BENCHMARK.md §4.3): place the task where the
//! node's fragmentation against the target workload grows least.
//!
//! For node n and the state n′ after placing the task, score = ⌊100·σ((F_n − F_n′)/1000)⌋
//! (F in milli-GPU, so the sigmoid's argument is in GPUs). A GPU-sharing task is tried on
//! every GPU that holds its share; the node scores the best of them and, if chosen, the task
//! goes on the lowest-index GPU reaching it. Whole-GPU tasks take the lowest-index fully free
//! GPUs, CPU-only tasks none (their CPU still moves F). A share on several GPUs (not in the
//! benchmark's traces) is placed best fit and scored as such.
//!
//! F is computed exactly in integers (see [`ModelTable`]): a placement that leaves F as it
//! is scores exactly 50, never 49 by rounding.

use super::fragmentation::ModelTable;
use super::workload::TargetWorkload;
use super::{best_fit_gpus, is_sharing, lowest_free_gpus, share};
use crate::cluster::{Cluster, GpuAssignment, Node, NodeIdx};
use crate::framework::{Better, CycleState, GpuPicker, NodeScore, Plugin};
use crate::task::{Demand, Task};
use std::sync::Arc;

pub const NAME: &str = "gpu_fgd";

#[derive(Debug, Clone)]
pub struct Fgd {
    workload: Arc<TargetWorkload>,
}

/// The workload per GPU model of this cycle's cluster, indexed by the model's symbol.
struct Tables(Vec<ModelTable>);

impl Fgd {
    pub fn new(workload: Arc<TargetWorkload>) -> Fgd {
        Fgd { workload }
    }

    pub fn workload(&self) -> &TargetWorkload {
        &self.workload
    }
}

/// ⌊100·σ(x)⌋ with x = Δ / total / 1000 GPUs, Δ = total·(F_n − F_n′).
pub fn sigmoid_score(delta: i128, total: u64) -> u32 {
    let x = if total == 0 {
        0.0
    } else {
        delta as f64 / total as f64 / 1000.0
    };
    let sigma = 1.0 / (1.0 + (-x).exp());
    (100.0 * sigma).floor() as u32
}

/// Runs `f` on a scratch copy of `gpus` (on the stack for nodes of up to 16 GPUs).
fn with_copy<R>(gpus: &[u32], f: impl FnOnce(&mut [u32]) -> R) -> R {
    const STACK: usize = 16;
    if gpus.len() <= STACK {
        let mut buf = [0u32; STACK];
        buf[..gpus.len()].copy_from_slice(gpus);
        f(&mut buf[..gpus.len()])
    } else {
        f(&mut gpus.to_vec())
    }
}

/// The FGD score of `d` on `node` and, for a single share, the GPU that reaches it (lowest
/// index on ties). None when the node cannot hold the task.
pub fn evaluate(table: &ModelTable, node: &Node, d: &Demand) -> Option<(u32, Option<usize>)> {
    let gpus = &node.gpu_free;
    let cpu_free = node.cpu_free();
    if d.cpu_milli > cpu_free {
        return None;
    }
    let cpu_after = cpu_free - d.cpu_milli;
    let before = table.scaled(cpu_free, gpus) as i128;
    let total = table.total();
    let after = |buf: &[u32]| table.scaled(cpu_after, buf) as i128;
    if d.gpus == 0 {
        return Some((sigmoid_score(before - after(gpus), total), None));
    }
    if is_sharing(d) && d.gpus == 1 {
        let want = share(d);
        return with_copy(gpus, |buf| {
            let mut best: Option<(u32, usize)> = None;
            for (i, &g) in gpus.iter().enumerate() {
                // A GPU with the same free milli as an earlier one gives the same state.
                if g < want || gpus[..i].contains(&g) {
                    continue;
                }
                buf[i] = g - want;
                let s = sigmoid_score(before - after(buf), total);
                buf[i] = g;
                if best.is_none_or(|(b, _)| s > b) {
                    best = Some((s, i));
                }
            }
            best.map(|(s, i)| (s, Some(i)))
        });
    }
    let taken = if is_sharing(d) {
        best_fit_gpus(node, d)?
    } else {
        lowest_free_gpus(node, d.gpus)?
    };
    with_copy(gpus, |buf| {
        for &(i, m) in &taken {
            buf[i as usize] -= m;
        }
        Some((sigmoid_score(before - after(buf), total), None))
    })
}

/// The GPUs FGD gives `d` on `node`.
pub fn choose(table: &ModelTable, node: &Node, d: &Demand) -> Option<GpuAssignment> {
    if d.gpus == 0 {
        return Some(GpuAssignment::new());
    }
    if is_sharing(d) && d.gpus == 1 {
        let (_, i) = evaluate(table, node, d)?;
        return Some(vec![(i? as u32, share(d))]);
    }
    if is_sharing(d) {
        best_fit_gpus(node, d)
    } else {
        lowest_free_gpus(node, d.gpus)
    }
}

impl Plugin for Fgd {
    fn name(&self) -> &'static str {
        NAME
    }
    fn prepare(&self, _task: &Task, cluster: &Cluster, state: &mut CycleState) {
        let models = cluster
            .nodes
            .iter()
            .map(|n| n.model)
            .max()
            .map_or(0, |m| m + 1);
        let tables = (0..models)
            .map(|sym| ModelTable::new(&self.workload, cluster.symbols.name(sym)))
            .collect();
        state.put(Tables(tables));
    }
    fn as_node_score(&self) -> Option<&dyn NodeScore> {
        Some(self)
    }
}

impl NodeScore for Fgd {
    fn score_node(&self, state: &CycleState, task: &Task, cluster: &Cluster, node: NodeIdx) -> f64 {
        let n = cluster.node(node);
        let score = match state.get::<Tables>() {
            Some(Tables(t)) => evaluate(&t[n.model as usize], n, &task.demand),
            None => evaluate(
                &ModelTable::new(&self.workload, &n.spec.model),
                n,
                &task.demand,
            ),
        };
        score.map_or(0.0, |(s, _)| s as f64)
    }
    fn better(&self) -> Better {
        Better::Higher
    }
}

impl GpuPicker for Fgd {
    fn pick(&self, cluster: &Cluster, node: NodeIdx, task: &Task) -> Option<GpuAssignment> {
        let n = cluster.node(node);
        choose(
            &ModelTable::new(&self.workload, &n.spec.model),
            n,
            &task.demand,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ClusterBuilder;
    use crate::cycle::{Mode, Scheduler};
    use crate::plugins::gpu::tests::{set_gpus, task};
    use crate::plugins::gpu::workload::Shape;
    use crate::plugins::gpu::{GpuPolicy, profile};
    use crate::plugins::testkit::{gpu_node, site, state};

    /// §4.4: A = 1 CPU, 500 milli × 1 GPU, B = 1 CPU, 1000 milli × 1 GPU, p = 0.5 each.
    fn ab() -> Arc<TargetWorkload> {
        Arc::new(TargetWorkload::from_counts([
            (Shape::new(1000, 500, 1, ""), 1),
            (Shape::new(1000, 1000, 1, ""), 1),
        ]))
    }

    fn two_nodes() -> Cluster {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("fresh", s, "G2", 2));
        b.node(gpu_node("half", s, "G2", 2));
        let mut c = b.build().unwrap();
        set_gpus(&mut c, 1, &[500, 1000]);
        c
    }

    #[test]
    fn worked_example_scores_and_choice() {
        let w = ab();
        let c = two_nodes();
        let t = task(1000, 1, 500);
        let table = ModelTable::new(&w, "G2");
        // [1000, 1000] → [500, 1000]: F 0 → 250: ⌊100σ(−0.25)⌋ = 43, on GPU 0.
        assert_eq!(table.fragmentation(16_000, &[1000, 1000]), 0.0);
        assert_eq!(table.fragmentation(15_000, &[500, 1000]), 250.0);
        assert_eq!(evaluate(&table, c.node(0), &t.demand), Some((43, Some(0))));
        // [500, 1000]: GPU 0 → [0, 1000]: F 250 → 0: 56; GPU 1 → [500, 500]: F 250 → 500: 43.
        assert_eq!(table.fragmentation(15_000, &[0, 1000]), 0.0);
        assert_eq!(table.fragmentation(15_000, &[500, 500]), 500.0);
        assert_eq!(sigmoid_score(250, 1), 56);
        assert_eq!(sigmoid_score(-250, 1), 43);
        assert_eq!(evaluate(&table, c.node(1), &t.demand), Some((56, Some(0))));
        assert_eq!(sigmoid_score(0, 2), 50);

        // The plugin and the profile agree: the half-used GPU is filled.
        let st = state(&t, &c, &Fgd::new(w.clone()));
        let fgd = Fgd::new(w.clone());
        assert_eq!(fgd.score_node(&st, &t, &c, 0), 43.0);
        assert_eq!(fgd.score_node(&st, &t, &c, 1), 56.0);
        let mut c2 = c.clone();
        let mut sched = Scheduler::new(profile(GpuPolicy::Fgd, w, 9), 9);
        let p = sched.schedule(&t, &mut c2, Mode::Fast).0.unwrap();
        assert_eq!((p.node, p.gpus), (1, vec![(0, 500)]));
        assert_eq!(c2.node(1).gpu_free, vec![0, 1000]);
    }

    #[test]
    fn whole_gpu_and_cpu_only_tasks() {
        // p: A (500 × 1) 2/5, B (1000 × 1) 2/5, C (CPU-only, 1 core) 1/5.
        let w = TargetWorkload::from_counts([
            (Shape::new(1000, 500, 1, ""), 2),
            (Shape::new(1000, 1000, 1, ""), 2),
            (Shape::new(1000, 0, 0, ""), 1),
        ]);
        let table = ModelTable::new(&w, "G2");
        let c = two_nodes();
        // Whole GPU on fresh [1000, 1000] → [0, 1000]: F = 0.2·2000 = 400 → 0.2·1000 = 200:
        // ⌊100σ(0.2)⌋ = 54, on GPU 0.
        assert_eq!(
            evaluate(&table, c.node(0), &task(1000, 1, 1000).demand),
            Some((54, None))
        );
        assert_eq!(
            choose(&table, c.node(0), &task(1000, 1, 1000).demand),
            Some(vec![(0, 1000)])
        );
        // On half [500, 1000] → [500, 0]: F = 0.4·0 + 0.4·500 + 0.2·1500 = 500 → A fits,
        // B not: 0.4·0 + 0.4·500 + 0.2·500 = 300: σ(0.2) again → 54, on GPU 1.
        assert_eq!(
            choose(&table, c.node(1), &task(1000, 1, 1000).demand),
            Some(vec![(1, 1000)])
        );
        // A CPU-only task taking the last 15 cores leaves < 1 core: every idle GPU strands.
        // fresh: F 400 → 2000: ⌊100σ(−1.6)⌋ = 16.
        assert_eq!(
            evaluate(&table, c.node(0), &task(15_500, 0, 0).demand),
            Some((16, None))
        );
        // A CPU-only task that leaves enough CPU changes nothing: exactly 50.
        assert_eq!(
            evaluate(&table, c.node(0), &task(1000, 0, 0).demand),
            Some((50, None))
        );
        // Too much CPU: the node cannot hold it.
        assert_eq!(
            evaluate(&table, c.node(0), &task(17_000, 0, 0).demand),
            None
        );
    }

    #[test]
    fn equal_gpus_are_tried_once_and_the_lowest_index_wins() {
        let w = ab();
        let table = ModelTable::new(&w, "G2");
        let mut c = two_nodes();
        set_gpus(&mut c, 0, &[1000, 500]);
        // GPU 0 → [500, 500]: F 250 → 500 (43); GPU 1 → [1000, 0]: 250 → 0 (56).
        assert_eq!(
            evaluate(&table, c.node(0), &task(1000, 1, 500).demand),
            Some((56, Some(1)))
        );
        set_gpus(&mut c, 0, &[1000, 1000]);
        assert_eq!(
            choose(&table, c.node(0), &task(1000, 1, 500).demand),
            Some(vec![(0, 500)])
        );
    }
}
