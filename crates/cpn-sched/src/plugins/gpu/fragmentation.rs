//! GPU fragmentation of a node against the target workload (BENCHMARK.md §4.2).
//!
//! For a node with free CPU c, GPU model T and free milli g₁..g_G (idle = Σ gᵢ), a shape m
//! sees as fragments: every idle GPU when m is CPU-only, when m may not use model T, or when
//! m does not fit (fewer than k_m GPUs with ≥ milli_m free, or c < cpu_m); otherwise only
//! the GPUs too small for it (gᵢ < milli_m). F = Σ_m p_m·F(m); memory never enters.
//!
//! Equivalently F = idle − Σ_{m usable and fitting} p_m·S(milli_m) with S(x) = Σ_{gᵢ ≥ x} gᵢ.
//! With p_m = count_m / total this is computed exactly in integers as
//! `total·F = total·idle − Σ count_m·S(milli_m)`: equal states give equal values, and a
//! placement that changes nothing gives a difference of exactly 0.

use super::workload::TargetWorkload;
use crate::cluster::{Cluster, Node, NodeIdx};
use std::collections::HashMap;

/// One GPU shape a node of a given model may run.
#[derive(Debug, Clone, Copy)]
struct GpuShape {
    cpu_milli: u64,
    gpu_milli: u32,
    num_gpu: u32,
    count: u64,
}

/// The workload as one GPU model sees it: the GPU shapes allowed on that model, grouped by
/// GPU milli (so S(milli) is computed once per group). CPU-only and disallowed shapes need
/// no entry: they see every idle GPU as a fragment, which `total·idle` already counts.
#[derive(Debug, Clone)]
pub struct ModelTable {
    shapes: Vec<GpuShape>,
    total: u64,
}

impl ModelTable {
    pub fn new(workload: &TargetWorkload, model: &str) -> ModelTable {
        let mut shapes: Vec<GpuShape> = workload
            .shapes()
            .iter()
            .filter(|(s, _)| !s.is_cpu_only() && s.allows_model(model))
            .map(|(s, c)| GpuShape {
                cpu_milli: s.cpu_milli,
                gpu_milli: s.gpu_milli,
                num_gpu: s.num_gpu,
                count: *c,
            })
            .collect();
        shapes.sort_by_key(|s| std::cmp::Reverse(s.gpu_milli));
        ModelTable {
            shapes,
            total: workload.total(),
        }
    }

    /// `total · F` for a node state with `cpu_free` milli CPU and `gpus` free milli per GPU.
    #[inline]
    pub fn scaled(&self, cpu_free: u64, gpus: &[u32]) -> u64 {
        let idle: u64 = gpus.iter().map(|&g| g as u64).sum();
        let mut usable = 0u64;
        let mut group = u32::MAX;
        let (mut fit, mut sum) = (0u32, 0u64);
        for s in &self.shapes {
            if cpu_free < s.cpu_milli {
                continue;
            }
            if s.gpu_milli != group {
                group = s.gpu_milli;
                fit = 0;
                sum = 0;
                for &g in gpus {
                    if g >= group {
                        fit += 1;
                        sum += g as u64;
                    }
                }
            }
            if fit >= s.num_gpu {
                usable += s.count * sum;
            }
        }
        self.total * idle - usable
    }

    /// F in milli-GPU for a node state.
    pub fn fragmentation(&self, cpu_free: u64, gpus: &[u32]) -> f64 {
        self.to_milli(self.scaled(cpu_free, gpus))
    }

    /// Converts a `scaled` value (or a difference of two) to milli-GPU.
    pub fn to_milli(&self, scaled: u64) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            scaled as f64 / self.total as f64
        }
    }

    /// Σ counts: the unit of `scaled` is 1/total milli-GPU.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// F_n of a node in its current state, in milli-GPU.
pub fn node_fragmentation(node: &Node, workload: &TargetWorkload) -> f64 {
    state_fragmentation(workload, &node.spec.model, node.cpu_free(), &node.gpu_free)
}

/// F of a hypothetical node state: GPU model `model`, `cpu_free` milli CPU, `gpu_free` milli
/// per GPU. In milli-GPU.
pub fn state_fragmentation(
    workload: &TargetWorkload,
    model: &str,
    cpu_free: u64,
    gpu_free: &[u32],
) -> f64 {
    ModelTable::new(workload, model).fragmentation(cpu_free, gpu_free)
}

/// Cluster-wide fragmentation: Σ F_n and Σ idle milli-GPU over every node.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Fragmentation {
    /// Σ_n F_n, milli-GPU.
    pub amount_milli: f64,
    /// Σ_n idle milli-GPU (free milli over all GPUs): the rate's denominator.
    pub idle_milli: u64,
}

impl Fragmentation {
    /// Fragmentation amount as a percentage of `capacity_milli` (cluster GPUs × 1000): the
    /// benchmark's "Frag / Total".
    pub fn amount_pct(&self, capacity_milli: u64) -> f64 {
        if capacity_milli == 0 {
            0.0
        } else {
            100.0 * self.amount_milli / capacity_milli as f64
        }
    }

    /// Fragmentation rate, % of idle GPU milli that is fragment (0 when nothing is idle).
    pub fn rate_pct(&self) -> f64 {
        if self.idle_milli == 0 {
            0.0
        } else {
            100.0 * self.amount_milli / self.idle_milli as f64
        }
    }
}

/// Σ F_n over every node of the cluster, from scratch (O(nodes · shapes · GPUs)). After each
/// placement a [`FragmentationTracker`] is cheaper.
pub fn cluster_fragmentation(cluster: &Cluster, workload: &TargetWorkload) -> Fragmentation {
    FragmentationTracker::new(cluster, workload).fragmentation()
}

/// Keeps Σ F_n current as nodes change: tell it which node changed after each placement
/// (`update`), read the totals in O(1).
#[derive(Debug, Clone)]
pub struct FragmentationTracker {
    /// One table per distinct GPU model name.
    tables: Vec<ModelTable>,
    /// Per node: (its table, its total·F, its idle milli).
    nodes: Vec<(u32, u64, u64)>,
    scaled_sum: u128,
    idle_sum: u64,
    total: u64,
}

impl FragmentationTracker {
    pub fn new(cluster: &Cluster, workload: &TargetWorkload) -> FragmentationTracker {
        let mut index: HashMap<&str, u32> = HashMap::new();
        let mut tables = Vec::new();
        let mut nodes = Vec::with_capacity(cluster.nodes.len());
        let (mut scaled_sum, mut idle_sum) = (0u128, 0u64);
        for n in &cluster.nodes {
            let t = *index.entry(n.spec.model.as_str()).or_insert_with(|| {
                tables.push(ModelTable::new(workload, &n.spec.model));
                (tables.len() - 1) as u32
            });
            let scaled = tables[t as usize].scaled(n.cpu_free(), &n.gpu_free);
            let idle = n.gpu_milli_free();
            scaled_sum += scaled as u128;
            idle_sum += idle;
            nodes.push((t, scaled, idle));
        }
        FragmentationTracker {
            tables,
            nodes,
            scaled_sum,
            idle_sum,
            total: workload.total(),
        }
    }

    /// Recomputes node `n` (after a placement or release on it). O(shapes · GPUs).
    pub fn update(&mut self, cluster: &Cluster, n: NodeIdx) {
        let node = cluster.node(n);
        let (t, old_scaled, old_idle) = self.nodes[n as usize];
        let scaled = self.tables[t as usize].scaled(node.cpu_free(), &node.gpu_free);
        let idle = node.gpu_milli_free();
        self.scaled_sum = self.scaled_sum - old_scaled as u128 + scaled as u128;
        self.idle_sum = self.idle_sum - old_idle + idle;
        self.nodes[n as usize] = (t, scaled, idle);
    }

    /// F_n of node `n` as last computed, milli-GPU.
    pub fn node(&self, n: NodeIdx) -> f64 {
        self.tables[self.nodes[n as usize].0 as usize].to_milli(self.nodes[n as usize].1)
    }

    pub fn fragmentation(&self) -> Fragmentation {
        Fragmentation {
            amount_milli: if self.total == 0 {
                0.0
            } else {
                self.scaled_sum as f64 / self.total as f64
            },
            idle_milli: self.idle_sum,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{ClusterBuilder, GpuPick};
    use crate::plugins::gpu::workload::Shape;
    use crate::plugins::testkit::{gpu_node, site};
    use crate::task::Demand;

    /// §4.4: A = 1 CPU, 500 milli × 1 GPU, B = 1 CPU, 1000 milli × 1 GPU, p = 0.5 each.
    fn ab() -> TargetWorkload {
        TargetWorkload::from_counts([
            (Shape::new(1000, 500, 1, ""), 1),
            (Shape::new(1000, 1000, 1, ""), 1),
        ])
    }

    #[test]
    fn worked_example_fragmentation() {
        let w = ab();
        let f = |g: &[u32]| state_fragmentation(&w, "G2", 64_000, g);
        assert_eq!(f(&[1000, 1000]), 0.0);
        // B sees the half GPU as a fragment: 0.5 · 500.
        assert_eq!(f(&[500, 1000]), 250.0);
        assert_eq!(f(&[0, 1000]), 0.0);
        // B fits nowhere: all 1000 idle is fragment for B; A fits both halves.
        assert_eq!(f(&[500, 500]), 500.0);

        // With a CPU-only shape of p = 0.2 (A and B at 0.4 each).
        let w = TargetWorkload::from_counts([
            (Shape::new(1000, 500, 1, ""), 2),
            (Shape::new(1000, 1000, 1, ""), 2),
            (Shape::new(1000, 0, 0, ""), 1),
        ]);
        assert_eq!(state_fragmentation(&w, "G2", 64_000, &[1000, 1000]), 400.0);
        // Free CPU below every shape's request: all 2000 idle milli are stranded.
        assert_eq!(state_fragmentation(&w, "G2", 999, &[1000, 1000]), 2000.0);
    }

    #[test]
    fn model_access_and_multi_gpu_shapes() {
        // p = 1/4 each: 2 × 1000 on V100 only, 1 × 300 anywhere, 2 CPU-only.
        let w = TargetWorkload::from_counts([
            (Shape::new(1000, 1000, 2, "V100M16|V100M32"), 1),
            (Shape::new(1000, 300, 1, ""), 1),
            (Shape::new(500, 0, 0, ""), 2),
        ]);
        let g = [1000, 1000, 200, 0];
        // idle 2200. 2-GPU shape on V100: fits, fragments 200. 300-shape: fragments 200.
        // CPU-only: 2200 twice. (200 + 200 + 2·2200) / 4 = 1200.
        assert_eq!(state_fragmentation(&w, "V100M32", 8000, &g), 1200.0);
        // On G2 the V100 shape has no access: (2200 + 200 + 4400) / 4 = 1700.
        assert_eq!(state_fragmentation(&w, "G2", 8000, &g), 1700.0);
        // One whole GPU left: the 2-GPU shape does not fit: (1200 + 200 + 2400) / 4 = 950.
        assert_eq!(
            state_fragmentation(&w, "V100M32", 8000, &[1000, 0, 200, 0]),
            950.0
        );
    }

    #[test]
    fn tracker_follows_placements_and_matches_a_fresh_sum() {
        let mut b = ClusterBuilder::new();
        let s = b.site(site("s", "east"));
        b.node(gpu_node("a", s, "G2", 2));
        b.node(gpu_node("b", s, "T4", 4));
        let mut c = b.build().unwrap();
        let w = ab();
        let mut t = FragmentationTracker::new(&c, &w);
        assert_eq!(t.fragmentation().amount_milli, 0.0);
        assert_eq!(t.fragmentation().idle_milli, 6000);
        let half = Demand {
            cpu_milli: 1000,
            gpus: 1,
            gpu_milli: 500,
            ..Default::default()
        };
        c.reserve("x", 1, &half, GpuPick::BestFit).unwrap();
        t.update(&c, 1);
        let f = t.fragmentation();
        assert_eq!(f, cluster_fragmentation(&c, &w));
        assert_eq!(f.amount_milli, 250.0);
        assert_eq!(f.idle_milli, 5500);
        assert_eq!(t.node(1), node_fragmentation(c.node(1), &w));
        assert_eq!(f.amount_pct(6000), 100.0 * 250.0 / 6000.0);
        assert_eq!(f.rate_pct(), 100.0 * 250.0 / 5500.0);
    }
}
